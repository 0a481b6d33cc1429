import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Job } from 'bullmq';
import { emptyDumpResult, type DumpResult } from '../job.js';
import type { DumpJobData, QueuedDumpResult } from './jobs.js';
import { parseQueueUrl, readyOrThrow } from './location.js';
import { bullmq } from './bullmq.js';

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
  const { Queue, QueueEvents } = bullmq();
  const queue = new Queue<DumpJobData, QueuedDumpResult>(location.queueName, { connection: location.connection });
  const events = new QueueEvents(location.queueName, { connection: location.connection });
  // An event during a sweep is remembered, so the next wait does not sleep through it.
  let eventSinceSweep: boolean;
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
      onProgress?.(
        {
          total: jobIds.length,
          completed: done.filter((job) => job.state === 'completed').length,
          failed: done.filter((job) => job.state === 'failed').length,
          active,
          waiting,
        },
        finishedNow,
      );
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

function finishedJob(
  job: Job<DumpJobData, QueuedDumpResult>,
  state: 'completed' | 'failed',
  finishedBefore: boolean,
): FinishedDumpJob {
  const common = {
    jobId: job.id!,
    attemptsMade: job.attemptsMade,
    finishedBefore,
    ...(job.processedBy ? { processedBy: job.processedBy } : {}),
  };
  return state === 'completed'
    ? { ...common, state, value: job.returnvalue }
    : { ...common, state, data: job.data, failedReason: job.failedReason };
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
