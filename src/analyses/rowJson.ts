import type { CellValue, Column, Row } from './types.js';

/** JSON contract: bigints never reach JSON.stringify (addresses are already hex strings). */
function jsonValue(value: CellValue): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(jsonValue);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, jsonValue(inner)]));
  }
  return value;
}

/** A row as `--json`/`--ndjson` print it: its columns' keys, in column order. */
export function rowObject(row: Row, columns: readonly Column[]): Record<string, unknown> {
  return Object.fromEntries(
    columns.filter((column) => column.key in row).map((column) => [column.key, jsonValue(row[column.key]!)]),
  );
}
