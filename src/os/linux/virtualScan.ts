import { MultiNeedleSearcher } from '../../kernels/multiNeedle.js';
import type { X86AddressSpace } from '../../space/x86.js';
import { userHalfEnd } from './reverseMap.js';

export interface VirtualHit {
  /** Index of the needle in the list given. */
  readonly needle: number;
  /** Where the needle starts in the process's address space. */
  readonly virtual: bigint;
}

export interface VirtualScanOptions {
  /** Bytes gathered per search call (default 16 MiB); consecutive chunks overlap by the longest needle - 1. */
  chunkBytes?: number;
}

const DEFAULT_CHUNK_BYTES = 16 << 20;

/** Virtually contiguous memory present in the image: pieces in virtual order, each physically contiguous. */
interface Span {
  readonly virtual: bigint;
  readonly length: number;
  readonly pieces: readonly { readonly physical: number; readonly length: number }[];
}

/**
 * Every occurrence of the needles in a process's user memory, in virtual order. The mapped user
 * ranges are read as the process sees them, consecutive virtual pages joined whatever their
 * physical frames, so a string split across two frames far apart in RAM is found here while a
 * physical scan cannot see it. Physical memory missing from the image ends a span (no match
 * crosses it), as in the physical scan.
 */
export function scanProcessVirtual(space: X86AddressSpace, needles: readonly Uint8Array[], options: VirtualScanOptions = {}): VirtualHit[] {
  const searcher = MultiNeedleSearcher.create(needles);
  const overlap = Math.max(1, ...needles.map((needle) => needle.length)) - 1;
  const chunkBytes = Math.max(options.chunkBytes ?? DEFAULT_CHUNK_BYTES, 2 * overlap + 1);
  const chunk = new Uint8Array(chunkBytes);
  const hits: VirtualHit[] = [];
  for (const span of presentSpans(space)) {
    for (let start = 0; start < span.length; ) {
      const length = Math.min(chunkBytes, span.length - start);
      fillFromSpan(space, span, start, chunk.subarray(0, length));
      // A hit starting in the overlap is left to the next chunk, which holds all of it.
      const owned = start + length === span.length ? length : length - overlap;
      for (const hit of searcher.searchBuffer(chunk.subarray(0, length))) {
        if (hit.offset < owned) hits.push({ needle: hit.needle, virtual: span.virtual + BigInt(start + hit.offset) });
      }
      start += owned;
    }
  }
  return hits;
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
