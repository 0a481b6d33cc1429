import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, QueueEvents, Worker, type ConnectionOptions, type Job, type JobsOptions } from 'bullmq';
import { VmscopeError } from '../util/errors.js';
import { fileOptionContents, relevantOptions, type AnalysisSelection } from './analysisSelection.js';
import { emptyDumpResult, type DumpResult } from './job.js';
import { inProcessRunner, ThreadJobRunner, type DumpJobRunner } from './jobPool.js';

/**
 * Scale-out of `vmscope batch` on BullMQ (Redis): one job per dump, any number of
 * `vmscope worker` processes on any machines taking them. Distribution, retries, locking and
 * the takeover of a job whose worker died are BullMQ's; this file only decides what a job is
 * (its id, its data, its return value) and how long a silent worker keeps its job.
 */

/** Where the queue lives: `redis://[user:password@]HOST[:PORT]/NAME[?db=N]` (rediss:// for TLS). */
export interface QueueLocation {
  readonly connection: ConnectionOptions & { host: string; port: number; db: number };
  readonly queueName: string;
  /** The URL without its password, for logs and errors. */
  readonly display: string;
}

export function parseQueueUrl(url: string): QueueLocation {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new VmscopeError('USAGE', `--queue ${url}: not a URL; expected redis://HOST:PORT/NAME`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new VmscopeError('USAGE', `--queue ${url}: expected redis://HOST:PORT/NAME (or rediss:// for TLS)`);
  }
  const queueName = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  // BullMQ joins its Redis keys with ':' (bull:NAME:id), so a ':' in the name would alias keys.
  if (!/^[A-Za-z0-9._-]+$/.test(queueName)) {
    throw new VmscopeError('USAGE', `--queue ${url}: the path must be the queue name (letters, digits, . _ -), e.g. redis://127.0.0.1:6379/vmscope`);
  }
  const db = Number(parsed.searchParams.get('db') ?? '0');
  if (!Number.isInteger(db) || db < 0) throw new VmscopeError('USAGE', `--queue ${url}: db must be a non-negative integer`);
  const port = parsed.port === '' ? 6379 : Number(parsed.port);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    connection: {
      host,
      port,
      db,
      ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
      ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
      ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    },
    queueName,
    display: `${parsed.protocol}//${parsed.hostname}${parsed.port ? ':' + parsed.port : ''}/${queueName}${db !== 0 ? `?db=${db}` : ''}`,
  };
}

/** What the batch side puts in a job: the dump as it saw it, and the analysis request. */
export interface DumpJobData {
  /** Absolute path; workers must see the dump at the same path (shared storage). */
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly analyses: readonly string[];
  /** Options for the analyses, file options as the submitter's paths. */
  readonly options: Readonly<Record<string, unknown>>;
  /** The contents of file options (rule files) by key: they travel with the job, so workers need no copy. */
  readonly files: Readonly<Record<string, { readonly name: string; readonly text: string }>>;
}

/**
 * A job's return value, stored in Redis: the dump's result, and — when the worker had no
 * shared `--out` — the NDJSON files it produced, for `batch --wait` to write into its own --out.
 */
export interface QueuedDumpResult {
  readonly result: DumpResult;
  readonly worker: string;
  /** File name → contents; absent when the worker wrote into its shared --out. */
  readonly files?: Readonly<Record<string, string>>;
}

export interface EnqueueOptions extends AnalysisSelection {
  /** Attempts per job before it fails for good (a thrown job, not a dump with an error result). */
  readonly attempts?: number;
}

/** Completed and failed jobs stay readable (their results are the batch's output) for a week. */
const KEEP_FINISHED_JOBS = { age: 7 * 24 * 3600, count: 100_000 } as const;
export const DEFAULT_ATTEMPTS = 3;
/** Fail fast when Redis is not there, rather than ioredis's endless reconnects. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * The job id is a hash of what determines the result — the dump's path, size and mtime, the
 * analyses and the rules — so enqueueing the same batch twice adds nothing: BullMQ ignores an
 * add whose id exists, and a completed job's stored result is reused. (BullMQ ids may not
 * contain ':' nor be integers; a hex digest behind a prefix is neither.)
 */
export function dumpJobId(data: DumpJobData): string {
  const hash = createHash('sha256');
  const files = Object.entries(data.files).map(([key, file]) => [key, file.text]);
  for (const part of [data.path, String(data.size), String(data.mtimeMs), data.analyses.join(','), JSON.stringify(data.options), JSON.stringify(files)]) {
    hash.update(part).update('\0');
  }
  return `dump-${hash.digest('hex').slice(0, 32)}`;
}

