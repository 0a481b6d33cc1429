/**
 * How a plugin's synchronous `vmscope` imports reach the dump. The plugin runs on a worker
 * thread (so that it can be terminated at its time budget), while the dump is open on the
 * thread that runs the analysis. The worker posts a request and blocks in Atomics.wait on a
 * SharedArrayBuffer; the host thread serves it from its own DumpContext (the worker never
 * opens the dump, never learns its path) and wakes the worker with the answer in the buffer.
 * Chosen over a second DumpContext in the worker: that would find the kernel and profile again
 * (seconds per plugin) and would hand the dump's path to the thread that runs untrusted code.
 */

/** The most bytes one read returns: larger reads are refused (READ_TOO_LARGE), the plugin loops. */
export const MAX_READ_BYTES = 64 * 1024;

/** Header words (Int32): the answer's state, then its result. */
const STATE = 0;
const RESULT = 1;
/** Byte offsets: the header, a 64-bit slot for a symbol's address, then the data area. */
const SYMBOL_SLOT = 8;
const DATA = 16;

/** What a read returns besides a byte count (negative, so a plugin tests `< 0`). */
export const READ_STATUS = {
  /** No process with that pid on the task list, or one without user memory (a kernel thread). */
  noSuchProcess: -1,
  /** Longer than MAX_READ_BYTES, or the destination is outside the plugin's memory. */
  readTooLarge: -2,
} as const;

export type ReadRequest =
  | { readonly type: 'read-virtual'; readonly pid: number; readonly address: bigint; readonly length: number }
  | { readonly type: 'read-physical'; readonly address: bigint; readonly length: number }
  | { readonly type: 'symbol'; readonly name: string };

/** Messages from the plugin's worker to the host. */
export type WorkerMessage =
  | ReadRequest
  | { readonly type: 'exit'; readonly code: number; readonly stdout: Uint8Array; readonly stderr: string }
  | { readonly type: 'failed'; readonly message: string };

export function createBridgeBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(DATA + MAX_READ_BYTES);
}

/** The worker's side: post, then block until the host answers. */
export class BridgeClient {
  private readonly header: Int32Array;
  private readonly symbolSlot: BigInt64Array;
  private readonly data: Uint8Array;

  constructor(
    buffer: SharedArrayBuffer,
    private readonly post: (request: ReadRequest) => void,
  ) {
    this.header = new Int32Array(buffer, 0, 2);
    this.symbolSlot = new BigInt64Array(buffer, SYMBOL_SLOT, 1);
    this.data = new Uint8Array(buffer, DATA, MAX_READ_BYTES);
  }

  private ask(request: ReadRequest): number {
    Atomics.store(this.header, STATE, 0);
    this.post(request);
    Atomics.wait(this.header, STATE, 0);
    return Atomics.load(this.header, RESULT);
  }

  /** Bytes read into `into` (a prefix up to the first unreadable byte), or a READ_STATUS. */
  read(request: Extract<ReadRequest, { length: number }>, into: Uint8Array): number {
    const result = this.ask(request);
    if (result > 0) into.set(this.data.subarray(0, result));
    return result;
  }

  symbol(name: string): bigint {
    this.ask({ type: 'symbol', name });
    return this.symbolSlot[0]!;
  }
}

/** The host's side: write the answer where the worker reads it, and wake it. */
export class BridgeServer {
  private readonly header: Int32Array;
  private readonly symbolSlot: BigInt64Array;
  readonly data: Uint8Array;

  constructor(buffer: SharedArrayBuffer) {
    this.header = new Int32Array(buffer, 0, 2);
    this.symbolSlot = new BigInt64Array(buffer, SYMBOL_SLOT, 1);
    this.data = new Uint8Array(buffer, DATA, MAX_READ_BYTES);
  }

  answer(result: number, symbol = 0n): void {
    this.symbolSlot[0] = symbol;
    Atomics.store(this.header, RESULT, result);
    Atomics.store(this.header, STATE, 1);
    Atomics.notify(this.header, STATE);
  }
}
