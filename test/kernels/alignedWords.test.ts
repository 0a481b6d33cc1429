import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RangeMappedImage } from '../../src/image/rangeImage.js';
import { BufferSource } from '../../src/image/source.js';
import type { PhysicalRange } from '../../src/image/types.js';
import { AlignedWordSearcher, alignedWordsReference } from '../../src/kernels/alignedWords.js';
import { HIT_CAPACITY } from '../../src/kernels/memoryMap.js';
import { pointerNeedle } from '../../src/kernels/multiNeedle.js';
import { needleSearcher } from '../../src/kernels/needleSearcher.js';
import { chunkEdges, dumpLikeBytes, plant } from './haystacks.js';

const WINDOW = 64 * 1024;
const KiB = 1024;
/** Kernel-like pointers: a cluster in one page (sched classes), one far away, and words at the edges of u64 and i64. */
const CANDIDATE_WORDS = [
  0xffffffff81e2a040n,
  0xffffffff81e2a108n,
  0xffffffff81e2a1d0n,
  0xffffffff81e2a298n,
  0xffff888003c41e00n,
  0n,
  1n,
  0xffffffffffffffffn,
  0x7ffffffffffffff8n,
  0x8000000000000008n,
];
const wordArbitrary = fc.oneof(fc.constantFrom(...CANDIDATE_WORDS), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));

