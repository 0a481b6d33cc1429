import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
  readFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type * as Fzstd from 'fzstd';
import { VmscopeError } from '../util/errors.js';
import { lazyRequire } from '../util/lazyRequire.js';

/** The zstd decoder, loaded only when a .zst dump is given and the zstd command is missing. */
const fzstd = lazyRequire<typeof Fzstd>('fzstd');

const STREAM_CHUNK = 4 << 20;

function hasCli(name: string): boolean {
  return spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0;
}

export type Compression = 'zstd' | 'gzip' | 'xz';

/**
 * Thrown when the decompressed bytes pass `maxBytes`: a bomb (a few KB of gzip that inflate to a
 * terabyte) is stopped at the bound, never after it has filled the disk.
 */
export class DecompressedTooLargeError extends VmscopeError {
  constructor(source: string, compression: Compression, maxBytes: number) {
    super('USAGE', `decompressed, this ${compression} file is larger than the ${maxBytes} bytes allowed`, source, 0);
  }
}

/**
 * Runs a decompressor that writes `partial` (itself, or through its stdout when `toStdout`):
 * undefined when it worked, 'too-large' when the output passed `maxBytes` (the child's file-size
 * limit, RLIMIT_FSIZE through util-linux `prlimit`, kills it with SIGXFSZ at that size), else the
 * error the command printed.
 */
function cliToFile(
  command: string,
  args: readonly string[],
  partial: string,
  { maxBytes, toStdout }: { maxBytes: number; toStdout: boolean },
): string | undefined {
  const output = openSync(partial, 'w');
  const bounded = Number.isFinite(maxBytes) && hasCli('prlimit');
  const argv = bounded ? [`--fsize=${maxBytes + 1}`, command, ...args] : args;
  try {
    const result = spawnSync(bounded ? 'prlimit' : command, argv, {
      stdio: ['ignore', toStdout ? output : 'ignore', 'pipe'],
    });
    if (result.signal === 'SIGXFSZ') return TOO_LARGE;
    return result.status === 0
      ? undefined
      : result.stderr.toString().trim() || `${command} exited with ${result.status ?? result.signal}`;
  } finally {
    closeSync(output);
  }
}

const TOO_LARGE = 'too-large';

/**
 * Decompress a `.zst`, `.gz` or `.xz` dump to `target`, atomically (a partial file never has the
 * final name), stopping with DecompressedTooLargeError once the output passes `maxBytes` (without
 * `prlimit`, the CLI decoders are checked once they end). `compression` defaults to the one the suffix names. zstd uses the CLI when
 * installed (about 0.4 s per 512 MiB) and otherwise the pure-JS fzstd stream decoder (about 100×
 * slower, but it needs nothing from the machine); gzip uses `gzip -dc` (or Node's zlib in memory
 * when gzip is missing); xz needs the `xz` command (apt-get install xz-utils).
 */
export function decompressToFile(
  source: string,
  target: string,
  options: { useZstdCli?: boolean; compression?: Compression; maxBytes?: number } = {},
): void {
  const partial = `${target}.partial-${process.pid}`;
  const maxBytes = options.maxBytes ?? Infinity;
  const compression =
    options.compression ??
    (source.endsWith('.zst') ? 'zstd' : source.endsWith('.gz') ? 'gzip' : source.endsWith('.xz') ? 'xz' : undefined);
  const checkCli = (command: string, failure: string | undefined): void => {
    if (failure === TOO_LARGE) throw new DecompressedTooLargeError(source, compression!, maxBytes);
    if (failure !== undefined) throw new VmscopeError('CORRUPT_HEADER', `${command} failed: ${failure}`, source, 0);
  };
  try {
    if (compression === 'zstd') {
      if (options.useZstdCli ?? hasCli('zstd')) {
        // -f: a dump given as a symbolic link is read too (zstd passes over links otherwise).
        const args = ['-d', '-q', '-f', '--long=31', source, '-o', partial];
        checkCli('zstd', cliToFile('zstd', args, partial, { maxBytes, toStdout: false }));
      } else {
        zstdWithFzstd(source, partial, maxBytes);
      }
    } else if (compression === 'gzip') {
      if (hasCli('gzip')) {
        checkCli('gzip', cliToFile('gzip', ['-dc', source], partial, { maxBytes, toStdout: true }));
      } else {
        writeFileSync(partial, gunzipBounded(source, maxBytes));
      }
    } else if (compression === 'xz') {
      if (!hasCli('xz'))
        throw new VmscopeError(
          'COMPRESSED_INPUT',
          'this is an xz-compressed file and the xz command is missing (apt-get install xz-utils, or xz -dk FILE elsewhere)',
          source,
          0,
        );
      checkCli('xz', cliToFile('xz', ['-dc', source], partial, { maxBytes, toStdout: true }));
    } else {
      throw new VmscopeError('USAGE', 'only .zst, .gz and .xz inputs can be decompressed', source);
    }
    if (statSync(partial).size > maxBytes) throw new DecompressedTooLargeError(source, compression, maxBytes);
    renameSync(partial, target);
  } finally {
    rmSync(partial, { force: true });
  }
}

