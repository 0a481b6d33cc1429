import { rowObject } from '../analyses/rowJson.js';
import type { AnalysisResult, CellValue, Column, Row } from '../analyses/types.js';

export type OutputFormat = 'table' | 'json' | 'ndjson';

export function render(result: AnalysisResult, format: OutputFormat): string {
  const rows = result.rows.map((row) => rowObject(row, result.columns));
  switch (format) {
    case 'json':
      return JSON.stringify(result.single ? rows[0] ?? null : rows, null, 2) + '\n';
    case 'ndjson':
      return rows.map((row) => JSON.stringify(row) + '\n').join('');
    case 'table':
      return (
        (result.title ? `${result.title}\n` : '') +
        (result.single ? renderRecord(result.rows[0] ?? {}, result.columns) : renderTable(result.rows, result.columns))
      );
  }
}

function cellText(value: CellValue | undefined, separator = ', '): string {
  if (value === undefined || value === null) return '-';
  if (Array.isArray(value)) return value.length === 0 ? '-' : value.map((item) => cellText(item)).join(separator);
  if (typeof value === 'object') {
    const record = value as Record<string, CellValue>;
    // Ranges read best as start-end.
    if ('start' in record && 'end' in record && Object.keys(record).length === 2) return `${cellText(record.start)}-${cellText(record.end)}`;
    return Object.entries(record).map(([key, inner]) => `${key}=${cellText(inner)}`).join(' ');
  }
  return String(value);
}

function renderRecord(row: Row, columns: readonly Column[]): string {
  const present = columns.filter((column) => column.key in row);
  const width = Math.max(...present.map((column) => column.title.length));
  return present.map((column) => `${column.title.padEnd(width)}  ${cellText(row[column.key]).replace(/\n$/, '')}`).join('\n') + '\n';
}

function renderTable(rows: readonly Row[], columns: readonly Column[]): string {
  const cells = rows.map((row) =>
    columns.map((column) => {
      const text = cellText(row[column.key], column.separator);
      return column.indentByDepth && typeof row.depth === 'number' ? '  '.repeat(row.depth) + text : text;
    }),
  );
  const widths = columns.map((column, i) => Math.max(column.title.length, ...cells.map((line) => line[i]!.length)));
  const alignRight = columns.map((column) => column.kind === 'int');
  const format = (line: readonly string[]) =>
    line.map((text, i) => (alignRight[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!))).join('  ').trimEnd();
  return [format(columns.map((column) => column.title)), ...cells.map(format)].join('\n') + '\n';
}
