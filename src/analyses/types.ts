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
  /** Table output only: how list cells are joined (default ", "; argv reads best with " "). */
  readonly separator?: string;
  /** Table output only: indent this cell by the row's `depth` (pstree). */
  readonly indentByDepth?: boolean;
}

export type CellValue = string | number | boolean | bigint | null | readonly CellValue[] | { readonly [key: string]: CellValue };
export type Row = Readonly<Record<string, CellValue>>;

/** What an analysis needs before it can run; the context provides them lazily. */
export type Requirement = 'image' | 'kernel' | 'profile';

export interface AnalysisResult {
  readonly columns: readonly Column[];
  readonly rows: readonly Row[];
  /** One-object commands (`info`) render as a record rather than a table. */
  readonly single: boolean;
  /** True when some rows may be missing (a walk was cut short); the CLI exits 1. */
  readonly partial: boolean;
  readonly warnings: readonly string[];
  /** A line above the table (e.g. a struct's name and size); JSON output leaves it out. */
  readonly title?: string;
  /** Set by analyses whose rows are findings: 1 when there are any (the CLI exits with it). */
  readonly exitCode?: number | undefined;
}

/** A command-line option an analysis takes, passed to `run` under `key`. */
export interface AnalysisOption {
  /** commander flags, e.g. `--pid <pid>` or `--threads` */
  readonly flags: string;
  readonly key: string;
  readonly description: string;
  readonly parse?: (value: string) => unknown;
}

/**
 * One analysis (Volatility's plugin): a name, what it needs, the columns it yields. The CLI
 * builds a command from each; the library calls `run` directly.
 */
export interface Analysis {
  readonly name: string;
  readonly description: string;
  readonly columns: readonly Column[];
  readonly requires: readonly Requirement[];
  /** Positional arguments after the dump, e.g. the struct name of `types`. */
  readonly arguments?: ReadonlyArray<{ readonly name: string; readonly description: string }>;
  readonly options?: readonly AnalysisOption[];
  /** More help text: what it shows and how it decides. */
  readonly help?: string;
  run(context: import('./context.js').DumpContext, args: Readonly<Record<string, unknown>>): AnalysisResult | Promise<AnalysisResult>;
}
