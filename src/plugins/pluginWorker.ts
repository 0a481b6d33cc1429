/**
 * The thread one plugin runs on (bundled on its own to dist/pluginWorker.js; sandbox.ts starts
 * it and terminates it at the time budget). @wasmer/wasi gives the plugin its argv (its name),
 * an empty environment, stdin and an in-memory filesystem with nothing preopened; the host
 * replaces what WASI would let out: stdout and stderr are captured here under the output cap,
 * the clocks are coarse, sockets are refused. Memory reads go through the bridge to the host.
 */
import { init, WASI } from '@wasmer/wasi';
import { parentPort, workerData } from 'node:worker_threads';
import { WASI_PATH_FUNCTIONS } from './wasiFunctions.js';
import { BridgeClient, MAX_READ_BYTES, READ_STATUS, type ReadRequest, type WorkerMessage } from './bridge.js';

export interface PluginWorkerData {
  readonly name: string;
  /** Compiled (and memory-capped) on the host: a Module is shared with the worker, not recompiled. */
  readonly module: WebAssembly.Module;
  readonly stdin: Uint8Array;
  readonly outputBytes: number;
  readonly bridge: SharedArrayBuffer;
}

/** WASI errno values (wasi_snapshot_preview1). */
const ERRNO = { success: 0, badf: 8, inval: 28, notcapable: 76 } as const;
const CLOCK = { realtime: 0, monotonic: 1 } as const;
/** The clocks' resolution: enough to time a phase, too coarse for timing side channels. */
export const CLOCK_RESOLUTION_NS = 100_000_000n;
/** Of stderr, only the start is kept: it goes into an error message. */
const STDERR_KEEP_BYTES = 4096;
const MAX_SYMBOL_NAME = 256;

if (!parentPort) throw new Error('pluginWorker.js runs as a worker thread of the plugin sandbox, not on its own');
const port = parentPort;
const data = workerData as PluginWorkerData;
const send = (message: WorkerMessage): void => port.postMessage(message);
const bridge = new BridgeClient(data.bridge, (request: ReadRequest) => send(request));

/** Why the host stopped the plugin from inside an import (the trap's own message says less). */
let stopReason: string | undefined;
let memory: WebAssembly.Memory | undefined;
const stdout: Uint8Array[] = [];
let stdoutBytes = 0;
const stderr: Uint8Array[] = [];
let stderrBytes = 0;

function view(): DataView {
  return new DataView(memory!.buffer);
}

function stop(reason: string): never {
  stopReason = reason;
  throw new Error(reason);
}

/** The bytes of `count` iovecs at `iovs` (each a u32 pointer and a u32 length), bounds-checked by the typed arrays. */
function gather(iovs: number, count: number): Uint8Array[] {
  const memoryView = view();
  const parts: Uint8Array[] = [];
  for (let index = 0; index < count; index++) {
    const pointer = memoryView.getUint32(iovs + index * 8, true);
    const length = memoryView.getUint32(iovs + index * 8 + 4, true);
    parts.push(new Uint8Array(memory!.buffer, pointer, length).slice());
  }
  return parts;
}

function captureWrite(fd: number, iovs: number, count: number, written: number): number {
  const parts = gather(iovs, count);
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  if (fd === 1) {
    stdoutBytes += length;
    if (stdoutBytes > data.outputBytes) stop(`output cap of ${data.outputBytes} bytes exceeded`);
    stdout.push(...parts);
  } else if (stderrBytes < STDERR_KEEP_BYTES) {
    stderr.push(...parts);
    stderrBytes += length;
  }
  view().setUint32(written, length, true);
  return ERRNO.success;
}

function coarseNanoseconds(clock: number): bigint | undefined {
  const milliseconds =
    clock === CLOCK.realtime ? Date.now() : clock === CLOCK.monotonic ? performance.now() : undefined;
  if (milliseconds === undefined) return undefined;
  const nanoseconds = BigInt(Math.floor(milliseconds)) * 1_000_000n;
  return nanoseconds - (nanoseconds % CLOCK_RESOLUTION_NS);
}

