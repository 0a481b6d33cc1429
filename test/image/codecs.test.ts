import { deflateSync } from 'node:zlib';
import fc from 'fast-check';
import snappyjs from 'snappyjs';
import { describe, expect, it } from 'vitest';
import { decodeExactly } from '../../src/image/codecs.js';
import { VmscopeError } from '../../src/util/errors.js';
import { lzoLiteralStream, zstdStoredFrame } from '../support/formatWriters.js';
import { memoryLike } from '../support/memoryLike.js';

describe('page and chunk decoders', () => {
  it('zlib, snappy, zstd and lzo pages decode to what was encoded, on memory-like inputs', () => {
    fc.assert(
      fc.property(memoryLike, (data) => {
        if (data.length === 0) return;
        expect(decodeExactly('zlib', deflateSync(data), data.length, 'dump', 0)).toEqual(data);
        expect(decodeExactly('snappy', snappyjs.compress(data), data.length, 'dump', 0)).toEqual(data);
        // The writer's frame header holds sizes of 256 bytes and more (a 2-byte content size).
        if (data.length >= 256)
          expect(decodeExactly('zstd', zstdStoredFrame(data), data.length, 'dump', 0)).toEqual(data);
        expect(decodeExactly('lzo', lzoLiteralStream(data), data.length, 'dump', 0)).toEqual(data);
      }),
      { numRuns: 200 },
    );
  });

  it('every codec refuses to inflate past the page size with a typed error at the data offset', () => {
    const big = new Uint8Array(8192).fill(7);
    for (const [codec, encoded] of [
      ['zlib', deflateSync(big)],
      ['snappy', snappyjs.compress(big)],
      ['zstd', zstdStoredFrame(big)],
    ] as const) {
      let caught: unknown;
      try {
        decodeExactly(codec, encoded, 4096, 'dump', 0x1234);
      } catch (error) {
        caught = error;
      }
      expect(caught, codec).toBeInstanceOf(VmscopeError);
      expect((caught as VmscopeError).offset).toBe(0x1234);
    }
    expect(decodeExactly('zstd', zstdStoredFrame(big.subarray(0, 4096)), 4096, 'dump', 0)).toEqual(
      big.subarray(0, 4096),
    );
  });

  it('a snappy page whose copy reaches before its start, or whose preamble is cut, is a typed error at its offset', () => {
    // Preamble 16, then a 1-byte-offset copy with nothing written yet; then a preamble with no literal after it.
    for (const [encoded, reason] of [
      [Uint8Array.of(0x10, 0x05, 0xff, 0x00, 0x00), /a copy reaches before the start of the output/],
      [Uint8Array.of(0x10, 0x00), /the block ends inside an element/],
      [Uint8Array.of(0x90), /no valid length preamble/],
    ] as const) {
      let caught: unknown;
      try {
        decodeExactly('snappy', encoded, 16, 'dump', 0x4000);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(VmscopeError);
      expect((caught as VmscopeError).offset).toBe(0x4000);
      expect((caught as VmscopeError).message).toMatch(reason);
    }
  });
});
