import { readRange, type ScannedUnit } from '../unit.js';
import { fn, type Module, type Value } from './types.js';

/**
 * yara's `math` module as pure functions of the scanned bytes: each statistic over a range
 * (offset, size: clipped at the unit's end, undefined when it starts outside) or over a string.
 * Formulas and their edge cases follow yara 4.2's math.c (the ent program's statistics).
 */

const bytesOf = (text: Value) => Buffer.from(text as string, 'latin1');

/** Byte histogram of a range; undefined where yara's is. */
function histogram(unit: ScannedUnit, offset: Value, length: Value): Float64Array | undefined {
  const counts = new Float64Array(256);
  return readRange(unit, offset as bigint, length as bigint, (chunk) =>
    chunk.forEach((byte) => (counts[byte] = counts[byte]! + 1)),
  )
    ? counts
    : undefined;
}

function histogramOf(bytes: Uint8Array): Float64Array {
  const counts = new Float64Array(256);
  for (const byte of bytes) counts[byte] = counts[byte]! + 1;
  return counts;
}

const total = (counts: Float64Array) => counts.reduce((sum, count) => sum + count, 0);

function entropy(counts: Float64Array): number {
  const size = total(counts);
  let result = 0;
  for (const count of counts) {
    if (count === 0) continue;
    const share = count / size;
    result -= share * Math.log2(share);
  }
  return result;
}

const mean = (counts: Float64Array) => counts.reduce((sum, count, byte) => sum + byte * count, 0) / total(counts);
const deviation = (counts: Float64Array, around: number) =>
  counts.reduce((sum, count, byte) => sum + Math.abs(byte - around) * count, 0) / total(counts);

/** Serial correlation of consecutive bytes (ent's), over chunks fed in order. */
class SerialCorrelation {
  private current = 0;
  private last = 0;
  private t1 = 0;
  private t2 = 0;
  private t3 = 0;
  private length = 0;

  add(bytes: Uint8Array): void {
    for (const byte of bytes) {
      this.current = byte;
      this.t1 += this.last * byte;
      this.t2 += byte;
      this.t3 += byte * byte;
      this.last = byte;
    }
    this.length += bytes.length;
  }

  result(): number {
    // yara closes the cycle with last × current (both the last byte), not last × first as ent does.
    const t1 = this.t1 + this.last * this.current;
    const t2 = this.t2 * this.t2;
    const denominator = this.length * this.t3 - t2;
    return denominator === 0 ? -100000 : (this.length * t1 - t2) / denominator;
  }
}

/** How far from pi the Monte Carlo estimate over 6-byte points is, as a fraction; undefined under 6 bytes. */
class MonteCarloPi {
  private static readonly IN_CIRCLE = Math.pow(Math.pow(256, 3) - 1, 2);
  private readonly point = new Uint32Array(6);
  private index = 0;
  private points = 0;
  private inside = 0;

  add(bytes: Uint8Array): void {
    for (const byte of bytes) {
      this.point[this.index % 6] = byte;
      if (this.index % 6 === 5) {
        this.points++;
        let x = 0;
        let y = 0;
        for (let j = 0; j < 3; j++) {
          x = x * 256 + this.point[j]!;
          y = y * 256 + this.point[j + 3]!;
        }
        if (x * x + y * y <= MonteCarloPi.IN_CIRCLE) this.inside++;
      }
      this.index++;
    }
  }

  result(): number | undefined {
    if (this.points === 0) return undefined;
    const estimate = (4 * this.inside) / this.points;
    return Math.abs((estimate - Math.PI) / Math.PI);
  }
}

/** yara's C `(float)` casts: percentages are single precision. */
const single = (value: number) => Math.fround(value);

function streamed<T extends { add(bytes: Uint8Array): void; result(): number | undefined }>(make: () => T) {
  return {
    range: (args: readonly Value[], unit: ScannedUnit) => {
      const state = make();
      return readRange(unit, args[0] as bigint, args[1] as bigint, (chunk) => state.add(chunk))
        ? state.result()
        : undefined;
    },
    text: (args: readonly Value[]) => {
      const state = make();
      state.add(bytesOf(args[0]));
      return state.result();
    },
  };
}

const serial = streamed(() => new SerialCorrelation());
const monteCarlo = streamed(() => new MonteCarloPi());

const mode = (counts: Float64Array) => counts.reduce((best, count, byte) => (count > counts[best]! ? byte : best), 0);
const wholeUnit = (unit: ScannedUnit) =>
  histogram(unit, 0n, BigInt(unit.size)) ?? (unit.size === 0 ? new Float64Array(256) : undefined);

