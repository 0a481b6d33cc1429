import fc from 'fast-check';
import snappyjs from 'snappyjs';
import { describe, expect, it } from 'vitest';
import { decompressSnappyView, isSnappyView } from '../../src/image/snappyDecode.js';
import { memoryLike } from '../support/memoryLike.js';
import { snappyReference } from '../support/snappyReference.js';

/**
 * The WASM snappy kernel (assembly/snappy.ts, through snappyDecode.ts) against the plain
 * TypeScript reference (test/support/snappyReference.ts): on what a real encoder writes, on
 * blocks built element by element (every literal and copy form, overlapping copies, runs of one
 * byte), and on those blocks damaged, where both must accept the same bytes or both refuse.
 */

/** One element of a block: a literal of bytes, or a copy of `length` bytes from `offset` back in one of the three forms. */
type Element =
  | { literal: Uint8Array }
  | { offset: number; length: number; form: 1 | 2 | 4 }
  /** A copy from `beyond` bytes before the start of the output (refused). */
  | { beyond: number; length: number };

const element: fc.Arbitrary<Element> = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 300, size: 'max' }).map((literal) => ({ literal })),
  fc.record({
    offset: fc.integer({ min: 1, max: 2047 }),
    length: fc.integer({ min: 4, max: 11 }),
    form: fc.constant(1 as const),
  }),
  fc.record({
    offset: fc.integer({ min: 1, max: 70_000 }),
    length: fc.integer({ min: 1, max: 64 }),
    form: fc.constantFrom(2 as const, 4 as const),
  }),
  fc.record({
    offset: fc.integer({ min: 1, max: 20 }),
    length: fc.integer({ min: 1, max: 64 }),
    form: fc.constant(4 as const),
  }),
);

function varint(value: number): number[] {
  const bytes: number[] = [];
  for (; value >= 0x80; value = Math.floor(value / 128)) bytes.push((value & 0x7f) | 0x80);
  bytes.push(value);
  return bytes;
}

/** The block of `elements` (copies clamped to what precedes them, 2-byte offsets to 16 bits) and its length. */
function encode(elements: readonly Element[]): { block: Uint8Array; length: number } {
  const body: number[] = [];
  let length = 0;
  for (const item of elements) {
    if ('literal' in item) {
      const n = item.literal.length - 1;
      if (n < 60) body.push(n << 2);
      else if (n < 0x100) body.push(60 << 2, n);
      else body.push(61 << 2, n & 0xff, n >> 8);
      body.push(...item.literal);
      length += item.literal.length;
      continue;
    }
    if ('beyond' in item) {
      const offset = Math.min(length + item.beyond, 0xffff);
      body.push(2 | ((item.length - 1) << 2), offset & 0xff, offset >> 8);
      length += item.length;
      continue;
    }
    if (length === 0) continue;
    const offset = Math.min(item.offset, length, item.form === 2 ? 0xffff : Infinity);
    if (item.form === 1) body.push(1 | ((item.length - 4) << 2) | ((offset >> 8) << 5), offset & 0xff);
    else if (item.form === 2) body.push(2 | ((item.length - 1) << 2), offset & 0xff, offset >> 8);
    else
      body.push(
        3 | ((item.length - 1) << 2),
        offset & 0xff,
        (offset >> 8) & 0xff,
        (offset >> 16) & 0xff,
        offset >>> 24,
      );
    length += item.length;
  }
  return { block: Uint8Array.from([...varint(length), ...body]), length };
}

/** The kernel's answer: the bytes, or undefined when it refuses. */
function kernel(block: Uint8Array, length: number): Uint8Array | undefined {
  try {
    return decompressSnappyView(block, length).slice();
  } catch {
    return undefined;
  }
}

describe('raw snappy blocks decompressed by the WASM kernel', () => {
  it('gives what snappyjs compressed, as a view of its memory', () => {
    fc.assert(
      fc.property(memoryLike, (data) => {
        if (data.length === 0) return;
        const view = decompressSnappyView(snappyjs.compress(data), data.length);
        expect(view).toEqual(data);
        expect(isSnappyView(view)).toBe(true);
        expect(isSnappyView(data)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it('gives the bytes the reference gives on blocks of every element form', () => {
    fc.assert(
      fc.property(fc.array(element, { minLength: 1, maxLength: 60, size: 'max' }), (elements) => {
        const { block, length } = encode(elements);
        if (length === 0) return;
        const expected = snappyReference(block, length);
        expect(expected).toBeDefined();
        expect(kernel(block, length)).toEqual(expected);
      }),
      { numRuns: 400 },
    );
  });

  it('accepts and refuses what the reference does on damaged blocks, and on a declared length off by one', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            { arbitrary: element, weight: 20 },
            fc.record({ beyond: fc.integer({ min: 1, max: 3 }), length: fc.integer({ min: 1, max: 64 }) }),
          ),
          { minLength: 1, maxLength: 30, size: 'max' },
        ),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: -1, max: 1 }),
        fc.boolean(),
        (elements, changes, lengthDelta, cut) => {
          const { block, length } = encode(elements);
          const damaged = block.slice(0, cut ? Math.max(1, block.length - 1 - (changes[0]![0] % 4)) : block.length);
          for (const [at, byte] of changes) damaged[at % damaged.length] = byte;
          const asked = Math.max(1, length + lengthDelta);
          expect(kernel(damaged, asked)).toEqual(snappyReference(damaged, asked));
        },
      ),
      { numRuns: 1000 },
    );
  });
});
