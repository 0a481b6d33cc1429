import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RangeMappedImage } from '../../src/image/rangeImage.js';
import { BufferSource } from '../../src/image/source.js';
import { MAX_NEEDLE_LENGTH } from '../../src/kernels/memoryMap.js';
import { MultiNeedleSearcher, searchReference, type NeedleHit } from '../../src/kernels/multiNeedle.js';
import { chunkEdges, dumpLikeBytes, makeNeedle, needleSpec, plant } from './haystacks.js';

const SMALL_WINDOW = 64 * 1024;
const bytes = (text: string) => new TextEncoder().encode(text);

function offsetsOf(hits: readonly NeedleHit[], needle = 0): number[] {
  return hits.filter((hit) => hit.needle === needle).map((hit) => hit.offset);
}

describe('MultiNeedleSearcher.searchBuffer', () => {
  it('reports overlapping occurrences, each once', () => {
    const searcher = MultiNeedleSearcher.create([bytes('aaaa')], { windowBytes: SMALL_WINDOW });
    expect(offsetsOf(searcher.searchBuffer(bytes('xaaaaaaay')))).toEqual([1, 2, 3, 4]);
  });

  it('finds needles at the very start and the very end, offset by base', () => {
    const haystack = bytes('OSRELEASE=6.1.0 ... Linux version ');
    const searcher = MultiNeedleSearcher.create([bytes('Linux version '), bytes('OSRELEASE=')], {
      windowBytes: SMALL_WINDOW,
    });
    expect(searcher.searchBuffer(haystack, 0x1000)).toEqual([
      { needle: 1, offset: 0x1000 },
      { needle: 0, offset: 0x1000 + haystack.length - 14 },
    ]);
  });

  it('finds a single-byte needle everywhere it occurs', () => {
    const haystack = Uint8Array.from([7, 0, 7, 7, 1, 0, 0, 7]);
    const searcher = MultiNeedleSearcher.create([Uint8Array.of(7)], { windowBytes: SMALL_WINDOW });
    expect(offsetsOf(searcher.searchBuffer(haystack))).toEqual([0, 2, 3, 7]);
  });

  it('finds a zero-prefixed pointer among zeros and near misses', () => {
    const pointer = Uint8Array.from([0, 0, 0, 0, 0x80, 0x88, 0xff, 0xff]);
    const haystack = new Uint8Array(200_000);
    plant(haystack, pointer, 4096);
    plant(haystack, Uint8Array.from([0, 0, 0, 1, 0x80, 0x88, 0xff, 0xff]), 9000);
    plant(haystack, Uint8Array.from([0, 0, 0, 0, 0x80, 0x88, 0xff, 0xfe]), 12000);
    plant(haystack, pointer, 199_992);
    const searcher = MultiNeedleSearcher.create([pointer], { windowBytes: SMALL_WINDOW });
    expect(offsetsOf(searcher.searchBuffer(haystack))).toEqual([4096, 199_992]);
  });

  it('compares needles longer than a v128 in full, not just their rare bytes', () => {
    const needle = bytes('swapper/0\0\0\0\0\0\0 and then some more text');
    const haystack = new Uint8Array(1000);
    plant(haystack, needle, 100);
    const spoiled = needle.slice();
    spoiled[spoiled.length - 1] = needle[needle.length - 1]! ^ 1;
    plant(haystack, spoiled, 500);
    const searcher = MultiNeedleSearcher.create([needle], { windowBytes: SMALL_WINDOW });
    expect(offsetsOf(searcher.searchBuffer(haystack))).toEqual([100]);
  });

  it('returns nothing for an empty haystack or no needles', () => {
    expect(
      MultiNeedleSearcher.create([bytes('a')], { windowBytes: SMALL_WINDOW }).searchBuffer(new Uint8Array(0)),
    ).toEqual([]);
    expect(MultiNeedleSearcher.create([], { windowBytes: SMALL_WINDOW }).searchBuffer(bytes('abc'))).toEqual([]);
  });

  it('rejects empty and oversized needles and bad window sizes', () => {
    expect(() => MultiNeedleSearcher.create([new Uint8Array(0)])).toThrow(RangeError);
    expect(() => MultiNeedleSearcher.create([new Uint8Array(MAX_NEEDLE_LENGTH + 1)])).toThrow(RangeError);
    expect(() => MultiNeedleSearcher.create([bytes('a')], { windowBytes: 1000 })).toThrow(RangeError);
  });

  it('keeps its own copy of the needles', () => {
    const needle = bytes('abc');
    const searcher = MultiNeedleSearcher.create([needle], { windowBytes: SMALL_WINDOW });
    needle[0] = 0x7a;
    expect(offsetsOf(searcher.searchBuffer(bytes('zbc abc')))).toEqual([4]);
  });

  it('loses no hit when one window holds more hits than the hit area', () => {
    // A 128 KiB window of zeros holds 4 × 128 Ki hits of these needles: eight times the hit slots.
    const haystack = new Uint8Array(300 * 1024);
    const needles = [Uint8Array.of(0), Uint8Array.of(0, 0), Uint8Array.of(0, 0, 0), Uint8Array.of(0)];
    const hits = MultiNeedleSearcher.create(needles, { windowBytes: 128 * 1024 }).searchBuffer(haystack);
    const expected = searchReference(haystack, needles);
    expect(hits.length).toBe(expected.length);
    const firstDifference = hits.findIndex(
      (hit, i) => hit.offset !== expected[i]!.offset || hit.needle !== expected[i]!.needle,
    );
    expect(firstDifference).toBe(-1);
  });

  it('works with the default 32 MiB window', () => {
    const haystack = dumpLikeBytes(99, 100_000);
    const needles = [bytes('ab'), Uint8Array.of(0, 0xff, 0)];
    expect(MultiNeedleSearcher.create(needles).searchBuffer(haystack)).toEqual(searchReference(haystack, needles));
  });

  it('agrees with the reference on random haystacks, needles and window edges', () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.integer({ min: 0, max: 300_000 }),
        fc.array(needleSpec, { minLength: 1, maxLength: 16 }),
        fc.constantFrom(SMALL_WINDOW, 2 * SMALL_WINDOW),
        fc.array(fc.integer({ min: -320, max: 16 }), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (seed, length, specs, windowBytes, edgeShifts, base) => {
          const haystack = dumpLikeBytes(seed, length);
          const needles = specs.map((spec) => makeNeedle(spec, haystack));
          const overlap = Math.max(...needles.map((needle) => needle.length)) - 1;
          needles.forEach((needle, index) => {
            plant(haystack, needle, 0);
            plant(haystack, needle, haystack.length - needle.length);
            for (const edge of chunkEdges(haystack.length, windowBytes, overlap)) {
              plant(haystack, needle, edge + edgeShifts[index % edgeShifts.length]!);
            }
          });
          const searcher = MultiNeedleSearcher.create(needles, { windowBytes });
          expect(searcher.searchBuffer(haystack, base)).toEqual(searchReference(haystack, needles, base));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('agrees with the reference for more needles than one kernel pass holds', () => {
    const haystack = dumpLikeBytes(7, 150_000);
    const needles = [
      ...['a', 'ab', 'ba', 'abc', 'cab', 'aaa', 'bb', 'cc', 'ca'].map(bytes),
      Uint8Array.of(0),
      Uint8Array.of(0xff, 0xff),
      Uint8Array.of(0, 0, 0, 0x61),
      Uint8Array.of(0, 0xff),
      haystack.slice(70_000, 70_100),
      haystack.slice(65_500, 65_550),
      haystack.slice(0, 20),
      haystack.slice(149_983),
    ];
    const searcher = MultiNeedleSearcher.create(needles, { windowBytes: SMALL_WINDOW });
    expect(searcher.searchBuffer(haystack)).toEqual(searchReference(haystack, needles));
  });

  it('stops at the limit with the first hits by offset', () => {
    const haystack = dumpLikeBytes(3, 200_000);
    const image = new RangeMappedImage(new BufferSource('memory', haystack), 'raw', [
      { start: 0, end: haystack.length, fileOffset: 0 },
    ]);
    const needles = [bytes('ab'), bytes('ba'), bytes('cab'), Uint8Array.of(0xff, 0), Uint8Array.of(0x62, 0x62)];
    expect(searchReference(haystack, needles).length).toBeGreaterThan(5000);
    for (const [selection, limit] of [
      [needles, 10],
      [needles, 5000],
      [needles.slice(0, 1), 7],
      [needles.slice(0, 1), 0],
    ] as const) {
      const hits = MultiNeedleSearcher.create(selection, { windowBytes: SMALL_WINDOW }).searchImage(image, { limit });
      expect(hits).toEqual(searchReference(haystack, selection).slice(0, limit));
    }
  });
});
