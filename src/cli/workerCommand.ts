import { resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  batchProgress,
  ESTIMATED_JOB_BYTES,
  makeOutputFolder,
  recordInManifest,
  summarize,
  writeBatchSummary,
  type BatchSummary,
} from '../batch/batch.js';
import { expandDumpPaths } from '../batch/inputs.js';
import type { DumpResult } from '../batch/job.js';
import { relevantOptions, resolveSelection, type AnalysisSelection } from '../batch/analysisSelection.js';
import { DEFAULT_STALLED_JOB_POLICY, dumpResultOfJob, enqueueBatch, runWorker, waitForBatch } from '../batch/queue.js';
import { VmscopeError } from '../util/errors.js';
import type { BatchCommandExtension, BatchInvocation } from './batchCommand.js';

interface WorkerCliOptions {
  queue: string;
  concurrency: number;
  out?: string;
  cache: boolean;
  cacheDir?: string;
  name?: string;
  lockDuration: number;
  stalledInterval: number;
}

const WORKER_HELP = `Takes dump jobs from a BullMQ queue in Redis (put there by \`vmscope batch --queue URL\`), runs
the batch's analyses on each and stores the result as the job's return value in Redis. Run
any number of workers, on any machines that see the dumps at the paths they were enqueued with.

  --out DIR   shared storage (the batch's --out, mounted here too): the NDJSON of each dump is
              written there. Without it, the NDJSON travels back through Redis and
              \`batch --wait\` writes it into its own --out.

A job that throws (its dump missing or changed on this machine, an internal error) is retried
with backoff, 3 attempts in all; a dump that cannot be analysed is not an error of the job: its
result records why. A worker that dies (killed, machine lost) stops renewing the lock on its
job: after --lock-duration another worker's stalled check (every --stalled-interval) puts the
job back in the queue and it is run again; a job whose worker dies a third time fails for good.
The lock is renewed every --lock-duration/2 from the event loop, so keep it well above the
longest stretch an analysis blocks (seconds).

Each job is logged on stdout, one line when it starts and one when it ends.
Ctrl-C (SIGINT) or SIGTERM: running jobs are finished, no new one is taken, exit 0.
A second Ctrl-C exits at once (130); the job is then taken over as if the worker had died.

Examples:
  vmscope worker --queue redis://10.0.0.5:6379/vmscope --out /srv/vmscope/results
  vmscope worker --queue redis://:secret@redis.lan:6379/nightly?db=2 --concurrency 2`;

function positiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError('expected a positive integer');
  return value;
}

function positiveSeconds(text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new InvalidArgumentError('expected a positive number of seconds');
  return value;
}

