import { inflateSync } from 'node:zlib';
import type * as Fzstd from 'fzstd';
import type Snappy from 'snappyjs';
import { VmscopeError } from '../util/errors.js';
import { lazyRequire } from '../util/lazyRequire.js';
import { zstdDeclaredSize } from './container.js';
import { lzo1xDecompress } from './lzo1x.js';

// Only dumps in the formats that compress need these: loaded then, not at every start-up.
const fzstd = lazyRequire<typeof Fzstd>('fzstd');
const snappy = lazyRequire<typeof Snappy>('snappyjs');
/**
 * One decoder per compression a capture format uses, each bounded by the size the format
 * promises: a page or chunk that would inflate past it (a decompression bomb) or falls short is
 * a typed error naming the file and the offset of its compressed bytes. The libraries:
 * - zlib: Node's own (`inflateSync` with `maxOutputLength`, so a bomb stops at the bound). On the
 *   kdump-zlib capture's pages it measured about 17 us a page, a third of it the per-call handle,
 *   buffers and their garbage collection: the largest cost of reading such a dump. The pure-JS
 *   fflate (38 us) and pako (58 us) measured slower: a faster one would be WASM with reused state;
 * - snappy: `snappyjs`, pure JS and the most used snappy package (a block-move rewrite measured no faster
 *   on guest memory, and the native `snappy` binding no faster on 64 KiB chunks: allocation-bound);
 * - zstd: `fzstd`, already the project's pure-JS zstd decoder;
 * - lzo: our bounded port of lzo1x_decompress_safe (lzo1x.ts: no usable npm decoder for Node).
 */
export type Codec = 'zlib' | 'lzo' | 'snappy' | 'zstd';
/** Room past the expected size in zlib's output chunk, so a page that fills it exactly ends in one chunk. */
const ZLIB_CHUNK_SLACK = 64;

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
    case 'zlib': {
      // Past maxOutputLength Node throws ERR_BUFFER_TOO_LARGE instead of allocating on. An output
      // chunk just larger than the page makes the result a view holding little more than the page
      // (zlib's default 16 KiB chunk held by each cached 4 KiB page measured 3x the cache budget
      // in peak RSS), without copying it out: a page's allocations are what a long read spends on.
      const inflated = inflateSync(input, {
        maxOutputLength: expectedLength,
        chunkSize: expectedLength + ZLIB_CHUNK_SLACK,
      });
      return new Uint8Array(inflated.buffer, inflated.byteOffset, inflated.length);
    }
    case 'snappy':
      // snappyjs refuses a preamble longer than the bound before allocating.
      return snappy().uncompress(input, expectedLength);
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
