import { constants, deflateRawSync, deflateSync, inflateSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inflateZlib } from '../../src/image/zlibInflate.js';
import { memoryLike } from '../support/memoryLike.js';

/**
 * The WASM inflate kernel (assembly/inflate.ts) against its reference, Node's zlib: the same bytes
 * from every stream zlib writes, and the same verdict (bytes or refusal) on streams made corrupt.
 */

const STRATEGIES = [
  constants.Z_DEFAULT_STRATEGY,
  constants.Z_FILTERED,
  constants.Z_HUFFMAN_ONLY,
  constants.Z_RLE,
  constants.Z_FIXED,
];

/** Every way zlib can compress: level 0 (stored blocks) to 9, every strategy, small windows and little memory. */
const deflateOptions = fc.record({
  level: fc.integer({ min: 0, max: 9 }),
  strategy: fc.constantFrom(...STRATEGIES),
  windowBits: fc.integer({ min: 9, max: 15 }),
  memLevel: fc.integer({ min: 1, max: 9 }),
});

/** Node's verdict: the bytes, or undefined when it refuses the stream or it inflates past `limit`. */
function reference(stream: Uint8Array, limit: number): Uint8Array | undefined {
  try {
    const out = inflateSync(stream, { maxOutputLength: Math.max(1, limit) });
    return out.length <= limit ? new Uint8Array(out) : undefined;
  } catch {
    return undefined;
  }
}

function ours(stream: Uint8Array, limit: number): Uint8Array | undefined {
  try {
    return inflateZlib(stream, limit);
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return undefined;
  }
}

/** Bits written least significant first, as deflate packs them; Huffman codes go most significant bit first. */
class BitWriter {
  private readonly bytes: number[] = [];
  private bits = 0;
  private count = 0;

  write(value: number, width: number): this {
    for (let bit = 0; bit < width; bit++) this.push((value >> bit) & 1);
    return this;
  }

  code(value: number, width: number): this {
    for (let bit = width - 1; bit >= 0; bit--) this.push((value >> bit) & 1);
    return this;
  }

  /** The zlib stream: header, these bits to a byte boundary, the Adler-32 of `content`. */
  zlib(content: Uint8Array): Uint8Array {
    if (this.count > 0) this.bytes.push(this.bits);
    let a = 1;
    let b = 0;
    for (const byte of content) {
      a = (a + byte) % 65521;
      b = (b + a) % 65521;
    }
    const check = ((b << 16) | a) >>> 0;
    return Uint8Array.of(
      0x78,
      0x9c,
      ...this.bytes,
      check >>> 24,
      (check >>> 16) & 0xff,
      (check >>> 8) & 0xff,
      check & 0xff,
    );
  }

  private push(bit: number): void {
    this.bits |= bit << this.count;
    if (++this.count === 8) {
      this.bytes.push(this.bits);
      this.bits = 0;
      this.count = 0;
    }
  }
}

/**
 * One dynamic block holding "AA": literal 'A' with a 1-bit code and end-of-block with a code of
 * `endOfBlockBits` (1: a complete code; 2: an incomplete one, which zlib refuses) and no distance code.
 */
function twoLiteralBlock(endOfBlockBits: 1 | 2): Uint8Array {
  // Code-length code: symbols 0, 1, 2 and 18 with 2-bit codes 00, 01, 10, 11, in zlib's order of lengths.
  const order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
  const codeLengthCodes = new Map([
    [0, 0b00],
    [1, 0b01],
    [2, 0b10],
    [18, 0b11],
  ]);
  const bits = new BitWriter()
    .write(1, 1)
    .write(2, 2)
    .write(0, 5)
    .write(0, 5)
    .write(18 - 4, 4);
  for (const symbol of order.slice(0, 18)) bits.write(codeLengthCodes.has(symbol) ? 2 : 0, 3);
  const length = (value: number) => bits.code(codeLengthCodes.get(value)!, 2);
  const zeros = (count: number) => bits.code(codeLengthCodes.get(18)!, 2).write(count - 11, 7);
  zeros(65); // literals 0-64
  length(1); // 'A'
  zeros(138); // literals 66-203
  zeros(52); // literals 204-255
  length(endOfBlockBits); // end of block
  length(0); // the one distance symbol: no code
  bits.code(0, 1).code(0, 1); // 'A' 'A'
  bits.code(endOfBlockBits === 1 ? 0b1 : 0b10, endOfBlockBits);
  return bits.zlib(new TextEncoder().encode('AA'));
}

