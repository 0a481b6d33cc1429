import { renameSync, writeFileSync } from 'node:fs';

/** Writes `data` to `path` through a temporary file in the same folder: a reader sees the old file or the whole new one, never part of it. */
export function writeFileAtomically(path: string, data: string | Uint8Array): void {
  const partial = `${path}.partial-${process.pid}`;
  writeFileSync(partial, data);
  renameSync(partial, path);
}