function dumpJobData(path: string, options: EnqueueOptions): DumpJobData {
  const absolute = resolve(path);
  const stats = statSync(absolute);
  return {
    path: absolute,
    size: stats.size,
    mtimeMs: stats.mtimeMs,
    analyses: [...options.analyses],
    // Only the options the analyses take: an unused one must not change the job id.
    options: relevantOptions(options),
    files: fileOptionContents(options),
  };
}

async function readyOrThrow(client: { waitUntilReady(): Promise<unknown> }, location: QueueLocation): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new VmscopeError('UNAVAILABLE', `cannot reach Redis at ${location.display} within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
  });
  try {
    await Promise.race([client.waitUntilReady(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface EnqueuedDump {
  readonly path: string;
  readonly size: number;
  readonly jobId: string;
  /** false when a job with this id was already there (queued, running or finished). */
  readonly added: boolean;
}

/**
 * Adds one job per dump. Re-enqueueing is idempotent (see dumpJobId); a job that had failed
 * for good is retried, so rerunning a batch resumes it the way a local rerun does.
 */
export async function enqueueBatch(url: string, dumps: readonly string[], options: EnqueueOptions): Promise<EnqueuedDump[]> {
  const location = parseQueueUrl(url);
  const queue = new Queue<DumpJobData, QueuedDumpResult>(location.queueName, { connection: location.connection });
  try {
    await readyOrThrow(queue, location);
    const jobOptions: JobsOptions = {
      attempts: options.attempts ?? DEFAULT_ATTEMPTS,
      backoff: { type: 'exponential', delay: 5_000 },
      removeOnComplete: KEEP_FINISHED_JOBS,
      removeOnFail: KEEP_FINISHED_JOBS,
    };
    const enqueued: EnqueuedDump[] = [];
    for (const path of dumps) {
      const data = dumpJobData(path, options);
      const jobId = dumpJobId(data);
      const existing = await queue.getJob(jobId);
      if (existing) {
        if ((await existing.getState()) === 'failed') await existing.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
        enqueued.push({ path: data.path, size: data.size, jobId, added: false });
        continue;
      }
      await queue.add('dump', data, { ...jobOptions, jobId });
      enqueued.push({ path: data.path, size: data.size, jobId, added: true });
    }
    return enqueued;
  } finally {
    await queue.close();
  }
}

export interface BatchProgress {
  readonly total: number;
  readonly completed: number;
  readonly failed: number;
  readonly active: number;
  readonly waiting: number;
}

/** How one job ended: its stored result, or why it failed after all its attempts. */
interface FinishedJobCommon {
  readonly jobId: string;
  readonly attemptsMade: number;
  readonly processedBy?: string;
  /** Finished before this wait began: enqueued and done by an earlier batch. */
  readonly finishedBefore: boolean;
}
export type FinishedDumpJob =
  | (FinishedJobCommon & { readonly state: 'completed'; readonly value: QueuedDumpResult })
  | (FinishedJobCommon & { readonly state: 'failed'; readonly data?: DumpJobData; readonly failedReason: string });

/** Between sweeps, an event from QueueEvents wakes the wait early; the sweep is the truth. */
const SWEEP_INTERVAL_MS = 2_000;
const MIN_SWEEP_GAP_MS = 100;

/**
 * Waits until every job has completed or failed for good, and returns how each ended, in
 * jobIds' order. The job states in Redis are swept on every QueueEvents event and at least
 * every 2 s, so an event missed (before subscribing, or during a reconnect) delays nothing
 * for long, and a job that finished before the wait began is seen on the first sweep.
 */
export async function waitForBatch(
  url: string,
  jobIds: readonly string[],
  onProgress?: (progress: BatchProgress, finishedNow: readonly FinishedDumpJob[]) => void,
): Promise<FinishedDumpJob[]> {
  const location = parseQueueUrl(url);
  const queue = new Queue<DumpJobData, QueuedDumpResult>(location.queueName, { connection: location.connection });
  const events = new QueueEvents(location.queueName, { connection: location.connection });
  // An event during a sweep is remembered, so the next wait does not sleep through it.
  let eventSinceSweep = false;
  let wake: (() => void) | undefined;
  const wakeUp = () => {
    eventSinceSweep = true;
    wake?.();
  };
  for (const event of ['active', 'completed', 'failed', 'stalled', 'waiting'] as const) events.on(event, wakeUp);
  try {
    await readyOrThrow(queue, location);
    await readyOrThrow(events, location);
    const finished = new Map<string, FinishedDumpJob>();
    for (let sweep = 0; ; sweep++) {
      eventSinceSweep = false;
      let active = 0;
      let waiting = 0;
      const finishedNow: FinishedDumpJob[] = [];
      // All states in one go (ioredis sends concurrent commands together): one round trip, not one per job.
      const pending = jobIds.filter((jobId) => !finished.has(jobId));
      const states = await Promise.all(pending.map((jobId) => queue.getJobState(jobId)));
      for (const [i, jobId] of pending.entries()) {
        const state = states[i]!;
        if (state === 'completed' || state === 'failed') {
          const job = await queue.getJob(jobId);
          if (job) finishedNow.push(finishedJob(job, state, sweep === 0));
        } else if (state === 'unknown') {
          // Removed (by age, or by hand) before we read it: nothing more will come of it.
          const failedReason = 'the job is no longer in the queue (removed before its result was read)';
          finishedNow.push({ jobId, state: 'failed', failedReason, attemptsMade: 0, finishedBefore: sweep === 0 });
        } else if (state === 'active') {
          active++;
        } else {
          waiting++;
        }
      }
      for (const job of finishedNow) finished.set(job.jobId, job);
      const done = [...finished.values()];
      onProgress?.({
        total: jobIds.length,
        completed: done.filter((job) => job.state === 'completed').length,
        failed: done.filter((job) => job.state === 'failed').length,
        active,
        waiting,
      }, finishedNow);
      if (finished.size === jobIds.length) return jobIds.map((jobId) => finished.get(jobId)!);
      if (!eventSinceSweep) {
        await new Promise<void>((resolveWait) => {
          const timer = setTimeout(resolveWait, SWEEP_INTERVAL_MS);
          wake = () => {
            clearTimeout(timer);
            resolveWait();
          };
        });
        wake = undefined;
      }
      // A burst of events (hundreds of jobs finishing) makes one sweep, not hundreds.
      await new Promise((resolvePause) => setTimeout(resolvePause, MIN_SWEEP_GAP_MS));
    }
  } finally {
    await events.close();
    await queue.close();
  }
}

function finishedJob(job: Job<DumpJobData, QueuedDumpResult>, state: 'completed' | 'failed', finishedBefore: boolean): FinishedDumpJob {
  const common = { jobId: job.id!, attemptsMade: job.attemptsMade, finishedBefore, ...(job.processedBy ? { processedBy: job.processedBy } : {}) };
  return state === 'completed'
    ? { ...common, state, value: job.returnvalue }
    : { ...common, state, data: job.data, failedReason: job.failedReason };
}

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
export const DEFAULT_STALLED_JOB_POLICY: StalledJobPolicy = { lockDurationMs: 30_000, stalledIntervalMs: 15_000, maxStalledCount: 2 };

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
        ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      });
      // Incomplete means the job was cut short (its thread crashed, a bug), not that the dump is
      // bad: throwing hands it back to BullMQ, which retries it up to the job's attempts.
      if (!result.complete) throw new VmscopeError('INPUT_CHANGED', `the dump job did not complete: ${result.error ?? 'no reason given'}`, data.path);
      log(`job ${jobId} done ${data.path} in ${result.seconds.toFixed(1)} s${result.error ? ` (${result.error})` : ''}`);
      if (result.output === null) return { result, worker: name };
      const fileName = basename(result.output);
      if (!options.outDir) return { result: { ...result, output: fileName }, worker: name, files: { [fileName]: readFileSync(result.output, 'utf8') } };
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
  if (!stats) throw new VmscopeError('INPUT_CHANGED', 'not found on this worker (dumps must be on storage every worker shares)', data.path);
  if (stats.size !== data.size || stats.mtimeMs !== data.mtimeMs) {
    throw new VmscopeError('INPUT_CHANGED', `not the file that was enqueued (size ${stats.size}, mtime ${new Date(stats.mtimeMs).toISOString()}; enqueued: size ${data.size}, mtime ${new Date(data.mtimeMs).toISOString()})`);
  }
}

function removeIfEmpty(directory: string): void {
  try {
    rmdirSync(directory);
  } catch {
    // Not empty (another job of a worker sharing --out is running) or already gone: either is fine.
  }
}

/**
 * A finished job as the local batch would have produced it: a completed job's DumpResult,
 * its NDJSON written into outDir when it came through Redis; a job that failed after all its
 * attempts as a dump with that error, marked incomplete so a rerun tries it again.
 */
export function dumpResultOfJob(finished: FinishedDumpJob, outDir: string, pathOfJob?: string): DumpResult {
  if (finished.state === 'completed') {
    const { files } = finished.value;
    // As a local rerun marks a dump its manifest says is done: no analysis ran for this batch.
    const result = finished.finishedBefore ? { ...finished.value.result, skipped: true } : finished.value.result;
    if (!files || result.output === null) return result;
    mkdirSync(outDir, { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(outDir, name), text);
    return { ...result, output: join(outDir, result.output) };
  }
  return emptyDumpResult(finished.data?.path ?? pathOfJob ?? finished.jobId, {
    size: finished.data?.size ?? 0,
    mtimeMs: finished.data?.mtimeMs ?? 0,
    error: `QUEUE: job ${finished.jobId} failed after ${finished.attemptsMade} attempt(s): ${finished.failedReason}`,
    complete: false,
  });
}
