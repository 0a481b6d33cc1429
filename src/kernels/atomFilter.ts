import type { MemoryImage } from '../image/types.js';
import { KernelInstance } from './kernelInstance.js';
import {
  ATOM_ENTRIES_OFFSET,
  ATOM_ENTRY_BYTES,
  ATOM_ENTRY_ID_FIELD,
  ATOM_ENTRY_LENGTH_FIELD,
  ATOM_ENTRY_MASK_FIELD,
  ATOM_ENTRY_VALUE_FIELD,
  ATOM_PAIR_TABLE_OFFSET,
  ATOM_PREFIX_STARTS_OFFSET,
  ATOM_SINGLE_IDS_OFFSET,
  ATOM_SINGLE_STARTS_OFFSET,
  ATOM_TABLES_BYTES,
  DEFAULT_WINDOW_BYTES,
  HITS_ADDRESS,
  HIT_BYTES,
  HIT_SLOT_FIELD,
  HIT_START_FIELD,
  MAX_ATOMS,
  MAX_ATOM_LENGTH,
  SCAN_RESUME_ADDRESS,
  WINDOW_ADDRESS,
} from './memoryMap.js';
import { scanBuffer, scanImage, type ImageSearchOptions, type WindowScanner } from './streaming.js';

export { atomFilterReference } from './atomFilterReference.js';

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

const PAIR_COUNT = 0x10000;

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
    this.scanner = { kernel, overlap: longestAtom - 1, hasPatterns: atomCount > 0, scanWindow: (...args) => this.scanWindow(...args) };
  }

  /** Atoms are 1 to MAX_ATOM_LENGTH bytes, at most MAX_ATOMS of them; duplicates each report their own hits. */
  static create(atoms: readonly Uint8Array[], options: AtomFilterOptions = {}): AtomFilter {
    const tables = buildAtomTables(atoms);
    const longestAtom = Math.max(1, ...atoms.map((atom) => atom.length));
    return new AtomFilter(tables, KernelInstance.shared(options.windowBytes ?? DEFAULT_WINDOW_BYTES), atoms.length, longestAtom);
  }

  /** Every hit in `bytes` (copied into the window a chunk at a time); offsets are `base` + index. */
  filterBuffer(bytes: Uint8Array, base = 0): AtomHit[] {
    return scanBuffer(this.scanner, bytes, base);
  }

  /** Every hit in the physical memory of `image`, read straight into the window; no hit spans a gap between ranges. */
  filterImage(image: MemoryImage, options: ImageSearchOptions = {}): AtomHit[] {
    return scanImage(this.scanner, image, options);
  }

  /** Every hit in the first `dataLength` bytes already in this thread's window, offsets relative to it (see MultiNeedleSearcher.hitsInWindow). */
  hitsInWindow(dataLength: number): AtomHit[] {
    const hits: AtomHit[] = [];
    this.scanWindow(0, dataLength, 0, dataLength, hits, Infinity);
    return hits;
  }

  /** Appends the hits starting in `[ownedFrom, ownedTo)` of the window's `dataLength` bytes to `into`, in order; the kernel stops being called once `into` holds `limit`. */
  private scanWindow(windowBase: number, dataLength: number, ownedFrom: number, ownedTo: number, into: AtomHit[], limit: number): void {
    const { kernel } = this;
    kernel.loadAtomTables(this.tables);
    const words = kernel.words;
    const dataEnd = WINDOW_ADDRESS + dataLength;
    const positionEnd = WINDOW_ADDRESS + ownedTo;
    for (let from = WINDOW_ADDRESS + ownedFrom; from < positionEnd && into.length < limit; from = words[SCAN_RESUME_ADDRESS / 4]!) {
      const count = kernel.kernels.filterAtoms(kernel.atomTablesAddress, dataEnd, from, positionEnd);
      for (let i = 0; i < count; i++) {
        const hit = (HITS_ADDRESS + i * HIT_BYTES) / 4;
        into.push({ atom: words[hit + HIT_SLOT_FIELD / 4]!, offset: windowBase + (words[hit + HIT_START_FIELD / 4]! - WINDOW_ADDRESS) });
      }
    }
  }
}

/** The kernel's tables for `atoms` (layout in memoryMap.ts), ids being indices into `atoms`. */
export function buildAtomTables(atoms: readonly Uint8Array[]): Uint8Array {
  if (atoms.length > MAX_ATOMS) throw new RangeError(`${atoms.length} atoms; at most ${MAX_ATOMS} fit the atom tables`);
  atoms.forEach((atom, index) => {
    if (atom.length === 0 || atom.length > MAX_ATOM_LENGTH) {
      throw new RangeError(`atom ${index} is ${atom.length} bytes; atoms must be 1 to ${MAX_ATOM_LENGTH} bytes`);
    }
  });
  const tables = new Uint8Array(ATOM_TABLES_BYTES);
  const view = new DataView(tables.buffer);
  const setPair = (pair: number) => (tables[ATOM_PAIR_TABLE_OFFSET + pair] = 1);

  // Single-byte atoms: one id list per byte value, and every pair starting with that byte screened in.
  const singles = atoms.flatMap((atom, id) => (atom.length === 1 ? [{ byte: atom[0]!, id }] : []));
  singles.sort((a, b) => a.byte - b.byte || a.id - b.id);
  singles.forEach(({ id }, i) => view.setUint32(ATOM_SINGLE_IDS_OFFSET + 4 * i, id, true));
  writeStarts(view, ATOM_SINGLE_STARTS_OFFSET, 256, singles.map(({ byte }) => byte));
  for (const { byte } of singles) for (let second = 0; second < 256; second++) setPair(byte | (second << 8));

  // Longer atoms: entries grouped by their first two bytes (the u16 the kernel loads), ascending by id within a group.
  const entries = atoms.flatMap((atom, id) => (atom.length > 1 ? [{ pair: atom[0]! | (atom[1]! << 8), atom, id }] : []));
  entries.sort((a, b) => a.pair - b.pair || a.id - b.id);
  entries.forEach(({ pair, atom, id }, i) => {
    setPair(pair);
    const entry = ATOM_ENTRIES_OFFSET + i * ATOM_ENTRY_BYTES;
    view.setUint32(entry + ATOM_ENTRY_VALUE_FIELD, atom.reduce((value, byte, at) => value + byte * 2 ** (8 * at), 0), true);
    view.setUint32(entry + ATOM_ENTRY_MASK_FIELD, 2 ** (8 * atom.length) - 1, true);
    view.setUint32(entry + ATOM_ENTRY_LENGTH_FIELD, atom.length, true);
    view.setUint32(entry + ATOM_ENTRY_ID_FIELD, id, true);
  });
  writeStarts(view, ATOM_PREFIX_STARTS_OFFSET, PAIR_COUNT, entries.map(({ pair }) => pair));
  return tables;
}

/** starts[k] = how many of the sorted `keys` are below k, for k in 0..keyCount: key k's items are [starts[k], starts[k + 1]). */
function writeStarts(view: DataView, offset: number, keyCount: number, sortedKeys: readonly number[]): void {
  let index = 0;
  for (let key = 0; key <= keyCount; key++) {
    while (index < sortedKeys.length && sortedKeys[index]! < key) index++;
    view.setUint32(offset + 4 * key, index, true);
  }
}
