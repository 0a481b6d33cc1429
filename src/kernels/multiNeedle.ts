import type { MemoryImage } from '../image/types.js';
import { KernelInstance } from './kernelInstance.js';
import { DEFAULT_WINDOW_BYTES, HITS_ADDRESS, HIT_BYTES, HIT_SLOT_FIELD, HIT_START_FIELD, SCAN_RESUME_ADDRESS, WINDOW_ADDRESS } from './memoryMap.js';
import { planNeedleGroups, type NeedleGroup } from './needleTable.js';

export { searchReference } from './multiNeedleReference.js';

export interface NeedleHit {
  /** Index of the needle in the list the searcher was created with. */
  readonly needle: number;
  /** Where the needle starts: a physical address for images, `base` + index for buffers. */
  readonly offset: number;
}

export interface SearcherOptions {
  /** Bytes searched per kernel call, a multiple of 64 KiB (default 32 MiB). */
  windowBytes?: number;
}

export interface ImageSearchOptions {
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Stop once this many hits are found: the result is then the first `limit` hits by offset. */
  limit?: number;
}

/** Bytes that follow one another without a gap, searched as one sequence. */
interface Stream {
  readonly start: number;
  readonly length: number;
  fill(streamOffset: number, into: Uint8Array): void;
}

/**
 * Exact search for a few byte strings at once, in WASM. Input streams through one fixed window of
 * kernel memory in chunks; consecutive chunks overlap by (longest needle - 1) bytes so that no
 * match across a chunk edge is lost. A chunk reports the hits that *start* before the next chunk
 * starts; a hit starting inside the overlap is left to the next chunk, which holds all of it.
 * So every hit is reported exactly once, in offset order (then needle order).
 */
export class MultiNeedleSearcher {
  private constructor(
    private readonly groups: readonly NeedleGroup[],
    private readonly overlap: number,
    private readonly kernel: KernelInstance,
  ) {}

  /**
   * Needles are 1 to MAX_NEEDLE_LENGTH (64 KiB) bytes, any number of them (copied: later changes
   * to the arrays have no effect); up to four are searched per pass over the data. Searchers with
   * the same window size share one WASM instance per thread, so creating one per needle set is cheap.
   */
  static create(needles: readonly Uint8Array[], options: SearcherOptions = {}): MultiNeedleSearcher {
    const groups = planNeedleGroups(needles.map((needle) => needle.slice()));
    const overlap = Math.max(1, ...needles.map((needle) => needle.length)) - 1;
    return new MultiNeedleSearcher(groups, overlap, KernelInstance.shared(options.windowBytes ?? DEFAULT_WINDOW_BYTES));
  }

  /** Every hit in `haystack` (copied into the window a chunk at a time); offsets are `base` + index. */
  searchBuffer(haystack: Uint8Array, base = 0): NeedleHit[] {
    const stream: Stream = {
      start: base,
      length: haystack.length,
      fill: (streamOffset, into) => into.set(haystack.subarray(streamOffset, streamOffset + into.length)),
    };
    return this.search([stream], Infinity, () => {});
  }

  /**
   * Every hit in the physical memory of `image`, read straight into the window. Ranges that touch
   * (`end === next.start`) are one stream; a gap ends it, so no hit spans a gap.
   */
  searchImage(image: MemoryImage, options: ImageSearchOptions = {}): NeedleHit[] {
    const streams: Stream[] = [];
    for (const range of image.ranges) {
      if (range.end === range.start) continue;
      const last = streams[streams.length - 1];
      if (last && last.start + last.length === range.start) {
        streams[streams.length - 1] = imageStream(image, last.start, range.end - last.start);
      } else {
        streams.push(imageStream(image, range.start, range.end - range.start));
      }
    }
    let doneBytes = 0;
    const onProgress = options.onProgress;
    return this.search(streams, options.limit ?? Infinity, (chunkBytes) => {
      doneBytes += chunkBytes;
      onProgress?.(doneBytes, image.totalBytes);
    });
  }

  private search(streams: readonly Stream[], limit: number, onChunk: (chunkBytes: number) => void): NeedleHit[] {
    if (!(limit >= 0)) throw new RangeError(`limit ${limit} must be a non-negative number`);
    const hits: NeedleHit[] = [];
    if (this.groups.length === 0 || limit === 0) return hits;
    return this.kernel.exclusive(() => {
      for (const stream of streams) {
        if (this.searchStream(stream, hits, limit, onChunk)) break;
      }
      return hits;
    });
  }

  /** Appends the stream's hits to `hits`; true once `limit` is reached. */
  private searchStream(stream: Stream, hits: NeedleHit[], limit: number, onChunk: (chunkBytes: number) => void): boolean {
    const window = this.kernel.window;
    for (let chunkStart = 0; chunkStart < stream.length; ) {
      const chunkLength = Math.min(window.length, stream.length - chunkStart);
      stream.fill(chunkStart, window.subarray(0, chunkLength));
      const isLast = chunkStart + chunkLength === stream.length;
      const ownedLength = isLast ? chunkLength : chunkLength - this.overlap;
      const chunkHits = this.searchWindow(stream.start + chunkStart, chunkLength, ownedLength, limit - hits.length);
      for (let i = 0; i < chunkHits.length && hits.length < limit; i++) hits.push(chunkHits[i]!);
      onChunk(ownedLength);
      if (hits.length >= limit) return true;
      chunkStart += ownedLength;
    }
    return false;
  }

  /**
   * Hits starting in the first `ownedLength` bytes of the window's `dataLength`, sorted; with a
   * single needle group, the kernel stops being called once `wanted` are found.
   */
  private searchWindow(windowBase: number, dataLength: number, ownedLength: number, wanted: number): NeedleHit[] {
    const { kernel, groups } = this;
    const words = kernel.words;
    const dataEnd = WINDOW_ADDRESS + dataLength;
    const positionEnd = WINDOW_ADDRESS + ownedLength;
    const hits: NeedleHit[] = [];
    for (const group of groups) {
      kernel.loadGroup(group);
      let from = WINDOW_ADDRESS;
      while (from < positionEnd && (groups.length > 1 || hits.length < wanted)) {
        const count = kernel.kernels.findNeedles(group.needles.length, dataEnd, from, positionEnd);
        for (let i = 0; i < count; i++) {
          const hit = (HITS_ADDRESS + i * HIT_BYTES) / 4;
          hits.push({
            needle: group.needleIndices[words[hit + HIT_SLOT_FIELD / 4]!]!,
            offset: windowBase + (words[hit + HIT_START_FIELD / 4]! - WINDOW_ADDRESS),
          });
        }
        from = words[SCAN_RESUME_ADDRESS / 4]!;
      }
    }
    if (groups.length > 1) hits.sort((a, b) => a.offset - b.offset || a.needle - b.needle);
    return hits;
  }
}

function imageStream(image: MemoryImage, start: number, length: number): Stream {
  return { start, length, fill: (streamOffset, into) => image.read(start + streamOffset, into) };
}
