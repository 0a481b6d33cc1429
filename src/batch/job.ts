import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { DumpContext } from '../analyses/context.js';
import { rowObject } from '../analyses/rowJson.js';
import type { Analysis, AnyAnalysisResult, Row } from '../analyses/types.js';
import { kernelProvider } from '../analyses/providers/kernel.js';
import { sha256File } from '../image/decompress.js';
import { buildDumpReport } from '../report/build.js';
import { writeReport } from '../report/html.js';
import { resolveSelection } from './analysisSelection.js';
import type { PortableAnalysis } from './portableAnalyses.js';
import { VmscopeError } from '../util/errors.js';
import { compressionOf, decompressToTemp, type DecompressedDump, type TempBudget } from './inputs.js';

/**
 * One dump of a batch, start to end, as a plain function: the local pool (jobPool.ts) and the
 * queue's workers both call it. It never throws: whatever goes wrong is in the result.
 */
export interface DumpJobRequest {
  readonly path: string;
  /** Analysis names as the CLI knows them (`check`, `pslist`, `yarascan`, ...). */
  readonly analyses: readonly string[];
  /** Options for them by key (each analysis takes those it declares). */
  readonly options?: Readonly<Record<string, unknown>>;
  /** Where `<name>-<hash>.ndjson` is written. */
  readonly outDir: string;
  /** Profile cache directory (default $VMSCOPE_CACHE_DIR or ~/.cache/vmscope/profiles; false: none). */
  readonly cacheDir?: string | false;
  /** Also hash the dump's content (sha256) into the result. */
  readonly verify?: boolean;
  /** The content hash when the caller already computed it (a batch with --verify does, to decide what to skip). */
  readonly sha256?: string;
  /** Temporary space for decompressing a compressed dump. */
  readonly tempBudget?: TempBudget;
  /** Also write the dump's HTML report (`<name>-<hash>.html`) beside its NDJSON, from the same context. */
  readonly report?: boolean;
  /** Analyses carried as data (WASI plugins' bytes, hashed); `analyses` names them too. */
  readonly portable?: readonly PortableAnalysis[];
}

/**
 * A finding is something wrong with the guest's kernel: a row of an analysis whose rows are
 * findings (`check`). Signature matches are `hits`, not findings: a rule file says what to look
 * for, not that its presence is tampering (an EICAR test string is not a rootkit), so they are
 * counted apart and do not set the batch's exit code.
 */
const findingSchema = z.object({
  kind: z.string(),
  severity: z.string(),
  subject: z.string(),
  owner: z.string().optional(),
  detail: z.string(),
});
export type BatchFinding = z.infer<typeof findingSchema>;

export const dumpResultSchema = z.object({
  /** Absolute path of the dump as given (not of a temporary decompressed copy). */
  path: z.string(),
  size: z.number(),
  mtimeMs: z.number(),
  sha256: z.string().optional(),
  kernel: z.object({ release: z.string(), banner: z.string() }).nullable(),
  /** Rows per analysis that ran (an analysis that failed is in `errors` instead). */
  counts: z.record(z.string(), z.number()),
  findings: z.array(findingSchema),
  /** Rows of analyses whose rows are signature hits (yarascan: one per match and owner). */
  hits: z.number(),
  /** Analyses whose rows may be incomplete (a walk was cut short). */
  partial: z.array(z.string()),
  warnings: z.number(),
  /** `analysis: FILE: offset …: CODE: message`, one per failed analysis. */
  errors: z.array(z.string()),
  /** Set when nothing could be analysed: the dump cannot be opened, or every analysis failed. */
  error: z.string().optional(),
  /**
   * True when the job ran to its end, a dump that cannot be read included (its error is its
   * answer); false when it was cut short by a crash or a bug, so a rerun tries it again.
   */
  complete: z.boolean(),
  /** The NDJSON file under outDir, or null when nothing was written. */
  output: z.string().nullable(),
  /** The HTML report under outDir, when one was asked for and written. */
  report: z.string().optional(),
  seconds: z.number(),
  /** Set by a batch that found the dump already done (manifest): no analysis ran this time. */
  skipped: z.boolean().optional(),
});
export type DumpResult = z.infer<typeof dumpResultSchema>;

/** The result as stored in Redis or a manifest: it is plain data already, so this is JSON. */
export function serializeDumpResult(result: DumpResult): string {
  return JSON.stringify(result);
}

export function parseDumpResult(text: string): DumpResult {
  return dumpResultSchema.parse(JSON.parse(text));
}

/** `guest-0900.elf` → `guest-0900.elf-1a2b3c4d.ndjson`: readable, and unique per absolute path. */
export function outputName(path: string): string {
  const absolute = resolve(path);
  const safe = basename(absolute)
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .slice(0, 100);
  return `${safe}-${createHash('sha256').update(absolute).digest('hex').slice(0, 8)}.ndjson`;
}

/** A row as `--ndjson` prints it (its columns, in column order), tagged with its analysis. */
export function ndjsonRow(analysis: string, row: Row, result: AnyAnalysisResult): Record<string, unknown> {
  return { analysis, ...rowObject(row, result.columns) };
}

function describeError(error: unknown): string {
  return error instanceof VmscopeError
    ? error.describe()
    : `INTERNAL: ${error instanceof Error ? error.message : String(error)}`;
}

const ROWS_PER_WRITE = 2048;

