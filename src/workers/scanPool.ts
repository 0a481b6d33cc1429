import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { existsSync } from 'node:fs';
import { serialize } from 'node:v8';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { isDecodedImage } from '../image/decodedImage.js';
import { openImage } from '../image/open.js';
import { DEFAULT_WINDOW_BYTES } from '../kernels/memoryMap.js';
import type { NeedleHit } from '../kernels/multiNeedle.js';
import type { ParallelNeedleSearchRequest, ParallelRuleScanRequest } from '../analyses/context.js';
import type { RuleScanResult, RuleScanner } from '../rules/scanner.js';
import { planScanJobs, unpackHits, type ScanJob } from './physicalJobs.js';
import type { ScanWorkerApi, ScanWorkerData } from './scanWorker.js';
import { installTypedErrorTransfer } from './typedErrors.js';
import { assertSameFile, type FileIdentity } from '../util/files.js';

/** Coarse enough that per-job messaging and setup vanish next to the reading, fine enough to spread a 512 MiB dump over several threads. */
export const DEFAULT_JOB_BYTES = 128 * 2 ** 20;
/**
 * Jobs of a dump whose memory is decoded (compressed pages or chunks): what a byte costs there
 * depends on what it holds (an all-zero page is free, a full one is inflated), and the kdump
 * capture's non-zero pages sit in two of its four 128 MiB slices, so coarse jobs left one thread
 * with most of the inflating. Finer jobs let the threads share it; their messaging is small next
 * to decoding 16 MiB.
 */
export const DECODED_JOB_BYTES = 16 * 2 ** 20;

export interface ScanPoolOptions {
  /** Worker threads (default: the available parallelism). */
  threads?: number;
  /** Each worker's search window (see SearcherOptions.windowBytes). */
  windowBytes?: number;
  /**
   * The bundled worker script. The default, scanWorker.js beside the running bundle, is right for
   * dist/index.js and dist/cli.js; code run from sources (tests) or from dist/bench passes dist/scanWorker.js.
   */
  workerScript?: string | URL;
}

export interface PoolSearchOptions {
  /** Present bytes per job (default DEFAULT_JOB_BYTES, DECODED_JOB_BYTES for a decoded image); any positive size gives the same hits. */
  jobBytes?: number;
  /** Called as each job finishes (so in steps of about jobBytes), in no particular job order. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** The file the caller opened at the path: a thread finding another one there fails with INPUT_CHANGED. */
  identity?: FileIdentity;
}

/** The host side of one worker thread: every call also fails, instead of waiting forever, when the thread dies. */
class ScanThread {
  private constructor(
    private readonly worker: Worker,
    private readonly remote: Comlink.Remote<ScanWorkerApi>,
    private readonly death: Promise<never>,
  ) {}