/** Adds `worker --queue redis://HOST:PORT/NAME [--concurrency N] [--out DIR]` to the program. */
export function registerWorkerCommand(program: Command, setExitCode: (code: number) => void): void {
  program
    .command('worker')
    .description('take batch jobs from a Redis queue (BullMQ) and run them: scale-out of `vmscope batch --queue`')
    .requiredOption('--queue <url>', 'the queue: redis://[user:password@]HOST:PORT/NAME[?db=N]')
    .option('--concurrency <n>', 'dumps this worker runs at once', positiveInteger, 1)
    .option('--out <dir>', 'shared storage for the NDJSON results (default: return them through Redis)')
    .option('--no-cache', 'derive each profile again instead of using the on-disk cache')
    .option(
      '--cache-dir <dir>',
      'where derived profiles are cached (default $VMSCOPE_CACHE_DIR or ~/.cache/vmscope/profiles)',
    )
    .option(
      '--name <name>',
      "this worker's name in logs and in each job's processedBy (default vmscope-worker@HOST:PID)",
    )
    .option(
      '--lock-duration <seconds>',
      'how long a silent worker keeps its job before another takes it over',
      positiveSeconds,
      DEFAULT_STALLED_JOB_POLICY.lockDurationMs / 1000,
    )
    .option(
      '--stalled-interval <seconds>',
      'how often this worker looks for jobs whose worker died',
      positiveSeconds,
      DEFAULT_STALLED_JOB_POLICY.stalledIntervalMs / 1000,
    )
    .addHelpText('after', `\n${WORKER_HELP}\n`)
    .action(async (options: WorkerCliOptions) => {
      const stop = new AbortController();
      let signals = 0;
      const onSignal = () => {
        // The first signal lets running jobs finish; a second one means "now".
        if (++signals > 1) process.exit(130);
        process.stderr.write('vmscope worker: finishing running jobs (Ctrl-C again to exit at once)\n');
        stop.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        await runWorker(options.queue, {
          concurrency: options.concurrency,
          ...(options.out ? { outDir: options.out } : {}),
          ...(options.cache ? (options.cacheDir ? { cacheDir: options.cacheDir } : {}) : { cacheDir: false }),
          ...(options.name ? { name: options.name } : {}),
          signal: stop.signal,
          stalledJobs: {
            ...DEFAULT_STALLED_JOB_POLICY,
            lockDurationMs: Math.round(options.lockDuration * 1000),
            stalledIntervalMs: Math.round(options.stalledInterval * 1000),
          },
        });
        setExitCode(0);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}

/**
 * `vmscope batch ... --queue URL [--wait]`, plugged into the batch command through its
 * extension hook: the dumps are enqueued (one BullMQ job each) instead of analysed here; with
 * --wait the batch follows the jobs to their end, writes the NDJSON that came back through
 * Redis into --out, and writes the same summary.json a local run does.
 */
export const queueBatchExtension: BatchCommandExtension = {
  addOptions(command) {
    command
      .option(
        '--queue <url>',
        'enqueue one job per dump on this BullMQ queue (redis://HOST:PORT/NAME) for `vmscope worker`s, instead of analysing here',
      )
      .addOption(
        new Option(
          '--wait',
          'with --queue: follow the jobs to their end, then write summary.json and print the summary as a local run does',
        ),
      );
    command.addHelpText(
      'after',
      `
Scale-out (--queue): every dump becomes a job (its id derived from path, size, mtime and the
analyses, so enqueueing the same batch again adds nothing and finished results are reused);
\`vmscope worker --queue URL\` processes take them, on any machines that see the dumps at the
same paths. Without --wait the command exits once the jobs are enqueued.
  vmscope batch /srv/dumps --run check,pslist --out results --queue redis://10.0.0.5:6379/vmscope --wait`,
    );
  },

  async run(invocation) {
    const queueUrl = invocation.cli.queue;
    if (typeof queueUrl !== 'string') {
      if (invocation.cli.wait) throw new VmscopeError('USAGE', '--wait needs --queue');
      return undefined;
    }
    return invocation.cli.wait ? enqueueAndWait(queueUrl, invocation) : enqueueOnly(queueUrl, invocation);
  },
};

async function enqueue(queueUrl: string, { batch }: BatchInvocation) {
  const selection: AnalysisSelection = {
    analyses: batch.analyses,
    options: batch.options ?? {},
    ...(batch.portable ? { portable: batch.portable } : {}),
  };
  const analyses = resolveSelection(selection).map(({ analysis }) => analysis.name);
  const outDir = resolve(batch.outDir);
  const paths = expandDumpPaths(batch.dumps, outDir);
  const enqueued = await enqueueBatch(queueUrl, paths, selection);
  return { analyses, selection, outDir, enqueued };
}

async function enqueueOnly(queueUrl: string, invocation: BatchInvocation): Promise<null> {
  const { enqueued } = await enqueue(queueUrl, invocation);
  const added = enqueued.filter((job) => job.added).length;
  process.stdout.write(
    `queued ${enqueued.length} dumps on ${queueUrl.replace(/\/\/[^@/]*@/, '//')}: ${added} new, ${enqueued.length - added} already there\n`,
  );
  return null;
}

async function enqueueAndWait(queueUrl: string, invocation: BatchInvocation): Promise<BatchSummary> {
  const startedAt = new Date();
  const started = performance.now();
  const { analyses, selection, outDir, enqueued } = await enqueue(queueUrl, invocation);
  makeOutputFolder(outDir);
  const results: DumpResult[] = [];
  const workers = new Set<string>();
  const pathOfJob = new Map(enqueued.map((job) => [job.jobId, job.path]));
  const bytesToAnalyse = enqueued.reduce((sum, job) => sum + job.size, 0);
  let analysedBytes = 0;

  await waitForBatch(
    queueUrl,
    enqueued.map((job) => job.jobId),
    (progress, finishedNow) => {
      for (const finished of finishedNow) {
        const result = dumpResultOfJob(finished, outDir, pathOfJob.get(finished.jobId));
        if (finished.processedBy) workers.add(finished.processedBy);
        analysedBytes += result.size;
        results.push(result);
        if (invocation.cli.ndjson) process.stdout.write(JSON.stringify(result) + '\n');
        invocation.onProgress(batchProgress(results, progress.total, { analysedBytes, bytesToAnalyse }, result));
      }
    },
  );

  const summary = summarize(results, {
    analyses,
    options: relevantOptions(selection),
    // The local fields: here, how many workers ran the jobs; their memory is theirs to budget.
    jobs: workers.size,
    memoryBudgetBytes: 0,
    estimatedJobBytes: ESTIMATED_JOB_BYTES,
    startedAt: startedAt.toISOString(),
    seconds: (performance.now() - started) / 1000,
  });
  writeBatchSummary(outDir, summary);
  recordInManifest(outDir, selection, results);
  return summary;
}
