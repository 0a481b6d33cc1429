import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { BatchWorkerApi } from './batchWorker.js';
import { emptyDumpResult, runDumpJob, type DumpJobRequest, type DumpResult } from './job.js';

/** Runs dump jobs, at most `concurrency` at once; `run` never rejects (a crash is the result's error). */
export interface DumpJobRunner {
  readonly concurrency: number;
  run(request: DumpJobRequest): Promise<DumpResult>;
  close(): Promise<void>;
}

/** One job at a time on this thread: no worker script needed (library use from sources, --jobs 1). */
export function inProcessRunner(): DumpJobRunner {
  return { concurrency: 1, run: runDumpJob, close: async () => {} };
}

/** The result of a job whose thread died under it: not complete, so a rerun tries the dump again. */
function crashedResult(request: DumpJobRequest, error: unknown): DumpResult {
  return emptyDumpResult(resolve(request.path), {
    error: `INTERNAL: ${error instanceof Error ? error.message : String(error)}`,
    complete: false,
  });
}

/** A worker thread running one dump job at a time; a call fails, instead of waiting forever, when the thread dies. */
class JobThread {
  private readonly worker: Worker;
  private readonly remote: Comlink.Remote<BatchWorkerApi>;
  private readonly death: Promise<never>;
  dead = false;

  constructor(script: string | URL) {
    this.worker = new Worker(script);
    this.remote = Comlink.wrap<BatchWorkerApi>(nodeEndpoint(this.worker));
    this.death = new Promise<never>((_, reject) => {
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`batch worker thread exited (code ${code})`)));
    });
    this.death.catch(() => (this.dead = true));
  }

  run(request: DumpJobRequest): Promise<DumpResult> {
    return Promise.race([this.remote.runDumpJob(request), this.death]);
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

/**
 * Dump jobs on worker threads, one job per thread at a time. Threads (rather than processes)
 * because a job reads the dump by path and sends back a small result, so nothing large crosses,
 * and the batch's peak RSS is then the whole batch's. A thread that dies is replaced.
 */
export class ThreadJobRunner implements DumpJobRunner {
  private readonly idle: JobThread[] = [];
  private readonly waiting: Array<(thread: JobThread) => void> = [];
  private readonly all = new Set<JobThread>();

  constructor(
    readonly concurrency: number,
    private readonly script: string | URL = new URL('./batchWorker.js', import.meta.url),
  ) {
    if (!existsSync(script instanceof URL ? fileURLToPath(script) : script))
      throw new Error(`batch worker script ${String(script)} is missing (run npm run build)`);
    for (let i = 0; i < concurrency; i++) this.idle.push(this.start());
  }

  private start(): JobThread {
    const thread = new JobThread(this.script);
    this.all.add(thread);
    return thread;
  }

  async run(request: DumpJobRequest): Promise<DumpResult> {
    let thread = this.idle.pop() ?? (await new Promise<JobThread>((resolveThread) => this.waiting.push(resolveThread)));
    try {
      return await thread.run(request);
    } catch (error) {
      return crashedResult(request, error);
    } finally {
      if (thread.dead) {
        this.all.delete(thread);
        thread = this.start();
      }
      const next = this.waiting.shift();
      if (next) next(thread);
      else this.idle.push(thread);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.all].map((thread) => thread.terminate()));
    this.all.clear();
    this.idle.length = 0;
  }
}
