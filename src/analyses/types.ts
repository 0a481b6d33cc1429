import { z } from 'zod';
import { VmscopeError } from '../util/errors.js';
import type { FileIdentity } from '../util/files.js';
import type { DumpContext, ParallelRuleScan, Provider } from './context.js';

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

export type CellValue =
  string | number | boolean | bigint | null | readonly CellValue[] | { readonly [key: string]: CellValue };
export type Row = Readonly<Record<string, CellValue>>;

/**
 * Rows as renderers and other consumers read them: in order, as often as they need, with their
 * count known up front. An array is one; an analysis whose rows may number millions (a YARA
 * string capped at a million matches) makes each row on the fly from compact columns instead,
 * as Volatility's TreeGrid is filled from a generator, so no row is kept after it is written.
 */
export interface RowSet extends Iterable<Row> {
  readonly length: number;
}

export interface AnalysisResult<Rows extends RowSet = readonly Row[]> {
  readonly columns: readonly Column[];
  readonly rows: Rows;
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

/**
 * What an option's schema may say beyond its type, for the CLI, batch and queue that are
 * generated from it: its help line, the flag's value name, and whether it names a file whose
 * contents must travel with a queued job (workers elsewhere have no copy of it).
 */
export interface OptionMeta {
  readonly description: string;
  /** `<file>` in `--rules <file>`; booleans take none. */
  readonly placeholder?: string;
  readonly file?: boolean;
}

/** An option's schema with its CLI metadata. */
export function option<T extends z.ZodType>(schema: T, meta: OptionMeta): T {
  return schema.meta({ ...meta });
}

/** The metadata an option was declared with. */
export function optionMeta(schema: z.ZodType): OptionMeta {
  const meta = z.globalRegistry.get(schema) as Partial<OptionMeta> | undefined;
  return {
    description: meta?.description ?? '',
    ...(meta?.placeholder ? { placeholder: meta.placeholder } : {}),
    ...(meta?.file ? { file: true } : {}),
  };
}

/** What an analysis's rows are to a batch, a queue or a policy: plain data, findings of tampering, or signature hits. */
export type RowRole = 'data' | 'findings' | 'hits';

/** What an analysis may reach while it runs: only the providers it declared. */
export interface AnalysisInputs {
  readonly path: string;
  readonly identity: FileIdentity | undefined;
  get<T>(provider: Provider<T>): Promise<T>;
  progress(phase: string): (doneBytes: number, totalBytes: number) => void;
  readonly parallelRuleScan: ParallelRuleScan | undefined;
  /** Threads a scan uses when its options do not say (the context's setting, else undefined). */
  readonly defaultThreads: number | undefined;
}

type AnyOptions = z.ZodObject<z.ZodRawShape>;

/** Any analysis's result, as generic consumers (renderers, batch, monitor, report) take it. */
export type AnyAnalysisResult = AnalysisResult<RowSet>;

/** One analysis as its file declares it (Volatility's plugin with its requirements, without the class tree). */
export interface AnalysisSpec<Options extends AnyOptions, Rows extends RowSet> {
  readonly name: string;
  readonly description: string;
  readonly columns: readonly Column[];
  /** The providers `compute` may ask for; asking for another is a bug, caught at once. */
  readonly uses: ReadonlyArray<Provider<unknown>>;
  /** Its options, typed and validated; the CLI flags, help and batch options are generated from it. */
  readonly options?: Options;
  /** Options given as positional arguments after the dump, e.g. the struct name of `types`. */
  readonly arguments?: ReadonlyArray<Extract<keyof z.output<Options>, string>>;
  /** More help text: what it shows and how it decides. */
  readonly help?: string;
  readonly rows?: RowRole;
  compute(
    inputs: AnalysisInputs,
    options: z.output<Options>,
  ): AnalysisResult<NoInfer<Rows>> | Promise<AnalysisResult<NoInfer<Rows>>>;
}

/** An analysis ready to run: its declaration, plus option validation and a run scoped to its providers. */
export interface Analysis<Rows extends RowSet = RowSet> {
  readonly name: string;
  readonly description: string;
  readonly columns: readonly Column[];
  readonly uses: ReadonlyArray<Provider<unknown>>;
  readonly options: AnyOptions;
  readonly arguments: readonly string[];
  readonly help: string | undefined;
  readonly rows: RowRole;
  /** Validates raw options (CLI strings, batch JSON, library objects): a usage error names the flag at fault. */
  parseOptions(raw: Readonly<Record<string, unknown>>): Record<string, unknown>;
  run(context: DumpContext, options?: Readonly<Record<string, unknown>>): Promise<AnalysisResult<Rows>>;
}

/** `allProcesses` → `--all-processes`. */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}

/** Inputs limited to the declared providers. */
function scopedInputs(context: DumpContext, name: string, uses: ReadonlyArray<Provider<unknown>>): AnalysisInputs {
  const allowed = new Set(uses);
  return {
    path: context.path,
    identity: context.identity,
    get<T>(provider: Provider<T>): Promise<T> {
      if (!allowed.has(provider))
        throw new Error(`analysis ${name} asked for provider "${provider.name}" without declaring it in \`uses\``);
      return context.get(provider);
    },
    progress: (phase) => context.progress(phase),
    parallelRuleScan: context.parallelRuleScan,
    defaultThreads: context.defaultThreads,
  };
}

export function defineAnalysis<
  Options extends AnyOptions = z.ZodObject<Record<never, z.ZodType>>,
  Rows extends RowSet = readonly Row[],
>(spec: AnalysisSpec<Options, Rows>): Analysis<Rows> {
  const schema = (spec.options ?? z.object({})) as AnyOptions;
  const parseOptions = (raw: Readonly<Record<string, unknown>>): Record<string, unknown> => {
    const parsed = schema.strict().safeParse(raw);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0]!;
    const key = issue.path[0];
    if (typeof key !== 'string') throw new VmscopeError('USAGE', `${spec.name}: ${issue.message}`);
    const where = spec.arguments?.includes(key as never) ? `<${key}>` : flagName(key);
    if (issue.code === 'unrecognized_keys')
      throw new VmscopeError('USAGE', `${spec.name} has no option ${issue.keys.map(flagName).join(', ')}`);
    const field = (schema.shape as Record<string, z.ZodType>)[key];
    if (field && raw[key] === undefined) {
      const placeholder = optionMeta(field).placeholder;
      throw new VmscopeError(
        'USAGE',
        `${spec.name} needs ${where}${placeholder && !where.startsWith('<') ? ` <${placeholder}>` : ''}`,
      );
    }
    throw new VmscopeError('USAGE', `${spec.name} ${where}: ${issue.message}`);
  };
  return {
    name: spec.name,
    description: spec.description,
    columns: spec.columns,
    uses: spec.uses,
    options: schema,
    arguments: spec.arguments ?? [],
    help: spec.help,
    rows: spec.rows ?? 'data',
    parseOptions,
    async run(context, raw = {}) {
      const options = parseOptions(raw) as z.output<Options>;
      return spec.compute(scopedInputs(context, spec.name, spec.uses), options);
    },
  };
}
