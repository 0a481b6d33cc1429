import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RangeMappedImage } from '../../src/image/rangeImage.js';
import { BufferSource } from '../../src/image/source.js';
import type { MemoryImage, PhysicalRange } from '../../src/image/types.js';
import { MultiNeedleSearcher, searchReference, type NeedleHit } from '../../src/kernels/multiNeedle.js';
import { chunkEdges, dumpLikeBytes, makeNeedle, needleSpec, plant } from './haystacks.js';

const WINDOW = 64 * 1024;
const KiB = 1024;

/**
 * Four ranges stored back to back in the file: A and B touch physically (one stream), then a gap,
 * then C, another gap, then D. B's last byte and C's first byte are neighbours in the file but not
 * in memory, so a search reading the file naively would find matches across the gap.
 */
const RANGES: readonly PhysicalRange[] = [
  { start: 0, end: 192 * KiB, fileOffset: 0 },
  { start: 192 * KiB, end: 288 * KiB, fileOffset: 192 * KiB },
  { start: 1024 * KiB, end: 1184 * KiB, fileOffset: 288 * KiB },
  { start: 2048 * KiB, end: 2052 * KiB, fileOffset: 448 * KiB },
];
const FILE_BYTES = 452 * KiB;
const STREAMS = [
  { start: 0, end: 288 * KiB },
  { start: 1024 * KiB, end: 1184 * KiB },
  { start: 2048 * KiB, end: 2052 * KiB },
];

function imageOf(file: Uint8Array): MemoryImage {
  return new RangeMappedImage(new BufferSource('memory.raw', file), 'raw', RANGES);
}

/** Where a physical address lives in the file. */
function fileOffsetOf(physical: number): number {
  const range = RANGES.find((candidate) => physical >= candidate.start && physical < candidate.end)!;
  return range.fileOffset + (physical - range.start);
}

/** What the searcher must report: the reference run over each stream's bytes on its own. */
function expectedHits(image: MemoryImage, needles: readonly Uint8Array[]): NeedleHit[] {
  return STREAMS.flatMap(({ start, end }) => {
    const bytes = new Uint8Array(end - start);
    image.read(start, bytes);
    return searchReference(bytes, needles, start);
  });
}

const marker = (text: string) => new TextEncoder().encode(text);

describe('MultiNeedleSearcher.searchImage', () => {
  it('finds hits across chunk edges and touching ranges exactly once, and none across gaps', () => {
    const file = new Uint8Array(FILE_BYTES);
    const needles = [
      marker('CHUNK-EDGE'),
      marker('OVERLAP'),
      marker('TOUCHING'),
      marker('ACROSS-GAP'),
      marker('FILE-ORDER'),
    ];
    const overlap = 9;
    const secondChunkEnd = 2 * WINDOW - overlap;
    // Lies wholly in the overlap of the first two chunks: only the second may report it.
    plant(file, needles[1]!, fileOffsetOf(WINDOW - overlap));
    // Straddles the end of the second chunk: only the third holds all of it.
    plant(file, needles[0]!, fileOffsetOf(secondChunkEnd - 4));
    plant(file, needles[2]!, fileOffsetOf(192 * KiB - 4));
    // Ends B physically and, in the file, runs straight on into C.
    plant(file, needles[3]!, fileOffsetOf(288 * KiB - 6));
    plant(file, needles[4]!, 288 * KiB - 3);
    plant(file, needles[4]!, fileOffsetOf(2052 * KiB - needles[4]!.length));

    const image = imageOf(file);
    const hits = MultiNeedleSearcher.create(needles, { windowBytes: WINDOW }).searchImage(image);

    expect(hits).toEqual([
      { needle: 1, offset: WINDOW - overlap },
      { needle: 0, offset: secondChunkEnd - 4 },
      { needle: 2, offset: 192 * KiB - 4 },
      { needle: 4, offset: 2052 * KiB - needles[4]!.length },
    ]);
  });

  it('agrees with a per-stream reference on random contents and needles planted at chunk and range edges', () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.array(needleSpec, { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: -320, max: 8 }), { minLength: 1, maxLength: 4 }),
        (seed, specs, shifts) => {
          const file = dumpLikeBytes(seed, FILE_BYTES);
          const needles = specs.map((spec) => makeNeedle(spec, file));
          const overlap = Math.max(...needles.map((needle) => needle.length)) - 1;
          const edges = [
            ...RANGES.flatMap((range) => [range.start, range.end]),
            ...STREAMS.flatMap(({ start, end }) =>
              chunkEdges(end - start, WINDOW, overlap).map((edge) => start + edge),
            ),
          ];
          needles.forEach((needle, index) => {
            for (const edge of edges) {
              const at = edge + shifts[index % shifts.length]!;
              // Plant in physical memory, byte by byte, so copies spanning touching ranges are contiguous.
              for (let i = 0; i < needle.length; i++) {
                const physical = at + i;
                if (RANGES.some((range) => physical >= range.start && physical < range.end))
                  file[fileOffsetOf(physical)] = needle[i]!;
              }
            }
          });
          const image = imageOf(file);
          expect(MultiNeedleSearcher.create(needles, { windowBytes: WINDOW }).searchImage(image)).toEqual(
            expectedHits(image, needles),
          );
        },
      ),
      { numRuns: 40 },
    );
  });

  it('reports progress up to the image size, counting each byte once', () => {
    const image = imageOf(dumpLikeBytes(5, FILE_BYTES));
    const reports: Array<[number, number]> = [];
    MultiNeedleSearcher.create([marker('ab'), new Uint8Array(300)], { windowBytes: WINDOW }).searchImage(image, {
      onProgress: (done, total) => reports.push([done, total]),
    });
    expect(reports.length).toBeGreaterThan(STREAMS.length);
    expect(reports.every(([, total]) => total === image.totalBytes)).toBe(true);
    expect(reports.map(([done]) => done)).toEqual([...reports.map(([done]) => done)].sort((a, b) => a - b));
    expect(reports[reports.length - 1]![0]).toBe(image.totalBytes);
  });

  it('refuses to start a search from inside a progress callback', () => {
    const image = imageOf(new Uint8Array(FILE_BYTES));
    const searcher = MultiNeedleSearcher.create([marker('ab')], { windowBytes: WINDOW });
    expect(() => searcher.searchImage(image, { onProgress: () => searcher.searchBuffer(marker('abab')) })).toThrow(
      /already scanning/,
    );
    expect(searcher.searchBuffer(marker('abab'))).toEqual([
      { needle: 0, offset: 0 },
      { needle: 0, offset: 2 },
    ]);
  });
});
