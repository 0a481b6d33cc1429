import { InvalidArgumentError, type Command } from 'commander';
import { analyses } from '../analyses/registry.js';
import type { Column } from '../analyses/types.js';
import {
  ESTIMATED_JOB_BYTES,
  hasFailed,
  runBatchToEnd,
  type BatchOptions,
  type BatchProgress,
  type BatchSummary,
} from '../batch/batch.js';
import type { DumpResult } from '../batch/job.js';
import { loadPluginDirectory } from '../plugins/load.js';
import { portablePlugin } from '../plugins/portable.js';
import { addSharedAnalysisOptions, sharedOptionKeys } from './analysisOptions.js';
import { render } from './render.js';
import { VmscopeError } from '../util/errors.js';
import { parseByteSize } from './options.js';
import { progressBars } from './progress.js';

export interface BatchCliOptions {
  run: string[];
  out: string;
  jobs?: number;
  memoryBudget?: number;
  tempBudget?: number;
  tempDir?: string;
  verify?: boolean;
  report?: boolean;
  json?: boolean;
  ndjson?: boolean;
  cache: boolean;
  cacheDir?: string;
  progress: boolean;
  plugin?: string;
  /** Options added by extensions (e.g. --queue, --wait) land here too. */
  [extension: string]: unknown;
}

/** A batch as the command line asked for it, before it runs anywhere. */
export interface BatchInvocation {
  readonly dumps: readonly string[];
  readonly cli: BatchCliOptions;
  /** The options for runBatch (onProgress excepted), for an extension that runs the same batch elsewhere. */
  readonly batch: BatchOptions;
  /** Draws the same progress bar the local run draws (a no-op when not on a terminal). */
  readonly onProgress: (progress: BatchProgress) => void;
}

/**
 * The hook by which `--queue`/`--wait` plug into `vmscope batch` (src/batch/queue.ts and the
 * queue's own CLI file provide one): `addOptions` adds its flags to the command; `run` is
 * asked first and, when the options are its own, runs the batch (enqueue, and with --wait
 * follow it) and returns the summary to print and exit with, or `null` when it printed
 * what it had to (enqueue only: exit 0). `undefined` means not mine: the batch runs locally.
 */
export interface BatchCommandExtension {
  addOptions(command: Command): void;
  run(invocation: BatchInvocation): Promise<BatchSummary | null | undefined>;
}

const BATCH_HELP = `Every dump named or found under a directory (recursively: ELF cores and LiME by magic; raw
dumps by extension .raw .mem .vmem .pmem .bin .dmp .dump .img; compressed .zst/.gz/.xz dumps
whose inner name is a dump name) gets the --run analyses once, the kernel and profile found
once per dump and the profile cached by kernel banner, so dumps of one kernel derive it once.

Output in --out DIR:
  <dump name>-<hash>.ndjson  one line per row, each with its "analysis"; warnings as
                             {"analysis","warning"} and failed analyses as {"analysis","error"}
  summary.json               per dump: kernel, row counts, findings, hits, errors, seconds; totals
  <dump name>-<hash>.html    with --report: the dump's HTML report (see vmscope report --help),
                             written from the same analysis (nothing is computed twice)
  index.html                 with --report: every dump, its findings and hits, linking its report
  manifest.json              what is done: a rerun skips a dump whose size and mtime (with
                             --verify: content sha256) and analyses are unchanged, doing no work

A finding is a row of an analysis whose rows are findings: check (hidden processes and modules,
syscall and kernel hooks, dangerous eBPF, stolen credentials, injected code, fileless processes).
yarascan matches are hits, counted apart: a rule says what to look for, not that it is tampering.
A dump that cannot be read is recorded with its error and the batch goes on.

Compressed dumps are decompressed to a temporary file (--temp-dir, default the OS temp
directory), deleted after its analyses; one that would exceed its share of --temp-budget
(split evenly between the --jobs) or the free space is refused with its error.

--jobs N dumps are analysed at once on worker threads, never more than --memory-budget holds
(about ${ESTIMATED_JOB_BYTES / 2 ** 20} MiB per dump job, measured on 512 MiB guests: profile, kernel structures, rows).
Exit code 1 when any dump has a finding, failed or was read only in part; 0 otherwise; 2 on
usage errors (before anything is analysed).

Examples:
  vmscope batch /srv/dumps --run check,pslist,yarascan --rules iocs.yar --out results
  vmscope batch a.elf b.lime.zst --run check --out results --jobs 2 --memory-budget 2G
  vmscope batch /srv/dumps --run check --out results --json | jq '.dumps[] | select(.findings != [])'`;

