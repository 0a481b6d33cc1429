import { fileOffsetAt, viewOverRanges } from '../image/rangeView.js';
import type { MemoryImage, PhysicalRange } from '../image/types.js';
import type { NeedleHit } from '../kernels/multiNeedle.js';
import type { NeedleSearcher } from '../kernels/needleSearcher.js';
import type { ScanPart } from '../rules/partMerge.js';
import type { RuleScanResult } from '../rules/scanner.js';

/**
 * A slice of physical address space scanned as one unit of work. It owns the hits that start in
 * [start, end); `bytes` is how much memory is present in that slice (the gaps hold none).
 */
export interface ScanJob {
  readonly start: number;
  readonly end: number;
  readonly bytes: number;
}

/** Hits as two parallel arrays, so a job's results cross threads as two transferred buffers instead of one cloned object per hit. */
export interface PackedHits {
  readonly offsets: Float64Array;
  readonly needles: Uint32Array;
}

/**
 * Cuts the present memory into consecutive jobs of `jobBytes` present bytes each (the last one
 * shorter). Jobs follow the address order and never overlap, so concatenating their hits in job
 * order keeps the whole result in address order.
 */
export function planScanJobs(ranges: readonly PhysicalRange[], jobBytes: number): ScanJob[] {
  if (!Number.isSafeInteger(jobBytes) || jobBytes <= 0)
    throw new RangeError(`jobBytes ${jobBytes} must be a positive integer`);
  const jobs: ScanJob[] = [];
  let jobStart: number | undefined;
  let jobFill = 0;
  let lastEnd = 0;
  for (const range of ranges) {
    for (let at = range.start; at < range.end;) {
      jobStart ??= at;
      const taken = Math.min(range.end - at, jobBytes - jobFill);
      at += taken;
      jobFill += taken;
      lastEnd = at;
      if (jobFill === jobBytes) {
        jobs.push({ start: jobStart, end: at, bytes: jobFill });
        jobStart = undefined;
        jobFill = 0;
      }
    }
  }
  if (jobStart !== undefined) jobs.push({ start: jobStart, end: lastEnd, bytes: jobFill });
  return jobs;
}

/** How far past its bytes a scan reads: `overlap` after (the longest match and what is judged after it), `lookbehind` before. */
export interface ScanReach {
  readonly overlap: number;
  readonly lookbehind: number;
}

/**
 * `scan` run on the part of the dump a job reads, with the scanners' own ownership rule carried
 * over to job edges: the job reads on past `end` by `reach.overlap` bytes while memory continues
 * without a gap, so a match crossing `end` is found here and by no other job, and it reads
 * `reach.lookbehind` bytes before `start` for the checks that look back from a match. The caller
 * keeps only the hits starting in [start, end) (the next job keeps those at or after its start).
 * Reads go straight from the dump into the scanner's window.
 */
export function scanPhysicalSlice<Result>(
  image: MemoryImage,
  reach: ScanReach,
  start: number,
  end: number,
  scan: (slice: MemoryImage) => Result,
): Result {
  const clip = (ranges: readonly PhysicalRange[]) => clipToJob(ranges, reach, start, end);
  return scan(viewOverRanges(image, clip(image.ranges), image.nonZeroRanges && (() => clip(image.nonZeroRanges!()))));
}

/** The parts of `ranges` a job over [start, end) reads (see scanPhysicalSlice). */
function clipToJob(ranges: readonly PhysicalRange[], reach: ScanReach, start: number, end: number): PhysicalRange[] {
  const readStart = start - reach.lookbehind;
  const readEnd = end + reach.overlap;
  const clipped: PhysicalRange[] = [];
  for (const range of ranges) {
    if (range.end <= readStart || range.end === range.start) continue;
    if (range.start >= end) {
      const last = clipped[clipped.length - 1];
      // Past the job only the stream it ends in continues: a gap ends the job's reading.
      if (!last || last.end !== range.start || range.start >= readEnd) break;
    }
    // Bytes read back across a gap form a stream of their own, so they never join the job's first bytes.
    const from = Math.max(range.start, readStart);
    const to = range.end <= end ? range.end : Math.min(range.end, readEnd);
    clipped.push({ start: from, end: to, fileOffset: fileOffsetAt(range, from) });
  }
  return clipped;
}

/** A needle searcher's hits in a job: needles look neither back nor past their own bytes. */
export function searchPhysicalSlice(
  image: MemoryImage,
  searcher: NeedleSearcher,
  longestNeedle: number,
  start: number,
  end: number,
): NeedleHit[] {
  return scanPhysicalSlice(image, { overlap: Math.max(0, longestNeedle - 1), lookbehind: 0 }, start, end, (slice) =>
    searcher.searchImage(slice),
  ).filter((hit) => hit.offset >= start && hit.offset < end);
}

export function packHits(hits: readonly NeedleHit[]): PackedHits {
  return {
    offsets: Float64Array.from(hits, (hit) => hit.offset),
    needles: Uint32Array.from(hits, (hit) => hit.needle),
  };
}

export function unpackHits({ offsets, needles }: PackedHits): NeedleHit[] {
  return Array.from(offsets, (offset, i) => ({ needle: needles[i]!, offset }));
}

/** The hits of a job's scan that start in [start, end): views of the scan's own chunks, to be transferred (the scan's list is unusable after). */
export function jobPart({ hits, truncated }: RuleScanResult, start: number, end: number): ScanPart {
  return { columns: hits.columnsWithOffsetsIn(start, end), truncated };
}

/** The buffers a part's views lie in, each once: what transferring the part moves. */
export function partBuffers(part: ScanPart): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const { offsets, strings, lengths } of part.columns)
    for (const column of [offsets, strings, lengths]) buffers.add(column.buffer as ArrayBuffer);
  return [...buffers];
}
