import {
  SNAPPY_ERROR_LENGTH,
  SNAPPY_ERROR_OFFSET,
  SNAPPY_ERROR_OVERFLOW,
  SNAPPY_ERROR_PREAMBLE,
  SNAPPY_ERROR_SHORT,
  SNAPPY_ERROR_TRUNCATED,
} from '../../assembly/snappyErrors.js';
import { snappyWasmBase64 } from './generated/snappyWasm.js';
import { instanceWithRoom } from './threadInstance.js';

interface SnappyExports {
  decompressSnappy(input: number, inputLength: number, output: number, capacity: number): number;
}

const WASM_PAGE_BYTES = 0x10000;
/** Where the block goes: past a first page left to whatever static data the compiler may one day emit (it emits none now). */
const INPUT_ADDRESS = 0x10000;
/** Room of a first instance: a 64 KiB chunk (AVML's, the largest kdump block in use) and its compressed form. */
const INITIAL_CAPACITY = 0x10000;

const REFUSALS = new Map<number, string>([
  [SNAPPY_ERROR_PREAMBLE, 'no valid length preamble'],
  [SNAPPY_ERROR_LENGTH, 'the preamble declares another length'],
  [SNAPPY_ERROR_TRUNCATED, 'the block ends inside an element'],
  [SNAPPY_ERROR_OFFSET, 'a copy reaches before the start of the output'],
  [SNAPPY_ERROR_OVERFLOW, 'an element runs past the declared length'],
  [SNAPPY_ERROR_SHORT, 'the elements end before the declared length'],
]);

let module: WebAssembly.Module | undefined;
let threadDecoder: SnappyDecoder | undefined;

/**
 * Raw snappy blocks decompressed by the WASM kernel (assembly/snappy.ts) into its own memory: one
 * instance per thread, made again larger when a block or its output does not fit. Input at
 * INPUT_ADDRESS, output after the input's room.
 */
class SnappyDecoder {
  private readonly memory: Uint8Array;
  private readonly exports: SnappyExports;

  private constructor(readonly capacity: number) {
    const pages = Math.ceil((INPUT_ADDRESS + 2 * capacity) / WASM_PAGE_BYTES);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    module ??= new WebAssembly.Module(Buffer.from(snappyWasmBase64, 'base64'));
    this.exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as SnappyExports;
    this.memory = new Uint8Array(memory.buffer);
  }

  static forBlock(inputLength: number, outputLength: number): SnappyDecoder {
    const needed = Math.max(inputLength, outputLength);
    threadDecoder = instanceWithRoom(threadDecoder, needed, INITIAL_CAPACITY, (room) => new SnappyDecoder(room));
    return threadDecoder;
  }

  decodeView(input: Uint8Array, length: number): Uint8Array {
    const output = INPUT_ADDRESS + this.capacity;
    this.memory.set(input, INPUT_ADDRESS);
    const result = this.exports.decompressSnappy(INPUT_ADDRESS, input.length, output, length);
    if (result !== length) throw new Error(REFUSALS.get(result) ?? `snappy error ${result}`);
    return this.memory.subarray(output, output + length);
  }

  holds(bytes: Uint8Array): boolean {
    return bytes.buffer === this.memory.buffer;
  }
}

/**
 * The raw snappy block `input`, which must decompress to exactly `length` bytes, as a view of
 * this thread's decoder memory: valid until the thread's next snappy call, so a caller that keeps
 * it copies it (snappyView tells). Throws an Error saying why a block is refused.
 */
export function decompressSnappyView(input: Uint8Array, length: number): Uint8Array {
  return SnappyDecoder.forBlock(input.length, length).decodeView(input, length);
}

/** Whether `bytes` is a view decompressSnappyView gave (of memory its next call overwrites). */
export function isSnappyView(bytes: Uint8Array): boolean {
  return threadDecoder?.holds(bytes) ?? false;
}
