import { KernelInstance } from './kernelInstance.js';
import {
  DEFAULT_WINDOW_BYTES,
  HITS_ADDRESS,
  HIT_BYTES,
  HIT_SLOT_FIELD,
  HIT_START_FIELD,
  SCAN_RESUME_ADDRESS,
  WINDOW_ADDRESS,
} from './memoryMap.js';
import { planNeedleGroups, type NeedleGroup } from './needleTable.js';
import { StreamedSearch, type WindowScanner } from './streaming.js';

export { searchReference } from './multiNeedleReference.js';
export type { ImageSearchOptions } from './streaming.js';

/** The 8 bytes a stored pointer to `address` occupies in x86-64 memory (little-endian): a needle for pointer scans. */
export function pointerNeedle(address: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, address), true);
  return bytes;
}

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

/**
 * Appends to `into` the hits of a window's passes (one per needle group, word range, ...), sorted
 * by (offset, needle). Each pass covers the whole window, so several passes' hits are merged by a
 * sort; one pass's come in order, and it is told to stop (`more()` false) once `into` holds `limit`.
 */
export function appendPasses<Pass>(
  passes: readonly Pass[],
  into: NeedleHit[],
  limit: number,
  run: (pass: Pass, more: () => boolean, visit: (needle: number, offset: number) => void) => void,
): void {
  const hits: NeedleHit[] = passes.length > 1 ? [] : into;
  const more = () => passes.length > 1 || hits.length < limit;
  for (const pass of passes) run(pass, more, (needle, offset) => hits.push({ needle, offset }));
  if (hits !== into) {
    hits.sort((a, b) => a.offset - b.offset || a.needle - b.needle);
    for (const hit of hits) into.push(hit);
  }
}

/**
 * Exact search for a few byte strings at once, in WASM. Input streams through one fixed window of
 * kernel memory in chunks overlapping by (longest needle - 1) bytes (streaming.ts), so every hit is
 * reported exactly once, in offset order (then needle order).
 */
export class MultiNeedleSearcher extends StreamedSearch<NeedleHit> {
  protected readonly scanner: WindowScanner<NeedleHit>;

  private constructor(
    private readonly groups: readonly NeedleGroup[],
    overlap: number,
    private readonly kernel: KernelInstance,
  ) {
    super();
    this.scanner = {
      kernel,
      overlap,
      hasPatterns: groups.length > 0,
      scanWindow: (...args) => this.scanWindow(...args),
    };
  }

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

  /**
   * Calls `visit` with each hit starting in [from, to) of the first `dataLength` bytes the caller already put in
   * this thread's window (KernelInstance.shared of the same size), offsets relative to the window:
   * for scanners that stream the data themselves and judge each hit with the bytes around it
   * (rules/scanner.ts), with no object per hit. Each needle's hits come in offset order; with
   * several needle groups, one group's hits all come before the next group's.
   */
  visitWindowHits(
    dataLength: number,
    visit: (needle: number, offset: number) => void,
    from = 0,
    to = dataLength,
  ): void {
    for (const group of this.groups) this.visitGroupHits(group, 0, dataLength, from, to, () => true, visit);
  }

  /**
   * Appends the hits starting in `[ownedFrom, ownedTo)` of the window's `dataLength` bytes to
   * `into`, sorted; with a single needle group, the kernel stops being called once `into` holds `limit`.
   */
  private scanWindow(
    windowBase: number,
    dataLength: number,
    ownedFrom: number,
    ownedTo: number,
    into: NeedleHit[],
    limit: number,
  ): void {
    appendPasses(this.groups, into, limit, (group, more, visit) =>
      this.visitGroupHits(group, windowBase, dataLength, ownedFrom, ownedTo, more, visit),
    );
  }

  /** One group's hits starting in `[ownedFrom, ownedTo)`, in order, a kernel call's batch at a time while `more()` holds. */
  private visitGroupHits(
    group: NeedleGroup,
    windowBase: number,
    dataLength: number,
    ownedFrom: number,
    ownedTo: number,
    more: () => boolean,
    visit: (needle: number, offset: number) => void,
  ): void {
    const { kernel } = this;
    const words = kernel.words;
    const dataEnd = WINDOW_ADDRESS + dataLength;
    const positionEnd = WINDOW_ADDRESS + ownedTo;
    kernel.loadGroup(group);
    for (let from = WINDOW_ADDRESS + ownedFrom; from < positionEnd && more(); from = words[SCAN_RESUME_ADDRESS / 4]!) {
      const count = kernel.kernels.findNeedles(group.needles.length, dataEnd, from, positionEnd);
      for (let i = 0; i < count; i++) {
        const hit = (HITS_ADDRESS + i * HIT_BYTES) / 4;
        visit(
          group.needleIndices[words[hit + HIT_SLOT_FIELD / 4]!]!,
          windowBase + (words[hit + HIT_START_FIELD / 4]! - WINDOW_ADDRESS),
        );
      }
    }
  }
}