describe('AlignedWordSearcher', () => {
  it('agrees with the reference on random bytes, words planted at every alignment and around chunk edges', () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.integer({ min: 0, max: 300 * KiB }),
        fc.integer({ min: 0, max: 4096 + 7 }),
        fc.array(wordArbitrary, { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: -24, max: 24 }), { minLength: 1, maxLength: 6 }),
        (seed, length, base, words, shifts) => {
          const haystack = dumpLikeBytes(seed, length);
          const edges = [0, ...chunkEdges(length, WINDOW, 7), length - 8];
          words.forEach((word, index) => {
            for (const edge of edges) plant(haystack, pointerNeedle(word), edge + shifts[index % shifts.length]!);
          });
          const searcher = AlignedWordSearcher.create(words, { windowBytes: WINDOW });
          expect(searcher.searchBuffer(haystack, base)).toEqual(alignedWordsReference(haystack, words, base));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('finds a word only at aligned offsets, and no value in its range that nobody asked for', () => {
    const wanted = [0xffffffff81e2a040n, 0xffffffff81e2a298n];
    const haystack = new Uint8Array(4096);
    plant(haystack, pointerNeedle(wanted[0]!), 64);
    plant(haystack, pointerNeedle(wanted[1]!), 100); // unaligned
    plant(haystack, pointerNeedle(0xffffffff81e2a100n), 128); // between the two: in the range, not wanted
    plant(haystack, pointerNeedle(wanted[1]!), 4088); // the last word of the buffer
    const hits = AlignedWordSearcher.create(wanted, { windowBytes: WINDOW }).searchBuffer(haystack);
    expect(hits).toEqual([
      { needle: 0, offset: 64 },
      { needle: 1, offset: 4088 },
    ]);
    // Alignment is the offset's: with base 4 the word at index 100 is at offset 104.
    expect(AlignedWordSearcher.create(wanted, { windowBytes: WINDOW }).searchBuffer(haystack, 4)).toEqual([
      { needle: 1, offset: 104 },
    ]);
  });

  it('compares unsigned: a range across 2^63 and the ends of u64', () => {
    const words = [0x7ffffffffffffff8n, 0x8000000000000008n, 0n, 0xffffffffffffffffn];
    const haystack = new Uint8Array(256).fill(0x55);
    words.forEach((word, index) => plant(haystack, pointerNeedle(word), 8 + 32 * index));
    plant(haystack, pointerNeedle(0x8000000000000000n), 200);
    const hits = AlignedWordSearcher.create(words, { windowBytes: WINDOW }).searchBuffer(haystack);
    expect(hits).toEqual(alignedWordsReference(haystack, words));
    expect(hits.map((hit) => hit.needle)).toEqual([0, 1, 2, 3]);
  });

  it('reports every hit when a window holds more than the hit area does, and lists a repeated word under each index', () => {
    const word = 0xffffffff81e2a040n;
    const haystack = new Uint8Array(2 * 1024 * KiB);
    for (let at = 0; at < haystack.length; at += 8) plant(haystack, pointerNeedle(word), at);
    const hits = AlignedWordSearcher.create([word, word], { windowBytes: 1024 * KiB }).searchBuffer(haystack);
    expect(hits.length).toBe((haystack.length / 8) * 2);
    expect(haystack.length / 8).toBeGreaterThan(2 * HIT_CAPACITY);
    expect(hits.slice(0, 4)).toEqual([
      { needle: 0, offset: 0 },
      { needle: 1, offset: 0 },
      { needle: 0, offset: 8 },
      { needle: 1, offset: 8 },
    ]);
    expect(hits.every((hit, index) => hit.offset === Math.floor(index / 2) * 8)).toBe(true);
  });

  it('searches an image stream by stream: touching ranges join, a gap ends a stream, alignment is physical', () => {
    // Ranges starting at odd physical addresses: a window's first aligned word is not its first byte.
    const ranges: PhysicalRange[] = [
      { start: 3, end: 100 * KiB + 5, fileOffset: 0 },
      { start: 100 * KiB + 5, end: 180 * KiB, fileOffset: 100 * KiB + 2 },
      { start: 400 * KiB + 1, end: 470 * KiB, fileOffset: 180 * KiB - 1 },
    ];
    const fileBytes = 180 * KiB - 1 + (470 * KiB - (400 * KiB + 1));
    const words = [0xffffffff81e2a040n, 0xffff888003c41e00n];
    fc.assert(
      fc.property(
        fc.integer(),
        fc.array(fc.integer({ min: -16, max: 16 }), { minLength: 1, maxLength: 4 }),
        (seed, shifts) => {
          const file = dumpLikeBytes(seed, fileBytes);
          // Around every range edge and chunk edge, in file terms: words across touching ranges and across the gap.
          const edges = [0, 100 * KiB + 2, 180 * KiB - 1, ...chunkEdges(fileBytes, WINDOW, 7)];
          edges.forEach((edge, index) =>
            plant(file, pointerNeedle(words[index % 2]!), edge + shifts[index % shifts.length]!),
          );
          const image = new RangeMappedImage(new BufferSource('memory.raw', file), 'raw', ranges);
          const expected = [
            { start: 3, end: 180 * KiB },
            { start: 400 * KiB + 1, end: 470 * KiB },
          ].flatMap(({ start, end }) => {
            const bytes = new Uint8Array(end - start);
            image.read(start, bytes);
            return alignedWordsReference(bytes, words, start);
          });
          expect(AlignedWordSearcher.create(words, { windowBytes: WINDOW }).searchImage(image)).toEqual(expected);
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('needleSearcher', () => {
  it('searches 8-byte needles as aligned words when asked, and refuses needles of another length', () => {
    const haystack = new Uint8Array(64);
    plant(haystack, pointerNeedle(0x1122334455667788n), 16);
    plant(haystack, pointerNeedle(0x1122334455667788n), 36);
    const needles = [pointerNeedle(0x1122334455667788n)];
    expect(needleSearcher(needles, { wordAligned: true }).searchBuffer(haystack)).toEqual([{ needle: 0, offset: 16 }]);
    expect(needleSearcher(needles).searchBuffer(haystack)).toEqual([
      { needle: 0, offset: 16 },
      { needle: 0, offset: 36 },
    ]);
    expect(() => needleSearcher([new Uint8Array(4)], { wordAligned: true })).toThrow(/4 bytes, not a word/);
  });
});
