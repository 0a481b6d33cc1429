import { closeSync, existsSync, openSync, readSync, realpathSync, statfsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { VmscopeError } from '../util/errors.js';
import { copiesDirectory } from './copiesDirectory.js';
import { DecompressedTooLargeError, decompressToFile, type Compression } from './decompress.js';

/**
 * A dump compressed as a whole (`.zst`, `.gz`, `.xz`, recognised by content) is read from a
 * decompressed temporary copy: the formats inside need random access. The copy lives in a
 * per-process directory (so the scan pool's threads, which reopen the dump by its path, find it
 * instead of decompressing again) and is deleted when the process exits (copiesDirectory.ts). It must fit the budget:
 * `VMSCOPE_TEMP_BUDGET_MIB` (default: the free space) in `VMSCOPE_TEMP_DIR` (default the OS temp
 * directory), less a reserve so a dump never fills the disk.
 */
export const COMPRESSED_MAGICS: ReadonlyArray<{ magic: readonly number[]; compression: Compression }> = [
  { magic: [0x28, 0xb5, 0x2f, 0xfd], compression: 'zstd' },
  { magic: [0x1f, 0x8b], compression: 'gzip' },
  { magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], compression: 'xz' },
];
const FREE_SPACE_RESERVE = 256 * 2 ** 20;

export function compressionOfHead(head: Uint8Array): Compression | undefined {
  return COMPRESSED_MAGICS.find(({ magic }) => magic.every((byte, i) => head[i] === byte))?.compression;
}

export interface TempBudget {
  readonly directory: string;
  readonly bytes: number;
}

export function tempBudgetFromEnvironment(): TempBudget {
  const mib = Number(process.env.VMSCOPE_TEMP_BUDGET_MIB);
  return {
    directory: process.env.VMSCOPE_TEMP_DIR ?? tmpdir(),
    bytes: Number.isFinite(mib) && mib > 0 ? mib * 2 ** 20 : Infinity,
  };
}

/** The decompressed size a zstd frame header declares (the zstd CLI writes it for files), if any. */
export function zstdDeclaredSize(head: Uint8Array): number | undefined {
  const descriptor = head[4];
  if (descriptor === undefined) return undefined;
  const singleSegment = (descriptor >> 5) & 1;
  const sizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6]!;
  if (sizeBytes === 0) return undefined;
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]!;
  if (head.length < at + sizeBytes) return undefined;
  const view = new DataView(head.buffer, head.byteOffset);
  if (sizeBytes === 1) return view.getUint8(at);
  if (sizeBytes === 2) return view.getUint16(at, true) + 256;
  if (sizeBytes === 4) return view.getUint32(at, true);
  return Number(view.getBigUint64(at, true));
}

/** Path of the plain copy of compressed `path`, made on first use within the budget. */
export function decompressedCopy(
  path: string,
  compression: Compression,
  budget: TempBudget = tempBudgetFromEnvironment(),
): string {
  const stat = statSync(path);
  const key = createHash('sha256')
    .update(`${realpathSync(path)}\0${stat.size}\0${stat.mtimeMs}`)
    .digest('hex')
    .slice(0, 24);
  const directory = copiesDirectory(budget.directory);
  const target = join(directory, key);
  if (existsSync(target)) return target;
  const free = statfsSync(directory);
  const limit = Math.min(budget.bytes, Number(free.bavail) * Number(free.bsize) - FREE_SPACE_RESERVE);
  const refuse = (size: number | string): VmscopeError =>
    new VmscopeError(
      'USAGE',
      `decompressed, this ${compression} dump needs ${size} bytes of temporary space, more than the ${Math.max(0, limit)} available in ${budget.directory} (VMSCOPE_TEMP_BUDGET_MIB, VMSCOPE_TEMP_DIR and free space); decompress it yourself`,
      path,
      0,
    );
  const head = new Uint8Array(18);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const declared = compression === 'zstd' ? zstdDeclaredSize(head) : undefined;
  if (declared !== undefined && declared > limit) throw refuse(declared);
  if (limit <= 0) throw refuse('some');
  try {
    decompressToFile(path, target, { compression, maxBytes: limit });
  } catch (error) {
    if (error instanceof DecompressedTooLargeError) throw refuse(`more than ${limit}`);
    throw error;
  }
  return target;
}
