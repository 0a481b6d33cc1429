import { KernelInstance } from './kernelInstance.js';
import {
  DEFAULT_WINDOW_BYTES,
  HITS_ADDRESS,
  HIT_BYTES,
  HIT_START_FIELD,
  SCAN_RESUME_ADDRESS,
  WINDOW_ADDRESS,
} from './memoryMap.js';
import { appendPasses, type NeedleHit, type SearcherOptions } from './multiNeedle.js';
import type { MemoryImage } from '../image/types.js';
import { scanImage, StreamedSearch, type ImageSearchOptions, type WindowScanner } from './streaming.js';

export const WORD_BYTES = 8;
/**
 * Values at most this far apart share one kernel pass (one range of values); farther ones get a
 * pass of their own, so that a range holds few values nobody looks for. Related kernel objects
 * (the scheduling classes, say) are laid out together and take one pass.
 */
const RANGE_GAP = 1n << 16n;

interface WordRange {
  readonly low: bigint;
  readonly high: bigint;
}

/**
 * Exact search, in WASM, for 8-byte little-endian words stored at offsets that are multiples of 8
 * (pointers a structure holds): hits are reported in (offset, needle) order, with `needle` the
 * word's index in the list given. The kernel screens every aligned word against the range of the
 * values (one pass per cluster of close values) at memory speed, where a byte-string search of
 * the same words takes a pass per four of them and verifies every rare-byte candidate; the few
 * words in range are looked up here. Offsets are physical addresses for images, `base` + index
 * for buffers, and alignment is that of the offset.
 */
export class AlignedWordSearcher extends StreamedSearch<NeedleHit> {
  protected readonly scanner: WindowScanner<NeedleHit>;
  private readonly values: DataView;

  private constructor(
    private readonly ranges: readonly WordRange[],
    private readonly needlesOf: ReadonlyMap<bigint, readonly number[]>,
    private readonly kernel: KernelInstance,
  ) {
    super();
    this.values = new DataView(kernel.memory.buffer);
    this.scanner = {
      kernel,
      overlap: WORD_BYTES - 1,
      hasPatterns: ranges.length > 0,
      scanWindow: (...args) => this.scanWindow(...args),
    };
  }

  /** Words are unsigned 64-bit values (any number of them); searchers with one window size share a WASM instance per thread. */
  static create(words: readonly bigint[], options: SearcherOptions = {}): AlignedWordSearcher {
    const needlesOf = new Map<bigint, number[]>();
    words.forEach((word, index) => {
      if (word < 0n || word > 0xffffffffffffffffn) throw new RangeError(`word ${index} (${word}) is not a u64`);
      needlesOf.set(word, [...(needlesOf.get(word) ?? []), index]);
    });
    return new AlignedWordSearcher(
      wordRanges([...needlesOf.keys()]),
      needlesOf,
      KernelInstance.shared(options.windowBytes ?? DEFAULT_WINDOW_BYTES),
    );
  }

  /**
   * Every hit in the physical memory of `image`. Unless a word searched for is zero, the pages the
   * format records as zeros (MemoryImage.nonZeroRanges: most of a kdump's pages) are not read: an
   * aligned word lies inside one page, so no hit can be there.
   */
  override searchImage(image: MemoryImage, options: ImageSearchOptions = {}): NeedleHit[] {
    const ranges = image.nonZeroRanges && !this.needlesOf.has(0n) ? image.nonZeroRanges() : image.ranges;
    return scanImage(this.scanner, image, options, ranges);
  }

  /** Appends the hits at aligned offsets in `[ownedFrom, ownedTo)` of the window's `dataLength` bytes to `into`, sorted. */
  private scanWindow(
    windowBase: number,
    dataLength: number,
    ownedFrom: number,
    ownedTo: number,
    into: NeedleHit[],
    limit: number,
  ): void {
    const { kernel } = this;
    const words = kernel.words;
    const firstAligned = ownedFrom + ((WORD_BYTES - ((windowBase + ownedFrom) % WORD_BYTES)) % WORD_BYTES);
    const dataEnd = WINDOW_ADDRESS + dataLength;
    const positionEnd = WINDOW_ADDRESS + ownedTo;
    appendPasses(this.ranges, into, limit, ({ low, high }, more, visit) => {
      for (
        let from = WINDOW_ADDRESS + firstAligned;
        from < positionEnd && more();
        from = words[SCAN_RESUME_ADDRESS / 4]!
      ) {
        const count = kernel.kernels.findWordsInRange(low, high, dataEnd, from, positionEnd);
        for (let i = 0; i < count; i++) {
          const at = words[(HITS_ADDRESS + i * HIT_BYTES + HIT_START_FIELD) / 4]!;
          for (const needle of this.needlesOf.get(this.values.getBigUint64(at, true)) ?? [])
            visit(needle, windowBase + (at - WINDOW_ADDRESS));
        }
      }
    });
  }
}

/** The distinct values grouped into ranges of values no more than RANGE_GAP apart. */
function wordRanges(values: readonly bigint[]): WordRange[] {
  const sorted = [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const ranges: WordRange[] = [];
  for (const value of sorted) {
    const last = ranges[ranges.length - 1];
    if (last && value - last.high <= RANGE_GAP) ranges[ranges.length - 1] = { low: last.low, high: value };
    else ranges.push({ low: value, high: value });
  }
  return ranges;
}

/** The plain-TypeScript definition the kernel is tested against: every listed word at every aligned offset, sorted by offset then index. */
export function alignedWordsReference(haystack: Uint8Array, words: readonly bigint[], base = 0): NeedleHit[] {
  const view = new DataView(haystack.buffer, haystack.byteOffset, haystack.byteLength);
  const hits: NeedleHit[] = [];
  for (let index = 0; index + WORD_BYTES <= haystack.length; index++) {
    if ((base + index) % WORD_BYTES !== 0) continue;
    const value = view.getBigUint64(index, true);
    words.forEach((word, needle) => {
      if (word === value) hits.push({ needle, offset: base + index });
    });
  }
  return hits;
}
