import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { sha256File } from '../image/decompress.js';
import { writeReportIndex } from '../report/reports.js';
import { VmscopeError } from '../util/errors.js';
import { expandDumpPaths, type TempBudget } from './inputs.js';
import { inProcessRunner, ThreadJobRunner, type DumpJobRunner } from './jobPool.js';
import { dumpResultSchema, type DumpJobRequest, type DumpResult } from './job.js';
import { relevantOptions, resolveSelection, selectionKey, type AnalysisSelection } from './analysisSelection.js';
import type { PortableAnalysis } from './portableAnalyses.js';
import { writeFileAtomically } from '../util/files.js';

/**
 * Peak memory one dump job adds, for the memory budget. Measured by bench/batch.ts on the
 * 512 MiB fixtures with check,pslist,yarascan: 286-289 MiB per job above the batch process's
 * own ~86 MiB, whether on this thread or on a worker thread (kernel structures, the profile's
 * symbols and BTF types, page-table caches, the scan kernel's 4 MiB window, rows), plus about
 * 10% headroom. The dump is read through the page cache, not held, so this does not grow with
 * the dump's size; it grows with the rows kept (kallsyms, psscan on big guests).
 */
export const ESTIMATED_JOB_BYTES = 320 * 2 ** 20;

export interface BatchProgress {
  readonly done: number;
  readonly total: number;
  /** Dumps found already done in the manifest: no work was spent on them. */
  readonly skipped: number;
  readonly failed: number;
  /** Bytes of the dumps analysed in this run, and of all those this run has to analyse (for a rate and an ETA). */
  readonly analysedBytes: number;
  readonly bytesToAnalyse: number;
  /** The dump just done; undefined in the first report, sent before any job starts. */
  readonly latest: DumpResult | undefined;
}

/** Progress after `results` of `total` dumps, counted the same way by local and queued batches. */
export function batchProgress(
  results: readonly DumpResult[],
  total: number,
  bytes: { analysedBytes: number; bytesToAnalyse: number },
  latest: DumpResult | undefined,
): BatchProgress {
  return {
    done: results.length,
    total,
    skipped: results.filter((result) => result.skipped).length,
    failed: results.filter(hasFailed).length,
    ...bytes,
    latest,
  };
}

export interface BatchOptions {
  /** Dump files and directories (searched recursively for dumps; see looksLikeDump). */
  readonly dumps: readonly string[];
  readonly analyses: readonly string[];
  /** Options for the analyses by key (`rules`, ...): each analysis takes those it declares. */
  readonly options?: Readonly<Record<string, unknown>>;
  /** Analyses carried with every job as data (WASI plugins): `analyses` names them. */
  readonly portable?: readonly PortableAnalysis[];
  readonly outDir: string;
  /** Dumps analysed at once (default: the available parallelism), lowered to what the memory budget allows. */
  readonly jobs?: number;
  /** Memory the concurrent jobs may use together (default: half the machine's memory). */
  readonly memoryBudgetBytes?: number;
  /** Recognize completed dumps by content sha256 instead of size and mtime. */
  readonly verify?: boolean;
  readonly cacheDir?: string | false;
  /** Temporary space for decompressed inputs, shared evenly by the concurrent jobs. */
  readonly tempBudget?: TempBudget;
  readonly onProgress?: (progress: BatchProgress) => void;
  /** The bundled worker (default dist/batchWorker.js beside the running bundle; tests pass it). */
  readonly workerScript?: string | URL;
  /** Also write an HTML report per dump and `index.html` linking them. */
  readonly report?: boolean;
  /** Runs the jobs instead of the default (this thread for one job at a time, else worker threads); its concurrency is used as is. */
  readonly runner?: DumpJobRunner;
}

export interface BatchTotals {
  dumps: number;
  /** Dumps whose analyses ran in this run. */
  analysed: number;
  /** Dumps skipped as already done (manifest): 0 analysis work each. */
  skipped: number;
  failed: number;
  withFindings: number;
  findings: number;
  hits: number;
  bytes: number;
}

export interface BatchSummary {
  format: 'vmscope-batch-summary/1';
  analyses: string[];
  /** The options the analyses took (file paths absolute). */
  options: Record<string, unknown>;
  jobs: number;
  memoryBudgetBytes: number;
  estimatedJobBytes: number;
  startedAt: string;
  seconds: number;
  /** This process's peak resident set (worker threads included), from getrusage. */
  peakRssBytes: number;
  totals: BatchTotals;
  /** Per dump, sorted by path. */
  dumps: DumpResult[];
}

/** How many jobs may run at once: the request, lowered to what the budget holds; a budget smaller than one job is refused. */
export function concurrencyFor(jobs: number | undefined, memoryBudgetBytes: number): number {
  const requested = jobs ?? availableParallelism();
  if (!Number.isInteger(requested) || requested < 1)
    throw new VmscopeError('USAGE', `--jobs must be a positive integer, not ${requested}`);
  const affordable = Math.floor(memoryBudgetBytes / ESTIMATED_JOB_BYTES);
  if (affordable < 1) {
    throw new VmscopeError(
      'USAGE',
      `a memory budget of ${mebibytes(memoryBudgetBytes)} cannot hold one dump job (about ${mebibytes(ESTIMATED_JOB_BYTES)} each)`,
    );
  }
  return Math.min(requested, affordable);
}

