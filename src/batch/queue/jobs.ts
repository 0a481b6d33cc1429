import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { JobsOptions } from 'bullmq';
import { fileOptionContents, relevantOptions, type AnalysisSelection } from '../analysisSelection.js';
import type { DumpResult } from '../job.js';
import type { PortableAnalysis } from '../portableAnalyses.js';
import { parseQueueUrl, readyOrThrow } from './location.js';
import { bullmq } from './bullmq.js';

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
  /** WASI plugins' bytes and hashes: they travel with the job too. */
  readonly portable?: readonly PortableAnalysis[];
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
/**
 * The job id is a hash of what determines the result — the dump's path, size and mtime, the
 * analyses and the rules — so enqueueing the same batch twice adds nothing: BullMQ ignores an
 * add whose id exists, and a completed job's stored result is reused. (BullMQ ids may not
 * contain ':' nor be integers; a hex digest behind a prefix is neither.)
 */
export function dumpJobId(data: DumpJobData): string {
  const hash = createHash('sha256');
  const files = Object.entries(data.files).map(([key, file]) => [key, file.text]);
  for (const part of [
    data.path,
    String(data.size),
    String(data.mtimeMs),
    data.analyses.join(','),
    JSON.stringify(data.options),
    JSON.stringify(files),
    // Plugins by hash; absent for jobs without any, so their ids stay what they were.
    ...(data.portable?.length ? [JSON.stringify(data.portable.map(({ name, sha256 }) => [name, sha256]))] : []),
  ]) {
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
    ...(options.portable?.length ? { portable: options.portable } : {}),
  };
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
export async function enqueueBatch(
  url: string,
  dumps: readonly string[],
  options: EnqueueOptions,
): Promise<EnqueuedDump[]> {
  const location = parseQueueUrl(url);
  const { Queue } = bullmq();
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
        if ((await existing.getState()) === 'failed')
          await existing.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
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
