import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import {
  closeSync,
  createReadStream,
  createWriteStream,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statfsSync,
  statSync,
  type Stats,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, extname, join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type XzDecompress from 'xz-decompress';
import { compressionOfHead } from '../image/container.js';
import { DecompressedTooLargeError, decompressToFile, type Compression } from '../image/decompress.js';
import { LIME_MAGIC } from '../image/lime.js';
import { VmscopeError } from '../util/errors.js';
import { lazyRequire } from '../util/lazyRequire.js';

/** Loaded when a batch input is .xz, not at every start-up. */
const xzDecompress = lazyRequire<typeof XzDecompress>('xz-decompress');

/**
 * What a batch takes as input: finding dump files in directories, and turning compressed dumps
 * into temporary plain files within a disk budget (the analyses need random access).
 */

/** Raw physical memory has no magic: these names are taken as dumps (pmemsave, VMware, LiME, cores). */
const DUMP_EXTENSIONS = new Set([
  '.raw',
  '.mem',
  '.vmem',
  '.pmem',
  '.bin',
  '.dmp',
  '.dump',
  '.img',
  '.elf',
  '.core',
  '.lime',
]);
const ELF_CORE = 4;

function readHead(path: string, length: number): Uint8Array {
  const head = new Uint8Array(length);
  const fd = openSync(path, 'r');
  try {
    return head.subarray(0, readSync(fd, head, 0, length, 0));
  } finally {
    closeSync(fd);
  }
}

export function compressionOf(path: string): Compression | undefined {
  return compressionOfHead(readHead(path, 8));
}

/**
 * Whether a file found in a directory is a dump: an ELF core or LiME by magic; a compressed file
 * whose name under the suffix is a dump name or has no extension (so `x.kallsyms.txt.zst` is
 * not); any other file by a raw-dump extension. Files named on the command line are always taken.
 */
export function looksLikeDump(path: string): boolean {
  const head = readHead(path, 18);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length >= 18 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46)
    return view.getUint16(16, true) === ELF_CORE;
  if (head.length >= 4 && view.getUint32(0, true) === LIME_MAGIC) return true;
  if (compressionOfHead(head) !== undefined) {
    const inner = extname(basename(path).replace(/\.(zst|zstd|gz|xz)$/, ''));
    return inner === '' || DUMP_EXTENSIONS.has(inner.toLowerCase());
  }
  return DUMP_EXTENSIONS.has(extname(path).toLowerCase());
}

/** Every dump under the given files and directories (recursively, sorted, each once), skipping `exclude` (the output directory). */
export function expandDumpPaths(inputs: readonly string[], exclude?: string): string[] {
  const excluded = exclude === undefined ? undefined : resolve(exclude);
  const found = new Set<string>();
  // Folders by device and inode: a link back up the tree (a symlink loop) is walked once.
  const walked = new Set<string>();
  const walk = (directory: string): void => {
    if (directory === excluded) return;
    const identity = statSync(directory, { throwIfNoEntry: false });
    if (!identity) return;
    const key = `${identity.dev}:${identity.ino}`;
    if (walked.has(key)) return;
    walked.add(key);
    for (const entry of readdirSync(directory, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(directory, entry.name);
      // Links are followed (a folder of links to dumps is a batch too) and kept under their own name;
      // a link that cannot be followed (dangling, or ELOOP) is not a dump.
      const target = entry.isSymbolicLink() ? linkTarget(path) : entry;
      if (target?.isDirectory()) walk(path);
      else if (target?.isFile() && looksLikeDump(path)) found.add(path);
    }
  };
  for (const input of inputs) {
    const path = resolve(input);
    let isDirectory: boolean;
    try {
      isDirectory = statSync(path).isDirectory();
    } catch (error) {
      throw new VmscopeError('UNREADABLE_FILE', `cannot read: ${(error as Error).message}`, input);
    }
    if (isDirectory) walk(path);
    else found.add(path);
  }
  return [...found];
}

function linkTarget(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/** The decompressed size a zstd frame header declares (the zstd CLI writes it for files), if any. */
function zstdContentSize(path: string): number | undefined {
  const head = readHead(path, 18);
  const descriptor = head[4];
  if (descriptor === undefined) return undefined;
  const sizeFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 3]!;
  const sizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][sizeFlag]!;
  if (sizeBytes === 0) return undefined;
  const at = 5 + (singleSegment ? 0 : 1) + dictionaryBytes;
  if (head.length < at + sizeBytes) return undefined;
  const view = new DataView(head.buffer, head.byteOffset);
  switch (sizeBytes) {
    case 1:
      return view.getUint8(at);
    case 2:
      return view.getUint16(at, true) + 256;
    case 4:
      return view.getUint32(at, true);
    default:
      return Number(view.getBigUint64(at, true));
  }
}