/** Copies a read's answer into the plugin's memory at `out`; refuses reads the bridge cannot hold or memory cannot take. */
function readInto(request: Extract<ReadRequest, { length: number }>, out: number): number {
  if (
    request.length < 0 ||
    request.length > MAX_READ_BYTES ||
    out < 0 ||
    out + request.length > memory!.buffer.byteLength
  )
    return READ_STATUS.readTooLarge;
  return bridge.read(request, new Uint8Array(memory!.buffer, out, request.length));
}

const vmscopeImports = {
  read_virtual: (pid: number, address: bigint, length: number, out: number): number =>
    readInto({ type: 'read-virtual', pid, address: BigInt.asUintN(64, address), length }, out),
  read_physical: (address: bigint, length: number, out: number): number =>
    readInto({ type: 'read-physical', address: BigInt.asUintN(64, address), length }, out),
  symbol: (pointer: number, length: number): bigint => {
    if (length <= 0 || length > MAX_SYMBOL_NAME || pointer < 0 || pointer + length > memory!.buffer.byteLength)
      return 0n;
    const name = new TextDecoder().decode(new Uint8Array(memory!.buffer, pointer, length));
    return BigInt.asIntN(64, bridge.symbol(name));
  },
};

const refused = (): number => ERRNO.notcapable;
/**
 * @wasmer/wasi keeps its in-memory root as fd 3 even with `preopens: {}`. It holds nothing of
 * the host, but a plugin is promised no filesystem at all: no fd is a preopened directory and
 * every path call is refused, whatever directory fd it names.
 */
const noFilesystem = {
  fd_prestat_get: (): number => ERRNO.badf,
  fd_prestat_dir_name: (): number => ERRNO.badf,
  ...Object.fromEntries(WASI_PATH_FUNCTIONS.map((name) => [name, refused])),
};
const sandboxedWasi = {
  ...noFilesystem,
  fd_write: (fd: number, iovs: number, count: number, written: number): number =>
    fd === 1 || fd === 2 ? captureWrite(fd, iovs, count, written) : ERRNO.notcapable,
  clock_time_get: (clock: number, _precision: bigint, out: number): number => {
    const now = coarseNanoseconds(clock);
    if (now === undefined) return ERRNO.inval;
    view().setBigUint64(out, now, true);
    return ERRNO.success;
  },
  clock_res_get: (clock: number, out: number): number => {
    if (coarseNanoseconds(clock) === undefined) return ERRNO.inval;
    view().setBigUint64(out, CLOCK_RESOLUTION_NS, true);
    return ERRNO.success;
  },
  sock_accept: refused,
  sock_recv: refused,
  sock_send: refused,
  sock_shutdown: refused,
};

async function run(): Promise<void> {
  await init();
  // preopens: {} — left undefined, @wasmer/wasi would preopen its in-memory "/" as ".".
  const wasi = new WASI({ args: [data.name], env: {}, preopens: {} });
  wasi.setStdinBuffer(data.stdin);
  const wasiImports = (wasi.getImports(data.module) as { wasi_snapshot_preview1?: object }).wasi_snapshot_preview1;
  const instance = new WebAssembly.Instance(data.module, {
    wasi_snapshot_preview1: { ...wasiImports, ...sandboxedWasi },
    vmscope: vmscopeImports,
  });
  memory = instance.exports['memory'] as WebAssembly.Memory;
  wasi.instantiate(instance);
  const code = wasi.start();
  const output = new Uint8Array(stdoutBytes);
  let at = 0;
  for (const part of stdout) {
    output.set(part, at);
    at += part.length;
  }
  send({ type: 'exit', code, stdout: output, stderr: new TextDecoder().decode(Buffer.concat(stderr)) });
}

run().catch((error: unknown) => {
  send({ type: 'failed', message: stopReason ?? (error instanceof Error ? error.message : String(error)) });
});
