import {
  INFLATE_ERROR_BLOCK_TYPE,
  INFLATE_ERROR_CHECKSUM,
  INFLATE_ERROR_CODE_LENGTHS,
  INFLATE_ERROR_DISTANCE_CODE,
  INFLATE_ERROR_DISTANCE_TOO_FAR,
  INFLATE_ERROR_HEADER,
  INFLATE_ERROR_LITERAL_CODE,
  INFLATE_ERROR_OUTPUT_FULL,
  INFLATE_ERROR_STORED_LENGTH,
  INFLATE_ERROR_TRUNCATED,
  INFLATE_INPUT_ADDRESS,
} from '../../assembly/inflateMemoryMap.js';
import { inflateWasmBase64 } from './generated/inflateWasm.js';
import { instanceWithRoom } from './threadInstance.js';

/** One instance of the kernel: its entry, its memory, and where it writes the output. */
export interface InflateInstance {
  readonly inflateZlib: (inputLength: number, outputAddress: number, outputCapacity: number) => number;
  readonly heap: Uint8Array;
  readonly outputAddress: number;
}

/**
 * An instance of the inflate kernel in a memory of its own, with room for `inputBytes` of stream
 * at `inputAddress` (INFLATE_INPUT_ADDRESS, passed in) and `outputBytes` of output after them. It
 * uses nothing but its arguments and globals: the helper threads run its source text
 * (pairedInflate.ts, inflateAhead.ts), which cannot import.
 */
export function instantiateInflate(
  module: WebAssembly.Module,
  inputAddress: number,
  inputBytes: number,
  outputBytes: number,
): InflateInstance {
  const outputAddress = inputAddress + inputBytes;
  const wasmPages = Math.ceil((outputAddress + outputBytes) / 0x10000);
  const memory = new WebAssembly.Memory({ initial: wasmPages, maximum: wasmPages });
  const { inflateZlib } = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as Pick<
    InflateInstance,
    'inflateZlib'
  >;
  return { inflateZlib, heap: new Uint8Array(memory.buffer), outputAddress };
}

/** Input and output room of a first instance: a 64 KiB page (the largest kdump block size in use) and its stored bytes. */
const INITIAL_CAPACITY = 0x10000;

const REFUSALS = new Map<number, string>([
  [INFLATE_ERROR_HEADER, 'no zlib header (deflate, window up to 32 KiB, no preset dictionary)'],
  [INFLATE_ERROR_BLOCK_TYPE, 'a deflate block of the reserved type 3'],
  [INFLATE_ERROR_STORED_LENGTH, "a stored block's length does not match its complement"],
  [INFLATE_ERROR_CODE_LENGTHS, 'a block declares code lengths no prefix code has'],
  [INFLATE_ERROR_LITERAL_CODE, 'an invalid literal/length code'],
  [INFLATE_ERROR_DISTANCE_CODE, 'an invalid distance code'],
  [INFLATE_ERROR_DISTANCE_TOO_FAR, 'a distance further back than the output'],
  [INFLATE_ERROR_TRUNCATED, 'the stream ends early'],
  [INFLATE_ERROR_CHECKSUM, 'the Adler-32 check fails'],
]);

let module: WebAssembly.Module | undefined;
let threadInflater: ZlibInflater | undefined;

/** The inflate kernel, compiled once per thread (and sent to a helper thread: pairedInflate.ts). */
export function inflateModule(): WebAssembly.Module {
  return (module ??= new WebAssembly.Module(Buffer.from(inflateWasmBase64, 'base64')));
}

/**
 * zlib streams inflated by the WASM kernel (assembly/inflate.ts) into its own memory, then copied
 * out: one instance per thread, made again larger when a stream or its output does not fit.
 */
export class ZlibInflater {
  private readonly kernel: InflateInstance;

  private constructor(readonly capacity: number) {
    this.kernel = instantiateInflate(inflateModule(), INFLATE_INPUT_ADDRESS, capacity, capacity);
  }

  /** This thread's inflater, with room for `input` and `outputLength` bytes. */
  static forStream(inputLength: number, outputLength: number): ZlibInflater {
    const needed = Math.max(inputLength, outputLength);
    threadInflater = instanceWithRoom(threadInflater, needed, INITIAL_CAPACITY, (room) => new ZlibInflater(room));
    return threadInflater;
  }

  /**
   * The bytes the zlib stream `input` inflates to, at most `maxOutputLength` of them. Throws an
   * Error saying why when the stream is not sound or would inflate past that bound.
   */
  inflate(input: Uint8Array, maxOutputLength: number): Uint8Array {
    const result = this.run(input, maxOutputLength);
    const { heap, outputAddress } = this.kernel;
    if (result >= 0) return heap.slice(outputAddress, outputAddress + result);
    if (result === INFLATE_ERROR_OUTPUT_FULL) throw new Error(`inflates past ${maxOutputLength} bytes`);
    throw new Error(REFUSALS.get(result) ?? `inflate error ${result}`);
  }

  /** Inflates `input` into `into`, which it must fill exactly: false when it does not (`inflate` says why). */
  inflateExactlyInto(input: Uint8Array, into: Uint8Array): boolean {
    if (this.run(input, into.length) !== into.length) return false;
    const { heap, outputAddress } = this.kernel;
    into.set(heap.subarray(outputAddress, outputAddress + into.length));
    return true;
  }

  /** The kernel's result: the bytes inflated, or an INFLATE_ERROR_* code. */
  private run(input: Uint8Array, maxOutputLength: number): number {
    if (input.length > this.capacity || maxOutputLength > this.capacity)
      throw new RangeError(
        `a ${input.length}-byte stream inflating to ${maxOutputLength} bytes needs a larger inflater`,
      );
    const { heap, inflateZlib, outputAddress } = this.kernel;
    heap.set(input, INFLATE_INPUT_ADDRESS);
    return inflateZlib(input.length, outputAddress, maxOutputLength);
  }
}

/** `input` inflated by this thread's inflater, at most `maxOutputLength` bytes (see ZlibInflater.inflate). */
export function inflateZlib(input: Uint8Array, maxOutputLength: number): Uint8Array {
  return ZlibInflater.forStream(input.length, maxOutputLength).inflate(input, maxOutputLength);
}