export interface TempBudget {
  /** Where temporary decompressed dumps go (default the OS temp directory). */
  readonly directory?: string;
  /** Most bytes one decompressed dump may take (default: no limit beyond the free space). */
  readonly bytes?: number;
}

/** Space kept free on the temp file system whatever the budget says, so a batch never fills a disk. */
const FREE_SPACE_RESERVE = 256 * 2 ** 20;

function freeBytes(directory: string): number {
  const stats = statfsSync(directory);
  return Number(stats.bavail) * Number(stats.bsize);
}

export interface DecompressedDump {
  readonly path: string;
  /** Deletes the temporary file (idempotent). */
  readonly remove: () => void;
}

/**
 * A plain copy of a compressed dump in a fresh temporary directory, deleted by `remove`. The
 * decompressed size is checked against the budget and the free space before writing when the
 * header declares it (zstd), else while writing: decompression stops once it passes the bound.
 */
export async function decompressToTemp(
  source: string,
  compression: Compression,
  budget: TempBudget = {},
): Promise<DecompressedDump> {
  const root = budget.directory ?? tmpdir();
  const limit = Math.min(budget.bytes ?? Infinity, freeBytes(root) - FREE_SPACE_RESERVE);
  const declared = compression === 'zstd' ? zstdContentSize(source) : undefined;
  const refuse = (size: number | string) =>
    new VmscopeError(
      'USAGE',
      `decompressed, this dump needs ${size} bytes of temporary space, more than the ${Math.max(0, limit)} available in ${root} (--temp-budget and free space); decompress it yourself`,
      source,
      0,
    );
  if (declared !== undefined && declared > limit) throw refuse(declared);
  if (limit <= 0) throw refuse('some');
  const directory = mkdtempSync(join(root, 'vmscope-batch-'));
  const remove = () => rmSync(directory, { recursive: true, force: true });
  try {
    const target = join(directory, basename(source).replace(/\.(zst|zstd|gz|xz)$/, '') || 'dump');
    if (compression === 'xz') await unxzToFile(source, target, limit);
    else decompressToFile(source, target, { compression, maxBytes: limit });
    return { path: target, remove };
  } catch (error) {
    remove();
    if (error instanceof DecompressedTooLargeError) throw refuse(`more than ${limit}`);
    throw error;
  }
}

async function unxzToFile(source: string, target: string, maxBytes: number): Promise<void> {
  let written = 0;
  // Counted as it streams: an xz bomb stops at the budget, not when the disk is full.
  const bounded = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      written += chunk.length;
      done(written > maxBytes ? new DecompressedTooLargeError(source, 'xz', maxBytes) : null, chunk);
    },
  });
  try {
    // xz-decompress is CommonJS (a WASM liblzma build): its class comes through the default export.
    const decoded = new (xzDecompress().XzReadableStream)(
      Readable.toWeb(createReadStream(source)) as ReadableStream<Uint8Array>,
    );
    await pipeline(Readable.fromWeb(decoded as WebReadableStream<Uint8Array>), bounded, createWriteStream(target));
  } catch (error) {
    if (error instanceof DecompressedTooLargeError) throw error;
    throw new VmscopeError('CORRUPT_HEADER', `xz stream is corrupt: ${(error as Error).message}`, source, 0);
  }
}
