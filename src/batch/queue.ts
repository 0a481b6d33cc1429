/**
 * Scale-out of `vmscope batch` on BullMQ (Redis): one job per dump, any number of
 * `vmscope worker` processes on any machines taking them. Distribution, retries, locking and
 * the takeover of a job whose worker died are BullMQ's; this file only decides what a job is
 * (its id, its data, its return value) and how long a silent worker keeps its job.
 */
export { parseQueueUrl, type QueueLocation } from './queue/location.js';
export {
  DEFAULT_ATTEMPTS,
  dumpJobId,
  enqueueBatch,
  type DumpJobData,
  type EnqueuedDump,
  type EnqueueOptions,
  type QueuedDumpResult,
} from './queue/jobs.js';
export { dumpResultOfJob, waitForBatch, type BatchProgress, type FinishedDumpJob } from './queue/wait.js';
export { DEFAULT_STALLED_JOB_POLICY, runWorker, type StalledJobPolicy, type WorkerOptions } from './queue/worker.js';
