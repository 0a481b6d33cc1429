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

/** `source` decompressed by `command -dc` into the open file `output`; undefined when it worked. */
function cliToFile(command: string, args: readonly string[], source: string, partial: string): string | undefined {
  const output = openSync(partial, 'w');
  try {
    const result = spawnSync(command, [...args, source], { stdio: ['ignore', output, 'pipe'] });
    return result.status === 0
      ? undefined
      : result.stderr.toString().trim() || `${command} exited with ${result.status}`;
  } finally {
    closeSync(output);
  }
}

/**
 * Decompress a `.zst`, `.gz` or `.xz` dump to `target`, atomically (a partial file never has the
 * final name). `compression` defaults to the one the suffix names. zstd uses the CLI when
 * installed (about 0.4 s per 512 MiB) and otherwise the pure-JS fzstd stream decoder (about 100×
 * slower, but it needs nothing from the machine); gzip uses `gzip -dc` (or Node's zlib in memory
 * when gzip is missing); xz needs the `xz` command (apt-get install xz-utils).
 */
export function decompressToFile(
  source: string,
  target: string,
  options: { useZstdCli?: boolean; compression?: Compression } = {},
): void {
  const partial = `${target}.partial-${process.pid}`;
  const compression =
    options.compression ??
    (source.endsWith('.zst') ? 'zstd' : source.endsWith('.gz') ? 'gzip' : source.endsWith('.xz') ? 'xz' : undefined);
  try {
    if (compression === 'zstd') {
      if (options.useZstdCli ?? hasCli('zstd')) {
        const result = spawnSync('zstd', ['-d', '-q', '-f', '--long=31', source, '-o', partial], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        if (result.status !== 0)
          throw new VmscopeError('CORRUPT_HEADER', `zstd failed: ${result.stderr.toString().trim()}`, source, 0);
      } else {
        zstdWithFzstd(source, partial);
      }
    } else if (compression === 'gzip') {
      if (hasCli('gzip')) {
        const failure = cliToFile('gzip', ['-dc'], source, partial);
        if (failure !== undefined) throw new VmscopeError('CORRUPT_HEADER', `gzip failed: ${failure}`, source, 0);
      } else {
        writeFileSync(partial, gunzipSync(readFileSync(source)));
      }
    } else if (compression === 'xz') {
      if (!hasCli('xz'))
        throw new VmscopeError(
          'COMPRESSED_INPUT',
          'this is an xz-compressed file and the xz command is missing (apt-get install xz-utils, or xz -dk FILE elsewhere)',
          source,
          0,
        );
      const failure = cliToFile('xz', ['-dc'], source, partial);
      if (failure !== undefined) throw new VmscopeError('CORRUPT_HEADER', `xz failed: ${failure}`, source, 0);
    } else {
      throw new VmscopeError('USAGE', 'only .zst, .gz and .xz inputs can be decompressed', source);
    }
    renameSync(partial, target);
  } finally {
    rmSync(partial, { force: true });
  }
}

function zstdWithFzstd(source: string, target: string): void {
  const input = openSync(source, 'r');
  const output = openSync(target, 'w');
  try {
    const decoder = new (fzstd().Decompress)((chunk) => {
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
