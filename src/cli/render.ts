import { rowObject } from '../analyses/rowJson.js';
import type { AnyAnalysisResult, CellValue, Column, Row, RowSet } from '../analyses/types.js';
import { escapeControl } from '../util/text.js';

export type OutputFormat = 'table' | 'json' | 'ndjson';

/**
 * Rows joined into one chunk of output: large enough to write efficiently, small enough that the
 * chunk being built is all a young-generation collection finds alive (and promotes) of the rows.
 */
const ROWS_PER_CHUNK = 256;

/**
 * The result as text, in chunks to be written one after the other: a result of millions of
 * rows (a kernel's symbols) is never one string, and nothing spreads rows into arguments.
 */
export function* renderChunks(result: AnyAnalysisResult, format: OutputFormat): Generator<string> {
  switch (format) {
    case 'json':
      if (result.single) {
        const row = firstRow(result.rows);
        yield JSON.stringify(row ? rowObject(row, result.columns) : null, null, 2) + '\n';
        return;
      }
      if (result.rows.length === 0) {
        yield '[]\n';
        return;
      }
      yield* inChunks(
        result.rows,
        (row, index) =>
          `${index === 0 ? '[\n' : ',\n'}${indent(JSON.stringify(rowObject(row, result.columns), null, 2))}`,
      );
      yield '\n]\n';
      return;
    case 'ndjson':
      yield* inChunks(result.rows, (row) => JSON.stringify(rowObject(row, result.columns)) + '\n');
      return;
    case 'table':
      if (result.title) yield `${escapeControl(result.title)}\n`;
      if (result.single) yield renderRecord(firstRow(result.rows) ?? {}, result.columns);
      else yield* renderTable(result.rows, result.columns);
  }
}

/** The whole result as one string (small results: summaries, tests). */
export function render(result: AnyAnalysisResult, format: OutputFormat): string {
  return [...renderChunks(result, format)].join('');
}

function indent(json: string): string {
  return json.replace(/^/gm, '  ');
}

function firstRow(rows: RowSet): Row | undefined {
  for (const row of rows) return row;
  return undefined;
}

/** The rows' lines, a chunk at a time: rows made on the fly are written and dropped, never all held. */
function* inChunks<T>(rows: Iterable<T>, line: (row: T, index: number) => string): Generator<string> {
  let chunk = '';
  let index = 0;
  for (const row of rows) {
    chunk += line(row, index++);
    if (index % ROWS_PER_CHUNK === 0) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk !== '') yield chunk;
}

/**
 * A cell as a person reads it. Guest strings (comm, argv, module names) are attacker-controlled:
 * control characters are shown escaped, so a newline or an ESC sequence in a process name can
 * neither forge a row nor drive the analyst's terminal.
 */
function cellText(value: CellValue | undefined, separator = ', '): string {
  if (value === undefined || value === null) return '-';
  if (Array.isArray(value)) return value.length === 0 ? '-' : value.map((item) => cellText(item)).join(separator);
  if (typeof value === 'object') {
    const record = value as Record<string, CellValue>;
    // Ranges read best as start-end.
    if ('start' in record && 'end' in record && Object.keys(record).length === 2)
      return `${cellText(record.start)}-${cellText(record.end)}`;
    return Object.entries(record)
      .map(([key, inner]) => `${escapeControl(key)}=${cellText(inner)}`)
      .join(' ');
  }
  return escapeControl(String(value));
}

function renderRecord(row: Row, columns: readonly Column[]): string {
  const present = columns.filter((column) => column.key in row);
  let width = 0;
  for (const column of present) width = Math.max(width, column.title.length);
  return present.map((column) => `${column.title.padEnd(width)}  ${cellText(row[column.key])}`).join('\n') + '\n';
}

/**
 * Up to this many rows, a table's cells are made once and kept for its lines (a few MiB of text);
 * beyond, rows are made again for the lines, so millions of rows made on the fly are never all held.
 */
const KEPT_TABLE_ROWS = 16_384;

function* renderTable(rows: RowSet, columns: readonly Column[]): Generator<string> {
  const cell = (row: Row, column: Column) => {
    const text = cellText(row[column.key], column.separator);
    return column.indentByDepth && typeof row.depth === 'number' ? '  '.repeat(row.depth) + text : text;
  };
  const cellsOf = (row: Row) => columns.map((column) => cell(row, column));
  const lines: Iterable<string[]> =
    rows.length <= KEPT_TABLE_ROWS
      ? Array.from(rows, cellsOf)
      : {
          *[Symbol.iterator]() {
            for (const row of rows) yield cellsOf(row);
          },
        };
  // Widths in a first pass, then the lines in chunks.
  const widths = columns.map((column) => column.title.length);
  for (const line of lines) line.forEach((text, i) => (widths[i] = Math.max(widths[i]!, text.length)));
  const alignRight = columns.map((column) => column.kind === 'int');
  const format = (line: readonly string[]) =>
    line
      .map((text, i) => (alignRight[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  yield format(columns.map((column) => column.title)) + '\n';
  yield* inChunks(lines, (line) => format(line) + '\n');
}
