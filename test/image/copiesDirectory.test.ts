import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { removeDeadProcessCopies } from '../../src/image/copiesDirectory.js';

/**
 * Decompressed copies left by processes that were killed (and so never ran their exit handler)
 * are removed by the next vmscope, and only those: never a running process's, another host's or
 * another boot's, nor a folder without an owner file.
 */

const root = mkdtempSync(join(tmpdir(), 'vmscope-copies-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

function folder(name: string, owner: object | undefined): void {
  mkdirSync(join(root, name));
  writeFileSync(join(root, name, 'copy'), 'decompressed bytes');
  if (owner) writeFileSync(join(root, name, 'owner.json'), JSON.stringify(owner));
}

describe('copies of processes that are gone', () => {
  it('are removed when their owner was a process of this host and boot that no longer runs', () => {
    const gone = spawnSync(process.execPath, ['-e', '0']).pid;
    const here = { host: hostname(), boot: bootId() };
    folder(`vmscope-decompressed-${gone}`, { pid: gone, ...here });
    folder(`vmscope-decompressed-${process.ppid}`, { pid: process.ppid, ...here });
    folder(`vmscope-decompressed-${process.pid}`, { pid: process.pid, ...here });
    folder('vmscope-decompressed-1000001', { pid: gone, host: `not-${here.host}`, boot: here.boot });
    folder('vmscope-decompressed-1000002', { pid: gone, host: here.host, boot: `not-${here.boot}` });
    folder('vmscope-decompressed-1000003', undefined);
    folder('vmscope-other-1000004', { pid: gone, ...here });

    expect(removeDeadProcessCopies(root)).toEqual([`vmscope-decompressed-${gone}`]);
    expect(existsSync(join(root, `vmscope-decompressed-${gone}`))).toBe(false);
    expect(readdirSync(root).sort()).toEqual(
      [
        `vmscope-decompressed-${process.ppid}`,
        `vmscope-decompressed-${process.pid}`,
        'vmscope-decompressed-1000001',
        'vmscope-decompressed-1000002',
        'vmscope-decompressed-1000003',
        'vmscope-other-1000004',
      ].sort(),
    );
  });

  it('a missing temporary directory is nothing to remove', () => {
    expect(removeDeadProcessCopies(join(root, 'absent'))).toEqual([]);
  });
});
