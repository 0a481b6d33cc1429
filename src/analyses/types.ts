/**
 * Analyses produce data, renderers present it (Volatility's TreeGrid split): an analysis
 * declares its columns once, and the table, JSON and NDJSON renderers all follow that list.
 */
export type ColumnKind = 'int' | 'address' | 'text' | 'bool' | 'list';

export interface Column {
  /** snake_case key used in JSON output. */
  readonly key: string;
  readonly kind: ColumnKind;
  /** Header in table output. */
  readonly title: string;
}

export type CellValue = string | number | boolean | bigint | null | readonly CellValue[] | { readonly [key: string]: CellValue };
export type Row = Readonly<Record<string, CellValue>>;

/** What an analysis needs before it can run; the context provides them lazily. */
export type Requirement = 'image' | 'kernel';

export interface AnalysisResult {
  readonly columns: readonly Column[];
  readonly rows: readonly Row[];
  /** One-object commands (`info`) render as a record rather than a table. */
  readonly single: boolean;
  /** True when some rows may be missing (a walk was cut short); the CLI exits 1. */
  readonly partial: boolean;
  readonly warnings: readonly string[];
}
