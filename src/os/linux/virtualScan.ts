import { MultiNeedleSearcher } from '../../kernels/multiNeedle.js';
import type { Stream } from '../../kernels/streaming.js';
import type { X86AddressSpace } from '../../space/x86.js';
import { userHalfEnd } from './reverseMap.js';

export interface VirtualHit {
  /** Index of the needle in the list given. */
  readonly needle: number;
  /** Where the needle starts in the process's address space. */
  readonly virtual: bigint;
}

export interface VirtualScanOptions {
  /** The search window (see SearcherOptions.windowBytes). */
  windowBytes?: number;
}

/** Virtually contiguous memory present in the image: pieces in virtual order, each physically contiguous. */
interface Span {
  readonly virtual: bigint;
  readonly length: number;
  readonly pieces: readonly { readonly physical: number; readonly length: number }[];
}

export interface ProcessStreams {
  /** One stream per virtually contiguous span; a stream's offsets are virtual addresses. */
  readonly streams: readonly Stream[];
  /** Bytes in spans above 2^53, where a number cannot hold every address (5-level paging only): not scanned. */
  readonly unreachableBytes: number;
  readonly totalBytes: number;
}

/**
 * A process's user memory, present in the image, as streams for the scanning kernels: read as
 * the process sees it, consecutive virtual pages joined whatever their physical frames, so a
 * string split across two frames far apart in RAM is found while a physical scan cannot see it.
 * Physical memory missing from the image ends a span (no match crosses it), as in the physical scan.
 */
export function processStreams(space: X86AddressSpace): ProcessStreams {
  const streams: Stream[] = [];
  let unreachableBytes = 0;
  let totalBytes = 0;
  for (const span of presentSpans(space)) {
    if (span.virtual + BigInt(span.length) > BigInt(Number.MAX_SAFE_INTEGER)) {
      unreachableBytes += span.length;
      continue;
    }
    totalBytes += span.length;
    streams.push({
      start: Number(span.virtual),
      length: span.length,
      fill: (offset, into) => fillFromSpan(space, span, offset, into),
    });
  }
  return { streams, unreachableBytes, totalBytes };
}

/**
 * One memory region ([start, end) of a process's address space) as a scan unit of its own, as
 * yara's process scan and Volatility's vmayarascan see a VMA: stream offsets count from the
 * region's start, so offset 0 is its first byte. `streams` are the region's parts present in the
 * image (a missing page ends one); `read` reads bytes of the region, false when any is missing.
 */
export interface RegionUnit {
  readonly streams: readonly Stream[];
  readonly size: number;
  read(offset: number, into: Uint8Array): boolean;
}

/** The regions as scan units (see RegionUnit), from one walk of the process's page tables; regions in address order. */
export function regionUnits(
  space: X86AddressSpace,
  regions: ReadonlyArray<{ readonly start: bigint; readonly end: bigint }>,
): RegionUnit[] {
  const spans = [...presentSpans(space)];
  return regions.map(({ start, end }) => {
    const streams: Stream[] = [];
    for (const span of spans) {
      const from = span.virtual > start ? span.virtual : start;
      const spanEnd = span.virtual + BigInt(span.length);
      const to = spanEnd < end ? spanEnd : end;
      if (from >= to) continue;
      const skipped = Number(from - span.virtual);
      streams.push({
        start: Number(from - start),
        length: Number(to - from),
        fill: (offset, into) => fillFromSpan(space, span, skipped + offset, into),
      });
    }
    return {
      streams,
      size: Number(end - start),
      read(offset, into) {
        const stream = streams.find((part) => offset >= part.start && offset + into.length <= part.start + part.length);
        if (!Number.isSafeInteger(offset) || !stream) return false;
        stream.fill(offset - stream.start, into);
        return true;
      },
    };
  });
}

/** Every occurrence of the needles in a process's user memory, in virtual order (see processStreams). */
export function scanProcessVirtual(
  space: X86AddressSpace,
  needles: readonly Uint8Array[],
  options: VirtualScanOptions = {},
): VirtualHit[] {
  const searcher = MultiNeedleSearcher.create(needles, options);
  return searcher
    .searchStreams(processStreams(space).streams)
    .map((hit) => ({ needle: hit.needle, virtual: BigInt(hit.offset) }));
}

/** The user half's mappings cut to what the image holds, joined into virtually contiguous spans. */
function* presentSpans(space: X86AddressSpace): Generator<Span> {
  let pending: { virtual: bigint; length: number; pieces: Array<{ physical: number; length: number }> } | undefined;
  for (const run of space.mappings(0n, userHalfEnd(space))) {
    for (const range of space.image.ranges) {
      const physical = Math.max(run.physical, range.start);
      const end = Math.min(run.physical + run.length, range.end);
      if (physical >= end) continue;
      const virtual = run.virtual + BigInt(physical - run.physical);
      if (pending && pending.virtual + BigInt(pending.length) === virtual) {
        pending.pieces.push({ physical, length: end - physical });
        pending.length += end - physical;
      } else {
        if (pending) yield pending;
        pending = { virtual, length: end - physical, pieces: [{ physical, length: end - physical }] };
      }
    }
  }
  if (pending) yield pending;
}

/** Fill `into` with the span's bytes from `offset`, piece by piece. */
function fillFromSpan(space: X86AddressSpace, span: Span, offset: number, into: Uint8Array): void {
  let pieceStart = 0;
  let done = 0;
  for (const piece of span.pieces) {
    if (done === into.length) return;
    const pieceEnd = pieceStart + piece.length;
    const from = offset + done;
    if (from < pieceEnd) {
      const length = Math.min(into.length - done, pieceEnd - from);
      space.image.read(piece.physical + (from - pieceStart), into.subarray(done, done + length));
      done += length;
    }
    pieceStart = pieceEnd;
  }
}