  static start(script: string | URL, data: ScanWorkerData): ScanThread {
    installTypedErrorTransfer();
    // A scan thread keeps its hits in columns and makes only short-lived objects per window: a small young
    // generation, collected often, keeps its memory near what is live (the default lets each thread grow by ~100 MiB).
    const worker = new Worker(script, { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    const death = new Promise<never>((_, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`scan worker thread exited (code ${code})`)));
    });
    death.catch(() => {}); // observed through call(); an idle thread's death is not an unhandled rejection
    return new ScanThread(worker, Comlink.wrap<ScanWorkerApi>(nodeEndpoint(worker)), death);
  }

  call<T>(request: (remote: Comlink.Remote<ScanWorkerApi>) => Promise<T>): Promise<T> {
    return Promise.race([request(this.remote), this.death]);
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

/**
 * Physical-memory search on several threads, for the same hits as MultiNeedleSearcher.searchImage
 * in the same order. The dump's present memory is cut into coarse jobs (physicalJobs.ts); each
 * thread opens the dump by path and searches its jobs with its own WASM instance; job results,
 * each in address order, are concatenated in job order.
 */
export class ScanPool {
  private closed = false;

  private constructor(private readonly threads: readonly ScanThread[]) {}

  /** Starts the threads and resolves once every one has its window ready. */
  static async create(options: ScanPoolOptions = {}): Promise<ScanPool> {
    const count = options.threads ?? availableParallelism();
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`threads ${count} must be a positive integer`);
    const script = options.workerScript ?? new URL('./scanWorker.js', import.meta.url);
    if (!existsSync(script instanceof URL ? fileURLToPath(script) : script)) {
      throw new Error(`scan worker script ${String(script)} is missing (run npm run build)`);
    }
    const data: ScanWorkerData = { windowBytes: options.windowBytes ?? DEFAULT_WINDOW_BYTES };
    const pool = new ScanPool(Array.from({ length: count }, () => ScanThread.start(script, data)));
    try {
      await Promise.all(pool.threads.map((thread) => thread.call((remote) => remote.ready())));
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  /**
   * Every hit of `needles` (1 to MAX_NEEDLE_LENGTH bytes each) in the dump at `path`, sorted by
   * (offset, needle); with `wordAligned`, of 8-byte words at 8-aligned offsets only (needleSearcher.ts).
   */
  async searchImage(
    path: string,
    needles: readonly Uint8Array[],
    options: PoolSearchOptions & { wordAligned?: boolean } = {},
  ): Promise<NeedleHit[]> {
    // Own copies: structured cloning a view would send its whole underlying buffer.
    const needleCopies = needles.map((needle) => needle.slice());
    const results = await this.runJobs(path, options, async (thread, job) =>
      unpackHits(
        await thread.call((remote) =>
          remote.searchPhysical(path, needleCopies, job.start, job.end, options.identity, options.wordAligned),
        ),
      ),
    );
    return results.flat();
  }

  /**
   * Every string match of `scanner`'s rules in the dump at `path`: the same result as
   * RuleScanner.scanImage on one thread. The rules are compiled once, by the caller: each thread
   * receives them serialized (one copy of the bytes each, transferred) and builds its scanner from
   * them, so no thread parses or compiles the rule text again.
   */
  async scanRules(
    path: string,
    scanner: RuleScanner,
    options: PoolSearchOptions & { onHits?: () => void } = {},
  ): Promise<RuleScanResult> {
    const serializedRules = serialize(scanner.rules);
    // Per finished job, its matches per string: a job need not keep what the jobs before it already filled the cap with.
    const keptByJob: Uint32Array[] = [];
    const merge = scanner.partMerge();
    const jobs = await this.runJobs(
      path,
      options,
      async (thread, job, index) => {
        const keptBefore = new Uint32Array(scanner.strings.length);
        keptByJob.forEach((kept, earlier) => {
          if (earlier < index)
            for (let string = 0; string < kept.length; string++) keptBefore[string]! += kept[string]!;
        });
        const part = await thread.call((remote) =>
          remote.scanRules(
            path,
            job.start,
            job.end,
            Comlink.transfer(keptBefore, [keptBefore.buffer]),
            options.identity,
          ),
        );
        const kept = new Uint32Array(scanner.strings.length);
        for (const { strings } of part.columns) for (const string of strings) kept[string]!++;
        keptByJob[index] = kept;
        if (part.columns.some((columns) => columns.strings.length > 0)) options.onHits?.();
        // Merged as soon as the jobs before it are: a part is not held beside the result longer than it must be.
        merge.add(index, part);
      },
      (thread) =>
        thread.call((remote) => {
          const copy = Uint8Array.from(serializedRules);
          return remote.loadRules(Comlink.transfer(copy, [copy.buffer]), scanner.limits);
        }),
    );
    return merge.result(jobs.length);
  }

  /**
   * Runs `work` on every job of the dump, threads taking the next job as they finish one (each
   * thread first `prepare`d, when given); results in job (address) order.
   */
  private async runJobs<T>(
    path: string,
    options: PoolSearchOptions,
    work: (thread: ScanThread, job: ScanJob, index: number) => Promise<T>,
    prepare?: (thread: ScanThread) => Promise<void>,
  ): Promise<T[]> {
    if (this.closed) throw new Error('this ScanPool is closed');
    const { jobs, totalBytes } = planImageJobs(path, options.jobBytes);
    const results: T[] = [];
    let nextJob = 0;
    let doneBytes = 0;
    let failed = false;
    const drain = async (thread: ScanThread) => {
      try {
        if (prepare) await prepare(thread);
        while (!failed && nextJob < jobs.length) {
          const index = nextJob++;
          const job = jobs[index]!;
          results[index] = await work(thread, job, index);
          doneBytes += job.bytes;
          options.onProgress?.(doneBytes, totalBytes);
        }
      } catch (error) {
        failed = true; // the other threads finish the job they hold and take no more
        throw error;
      }
    };
    try {
      const outcomes = await Promise.allSettled(this.threads.map(drain));
      const failure = outcomes.find((outcome) => outcome.status === 'rejected');
      if (failure) throw failure.reason;
    } finally {
      await Promise.allSettled(this.threads.map((thread) => thread.call((remote) => remote.closeImage())));
    }
    return results;
  }

  /** Terminates every thread; the pool cannot be used afterwards. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.threads.map((thread) => thread.terminate()));
  }
}

/** The dump's jobs, read from its ranges on this thread so a bad path or format fails before any job is sent. */
function planImageJobs(path: string, jobBytes: number | undefined): { jobs: ScanJob[]; totalBytes: number } {
  const image = openImage(path);
  try {
    const defaultJobBytes = isDecodedImage(image) ? DECODED_JOB_BYTES : DEFAULT_JOB_BYTES;
    return { jobs: planScanJobs(image.ranges, jobBytes ?? defaultJobBytes), totalBytes: image.totalBytes };
  } finally {
    image.close();
  }
}

/** One search on a pool created for it and closed after it, whatever happens. */
export async function parallelSearchImage(
  path: string,
  needles: readonly Uint8Array[],
  options: ScanPoolOptions & PoolSearchOptions = {},
): Promise<NeedleHit[]> {
  const pool = await ScanPool.create(options);
  try {
    return await pool.searchImage(path, needles, options);
  } finally {
    await pool.close();
  }
}

/**
 * A physical needle search on a pool created for it and closed after it: the DumpContext's
 * parallelNeedleSearch. The threads start at once and the search when the needles come.
 */
export async function parallelSearchNeedles(
  request: ParallelNeedleSearchRequest,
  options: Omit<ScanPoolOptions, 'threads'> = {},
): Promise<NeedleHit[]> {
  return onRequestPool(request, options, async (pool, identity) =>
    pool.searchImage(request.path, await request.needles, {
      onProgress: request.onProgress,
      ...(request.wordAligned ? { wordAligned: true } : {}),
      ...identity,
    }),
  );
}

/** A physical rule scan on a pool created for it and closed after it: the DumpContext's parallelRuleScan. */
export async function parallelScanRules(
  request: ParallelRuleScanRequest,
  options: Omit<ScanPoolOptions, 'threads'> = {},
): Promise<RuleScanResult> {
  return onRequestPool(request, options, (pool, identity) =>
    pool.scanRules(request.path, request.scanner, {
      onProgress: request.onProgress,
      ...(request.onHits ? { onHits: request.onHits } : {}),
      ...identity,
    }),
  );
}

/**
 * `work` on a pool of the request's threads, created for it and closed after it whatever happens.
 * The file at the path must be the one the caller opened (its identity) before the threads start
 * and still after they read it: the caller goes on with the results (tasks around hits, owners of
 * matches) in the file it holds open.
 */
async function onRequestPool<Result>(
  request: { readonly path: string; readonly identity: FileIdentity | undefined; readonly threads: number },
  options: Omit<ScanPoolOptions, 'threads'>,
  work: (pool: ScanPool, identity: { identity?: FileIdentity }) => Promise<Result>,
): Promise<Result> {
  if (request.identity) assertSameFile(request.path, request.identity);
  const pool = await ScanPool.create({ ...options, threads: request.threads });
  try {
    const result = await work(pool, request.identity ? { identity: request.identity } : {});
    if (request.identity) assertSameFile(request.path, request.identity);
    return result;
  } finally {
    await pool.close();
  }
}
