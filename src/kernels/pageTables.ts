import { KernelInstance } from './kernelInstance.js';
import {
  PAGE_TABLE_ADDRESS,
  PAGE_TABLE_BYTES,
  TABLE_RECORDS_ADDRESS,
  TABLE_RECORD_BYTES,
  TABLE_RECORD_COUNT_FIELD,
  TABLE_RECORD_INDEX_FIELD,
  TABLE_RECORD_LEAF,
  TABLE_RECORD_NO_EXECUTE,
  TABLE_RECORD_PHYSICAL_FIELD,
  TABLE_RECORD_USER,
  TABLE_RECORD_WRITABLE,
} from './memoryMap.js';

export { decodeTableReference } from './pageTablesReference.js';

/** Present entries of one page table: `count` consecutive entries from `index` (memoryMap.ts). */
export interface TableRecord {
  readonly index: number;
  readonly count: number;
  /** The first entry's frame; a leaf's is masked to its page size, and entry k maps physical + k × page size. */
  readonly physical: number;
  /** The entries' own bits, not yet combined with the upper levels'. */
  readonly writable: boolean;
  readonly user: boolean;
  readonly noExecute: boolean;
  /** The entries map pages (level 1, 2 MiB or 1 GiB pages); else the one entry points to the next table. */
  readonly leaf: boolean;
}

/** Decodes one 4 KiB table at a level (1 = page table … 5 = PML5). */
export type TableDecoder = (table: Uint8Array, level: number) => TableRecord[];

/**
 * The present entries of `table` at `level`, leaves physically contiguous with equal permission
 * bits merged, decoded by this thread's WASM kernel (decodeTable). The table is copied into the
 * kernel's page-table area and the records are read back before returning, so calls between the
 * steps of a scan or of another walk neither disturb them nor are disturbed (memoryMap.ts).
 */
export function decodeTable(
  table: Uint8Array,
  level: number,
  kernel: KernelInstance = KernelInstance.shared(),
): TableRecord[] {
  if (table.length !== PAGE_TABLE_BYTES)
    throw new RangeError(`a page table is ${PAGE_TABLE_BYTES} bytes, not ${table.length}`);
  if (!(Number.isInteger(level) && level >= 1 && level <= 5))
    throw new RangeError(`page-table level ${level} is not 1 to 5`);
  kernel.memory.set(table, PAGE_TABLE_ADDRESS);
  const count = kernel.kernels.decodeTable(PAGE_TABLE_ADDRESS, level, TABLE_RECORDS_ADDRESS);
  const { words } = kernel;
  const records: TableRecord[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const record = (TABLE_RECORDS_ADDRESS + i * TABLE_RECORD_BYTES) / 4;
    const countAndFlags = words[record + TABLE_RECORD_COUNT_FIELD / 4]!;
    const flags = countAndFlags >>> 16;
    records[i] = {
      index: words[record + TABLE_RECORD_INDEX_FIELD / 4]!,
      count: countAndFlags & 0xffff,
      physical:
        words[record + TABLE_RECORD_PHYSICAL_FIELD / 4]! +
        words[record + TABLE_RECORD_PHYSICAL_FIELD / 4 + 1]! * 2 ** 32,
      writable: (flags & TABLE_RECORD_WRITABLE) !== 0,
      user: (flags & TABLE_RECORD_USER) !== 0,
      noExecute: (flags & TABLE_RECORD_NO_EXECUTE) !== 0,
      leaf: (flags & TABLE_RECORD_LEAF) !== 0,
    };
  }
  return records;
}
