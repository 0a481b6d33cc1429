import type { MemoryImage, PhysicalRange } from '../image/types.js';
import type { KernelInstance } from './kernelInstance.js';

export interface ImageSearchOptions {
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Stop once this many hits are found: the result is then the first `limit` hits by offset. */
  limit?: number;
}

/** Any hit of a streamed scan: where it starts, a physical address for images or `base` + index for buffers. */
interface OffsetHit {
  readonly offset: number;
}

/**
 * A kernel that scans one window at a time, for the streaming rules below. `scanWindow` appends to
 * `into` the hits starting in `[ownedFrom, ownedTo)` of the window's `dataLength` bytes, sorted,
 * with offsets counted from `windowBase`; it may stop early (between two hits of the order) once
 * `into` holds `limit`. Appending in place spares hit-heavy scans a second array of every hit.
 */
export interface WindowScanner<Hit extends OffsetHit> {
  readonly kernel: KernelInstance;
  /** How far consecutive chunks overlap: longest pattern - 1, plus whatever a match is judged by after its end. */
  readonly overlap: number;
  /** Bytes before an owned hit a scanner looks at (a rule's `fullword` check); a chunk starts this much before the bytes it owns. */
  readonly lookbehind?: number;
  /** False when there is nothing to find, so no byte needs reading. */
  readonly hasPatterns: boolean;
  scanWindow(
    windowBase: number,
    dataLength: number,
    ownedFrom: number,
    ownedTo: number,
    into: Hit[],
    limit: number,
  ): void;
}

/**
 * A searcher over a WindowScanner: the same hits, in offset order, from a buffer, an image's
 * physical memory or streams the caller assembles.
 */
export abstract class StreamedSearch<Hit extends OffsetHit> {
  protected abstract readonly scanner: WindowScanner<Hit>;

  /** Every hit in `haystack` (copied into the window a chunk at a time); offsets are `base` + index. */
  searchBuffer(haystack: Uint8Array, base = 0): Hit[] {
    return scanBuffer(this.scanner, haystack, base);
  }

  /**
   * Every hit in the physical memory of `image`, read straight into the window. Ranges that touch
   * (`end === next.start`) are one stream; a gap ends it, so no hit spans a gap.
   */
  searchImage(image: MemoryImage, options: ImageSearchOptions = {}): Hit[] {
    return scanImage(this.scanner, image, options);
  }

  /** Every hit in streams the caller assembles (a process's virtual memory), each on its own: no hit spans two. */
  searchStreams(streams: readonly Stream[]): Hit[] {
    return scanStreams(this.scanner, streams, Infinity, () => {});
  }
}

/** Bytes that follow one another without a gap, scanned as one sequence. */
export interface Stream {
  readonly start: number;
  readonly length: number;
  fill(streamOffset: number, into: Uint8Array): void;
}

/**
 * Input streams through the kernel's one window in chunks; consecutive chunks overlap by
 * `scanner.overlap` bytes so that no match across a chunk edge is lost. A chunk reports the hits
 * that *start* before the next chunk's owned bytes start; a hit starting inside the overlap is
 * left to the next chunk, which holds all of it (and `scanner.lookbehind` bytes before it). So
 * every hit is reported exactly once, in offset order.
 */
export function scanBuffer<Hit extends OffsetHit>(scanner: WindowScanner<Hit>, bytes: Uint8Array, base: number): Hit[] {
  const stream: Stream = {
    start: base,
    length: bytes.length,
    fill: (streamOffset, into) => into.set(bytes.subarray(streamOffset, streamOffset + into.length)),
  };
  return scanStreams(scanner, [stream], Infinity, () => {});
}

/**
 * Every hit in the physical memory of `image` (its `ranges`, or those of them given), read
 * straight into the window. Ranges that touch (`end === next.start`) are one stream; a gap ends
 * it, so no hit spans a gap.
 */
export function scanImage<Hit extends OffsetHit>(
  scanner: WindowScanner<Hit>,
  image: MemoryImage,
  options: ImageSearchOptions,
  ranges: readonly PhysicalRange[] = image.ranges,
): Hit[] {
  const streams: Stream[] = [];
  for (const range of ranges) {
    if (range.end === range.start) continue;
    const last = streams[streams.length - 1];
    if (last && last.start + last.length === range.start) {
      streams[streams.length - 1] = imageStream(image, last.start, range.end - last.start);
    } else {
      streams.push(imageStream(image, range.start, range.end - range.start));
    }
  }
  let doneBytes = 0;
  const totalBytes = streams.reduce((sum, { length }) => sum + length, 0);
  const onProgress = options.onProgress;
  return scanStreams(scanner, streams, options.limit ?? Infinity, (chunkBytes) => {
    doneBytes += chunkBytes;
    onProgress?.(doneBytes, totalBytes);
  });
}

/** Every hit in `streams`, scanned in order, each on its own (no hit spans two streams). */
export function scanStreams<Hit extends OffsetHit>(
  scanner: WindowScanner<Hit>,
  streams: readonly Stream[],
  limit: number,
  onChunk: (chunkBytes: number) => void,
): Hit[] {
  if (!(limit >= 0)) throw new RangeError(`limit ${limit} must be a non-negative number`);
  const hits: Hit[] = [];
  if (!scanner.hasPatterns || limit === 0) return hits;
  return scanner.kernel.exclusive(() => {
    for (const stream of streams) {
      if (scanStream(scanner, stream, hits, limit, onChunk)) break;
    }
    return hits;
  });
}

/** Appends the stream's hits to `hits`; true once `limit` is reached. */
function scanStream<Hit extends OffsetHit>(
  scanner: WindowScanner<Hit>,
  stream: Stream,
  hits: Hit[],
  limit: number,
  onChunk: (chunkBytes: number) => void,
): boolean {
  const window = scanner.kernel.window;
  const lookbehind = scanner.lookbehind ?? 0;
  if (window.length <= scanner.overlap + lookbehind)
    throw new RangeError(`a ${window.length}-byte window cannot hold a ${scanner.overlap + lookbehind}-byte overlap`);
  for (let ownedStart = 0; ownedStart < stream.length;) {
    const chunkStart = Math.max(0, ownedStart - lookbehind);
    const chunkLength = Math.min(window.length, stream.length - chunkStart);
    stream.fill(chunkStart, window.subarray(0, chunkLength));
    const isLast = chunkStart + chunkLength === stream.length;
    const ownedFrom = ownedStart - chunkStart;
    const ownedTo = isLast ? chunkLength : chunkLength - scanner.overlap;
    scanner.scanWindow(stream.start + chunkStart, chunkLength, ownedFrom, ownedTo, hits, limit);
    onChunk(ownedTo - ownedFrom);
    if (hits.length >= limit) {
      hits.length = limit;
      return true;
    }
    ownedStart = chunkStart + ownedTo;
  }
  return false;
}

function imageStream(image: MemoryImage, start: number, length: number): Stream {
  return { start, length, fill: (streamOffset, into) => image.read(start + streamOffset, into) };
}
