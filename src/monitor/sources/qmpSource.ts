import { VmscopeError } from '../../util/errors.js';
import { mkdtemp, rm, stat, statfs, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  QmpClient,
  QmpClosedError,
  QmpConnectError,
  QmpError,
  type DumpOptions,
  type QmpConnectOptions,
} from '../qmp.js';
import { pause, ProducingSource, type Snapshot, type SourceOptions } from './source.js';

/** The QEMU behind the socket is gone (exited, crashed, never started): no snapshot will come again. */
export class GuestGoneError extends Error {
  constructor(
    readonly socketPath: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`the guest behind ${socketPath} went away: ${reason}`, options);
    this.name = 'GuestGoneError';
  }
}

/** The guest's QMP connection; no QEMU listening there is GuestGoneError, as for every QMP source. */
export async function connectToGuest(socketPath: string, options?: QmpConnectOptions): Promise<QmpClient> {
  try {
    return await QmpClient.connect(socketPath, options);
  } catch (error) {
    if (error instanceof QmpConnectError) throw new GuestGoneError(socketPath, error.message, { cause: error });
    throw error;
  }
}

export interface QmpSourceOptions extends SourceOptions {
  /** Time between the starts of two dumps. Default 60 000 ms. The first dump is taken at once. */
  intervalMs?: number;
  /**
   * Where dumps are written: a private folder is made inside it and removed by close(). QEMU
   * opens the files itself, so it must be able to write there. Default os.tmpdir().
   */
  tempDir?: string;
  /** Most bytes of un-released dumps kept at once, the one about to be taken included. Default unlimited. */
  diskBudgetBytes?: number;
  /** Free space to leave on the filesystem after a dump. Default 1 GiB. */
  minFreeBytes?: number;
  connect?: QmpConnectOptions;
  dump?: DumpOptions;
}

/** Headers and notes QEMU writes beside the RAM; a generous upper bound for a few vCPUs. */
const DUMP_OVERHEAD_BYTES = 16 << 20;

/**
 * Snapshots of a live guest, taken through QEMU's QMP socket with `dump-guest-memory`.
 *
 * Each interval (counted from the start of the previous dump, and only while the consumer asks
 * for the next snapshot, so a slow consumer is never flooded) one ELF core is written to a
 * private temp folder and yielded; release() deletes it.
 *
 * Disk: a dump is as large as the guest's RAM. Before each dump the expected size (RAM size from
 * `query-memory-size-summary`, or the last dump's size) is checked against `diskBudgetBytes`
 * (counting dumps handed out but not released) and the filesystem's free space minus
 * `minFreeBytes`. When it does not fit, that dump is skipped with a `dump-skipped` problem and
 * tried again next interval: a consumer that releases late, or a disk that frees up, loses one
 * snapshot, not the watch. A dump QEMU fails is a `dump-failed` problem, handled the same way.
 *
 * When the QMP connection closes (QEMU exited: guest shutdown, crash, killed), the iteration
 * ends by throwing GuestGoneError. QEMU serves one QMP client per socket: use `client` for other
 * commands (stop, cont, query-status) while the source is open.
 */
export class QmpSource extends ProducingSource {
  private readonly intervalMs: number;
  private readonly baseTempDir: string;
  private readonly diskBudgetBytes: number;
  private readonly minFreeBytes: number;
  private qmp: QmpClient | undefined;
  private dumpDir: string | undefined;
  /** Dumps handed out and not yet released, with their sizes. */
  private readonly outstanding = new Map<string, number>();
  private lastDumpBytes = 0;
  private sequence = 0;

  constructor(
    readonly socketPath: string,
    private readonly options: QmpSourceOptions = {},
  ) {
    super(options);
    this.intervalMs = options.intervalMs ?? 60_000;
    this.baseTempDir = options.tempDir ?? tmpdir();
    this.diskBudgetBytes = options.diskBudgetBytes ?? Number.POSITIVE_INFINITY;
    this.minFreeBytes = options.minFreeBytes ?? 1 << 30;
  }

  /** The QMP connection, once iteration has started. */
  get client(): QmpClient | undefined {
    return this.qmp;
  }

  /** Bytes of dumps handed out and not yet released. */
  get outstandingBytes(): number {
    let total = 0;
    for (const bytes of this.outstanding.values()) total += bytes;
    return total;
  }

