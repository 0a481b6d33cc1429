import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TYPICAL_BYTE_FREQUENCY, chooseRarePair } from '../../src/kernels/byteFrequency.js';

describe('chooseRarePair', () => {
  it('skips the zeros and 0xff of a little-endian kernel pointer', () => {
    const pointer = Uint8Array.from([0, 0, 0, 0, 0x80, 0x88, 0xff, 0xff]);
    expect(new Set(Object.values(chooseRarePair(pointer)))).toEqual(new Set([4, 5]));
  });

  it('skips the zero padding of a task name', () => {
    const { offsetA, offsetB } = chooseRarePair(new TextEncoder().encode('swapper/0\0\0\0\0\0\0'));
    expect(Math.max(offsetA, offsetB)).toBeLessThan(9);
  });

  it('compares the one byte of a single-byte needle twice', () => {
    expect(chooseRarePair(Uint8Array.of(0x41))).toEqual({ offsetA: 0, offsetB: 0 });
  });

  it('rejects an empty needle', () => {
    expect(() => chooseRarePair(new Uint8Array(0))).toThrow(RangeError);
  });

  it('picks two distinct offsets whose bytes are no more common than any other byte of the needle', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2, maxLength: 64 }), (needle) => {
        const { offsetA, offsetB } = chooseRarePair(needle);
        expect(offsetA).not.toBe(offsetB);
        const frequencyAt = (offset: number) => TYPICAL_BYTE_FREQUENCY[needle[offset]!]!;
        const sorted = Array.from(needle.keys())
          .map(frequencyAt)
          .sort((a, b) => a - b);
        expect([frequencyAt(offsetA), frequencyAt(offsetB)].sort((a, b) => a - b)).toEqual(sorted.slice(0, 2));
      }),
    );
  });

  it('covers every byte value', () => {
    expect(TYPICAL_BYTE_FREQUENCY).toHaveLength(256);
    expect(TYPICAL_BYTE_FREQUENCY.every((frequency) => frequency > 0)).toBe(true);
  });
});
