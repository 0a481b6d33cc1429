import type * as Fzstd from 'fzstd';
import { VmscopeError } from '../util/errors.js';
import { lazyRequire } from '../util/lazyRequire.js';
import { zstdDeclaredSize } from './container.js';
import { lzo1xDecompress } from './lzo1x.js';
import { decompressSnappyView } from './snappyDecode.js';
import { inflateZlib } from './zlibInflate.js';

// Only dumps in the formats that compress need these: loaded then, not at every start-up.
const fzstd = lazyRequire<typeof Fzstd>('fzstd');
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
 * - snappy: our WASM kernel (assembly/snappy.ts, through snappyDecode.ts), into its own memory. On
 *   the AVML fixture's 2,551 compressed 64 KiB chunks it took 26-42 us a chunk where `snappy-wasm`
 *   (Rust's snap crate in WASM, used before) took 58-108 us in the same runs: that glue allocates,
 *   zeroes and copies out every chunk. snappy-wasm had measured 3x faster than the pure-JS
 *   `snappyjs` (310 us), and the native `snappy` binding no faster than snappyjs. decodeSnappyView
 *   gives a chunk without any copy, for a reader that uses it at once (an AVML scan);
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
  return checkedDecode(codec, input, expectedLength, path, fileOffset, () => decode(codec, input, expectedLength));
}

/**
 * As decodeExactly, for a raw snappy block: a view of this thread's decoder memory, valid until
 * its next snappy call (isSnappyView tells; a caller that keeps it copies it).
 */
export function decodeSnappyView(
  input: Uint8Array,
  expectedLength: number,
  path: string,
  fileOffset: number,
): Uint8Array {
  return checkedDecode('snappy', input, expectedLength, path, fileOffset, () =>
    decompressSnappyView(input, expectedLength),
  );
}

function checkedDecode(
  codec: Codec,
  input: Uint8Array,
  expectedLength: number,
  path: string,
  fileOffset: number,
  decodeIt: () => Uint8Array,
): Uint8Array {
  let output: Uint8Array;
  try {
    output = decodeIt();
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
    case 'snappy':
      return decompressSnappyView(input, expectedLength).slice();
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