describe('zlib inflate kernel', () => {
  it('inflates what zlib deflates, with every level, strategy, window and memory level', () => {
    fc.assert(
      fc.property(memoryLike, deflateOptions, (data, options) => {
        expect(inflateZlib(deflateSync(data, options), data.length)).toEqual(data);
      }),
      { numRuns: 400 },
    );
  });

  it('inflates streams of many blocks, stored, fixed and dynamic, past its first 64 KiB of room', () => {
    // 200 KiB: zlib ends a block every 16K symbols or so, and the output outgrows the first instance.
    const data = new Uint8Array(200 << 10);
    let seed = 7;
    for (let i = 0; i < data.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      data[i] = i % 3000 < 1000 ? seed >>> 24 : (i >> 4) & 0xff;
    }
    for (const options of [{ level: 0 }, { strategy: constants.Z_FIXED }, { level: 9 }, { level: 1 }])
      expect(inflateZlib(deflateSync(data, options), data.length), JSON.stringify(options)).toEqual(data);
  });

  it('refuses a stream that inflates past the bound (a decompression bomb) and one that falls short', () => {
    const zeros = deflateSync(new Uint8Array(1 << 20));
    expect(zeros.length).toBeLessThan(2048);
    expect(() => inflateZlib(zeros, 4096)).toThrow(/inflates past 4096 bytes/);
    // The bound is exact: one byte less than the stream holds is refused, the size itself is not.
    const page = deflateSync(new Uint8Array(4096).fill(0x41));
    expect(() => inflateZlib(page, 4095)).toThrow(/inflates past 4095 bytes/);
    expect(inflateZlib(page, 4096)).toEqual(new Uint8Array(4096).fill(0x41));
    expect(inflateZlib(page, 8192)).toHaveLength(4096);
  });

  it('names what is wrong with a stream it refuses', () => {
    const good = deflateSync(new TextEncoder().encode('vmscope '.repeat(100)));
    const withByte = (at: number, value: number) => Uint8Array.from(good, (byte, i) => (i === at ? value : byte));
    expect(() => inflateZlib(good.subarray(0, good.length - 1), 800)).toThrow(/ends early/);
    expect(() => inflateZlib(good.subarray(0, 1), 800)).toThrow(/ends early/);
    expect(() => inflateZlib(withByte(good.length - 1, good[good.length - 1]! ^ 1), 800)).toThrow(/Adler-32/);
    expect(() => inflateZlib(deflateRawSync(new Uint8Array(10)), 800)).toThrow(/no zlib header/);
    // A preset dictionary (FDICT) is refused: no dump page has one.
    expect(() => inflateZlib(Uint8Array.of(0x78, 0xbb, 0, 0, 0, 1, 3, 0), 800)).toThrow(/no zlib header/);
    // Block type 3 (BFINAL 1, BTYPE 11).
    expect(() => inflateZlib(Uint8Array.of(0x78, 0x9c, 0x07, 0, 0, 0, 0, 1), 800)).toThrow(/reserved type/);
    // A stored block whose length's complement is wrong.
    expect(() => inflateZlib(Uint8Array.of(0x78, 0x9c, 0x01, 0x05, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5), 800)).toThrow(
      /complement/,
    );
  });

  it('refuses an incomplete literal/length code as zlib does, and reads the complete one', () => {
    const complete = twoLiteralBlock(1);
    expect(reference(complete, 16)).toEqual(new TextEncoder().encode('AA'));
    expect(inflateZlib(complete, 16)).toEqual(new TextEncoder().encode('AA'));
    const incomplete = twoLiteralBlock(2);
    expect(reference(incomplete, 16)).toBeUndefined();
    expect(() => inflateZlib(incomplete, 16)).toThrow(/code lengths no prefix code has/);
  });

  it('gives the bytes zlib gives, or refuses where zlib refuses, on corrupted streams', () => {
    const corrupted = fc
      .tuple(
        memoryLike,
        deflateOptions,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
      )
      .chain(([data, options, flips]) => {
        const stream = deflateSync(data, options);
        for (const [at, mask] of flips) if (stream.length > 0) stream[at % stream.length]! ^= mask;
        return fc.tuple(
          fc.constant(new Uint8Array(stream)),
          // Half the time, cut short somewhere.
          fc.integer({ min: 0, max: 2 * stream.length }),
          fc.constant(data.length),
        );
      })
      .map(([stream, cut, length]) => ({ stream: stream.subarray(0, cut), length }));
    fc.assert(
      fc.property(corrupted, ({ stream, length }) => {
        expect(ours(stream, length)).toEqual(reference(stream, length));
      }),
      { numRuns: 1500 },
    );
  });

  it('gives the bytes zlib gives, or refuses where zlib refuses, on random bytes behind a zlib header', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 600 }), fc.integer({ min: 1, max: 8192 }), (body, limit) => {
        const stream = Uint8Array.of(0x78, 0x9c, ...body);
        expect(ours(stream, limit)).toEqual(reference(stream, limit));
      }),
      { numRuns: 3000 },
    );
  });
});