function parseJobs(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError('expected a positive integer');
  return value;
}

function parseAnalysisList(text: string): string[] {
  const names = text
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  const known = new Set(analyses.filter((analysis) => !analysis.arguments?.length).map((analysis) => analysis.name));
  const unknown = names.filter((name) => !known.has(name));
  if (names.length === 0 || unknown.length > 0)
    throw new InvalidArgumentError(
      `unknown analysis ${unknown.join(', ') || '(none given)'}; one of ${[...known].join(', ')}`,
    );
  return names;
}

/** Dumps done, bytes/s over the dumps analysed so far, ETA for the rest: on stderr, on a terminal only. */
function createBatchProgress(enabled: boolean): { report: (progress: BatchProgress) => void; stop: () => void } {
  if (!enabled || !process.stderr.isTTY) return { report: () => {}, stop: () => {} };
  const cliProgress = progressBars();
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'dumps [{bar}] {value}/{total} {failed} failed, {skipped} skipped  {rate} MiB/s  ETA {etaText}',
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = performance.now();
  let running = false;
  return {
    report(progress) {
      const seconds = (performance.now() - started) / 1000;
      const rate = progress.analysedBytes / Math.max(seconds, 1e-3);
      const left = progress.bytesToAnalyse - progress.analysedBytes;
      const values = {
        failed: progress.failed,
        skipped: progress.skipped,
        rate: progress.analysedBytes > 0 ? (rate / 2 ** 20).toFixed(0) : '-',
        etaText: progress.analysedBytes > 0 ? `${Math.ceil(left / rate)} s` : '-',
      };
      if (!running) bar.start(progress.total, progress.done, values);
      running = true;
      bar.update(progress.done, values);
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}

const tableColumns: readonly Column[] = [
  { key: 'dump', kind: 'text', title: 'Dump' },
  { key: 'kernel', kind: 'text', title: 'Kernel' },
  { key: 'rows', kind: 'text', title: 'Rows' },
  { key: 'findings', kind: 'int', title: 'Findings' },
  { key: 'hits', kind: 'int', title: 'Hits' },
  { key: 'seconds', kind: 'text', title: 'Seconds' },
  { key: 'status', kind: 'text', title: 'Status' },
];

function status(dump: DumpResult): string {
  const state =
    dump.error ??
    (dump.errors.length > 0
      ? dump.errors.join('; ')
      : dump.partial.length > 0
        ? `partial: ${dump.partial.join(', ')}`
        : 'ok');
  return dump.skipped ? `${state} (done before)` : state;
}

/** The final table: one line per dump, then the totals. */
export function renderBatchSummary(summary: BatchSummary): string {
  const rows = summary.dumps.map((dump) => ({
    dump: dump.path,
    kernel: dump.kernel?.release ?? '-',
    rows:
      Object.entries(dump.counts)
        .map(([analysis, count]) => `${analysis}=${count}`)
        .join(' ') || '-',
    findings: dump.findings.length,
    hits: dump.hits,
    seconds: dump.seconds.toFixed(1),
    status: status(dump),
  }));
  const table = render({ columns: tableColumns, rows, single: false, partial: false, warnings: [] }, 'table');
  const { totals } = summary;
  return `${table}\n${totals.dumps} dumps: ${totals.analysed} analysed, ${totals.skipped} skipped (done before), ${totals.failed} failed; ${totals.findings} findings in ${totals.withFindings} dumps, ${totals.hits} hits; ${summary.seconds.toFixed(1)} s, peak RSS ${Math.round(summary.peakRssBytes / 2 ** 20)} MiB\n`;
}

/** 1 when any dump has a finding, failed or was read in part (a finding may be missing), else 0. */
export function batchExitCode(summary: BatchSummary): number {
  return summary.dumps.some((dump) => dump.findings.length > 0 || hasFailed(dump) || dump.partial.length > 0) ? 1 : 0;
}

function printSummary(summary: BatchSummary, options: BatchCliOptions): void {
  if (options.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  else if (!options.ndjson) process.stdout.write(renderBatchSummary(summary));
}

function batchOptions(dumps: readonly string[], options: BatchCliOptions): BatchOptions {
  const portable = options.plugin === undefined ? [] : loadPluginDirectory(options.plugin).map(portablePlugin);
  return {
    dumps,
    analyses: [...options.run, ...portable.map((plugin) => plugin.name)],
    ...(portable.length > 0 ? { portable } : {}),
    outDir: options.out,
    cacheDir: options.cache ? options.cacheDir : false,
    options: Object.fromEntries(
      sharedOptionKeys(analyses)
        .filter((key) => options[key] !== undefined)
        .map((key) => [key, options[key]]),
    ),
    ...(options.jobs !== undefined ? { jobs: options.jobs } : {}),
    ...(options.memoryBudget !== undefined ? { memoryBudgetBytes: options.memoryBudget } : {}),
    ...(options.verify ? { verify: true } : {}),
    ...(options.report ? { report: true } : {}),
    tempBudget: {
      ...(options.tempDir !== undefined ? { directory: options.tempDir } : {}),
      ...(options.tempBudget !== undefined ? { bytes: options.tempBudget } : {}),
    },
  };
}

/** Adds `vmscope batch DUMP_OR_DIR... --run LIST --out DIR` to the program; extensions add their options and may run it elsewhere. */
export function registerBatchCommand(
  program: Command,
  helpers: { readonly setExitCode: (code: number) => void },
  extensions: readonly BatchCommandExtension[] = [],
): void {
  const command = program
    .command('batch')
    .description('run analyses over many dumps (files or directories): NDJSON per dump, summary.json, resumable')
    .argument('<dump_or_dir...>', 'memory dump files and directories holding them')
    .requiredOption(
      '--run <analyses>',
      'comma-separated analyses to run on every dump, e.g. check,pslist,yarascan',
      parseAnalysisList,
    )
    .requiredOption('--out <dir>', 'directory for the per-dump NDJSON, summary.json and manifest.json')
    .option(
      '--jobs <n>',
      'dumps analysed at once (default: the available parallelism, within the memory budget)',
      parseJobs,
    )
    .option(
      '--memory-budget <size>',
      'memory the concurrent jobs may take together, e.g. 2G (default: half the machine)',
      parseByteSize,
    )
    .option('--verify', 'recognize completed dumps by content sha256 rather than size and mtime')
    .option('--report', 'also write an HTML report per dump (<name>-<hash>.html) and index.html linking them')
    .option(
      '--temp-budget <size>',
      'most temporary disk for decompressing compressed dumps, e.g. 4G (default: the free space)',
      parseByteSize,
    )
    .option('--temp-dir <dir>', 'where compressed dumps are decompressed (default: the OS temp directory)')
    .option('--json', 'print summary.json instead of the table')
    .option('--ndjson', "print each dump's result as one JSON line as it completes, no table")
    .option('--no-cache', 'derive every profile again instead of using the on-disk cache')
    .option(
      '--cache-dir <dir>',
      'where derived profiles are cached (default $VMSCOPE_CACHE_DIR or ~/.cache/vmscope/profiles)',
    )
    .option('--no-progress', 'never draw a progress bar (it is drawn only when stderr is a terminal)')
    .option('--plugin <dir>', "also run the directory's WASI plugins on every dump (their bytes travel with each job)")
    .addHelpText('after', `\n${BATCH_HELP}\n`);
  addSharedAnalysisOptions(command, analyses);
  for (const extension of extensions) extension.addOptions(command);

  command.action(async (dumps: string[], options: BatchCliOptions) => {
    // Queue workers write only NDJSON: reports are written by local jobs, beside the analyses they show.
    if (options.report && options.queue !== undefined)
      throw new VmscopeError('USAGE', '--report runs with local jobs only, not with --queue');
    const progress = createBatchProgress(options.progress);
    try {
      const invocation: BatchInvocation = {
        dumps,
        cli: options,
        batch: batchOptions(dumps, options),
        onProgress: progress.report,
      };
      let summary: BatchSummary | null | undefined;
      for (const extension of extensions) {
        summary = await extension.run(invocation);
        if (summary !== undefined) break;
      }
      if (summary === undefined) {
        summary = await runBatchToEnd({ ...invocation.batch, onProgress: progress.report }, (result) => {
          if (options.ndjson) process.stdout.write(JSON.stringify(result) + '\n');
        });
      }
      progress.stop();
      if (summary === null) {
        helpers.setExitCode(0);
        return;
      }
      printSummary(summary, options);
      helpers.setExitCode(batchExitCode(summary));
    } finally {
      progress.stop();
    }
  });
}
