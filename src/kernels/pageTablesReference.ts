import type { TableRecord } from './pageTables.js';
import { PAGE_TABLE_BYTES, PAGE_TABLE_ENTRIES } from './memoryMap.js';
import { ADDRESS_MASK, LARGE_PAGE, NO_EXECUTE, PRESENT, USER, WRITABLE } from './pageTableEntry.js';

/**
 * The plain-TypeScript definition the WASM table decoder is tested against: one record per present
 * entry of the 4 KiB `table` at `level` (1–5), then consecutive leaf records joined when the later
 * one starts where the earlier one's pages end, with the same permission bits.
 */
export function decodeTableReference(table: Uint8Array, level: number): TableRecord[] {
  if (table.length !== PAGE_TABLE_BYTES)
    throw new RangeError(`a page table is ${PAGE_TABLE_BYTES} bytes, not ${table.length}`);
  const view = new DataView(table.buffer, table.byteOffset, table.length);
  const pageSize = 2 ** (12 + 9 * (level - 1));
  const records: TableRecord[] = [];
  let previous: TableRecord | undefined;
  for (let index = 0; index < PAGE_TABLE_ENTRIES; index++) {
    const entry = view.getBigUint64(index * 8, true);
    if ((entry & PRESENT) === 0n) {
      previous = undefined;
      continue;
    }
    const leaf = level === 1 || ((level === 2 || level === 3) && (entry & LARGE_PAGE) !== 0n);
    const frame = entry & ADDRESS_MASK;
    const record = {
      index,
      count: 1,
      physical: Number(leaf ? frame - (frame % BigInt(pageSize)) : frame),
      writable: (entry & WRITABLE) !== 0n,
      user: (entry & USER) !== 0n,
      noExecute: (entry & NO_EXECUTE) !== 0n,
      leaf,
    };
    if (
      previous?.leaf &&
      leaf &&
      previous.index + previous.count === index &&
      previous.physical + previous.count * pageSize === record.physical &&
      previous.writable === record.writable &&
      previous.user === record.user &&
      previous.noExecute === record.noExecute
    ) {
      records[records.length - 1] = previous = { ...previous, count: previous.count + 1 };
    } else {
      records.push(record);
      previous = record;
    }
  }
  return records;
}