export const mathModule: Module = {
  name: 'math',
  load: () => ({ MEAN_BYTES: 127.5 }),
  type: {
    kind: 'struct',
    fields: {
      MEAN_BYTES: { kind: 'value', type: 'float' },
      entropy: fn(
        {
          args: ['integer', 'integer'],
          returns: 'float',
          run: ([offset, size], unit) => map(histogram(unit, offset, size), entropy),
        },
        { args: ['string'], returns: 'float', run: ([text]) => entropy(histogramOf(bytesOf(text))) },
      ),
      mean: fn(
        {
          args: ['integer', 'integer'],
          returns: 'float',
          run: ([offset, size], unit) => map(histogram(unit, offset, size), mean),
        },
        { args: ['string'], returns: 'float', run: ([text]) => mean(histogramOf(bytesOf(text))) },
      ),
      deviation: fn(
        {
          args: ['integer', 'integer', 'float'],
          returns: 'float',
          run: ([offset, size, around], unit) =>
            map(histogram(unit, offset, size), (counts) => deviation(counts, around as number)),
        },
        {
          args: ['string', 'float'],
          returns: 'float',
          run: ([text, around]) => deviation(histogramOf(bytesOf(text)), around as number),
        },
      ),
      serial_correlation: fn(
        { args: ['integer', 'integer'], returns: 'float', run: serial.range },
        { args: ['string'], returns: 'float', run: serial.text },
      ),
      monte_carlo_pi: fn(
        { args: ['integer', 'integer'], returns: 'float', run: monteCarlo.range },
        { args: ['string'], returns: 'float', run: monteCarlo.text },
      ),
      in_range: fn({
        args: ['float', 'float', 'float'],
        returns: 'integer',
        run: ([test, lower, upper]) =>
          (lower as number) <= (test as number) && (test as number) <= (upper as number) ? 1n : 0n,
      }),
      min: fn({
        args: ['integer', 'integer'],
        returns: 'integer',
        run: ([a, b]) => unsignedPick(a as bigint, b as bigint, (x, y) => x < y),
      }),
      max: fn({
        args: ['integer', 'integer'],
        returns: 'integer',
        run: ([a, b]) => unsignedPick(a as bigint, b as bigint, (x, y) => x > y),
      }),
      to_number: fn({ args: ['boolean'], returns: 'integer', run: ([value]) => (value ? 1n : 0n) }),
      abs: fn({
        args: ['integer'],
        returns: 'integer',
        run: ([value]) => BigInt.asIntN(64, (value as bigint) < 0n ? -(value as bigint) : (value as bigint)),
      }),
      count: fn(
        {
          args: ['integer', 'integer', 'integer'],
          returns: 'integer',
          run: ([byte, offset, size], unit) =>
            map(histogram(unit, offset, size), (counts) => BigInt(counts[Number(BigInt.asUintN(8, byte as bigint))]!)),
        },
        {
          args: ['integer'],
          returns: 'integer',
          run: ([byte], unit) =>
            map(wholeUnit(unit), (counts) => BigInt(counts[Number(BigInt.asUintN(8, byte as bigint))]!)),
        },
      ),
      percentage: fn(
        {
          args: ['integer', 'integer', 'integer'],
          returns: 'float',
          run: ([byte, offset, size], unit) =>
            map(histogram(unit, offset, size), (counts) => percentage(counts, byte as bigint)),
        },
        {
          args: ['integer'],
          returns: 'float',
          run: ([byte], unit) => map(wholeUnit(unit), (counts) => percentage(counts, byte as bigint)),
        },
      ),
      mode: fn(
        {
          args: ['integer', 'integer'],
          returns: 'integer',
          run: ([offset, size], unit) => map(histogram(unit, offset, size), (counts) => BigInt(mode(counts))),
        },
        { args: [], returns: 'integer', run: (_, unit) => map(wholeUnit(unit), (counts) => BigInt(mode(counts))) },
      ),
    },
  },
};

const percentage = (counts: Float64Array, byte: bigint) =>
  single(single(counts[Number(BigInt.asUintN(8, byte))]!) / single(total(counts)));

function map<T>(value: T | undefined, f: (value: T) => Value): Value {
  return value === undefined ? undefined : f(value);
}

/** yara compares min/max's arguments as uint64 and returns them as int64. */
function unsignedPick(a: bigint, b: bigint, first: (x: bigint, y: bigint) => boolean): bigint {
  return first(BigInt.asUintN(64, a), BigInt.asUintN(64, b)) ? a : b;
}