const mebibytes = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MiB`;

// ---- manifest: what is done, so a rerun skips it --------------------------------------------

const MANIFEST_FORMAT = 'vmscope-batch-manifest/1';
const manifestEntrySchema = z.object({
  /** Which analyses (and rule file content) produced the result: other settings mean other work. */
  settings: z.string(),
  size: z.number(),
  mtimeMs: z.number(),
  sha256: z.string().optional(),
  result: dumpResultSchema,
});
const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  entries: z.record(z.string(), manifestEntrySchema),
});
type ManifestEntry = z.infer<typeof manifestEntrySchema>;

/** `manifest.json` in the output directory, keyed by absolute dump path, rewritten atomically after every dump. */
class Manifest {
  private readonly path: string;
  private readonly entries: Record<string, ManifestEntry>;

  constructor(outDir: string) {
    this.path = join(outDir, 'manifest.json');
    this.entries = Manifest.read(this.path);
  }

  private static read(path: string): Record<string, ManifestEntry> {
    if (!existsSync(path)) return {};
    const parsed = manifestSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    return parsed.success ? parsed.data.entries : {}; // another version's manifest: start over
  }

  /** The stored result when this dump, unchanged, was completed with these settings and its output is still there. */
  completed(
    path: string,
    settings: string,
    identity: { size: number; mtimeMs: number; sha256?: string },
  ): DumpResult | undefined {
    const entry = this.entries[path];
    if (!entry || entry.settings !== settings || !entry.result.complete) return undefined;
    const unchanged =
      identity.sha256 !== undefined
        ? entry.sha256 === identity.sha256
        : entry.size === identity.size && entry.mtimeMs === identity.mtimeMs;
    if (!unchanged || (entry.result.output !== null && !existsSync(entry.result.output))) return undefined;
    return entry.result;
  }

  record(settings: string, result: DumpResult): void {
    if (!result.complete) return;
    this.entries[result.path] = {
      settings,
      size: result.size,
      mtimeMs: result.mtimeMs,
      ...(result.sha256 ? { sha256: result.sha256 } : {}),
      result,
    };
    writeJsonAtomically(this.path, { format: MANIFEST_FORMAT, entries: this.entries });
  }
}

function writeJsonAtomically(path: string, value: unknown): void {
  writeFileAtomically(path, JSON.stringify(value, null, 2) + '\n');
}

/** `<outDir>/summary.json`, replaced atomically: a reader never sees half of it. */
export function writeBatchSummary(outDir: string, summary: BatchSummary): void {
  writeJsonAtomically(join(outDir, 'summary.json'), summary);
}

/**
 * Records results obtained elsewhere (a queued batch's workers) in the output directory's
 * manifest, so a later local batch over the same dumps skips them as it skips its own.
 */
export function recordInManifest(outDir: string, selection: AnalysisSelection, results: readonly DumpResult[]): void {
  const manifest = new Manifest(outDir);
  const settings = selectionKey(selection);
  for (const result of results) manifest.record(settings, result);
}

/** A dump counts as failed when it could not be analysed at all or any analysis of it failed. */
export const hasFailed = (result: DumpResult) => result.error !== undefined || result.errors.length > 0;

export function summarize(
  results: readonly DumpResult[],
  header: Omit<BatchSummary, 'format' | 'totals' | 'dumps' | 'peakRssBytes'>,
): BatchSummary {
  const dumps = [...results].sort((a, b) => a.path.localeCompare(b.path));
  const totals: BatchTotals = {
    dumps: dumps.length,
    analysed: 0,
    skipped: 0,
    failed: 0,
    withFindings: 0,
    findings: 0,
    hits: 0,
    bytes: 0,
  };
  for (const dump of dumps) {
    if (dump.skipped) totals.skipped++;
    else totals.analysed++;
    if (hasFailed(dump)) totals.failed++;
    if (dump.findings.length > 0) totals.withFindings++;
    totals.findings += dump.findings.length;
    totals.hits += dump.hits;
    totals.bytes += dump.size;
  }
  return {
    format: 'vmscope-batch-summary/1',
    ...header,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    totals,
    dumps,
  };
}

/**
 * The batch: every dump found is analysed once (or skipped when the manifest says it is done),
 * `jobs` at a time, each result yielded as it completes; the generator's return value is the
 * summary, also written to `<outDir>/summary.json`. Usage errors (unknown analysis, missing
 * input, a budget too small) throw before any work; a dump that fails is a result with `error`.
 */
export async function* runBatch(options: BatchOptions): AsyncGenerator<DumpResult, BatchSummary, undefined> {
  const startedAt = new Date();
  const started = performance.now();
  const selection: AnalysisSelection = {
    analyses: options.analyses,
    options: options.options ?? {},
    ...(options.portable ? { portable: options.portable } : {}),
  };
  const analyses = resolveSelection(selection).map(({ analysis }) => analysis.name);
  const analysisOptions = relevantOptions(selection);
  const memoryBudgetBytes = options.memoryBudgetBytes ?? totalmem() / 2;
  const jobs = concurrencyFor(options.jobs, memoryBudgetBytes);
  const outDir = resolve(options.outDir);
  makeOutputFolder(outDir);
  const paths = expandDumpPaths(options.dumps, outDir);
  const settings = selectionKey(selection);
  const manifest = new Manifest(outDir);

  const alreadyDone: DumpResult[] = [];
  const toAnalyse: Array<{ path: string; sha256?: string; size: number }> = [];
  for (const path of paths) {
    const { size, mtimeMs } = statSync(path);
    const sha256 = options.verify ? sha256File(path) : undefined;
    const done = manifest.completed(path, settings, { size, mtimeMs, ...(sha256 ? { sha256 } : {}) });
    if (done) alreadyDone.push({ ...done, skipped: true });
    else toAnalyse.push({ path, size, ...(sha256 ? { sha256 } : {}) });
  }

  const results: DumpResult[] = [];
  const bytesToAnalyse = toAnalyse.reduce((sum, dump) => sum + dump.size, 0);
  let analysedBytes = 0;
  const report = (latest: DumpResult | undefined) =>
    options.onProgress?.(batchProgress(results, paths.length, { analysedBytes, bytesToAnalyse }, latest));
  report(undefined);
  for (const skipped of alreadyDone) {
    results.push(skipped);
    report(skipped);
    yield skipped;
  }

  // No more threads than dumps to analyse; one job at a time runs on this thread unless a worker script is asked for.
  const threads = Math.min(jobs, Math.max(1, toAnalyse.length));
  const runner: DumpJobRunner =
    options.runner ??
    (threads === 1 && options.workerScript === undefined
      ? inProcessRunner()
      : new ThreadJobRunner(threads, options.workerScript));
  const tempBudget: TempBudget = {
    ...options.tempBudget,
    ...(options.tempBudget?.bytes !== undefined
      ? { bytes: Math.floor(options.tempBudget.bytes / runner.concurrency) }
      : {}),
  };
  const request = (dump: { path: string; sha256?: string }): DumpJobRequest => ({
    path: dump.path,
    analyses,
    outDir,
    tempBudget,
    options: analysisOptions,
    ...(options.portable ? { portable: options.portable } : {}),
    ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
    ...(options.verify ? { verify: true } : {}),
    ...(dump.sha256 ? { sha256: dump.sha256 } : {}),
    ...(options.report ? { report: true } : {}),
  });
  try {
    // At most `jobs` in flight; each finished job is yielded and its slot given to the next dump.
    const inFlight = new Map<number, Promise<{ id: number; result: DumpResult; size: number }>>();
    let next = 0;
    const launch = () => {
      const dump = toAnalyse[next]!;
      const id = next++;
      inFlight.set(
        id,
        runner.run(request(dump)).then((result) => ({ id, result, size: dump.size })),
      );
    };
    while (next < toAnalyse.length && inFlight.size < runner.concurrency) launch();
    while (inFlight.size > 0) {
      const { id, result, size } = await Promise.race(inFlight.values());
      inFlight.delete(id);
      if (next < toAnalyse.length) launch();
      analysedBytes += size;
      results.push(result);
      manifest.record(settings, result);
      report(result);
      yield result;
    }
  } finally {
    await runner.close();
  }

  const summary = summarize(results, {
    analyses,
    options: analysisOptions,
    jobs: runner.concurrency,
    memoryBudgetBytes,
    estimatedJobBytes: ESTIMATED_JOB_BYTES,
    startedAt: startedAt.toISOString(),
    seconds: (performance.now() - started) / 1000,
  });
  writeBatchSummary(outDir, summary);
  if (options.report)
    writeReportIndex(
      join(outDir, 'index.html'),
      summary.dumps.map((dump) => ({
        path: dump.path,
        kernel: dump.kernel?.release ?? null,
        findings: dump.findings.length,
        hits: dump.hits,
        report: dump.report ?? null,
        error: dump.error ?? null,
      })),
    );
  return summary;
}

/** Runs the batch to its end and returns the summary (for callers that only want the totals). */
export async function runBatchToEnd(
  options: BatchOptions,
  onResult?: (result: DumpResult) => void,
): Promise<BatchSummary> {
  const batch = runBatch(options);
  for (;;) {
    const step = await batch.next();
    if (step.done) return step.value;
    onResult?.(step.value);
  }
}

/** The output folder, made when missing; a file (or anything else) in its place is a usage error before any work. */
export function makeOutputFolder(outDir: string): void {
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (error) {
    throw new VmscopeError(
      'USAGE',
      `--out must be a folder: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      outDir,
    );
  }
  if (!statSync(outDir).isDirectory()) throw new VmscopeError('USAGE', '--out must be a folder, not a file', outDir);
}
