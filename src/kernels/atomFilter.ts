import type { MemoryImage } from '../image/types.js';
import { buildAtomTables } from './atomTables.js';
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
import { scanBuffer, scanImage, type ImageSearchOptions, type WindowScanner } from './streaming.js';

export { atomFilterReference } from './atomFilterReference.js';
export { buildAtomTables } from './atomTables.js';

export interface AtomHit {
  /** Index of the atom in the list the filter was created with. */
  readonly atom: number;
  /** Where the atom starts: a physical address for images, `base` + index for buffers. */
  readonly offset: number;
}

export interface AtomFilterOptions {
  /** Bytes scanned per kernel call, a multiple of 64 KiB (default DEFAULT_WINDOW_BYTES). */
  windowBytes?: number;
}

/**
 * The candidate filter for many short fixed strings (the atoms a rule compiler picks from each
 * pattern), in WASM: every occurrence of every atom, in offset order then atom index, with the
 * same chunking and ownership rules as MultiNeedleSearcher (streaming.ts). Filters with the same
 * window size share one WASM instance per thread; each keeps its tables on the host and copies
 * them into the instance when it scans after another filter did.
 */
export class AtomFilter {
  private readonly scanner: WindowScanner<AtomHit>;

  private constructor(
    private readonly tables: Uint8Array,
    private readonly kernel: KernelInstance,
    atomCount: number,
    longestAtom: number,
  ) {
    this.scanner = {
      kernel,
      overlap: longestAtom - 1,
      hasPatterns: atomCount > 0,
      scanWindow: (...args) => this.scanWindow(...args),
    };
  }

  /** Atoms are 1 to MAX_ATOM_LENGTH bytes, at most MAX_ATOMS of them; duplicates each report their own hits. */
  static create(atoms: readonly Uint8Array[], options: AtomFilterOptions = {}): AtomFilter {
    const tables = buildAtomTables(atoms);
    const longestAtom = Math.max(1, ...atoms.map((atom) => atom.length));
    return new AtomFilter(
      tables,
      KernelInstance.shared(options.windowBytes ?? DEFAULT_WINDOW_BYTES),
      atoms.length,
      longestAtom,
    );
  }

  /** Every hit in `bytes` (copied into the window a chunk at a time); offsets are `base` + index. */
  filterBuffer(bytes: Uint8Array, base = 0): AtomHit[] {
    return scanBuffer(this.scanner, bytes, base);
  }

  /** Every hit in the physical memory of `image`, read straight into the window; no hit spans a gap between ranges. */
  filterImage(image: MemoryImage, options: ImageSearchOptions = {}): AtomHit[] {
    return scanImage(this.scanner, image, options);
  }

  /**
   * Calls `visit` with each hit starting in [from, to) of the first `dataLength` bytes already in this thread's window,
   * offsets relative to it (see MultiNeedleSearcher.visitWindowHits), in offset order: no object
   * per hit, for scanners that judge hits as they come (rules/scanner.ts).
   */
  visitWindowHits(dataLength: number, visit: (atom: number, offset: number) => void, from = 0, to = dataLength): void {
    this.visitHits(0, dataLength, from, to, () => true, visit);
  }

  /** Appends the hits starting in `[ownedFrom, ownedTo)` of the window's `dataLength` bytes to `into`, in order; the kernel stops being called once `into` holds `limit`. */
  private scanWindow(
    windowBase: number,
    dataLength: number,
    ownedFrom: number,
    ownedTo: number,
    into: AtomHit[],
    limit: number,
  ): void {
    this.visitHits(
      windowBase,
      dataLength,
      ownedFrom,
      ownedTo,
      () => into.length < limit,
      (atom, offset) => into.push({ atom, offset }),
    );
  }

  /** Each hit starting in `[ownedFrom, ownedTo)`, in order, a kernel call's batch at a time while `more()` holds. */
  private visitHits(
    windowBase: number,
    dataLength: number,
    ownedFrom: number,
    ownedTo: number,
    more: () => boolean,
    visit: (atom: number, offset: number) => void,
  ): void {
    const { kernel } = this;
    kernel.loadAtomTables(this.tables);
    const words = kernel.words;
    const dataEnd = WINDOW_ADDRESS + dataLength;
    const positionEnd = WINDOW_ADDRESS + ownedTo;
    for (let from = WINDOW_ADDRESS + ownedFrom; from < positionEnd && more(); from = words[SCAN_RESUME_ADDRESS / 4]!) {
      const count = kernel.kernels.filterAtoms(kernel.atomTablesAddress, dataEnd, from, positionEnd);
      for (let i = 0; i < count; i++) {
        const hit = (HITS_ADDRESS + i * HIT_BYTES) / 4;
        visit(words[hit + HIT_SLOT_FIELD / 4]!, windowBase + (words[hit + HIT_START_FIELD / 4]! - WINDOW_ADDRESS));
      }
    }
  }
}
