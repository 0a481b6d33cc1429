import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Job } from 'bullmq';
import { VmscopeError } from '../../util/errors.js';
import { inProcessRunner, ThreadJobRunner, type DumpJobRunner } from '../jobPool.js';
import type { DumpJobData, QueuedDumpResult } from './jobs.js';
import { parseQueueUrl, readyOrThrow } from './location.js';
import { bullmq } from './bullmq.js';

/**
 * How long a worker holds a job without renewing its lock before other workers consider it
 * dead. The lock is renewed every lockDuration/2 from the event loop, so an analysis may block
 * the loop for up to half of it without losing its job; a dead worker's job is taken over
 * between lockDuration and lockDuration + stalledInterval after it died. BullMQ's defaults
 * (30 s, checked every 30 s) suit production; tests pass shorter ones.
 */
export interface StalledJobPolicy {
  readonly lockDurationMs: number;
  readonly stalledIntervalMs: number;
  /** Times a job may be taken over before it fails for good (a dump that kills every worker). */
  readonly maxStalledCount: number;
}
export const DEFAULT_STALLED_JOB_POLICY: StalledJobPolicy = {
  lockDurationMs: 30_000,
  stalledIntervalMs: 15_000,
  maxStalledCount: 2,
};

/** Beside the NDJSON in a shared --out: one folder per running job (see processDump). */
const JOB_FOLDER = '.vmscope-jobs';

export interface WorkerOptions {
  readonly concurrency?: number;
  /** Shared storage: NDJSON goes here. Without it, into a private temporary folder and into Redis. */
  readonly outDir?: string;
  /** Profile cache (runDumpJob's default when absent; false: none). */
  readonly cacheDir?: string | false;
  /** Aborting it closes the worker gracefully: running jobs finish, no new one is taken. */
  readonly signal?: AbortSignal;
  readonly stalledJobs?: StalledJobPolicy;
  /** Shown in logs and stored as each job's processedBy. */
  readonly name?: string;
  readonly log?: (line: string) => void;
  /** Runs the dump jobs; default: worker threads (see defaultRunner). */
  readonly runner?: DumpJobRunner;
}