  protected async *produce(): AsyncGenerator<Snapshot, void> {
    const client = await this.connect();
    this.dumpDir = await mkdtemp(join(this.baseTempDir, 'vmscope-qmp-'));
    let nextDumpAt = Date.now();
    // Waking on the connection closing tells the consumer the guest is gone now, not a whole interval later.
    const stopOrGone = AbortSignal.any([this.stopping, client.closedSignal]);
    while (!this.stopping.aborted) {
      if (!(await pause(Math.max(0, nextDumpAt - Date.now()), stopOrGone))) {
        if (this.stopping.aborted) return;
        throw new GuestGoneError(this.socketPath, client.closeReason ?? 'the QMP connection closed');
      }
      nextDumpAt = Date.now() + this.intervalMs;
      const snapshot = await this.takeSnapshot(client);
      if (snapshot) {
        if (this.stopping.aborted) {
          // Stopped while QEMU was writing: nobody will read this dump.
          await snapshot.release();
          return;
        }
        yield snapshot;
      }
    }
  }

  protected async cleanup(): Promise<void> {
    await this.qmp?.close();
    // Files nobody released are ours alone (private folder): the folder goes with them.
    if (this.dumpDir) await rm(this.dumpDir, { recursive: true, force: true });
    this.outstanding.clear();
  }

  private async connect(): Promise<QmpClient> {
    return (this.qmp = await connectToGuest(this.socketPath, this.options.connect));
  }

  /** One dump, or undefined when it was skipped or failed (reported as a problem). */
  private async takeSnapshot(client: QmpClient): Promise<Snapshot | undefined> {
    const path = join(this.dumpDir!, `guest-${String(++this.sequence).padStart(6, '0')}-${Date.now()}.elf`);
    // dump-guest-memory stops the guest while it copies: its memory is as of the request, made just after.
    const capturedAt = new Date();
    try {
      const refusal = await this.refusalForDisk(client);
      if (refusal) {
        this.reportProblem({ kind: 'dump-skipped', path, message: refusal });
        return undefined;
      }
      await client.dumpGuestMemory(path, this.options.dump);
    } catch (error) {
      await unlink(path).catch(() => undefined);
      if (error instanceof QmpClosedError && !this.stopping.aborted) {
        throw new GuestGoneError(this.socketPath, error.message, { cause: error });
      }
      if (this.stopping.aborted) return undefined;
      if (!(error instanceof QmpError)) throw error;
      this.reportProblem({ kind: 'dump-failed', path, message: error.message, cause: error });
      return undefined;
    }
    let bytes: number;
    try {
      bytes = (await stat(path)).size;
    } catch (error) {
      // QEMU said completed but the file is not where we asked (another mount namespace, a wrapper rewriting paths).
      this.reportProblem({
        kind: 'dump-failed',
        path,
        message: `QEMU reported the dump done but it cannot be read: ${(error as Error).message}`,
        cause: error,
      });
      return undefined;
    }
    this.lastDumpBytes = bytes;
    this.outstanding.set(path, bytes);
    let released = false;
    return {
      path,
      receivedAt: new Date(),
      capturedAt,
      release: async () => {
        if (released) return;
        released = true;
        this.outstanding.delete(path);
        await unlink(path).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
        });
      },
    };
  }

  /** QEMU's `stop` through the connection this source already holds (QEMU serves one QMP client per socket). */
  async pauseGuest(): Promise<void> {
    const client = this.client;
    if (!client || client.closed) throw new VmscopeError('UNAVAILABLE', `no open QMP connection to ${this.socketPath}`);
    await client.stop();
  }

  /** Why the next dump must not be taken, or undefined when it fits. */
  private async refusalForDisk(client: QmpClient): Promise<string | undefined> {
    const expected = (await this.expectedDumpBytes(client)) + DUMP_OVERHEAD_BYTES;
    const held = this.outstandingBytes;
    if (held + expected > this.diskBudgetBytes) {
      return `a dump needs about ${mib(expected)} and ${mib(held)} of un-released dumps are held: over the ${mib(this.diskBudgetBytes)} budget`;
    }
    const fs = await statfs(this.dumpDir!);
    const free = fs.bavail * fs.bsize;
    if (free - expected < this.minFreeBytes) {
      return `a dump needs about ${mib(expected)}, ${mib(free)} are free and ${mib(this.minFreeBytes)} must stay free`;
    }
    return undefined;
  }

  private async expectedDumpBytes(client: QmpClient): Promise<number> {
    try {
      const memory = await client.execute<{ 'base-memory': number; 'plugged-memory'?: number }>(
        'query-memory-size-summary',
      );
      return Math.max(this.lastDumpBytes, memory['base-memory'] + (memory['plugged-memory'] ?? 0));
    } catch (error) {
      if (error instanceof QmpClosedError) throw error;
      // An old QEMU without the command: the last dump is the best guess (none before the first).
      return this.lastDumpBytes;
    }
  }
}

function mib(bytes: number): string {
  return `${Math.round(bytes / (1 << 20))} MiB`;
}
