import type { ContextOptions, DumpContext } from '../../analyses/context.js';
/**
 * Where the monitor's dumps come from. A SnapshotSource hands out one dump file at a time, only
 * once the file is complete, and is stopped from outside (AbortSignal or close()) without
 * tearing a snapshot the consumer is still reading.
 */

/** One complete dump file, owned by the consumer until it calls release(). */
export interface Snapshot {
  /** The dump file; for memory read in place (a live guest), the file the memory is read from. */
  readonly path: string;
  /** When the source saw the dump complete (not when the guest was paused). */
  readonly receivedAt: Date;
  /** The host's clock when the guest's memory was captured, when the source knows it (QMP: when the dump was asked for); else the file's modification time stands for it. */
  readonly capturedAt?: Date;
  /** Done with the file: deletes it when the source made it (QMP), a no-op for files it found (folder). */
  release(): Promise<void>;
  /**
   * Memory read in place (a live guest): a fresh context over it for each read, instead of
   * opening `path` as a dump. Absent for dump files.
   */
  openContext?(options: ContextOptions): Promise<DumpContext>;
  /**
   * The memory changes while it is read (a running guest): a finding counts only when a second
   * read (another openContext) repeats it.
   */
  readonly smeared?: boolean;
  /** Once released: how long the guest was paused for this snapshot, in ms (a consistent live read). */
  readonly pausedMs?: number;
}

/**
 * Something went wrong that does not end the source: a file that stays broken, a dump skipped
 * for lack of disk, a dump QEMU failed. Reported through `onProblem`, never thrown, so one bad
 * dump does not stop a watch loop.
 */
export interface SourceProblem {
  readonly kind: 'broken-file' | 'dump-skipped' | 'dump-failed' | 'memory-unreadable';
  /** The file concerned, when there is one. */
  readonly path?: string;
  readonly message: string;
  readonly cause?: unknown;
}

export interface SourceOptions {
  /** Stops the source: no new snapshot is started; a snapshot already handed out is left alone. */
  signal?: AbortSignal;
  /** Non-fatal problems. Default: one line on stderr, so nothing is silently lost. */
  onProblem?: (problem: SourceProblem) => void;
}

/**
 * An async iterable of complete dumps. Iterate it once (`for await`); leaving the loop (break,
 * throw) closes the source. A source ends normally when stopped, and ends by throwing when it
 * can never produce again (a QMP source whose guest went away throws GuestGoneError).
 */
export interface SnapshotSource extends AsyncIterable<Snapshot> {
  /**
   * Stop producing and free what the source holds (sockets, its own temp files). Waits for a
   * snapshot being produced to finish (a QEMU dump cannot be cancelled half-way); safe to call
   * more than once and from a signal handler while a `for await` is running.
   */
  close(): Promise<void>;
  /** Pause the guest the snapshots come from (the `pause` action); absent when the source cannot (a folder of dumps). */
  pauseGuest?(): Promise<void>;
}

export function reportToStderr(problem: SourceProblem): void {
  process.stderr.write(`vmscope: ${problem.path ? problem.path + ': ' : ''}${problem.kind}: ${problem.message}\n`);
}

/** Sleep that ends early (returning false) when the signal aborts, instead of rejecting. */
export function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The plumbing both sources share: a single-use iterator over `produce()`, stopped by the
 * caller's signal or close(), with `cleanup()` run exactly once however it ends.
 */
export abstract class ProducingSource implements SnapshotSource {
  /** Aborted by the caller's signal or by close(): producers check it between steps. */
  protected readonly stopping: AbortSignal;
  protected readonly reportProblem: (problem: SourceProblem) => void;
  private readonly stopController = new AbortController();
  private generator: AsyncGenerator<Snapshot, void> | undefined;
  /** The next() call in progress, so close() can wait for the current snapshot to finish. */
  private pendingStep: Promise<unknown> | undefined;
  private cleanedUp: Promise<void> | undefined;

  protected constructor(options: SourceOptions) {
    this.stopping = this.stopController.signal;
    this.reportProblem = options.onProblem ?? reportToStderr;
    const outer = options.signal;
    if (outer) {
      if (outer.aborted) this.stopController.abort();
      else outer.addEventListener('abort', () => this.stopController.abort(), { once: true });
    }
  }

  /** Yield snapshots until `this.stopping` aborts; may throw to end the source with an error. */
  protected abstract produce(): AsyncGenerator<Snapshot, void>;

  /** Free sockets and files; runs once, after production has stopped. */
  protected abstract cleanup(): Promise<void>;

  [Symbol.asyncIterator](): AsyncIterator<Snapshot> {
    if (this.generator) throw new Error('a snapshot source can be iterated only once');
    const generator = this.produce();
    this.generator = generator;
    return {
      next: async () => {
        if (this.stopping.aborted && !this.pendingStep) {
          // Stopped between snapshots: end without starting another one.
          await this.close();
          return { done: true, value: undefined };
        }
        const step = generator.next();
        this.pendingStep = step;
        try {
          const result = await step;
          if (result.done) await this.runCleanup();
          return result;
        } catch (error) {
          await this.runCleanup();
          throw error;
        } finally {
          this.pendingStep = undefined;
        }
      },
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  async close(): Promise<void> {
    this.stopController.abort();
    if (this.pendingStep) await this.pendingStep.catch(() => undefined);
    // Runs the producer's finally blocks when it is parked at a yield.
    if (this.generator) await this.generator.return(undefined).catch(() => undefined);
    await this.runCleanup();
  }

  private runCleanup(): Promise<void> {
    this.cleanedUp ??= this.cleanup();
    return this.cleanedUp;
  }
}