/** Rows, warnings and errors go to `<output>.partial-<pid>` as they come, then it is renamed: a reader never sees half a file. */
class NdjsonWriter {
  private readonly partial: string;
  constructor(readonly path: string) {
    this.partial = `${path}.partial-${process.pid}`;
    writeFileSync(this.partial, '');
  }
  write(lines: ReadonlyArray<Record<string, unknown>>): void {
    if (lines.length > 0) appendFileSync(this.partial, lines.map((line) => JSON.stringify(line) + '\n').join(''));
  }
  /** The result's rows a chunk at a time: a million hits made on the fly are never all held. */
  writeRows(analysis: string, result: AnyAnalysisResult): void {
    let chunk: Array<Record<string, unknown>> = [];
    for (const row of result.rows) {
      chunk.push(ndjsonRow(analysis, row, result));
      if (chunk.length === ROWS_PER_WRITE) {
        this.write(chunk);
        chunk = [];
      }
    }
    this.write(chunk);
  }
  commit(): void {
    renameSync(this.partial, this.path);
  }
  discard(): void {
    rmSync(this.partial, { force: true });
  }
}

/**
 * A result with nothing analysed yet: where every job starts, and what a job that never ran to
 * its end reports (a thread that died, a queue job that failed for good) with its error.
 */
export function emptyDumpResult(path: string, outcome: Partial<DumpResult> = {}): DumpResult {
  return {
    path,
    size: 0,
    mtimeMs: 0,
    kernel: null,
    counts: {},
    findings: [],
    hits: 0,
    partial: [],
    warnings: 0,
    errors: [],
    complete: true,
    output: null,
    seconds: 0,
    ...outcome,
  };
}

/** Runs the chosen analyses once on one dump (one DumpContext: the kernel and profile are found once) and writes its NDJSON. */
export async function runDumpJob(request: DumpJobRequest): Promise<DumpResult> {
  const started = performance.now();
  const path = resolve(request.path);
  const result = emptyDumpResult(path);
  let decompressed: DecompressedDump | undefined;
  let writer: NdjsonWriter | undefined;
  try {
    const stat = statSync(path);
    result.size = stat.size;
    result.mtimeMs = stat.mtimeMs;
    const selected = resolveSelection({
      analyses: request.analyses,
      options: request.options ?? {},
      ...(request.portable ? { portable: request.portable } : {}),
    });
    if (request.sha256 !== undefined || request.verify) result.sha256 = request.sha256 ?? sha256File(path);
    const compression = compressionOf(path);
    if (compression) decompressed = await decompressToTemp(path, compression, request.tempBudget);
    mkdirSync(request.outDir, { recursive: true });
    writer = new NdjsonWriter(join(request.outDir, outputName(path)));
    const reportPath = request.report
      ? join(request.outDir, outputName(path).replace(/\.ndjson$/, '.html'))
      : undefined;
    await analyse(decompressed?.path ?? path, selected, request, result, writer, reportPath);
    writer.commit();
    result.output = writer.path;
  } catch (error) {
    writer?.discard();
    result.error = describeError(error);
    result.complete = error instanceof VmscopeError;
  } finally {
    decompressed?.remove();
    result.seconds = (performance.now() - started) / 1000;
  }
  return result;
}

async function analyse(
  dumpPath: string,
  selected: ReadonlyArray<{ analysis: Analysis; options: Record<string, unknown> }>,
  request: DumpJobRequest,
  result: DumpResult,
  writer: NdjsonWriter,
  reportPath: string | undefined,
): Promise<void> {
  // A scan runs on this thread: the batch's parallelism is across dumps.
  const context = new DumpContext(dumpPath, {
    threads: 1,
    ...(request.cacheDir === undefined ? {} : { cacheDir: request.cacheDir }),
  });
  try {
    if (selected.some(({ analysis }) => analysis.uses.includes(kernelProvider))) {
      try {
        result.kernel = { release: context.kernel.release, banner: context.kernel.banner };
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error; // each analysis needing it reports it below
      }
    }
    let failures = 0;
    for (const { analysis, options } of selected) {
      let output: AnyAnalysisResult;
      try {
        output = await analysis.run(context, options);
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        failures++;
        result.errors.push(`${analysis.name}: ${error.describe()}`);
        writer.write([{ analysis: analysis.name, error: error.describe() }]);
        continue;
      }
      result.counts[analysis.name] = output.rows.length;
      result.warnings += output.warnings.length;
      if (output.partial) result.partial.push(analysis.name);
      if (analysis.rows === 'findings')
        result.findings.push(...Array.from(output.rows, (row) => findingSchema.parse(row)));
      if (analysis.rows === 'hits') result.hits += output.rows.length;
      writer.writeRows(analysis.name, output);
      writer.write(output.warnings.map((warning) => ({ analysis: analysis.name, warning })));
    }
    if (failures === selected.length) result.error = result.errors[0]!.replace(/^[^:]+: /, '');
    if (reportPath) await writeJobReport(context, reportPath, result);
  } finally {
    context.close();
  }
}

/** The dump's report, from the context its analyses filled (providers are not computed again); a failure is one more error. */
async function writeJobReport(context: DumpContext, path: string, result: DumpResult): Promise<void> {
  try {
    writeReport(path, await buildDumpReport(context));
    result.report = path;
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    result.errors.push(`report: ${error.describe()}`);
  }
}
