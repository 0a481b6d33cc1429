import { appendFileSync, readFileSync, renameSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { VmscopeError } from './errors.js';

/**
 * Writes `data` to `path` through a temporary file in the same folder: a reader sees the old file or the whole new one, never part of it.
 * `more` pieces are appended in order, so a big body need not be copied behind its header first.
 */
export function writeFileAtomically(
  path: string,
  data: string | Uint8Array,
  ...more: Array<string | Uint8Array>
): void {
  const partial = `${path}.partial-${process.pid}`;
  writeFileSync(partial, data);
  for (const piece of more) appendFileSync(partial, piece);
  renameSync(partial, path);
}

/**
 * The bytes of a small input file (rules, a policy, an ISF), refusing what would hang or
 * exhaust memory before reading a byte: anything but a regular file (a FIFO with no writer,
 * /dev/zero, a directory) and files over `maxBytes`.
 */
export function readInputFile(path: string, what: string, maxBytes: number): Buffer {
  let stat: Stats;
  try {
    stat = statSync(path);
  } catch (error) {
    throw new VmscopeError(
      'UNREADABLE_FILE',
      `cannot read the ${what}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      path,
    );
  }
  if (!stat.isFile()) throw new VmscopeError('UNREADABLE_FILE', `the ${what} is not a regular file`, path);
  if (stat.size > maxBytes) {
    throw new VmscopeError(
      'USAGE',
      `the ${what} is ${stat.size} bytes, more than the ${maxBytes} a ${what} may have`,
      path,
    );
  }
  try {
    return readFileSync(path);
  } catch (error) {
    throw new VmscopeError(
      'UNREADABLE_FILE',
      `cannot read the ${what}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      path,
    );
  }
}

/**
 * Where a command may write its output: never over one of its inputs (`isf DUMP -o DUMP`), and
 * a path whose folder exists and that is not itself a folder; checked before any work.
 */
export function checkOutputPath(path: string, inputs: readonly string[]): void {
  const target = resolve(path);
  const existing = statSync(target, { throwIfNoEntry: false });
  for (const input of inputs) {
    const source = statSync(input, { throwIfNoEntry: false });
    if (
      resolve(input) === target ||
      (existing && source && existing.ino === source.ino && existing.dev === source.dev)
    ) {
      throw new VmscopeError('USAGE', 'refusing to write over an input file', path);
    }
  }
  if (existing?.isDirectory()) throw new VmscopeError('USAGE', 'the output is a directory; give a file name', path);
  if (!statSync(dirname(target), { throwIfNoEntry: false })?.isDirectory()) {
    throw new VmscopeError('USAGE', `the output's folder ${dirname(target)} does not exist`, path);
  }
}

/** Writes a command's output file; a failure (a full disk, no permission) is a typed error naming it. */
export function writeOutputFile(path: string, data: string | Uint8Array): void {
  try {
    writeFileSync(path, data);
  } catch (error) {
    throw new VmscopeError(
      'UNREADABLE_FILE',
      `cannot write: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      path,
    );
  }
}

/** Which file a path named when it was opened: a dump replaced or rewritten under a long scan is another file. */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
}

export function fileIdentity(path: string): FileIdentity | undefined {
  const stat = statSync(path, { throwIfNoEntry: false });
  return stat && { dev: stat.dev, ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs };
}

/** Throws INPUT_CHANGED when `path` is no longer the file `expected` describes. */
export function assertSameFile(path: string, expected: FileIdentity): void {
  const now = fileIdentity(path);
  if (
    !now ||
    now.dev !== expected.dev ||
    now.ino !== expected.ino ||
    now.size !== expected.size ||
    now.mtimeMs !== expected.mtimeMs
  ) {
    throw new VmscopeError(
      'INPUT_CHANGED',
      'the dump was replaced or modified while it was being analysed: its reads can no longer be trusted',
      path,
    );
  }
}