/** Node's zlib in memory, for machines without gzip: the output is bounded by zlib itself. */
function gunzipBounded(source: string, maxBytes: number): Buffer {
  try {
    return gunzipSync(readFileSync(source), Number.isFinite(maxBytes) ? { maxOutputLength: maxBytes } : {});
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      throw new DecompressedTooLargeError(source, 'gzip', maxBytes);
    throw new VmscopeError('CORRUPT_HEADER', `gzip stream is corrupt: ${(error as Error).message}`, source, 0);
  }
}

function zstdWithFzstd(source: string, target: string, maxBytes: number): void {
  const input = openSync(source, 'r');
  const output = openSync(target, 'w');
  let written = 0;
  try {
    const decoder = new (fzstd().Decompress)((chunk) => {
      written += chunk.length;
      if (written > maxBytes) throw new DecompressedTooLargeError(source, 'zstd', maxBytes);
      writeSync(output, chunk);
    });
    let position = 0;
    for (;;) {
      // fzstd keeps references to pushed chunks: each push needs a fresh buffer.
      const chunk = new Uint8Array(STREAM_CHUNK);
      const got = readSync(input, chunk, 0, chunk.length, position);
      position += got;
      const final = got < chunk.length;
      decoder.push(chunk.subarray(0, got), final);
      if (final) break;
    }
  } catch (error) {
    if (error instanceof VmscopeError) throw error;
    throw new VmscopeError('CORRUPT_HEADER', `zstd stream is corrupt: ${(error as Error).message}`, source, 0);
  } finally {
    closeSync(input);
    closeSync(output);
  }
}

export function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(16 << 20);
    let position = 0;
    for (;;) {
      const got = readSync(fd, buffer, 0, buffer.length, position);
      if (got === 0) break;
      hash.update(buffer.subarray(0, got));
      position += got;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * The decompressed copy of `source` in `cacheDir`, made on first use. With `sha256`, the copy is
 * named by it and verified once (a `.verified` marker records it), so a corrupt or stale cache
 * entry is never used silently.
 */
export function ensureDecompressed(source: string, cacheDir: string, sha256?: string): string {
  mkdirSync(cacheDir, { recursive: true });
  const stat = statSync(source);
  const stem = basename(source).replace(/\.(zst|gz)$/, '');
  const target = join(
    cacheDir,
    sha256 ? `${sha256.slice(0, 16)}-${stem}` : `${stat.size}-${Math.floor(stat.mtimeMs)}-${stem}`,
  );
  const marker = `${target}.verified`;
  if (existsSync(target) && (!sha256 || existsSync(marker))) return target;
  decompressToFile(source, target);
  if (sha256) {
    const actual = sha256File(target);
    if (actual !== sha256) {
      rmSync(target, { force: true });
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `decompressed sha256 ${actual} differs from the expected ${sha256}`,
        source,
      );
    }
    writeFileSync(marker, `${sha256}\n`);
  }
  return target;
}
