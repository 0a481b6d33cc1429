import { readdirSync, readFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isMainThread } from 'node:worker_threads';
import { join } from 'node:path';

/**
 * The per-process folder of decompressed copies (container.ts): `vmscope-decompressed-<pid>` in
 * the temporary directory, removed when the process exits. A process killed by a signal (Ctrl-C on
 * a long `check`, a batch worker stopped, vitest ending its workers) never gets to, and its copies
 * can be GiBs; so the first process to make its own folder there removes those of processes that
 * are gone. A folder is only taken for one of this machine's dead processes when its owner file
 * names this host and this boot (a temporary directory shared by containers or kept over a reboot
 * holds folders whose pids mean nothing here), and its pid is not running.
 */
const PREFIX = 'vmscope-decompressed-';
const OWNER_FILE = 'owner.json';

interface Owner {
  readonly pid: number;
  readonly host: string;
  readonly boot: string;
}

let processDirectory: string | undefined;

/**
 * This process's folder of copies under `root`, made (and the dead ones' removed) on first use.
 * The main thread owns it: a worker thread's 'exit' is its own end, not the process's, and the
 * scan pool's threads end while the main thread still reads the copies. A worker thread that makes
 * it (a batch job's thread, with no copy on the main thread) removes it when it ends, as before.
 */
export function copiesDirectory(root: string): string {
  if (!processDirectory) {
    const directory = join(root, `${PREFIX}${process.pid}`);
    if (isMainThread) removeDeadProcessCopies(root);
    const made = mkdirSync(directory, { recursive: true }) !== undefined;
    if (isMainThread || made) {
      writeFileSync(join(directory, OWNER_FILE), JSON.stringify(thisProcess()));
      process.once('exit', () => rmSync(directory, { recursive: true, force: true }));
    }
    processDirectory = directory;
  }
  return processDirectory;
}

/** Removes the folders of copies under `root` whose owner is a process of this host and boot that is gone. Returns their names. */
export function removeDeadProcessCopies(root: string): string[] {
  const self = thisProcess();
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(root).filter((name) => name.startsWith(PREFIX));
  } catch {
    return removed;
  }
  for (const name of names) {
    const owner = ownerOf(join(root, name));
    if (
      !owner ||
      owner.host !== self.host ||
      owner.boot !== self.boot ||
      owner.pid === self.pid ||
      isRunning(owner.pid)
    )
      continue;
    rmSync(join(root, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

function ownerOf(directory: string): Owner | undefined {
  try {
    const owner = JSON.parse(readFileSync(join(directory, OWNER_FILE), 'utf8')) as Partial<Owner>;
    if (typeof owner.pid !== 'number' || typeof owner.host !== 'string' || typeof owner.boot !== 'string')
      return undefined;
    return owner as Owner;
  } catch {
    return undefined; // not ours to judge: no owner file (an older vmscope's folder), or one being written
  }
}

function thisProcess(): Owner {
  let boot = '';
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    // Not Linux: the host name alone tells machines apart.
  }
  return { pid: process.pid, host: hostname(), boot };
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: running, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
