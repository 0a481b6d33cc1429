import type * as Fzstd from 'fzstd';
import type * as SnappyWasm from 'snappy-wasm';
import { VmscopeError } from '../util/errors.js';
import { lazyRequire } from '../util/lazyRequire.js';
import { zstdDeclaredSize } from './container.js';
import { lzo1xDecompress } from './lzo1x.js';
import { inflateZlib } from './zlibInflate.js';

// Only dumps in the formats that compress need these: loaded then, not at every start-up.
const fzstd = lazyRequire<typeof Fzstd>('fzstd');
const snappy = lazyRequire<typeof SnappyWasm>('snappy-wasm');
/**
 * One decoder per compression a capture format uses, each bounded by the size the format
 * promises: a page or chunk that would inflate past it (a decompression bomb) or falls short is
 * a typed error naming the file and the offset of its compressed bytes. The libraries:
 * - zlib: our WASM inflate (assembly/inflate.ts, through zlibInflate.ts), bounded by the size given.
 *   A kdump-zlib dump is a zlib stream per 4 KiB page, and inflating is most of reading one. On the
 *   kdump-zlib capture's 18,246 pages the kernel took 10-11 us a page where `inflateSync` took
 *   11.5-13 us in the same run, and in a whole `check` Node's per-call stream object, its buffers
 *   and their garbage collection cost about as much again (17-21 us a page in all); the kernel keeps
 *   its tables in its own memory. The pure-JS fflate (38 us) and pako (58 us) measured slower, and
 *   so did the one WASM inflate on npm, `@hazae41/foras` (flate2: about 6x slower than inflateSync);
 * - snappy: `snappy-wasm` (Rust's snap crate in WASM). On the AVML fixture's 64 KiB chunks and the
 *   kdump-snappy pages it measured 3x faster than the pure-JS `snappyjs` (about 100 against 310 us a
 *   chunk, 8 against 25 us a page), which was most of an AVML scan's time; the native `snappy`
 *   binding measured no faster than snappyjs. It allocates what the preamble declares, so the
 *   preamble is checked against the bound first;
 * - zstd: `fzstd`, already the project's pure-JS zstd decoder;
 * - lzo: our bounded port of lzo1x_decompress_safe (lzo1x.ts: no usable npm decoder for Node).
 */
export type Codec = 'zlib' | 'lzo' | 'snappy' | 'zstd';

export function decodeExactly(
  codec: Codec,
  input: Uint8Array,
  expectedLength: number,
  path: string,
  fileOffset: number,
): Uint8Array {
  let output: Uint8Array;
  try {
    output = decode(codec, input, expectedLength);
  } catch (error) {
    if (error instanceof VmscopeError) throw error;
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `${codec} data of ${input.length} bytes does not decode to ${expectedLength} bytes: ${(error as Error).message}`,
      path,
      fileOffset,
    );
  }
  if (output.length !== expectedLength) {
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `${codec} data of ${input.length} bytes decodes to ${output.length} bytes, expected ${expectedLength}`,
      path,
      fileOffset,
    );
  }
  return output;
}

function decode(codec: Codec, input: Uint8Array, expectedLength: number): Uint8Array {
  switch (codec) {
    case 'zlib':
      return inflateZlib(input, expectedLength);
    case 'snappy': {
      const declared = snappyDeclaredLength(input);
      if (declared !== expectedLength) throw new Error(`snappy preamble declares ${declared ?? 'no'} length`);
      return snappy().decompress_raw(input);
    }
    case 'zstd': {
      // fzstd stops writing silently at the end of a given buffer (and returns all of it), so the
      // frame's declared content size is what bounds the page: makedumpfile and QEMU declare it.
      const declared = zstdDeclaredSize(input);
      if (declared !== expectedLength) throw new Error(`zstd frame declares ${declared ?? 'no'} content size`);
      return fzstd().decompress(input, new Uint8Array(expectedLength));
    }
    case 'lzo':
      return lzo1xDecompress(input, expectedLength);
  }
}

/** The uncompressed length a raw snappy block's preamble declares (a little-endian base-128 varint of at most 32 bits). */
export function snappyDeclaredLength(block: Uint8Array): number | undefined {
  let value = 0;
  for (let i = 0; i < 5 && i < block.length; i++) {
    const byte = block[i]!;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) return value;
  }
  return undefined;
}
