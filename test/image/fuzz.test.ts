import { closeSync, openSync, readSync } from 'node:fs';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { openImageSource } from '../../src/image/open.js';
import type { ByteSource } from '../../src/image/source.js';
import { VmscopeError } from '../../src/util/errors.js';
import { fixturePath } from '../support/fixtures.js';

/**
 * A dump-sized file whose header regions hold real bytes (possibly mutated) and whose bulk reads
 * as zeros: the parsers see realistic sizes and offsets without 512 MiB per fuzz case.
 */
class SparseSource implements ByteSource {
  constructor(
    readonly path: string,
    readonly size: number,
    private readonly regions: ReadonlyArray<{ offset: number; bytes: Uint8Array }>,
  ) {}

  readAt(offset: number, into: Uint8Array): number {
    const length = Math.max(0, Math.min(into.length, this.size - offset));
    into.fill(0, 0, length);
    for (const region of this.regions) {
      const from = Math.max(offset, region.offset);
      const to = Math.min(offset + length, region.offset + region.bytes.length);
      if (from < to) into.set(region.bytes.subarray(from - region.offset, to - region.offset), from - offset);
    }
    return length;
  }

  close(): void {}
}

function readRegion(path: string, offset: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  const fd = openSync(path, 'r');
  readSync(fd, bytes, 0, length, offset);
  closeSync(fd);
  return bytes;
}

const mutation = fc.record({
  /** byte flips anywhere in the header region */
  flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
  /** whole 64-bit fields overwritten with extreme or random values */
  words: fc.array(
    fc.tuple(
      fc.nat(),
      fc.oneof(
        fc.constantFrom(0n, 1n, 0xffffffffn, 0x7fffffffffffffffn, 0xffffffffffffffffn, 1n << 53n),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      ),
    ),
    { maxLength: 4 },
  ),
  /** cut the file at some size */
  truncateTo: fc.option(fc.nat(), { nil: undefined }),
});

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(original: Uint8Array, { flips, words }: Mutation): Uint8Array {
  const bytes = original.slice();
  const view = new DataView(bytes.buffer);
  for (const [position, value] of flips) bytes[position % bytes.length] = value;
  for (const [position, value] of words) view.setBigUint64(((position % (bytes.length - 8)) >> 3) << 3, value, true);
  return bytes;
}

/** Parsing must end in an image or a VmscopeError, quickly, whatever the header says. */
function parseMutated(size: number, regions: Array<{ offset: number; bytes: Uint8Array }>): void {
  const started = performance.now();
  try {
    const image = openImageSource(new SparseSource('fuzzed', size, regions));
    // A parsed image must be self-consistent: sorted, disjoint ranges within the file.
    for (let i = 1; i < image.ranges.length; i++)
      expect(image.ranges[i]!.start).toBeGreaterThanOrEqual(image.ranges[i - 1]!.end);
    for (const range of image.ranges) expect(range.fileOffset + (range.end - range.start)).toBeLessThanOrEqual(size);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    expect(error.file).toBe('fuzzed');
  }
  expect(performance.now() - started).toBeLessThan(500);
}

describe('fuzzing the dump parsers with mutated real headers', () => {
  let elfPath: string;
  let limePath: string;
  beforeAll(() => {
    elfPath = fixturePath('linux61-clean', 'elf');
    limePath = fixturePath('linux61-clean', 'lime');
  });

  it('ELF core: header, program headers and notes', () => {
    const size = 537135059;
    const header = readRegion(elfPath, 0, 0x7c8);
    fc.assert(
      fc.property(mutation, (change) => {
        const truncated = change.truncateTo === undefined ? size : change.truncateTo % (size + 1);
        parseMutated(truncated, [{ offset: 0, bytes: mutate(header, change) }]);
      }),
      { numRuns: 3000 },
    );
  });

  it('LiME: both range headers', () => {
    const size = 537133120;
    const second = 32 + 0x20000000;
    const first = readRegion(limePath, 0, 32);
    const secondHeader = readRegion(limePath, second, 32);
    fc.assert(
      fc.property(mutation, fc.boolean(), (change, mutateSecond) => {
        const truncated = change.truncateTo === undefined ? size : change.truncateTo % (size + 1);
        parseMutated(truncated, [
          { offset: 0, bytes: mutateSecond ? first : mutate(first, change) },
          { offset: second, bytes: mutateSecond ? mutate(secondHeader, change) : secondHeader },
        ]);
      }),
      { numRuns: 3000 },
    );
  });

  it('the unmutated headers parse to the real ranges (the fuzz baseline is meaningful)', () => {
    const image = openImageSource(
      new SparseSource('real', 537135059, [{ offset: 0, bytes: readRegion(elfPath, 0, 0x7c8) }]),
    );
    expect(image.ranges.map((range) => [range.start, range.end])).toEqual([
      [0, 0x20000000],
      [0xfffc0000, 0x100000000],
    ]);
    expect(image.cpus).toHaveLength(2);
  });
});