/** Runs jobs until the signal aborts; resolves once the worker has closed. */
export async function runWorker(url: string, options: WorkerOptions = {}): Promise<void> {
  const location = parseQueueUrl(url);
  const name = options.name ?? `vmscope-worker@${hostname()}:${process.pid}`;
  const log = options.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const concurrency = options.concurrency ?? 1;
  const runner = options.runner ?? defaultRunner(concurrency);
  const stalled = options.stalledJobs ?? DEFAULT_STALLED_JOB_POLICY;
  if (options.outDir) mkdirSync(options.outDir, { recursive: true });

  const processDump = async (job: Job<DumpJobData, QueuedDumpResult>): Promise<QueuedDumpResult> => {
    const data = job.data;
    const jobId = job.id!;
    log(`job ${jobId} started ${data.path} (attempt ${job.attemptsMade + 1}) on ${name}`);
    assertSameDump(data);
    const scratch = mkdtempSync(join(tmpdir(), 'vmscope-job-'));
    // With shared storage the job writes in a folder of its own beside --out (same filesystem,
    // so the finished file is renamed in atomically). A worker killed mid-job leaves its
    // half-written file there; whoever takes the job over clears the folder first, so --out
    // never holds a partial or second copy of a dump's rows.
    const jobDir = options.outDir ? join(options.outDir, JOB_FOLDER, jobId) : join(scratch, 'out');
    try {
      rmSync(jobDir, { recursive: true, force: true });
      mkdirSync(jobDir, { recursive: true });
      // File options point at this worker's copies of the files that came with the job.
      const jobOptions: Record<string, unknown> = { ...data.options };
      for (const [key, file] of Object.entries(data.files)) {
        jobOptions[key] = join(scratch, `${key}-${basename(file.name)}`);
        writeFileSync(jobOptions[key] as string, file.text);
      }
      const result = await runner.run({
        path: data.path,
        analyses: [...data.analyses],
        outDir: jobDir,
        options: jobOptions,
        ...(data.portable ? { portable: data.portable } : {}),
        ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      });
      // Incomplete means the job was cut short (its thread crashed, a bug), not that the dump is
      // bad: throwing hands it back to BullMQ, which retries it up to the job's attempts.
      if (!result.complete)
        throw new VmscopeError(
          'INPUT_CHANGED',
          `the dump job did not complete: ${result.error ?? 'no reason given'}`,
          data.path,
        );
      log(
        `job ${jobId} done ${data.path} in ${result.seconds.toFixed(1)} s${result.error ? ` (${result.error})` : ''}`,
      );
      if (result.output === null) return { result, worker: name };
      const fileName = basename(result.output);
      if (!options.outDir)
        return {
          result: { ...result, output: fileName },
          worker: name,
          files: { [fileName]: readFileSync(result.output, 'utf8') },
        };
      const shared = join(options.outDir, fileName);
      renameSync(result.output, shared);
      return { result: { ...result, output: shared }, worker: name };
    } finally {
      rmSync(scratch, { recursive: true, force: true });
      if (options.outDir) {
        rmSync(jobDir, { recursive: true, force: true });
        removeIfEmpty(join(options.outDir, JOB_FOLDER)); // other jobs may still be using it
      }
    }
  };

  const { Worker } = bullmq();
  const worker = new Worker<DumpJobData, QueuedDumpResult>(location.queueName, processDump, {
    connection: location.connection,
    name,
    concurrency,
    autorun: false,
    lockDuration: stalled.lockDurationMs,
    stalledInterval: stalled.stalledIntervalMs,
    maxStalledCount: stalled.maxStalledCount,
  });
  worker.on('failed', (job, error) => log(`job ${job?.id ?? '?'} failed ${job?.data.path ?? ''}: ${error.message}`));
  // Errors of the connection (Redis restarting) are retried by BullMQ; log them, do not crash.
  worker.on('error', (error) => log(`worker error: ${error.message}`));

  try {
    await readyOrThrow(worker, location);
    const closing = new Promise<void>((resolveClosing) => {
      if (options.signal?.aborted) resolveClosing();
      options.signal?.addEventListener('abort', () => resolveClosing(), { once: true });
    });
    log(`worker ${name} ready on ${location.display} (concurrency ${concurrency})`);
    const running = worker.run();
    await closing;
    log(`worker ${name} closing: finishing running jobs`);
    await worker.close();
    await running;
  } finally {
    await worker.close(); // returns at once when closed above; after a failed start, closes it
    await runner.close();
  }
  log(`worker ${name} closed`);
}

/**
 * Dump jobs run on worker threads (dist/batchWorker.js beside the bundle), so an analysis that
 * blocks for seconds never delays this thread's lock renewals: a busy worker is not mistaken
 * for a dead one. From sources (no bundle) they run on this thread.
 */
function defaultRunner(concurrency: number): DumpJobRunner {
  const script = new URL('./batchWorker.js', import.meta.url);
  return existsSync(fileURLToPath(script)) ? new ThreadJobRunner(concurrency, script) : inProcessRunner();
}

/**
 * A worker on another machine might see another file at the same path (or none). Throwing
 * makes BullMQ retry the job — possibly on a worker that does see it — rather than store an
 * analysis of the wrong bytes.
 */
function assertSameDump(data: DumpJobData): void {
  const stats = statSync(data.path, { throwIfNoEntry: false });
  if (!stats)
    throw new VmscopeError(
      'INPUT_CHANGED',
      'not found on this worker (dumps must be on storage every worker shares)',
      data.path,
    );
  if (stats.size !== data.size || stats.mtimeMs !== data.mtimeMs) {
    throw new VmscopeError(
      'INPUT_CHANGED',
      `not the file that was enqueued (size ${stats.size}, mtime ${new Date(stats.mtimeMs).toISOString()}; enqueued: size ${data.size}, mtime ${new Date(data.mtimeMs).toISOString()})`,
    );
  }
}

function removeIfEmpty(directory: string): void {
  try {
    rmdirSync(directory);
  } catch {
    // Not empty (another job of a worker sharing --out is running) or already gone: either is fine.
  }
}
