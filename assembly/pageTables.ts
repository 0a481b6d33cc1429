import {
  PAGE_TABLE_ENTRIES,
  TABLE_RECORD_BYTES,
  TABLE_RECORD_COUNT_FIELD,
  TABLE_RECORD_FLAGS_FIELD,
  TABLE_RECORD_INDEX_FIELD,
  TABLE_RECORD_LEAF,
  TABLE_RECORD_NO_EXECUTE,
  TABLE_RECORD_PHYSICAL_FIELD,
  TABLE_RECORD_USER,
  TABLE_RECORD_WRITABLE,
} from './memoryMap';

const PRESENT: u64 = 1;
const WRITABLE: u64 = 2;
const USER: u64 = 4;
const LARGE_PAGE: u64 = 0x80;
/** Bits 12–51: the frame of the next table or of the page. */
const ADDRESS_MASK: u64 = 0x000ffffffffff000;

/**
 * The present entries of one x86-64 page table (512 little-endian u64 at `tableAddress`) at
 * `level` (1 = page table … 4 = PML4, 5 = PML5) as records at `outAddress` (layout in
 * memoryMap.ts), in index order. Returns the record count, at most 512.
 *
 * An entry is a leaf at level 1, and at levels 2 and 3 when its page-size bit is set (a 2 MiB or
 * 1 GiB page, whose frame is masked to the page size); otherwise it points to a table and gets a
 * record of its own. Consecutive leaves mapping physically consecutive pages with the same
 * writable, user and no-execute bits share one record, so a fully contiguous page table is one
 * record of 512. Reads only the table and writes only the records: no other kernel state.
 */
export function decodeTable(tableAddress: usize, level: i32, outAddress: usize): i32 {
  const pageBits = <u64>(12 + 9 * (level - 1));
  const pageSize: u64 = (<u64>1) << pageBits;
  const largePages = level == 2 || level == 3;
  let count: i32 = 0;
  // The last record, while it is a run of leaves that the next entry may extend.
  let run: usize = 0;
  let runNext: u64 = 0;
  let runFlags: u32 = 0;
  let runOpen = false;
  for (let index: i32 = 0; index < PAGE_TABLE_ENTRIES; index++) {
    const entry = load<u64>(tableAddress + ((<usize>index) << 3));
    if ((entry & PRESENT) == 0) {
      runOpen = false;
      continue;
    }
    const leaf = level == 1 || (largePages && (entry & LARGE_PAGE) != 0);
    const flags =
      (<u32>((entry & WRITABLE) != 0) * TABLE_RECORD_WRITABLE) |
      (<u32>((entry & USER) != 0) * TABLE_RECORD_USER) |
      (<u32>(entry >> 63) * TABLE_RECORD_NO_EXECUTE) |
      (<u32>leaf * TABLE_RECORD_LEAF);
    let physical = entry & ADDRESS_MASK;
    if (leaf) physical &= ~(pageSize - 1);
    if (runOpen && leaf && physical == runNext && flags == runFlags) {
      store<u16>(run, load<u16>(run, TABLE_RECORD_COUNT_FIELD) + 1, TABLE_RECORD_COUNT_FIELD);
      runNext += pageSize;
      continue;
    }
    const record = outAddress + <usize>count * TABLE_RECORD_BYTES;
    store<u64>(record, physical, TABLE_RECORD_PHYSICAL_FIELD);
    store<u32>(record, <u32>index, TABLE_RECORD_INDEX_FIELD);
    store<u16>(record, 1, TABLE_RECORD_COUNT_FIELD);
    store<u16>(record, <u16>flags, TABLE_RECORD_FLAGS_FIELD);
    count++;
    run = record;
    runNext = physical + pageSize;
    runFlags = flags;
    runOpen = leaf;
  }
  return count;
}
