import { copyFileSync, mkdtempSync, openSync, closeSync, writeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DumpContext } from '../../src/analyses/context.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { processAddressSpace } from '../../src/os/linux/processSpace.js';
import { readMemoryRegions } from '../../src/os/linux/vmas.js';
import { TASK_COMM_LEN } from '../../src/os/linux/tasks.js';

/** What to plant: new comms for some processes, strings written into a writable page of others. */
export interface Plants {
  readonly comms: Readonly<Record<string, string>>;
  readonly memory: Readonly<Record<string, string>>;
}

/**
 * A copy of a raw fixture (file offset = physical address) with plants written into it, under
 * a fresh temporary directory: the shared fixture is never written. Addresses come from the
 * original dump's own kernel structures (task_struct.comm through the direct map; a user page
 * through the process's page tables).
 */
export async function plantedCopy(rawFixture: string, plants: Plants): Promise<{ path: string; remove(): void }> {
  const directory = mkdtempSync(join(tmpdir(), 'vmscope-plugins-'));
  const path = join(directory, 'planted.raw');
  const context = new DumpContext(rawFixture, { cacheDir: false });
  const writes: Array<{ physical: number; bytes: Uint8Array }> = [];
  try {
    const reader = await context.get(readerProvider);
    const { tasks } = await context.get(taskListProvider);
    const byComm = (comm: string) => {
      const task = tasks.find((candidate) => candidate.comm === comm);
      if (!task) throw new Error(`no process ${comm} in ${rawFixture}`);
      return task;
    };
    const commOffset = BigInt(reader.profile.offsetOf('task_struct', 'comm'));
    for (const [comm, replacement] of Object.entries(plants.comms)) {
      const bytes = new Uint8Array(TASK_COMM_LEN);
      bytes.set(new TextEncoder().encode(replacement).subarray(0, TASK_COMM_LEN - 1));
      writes.push({ physical: Number(byComm(comm).task + commOffset - context.kernel.pageOffsetBase), bytes });
    }
    for (const [comm, text] of Object.entries(plants.memory)) {
      const task = byComm(comm);
      const space = processAddressSpace(context.kernel, reader, task.mm);
      const page = readMemoryRegions(reader, task.mm)
        // The process's own heap first: a file's data page may still be shared with other processes.
        .regions.filter((region) => region.perms.startsWith('rw'))
        .sort((a, b) => Number(b.path === '[heap]') - Number(a.path === '[heap]'))
        .flatMap((region) => {
          const found = space.tryTranslate(region.start);
          return found ? [found.physical] : [];
        })[0];
      if (page === undefined) throw new Error(`${comm} has no present writable page`);
      writes.push({ physical: Number(page), bytes: new TextEncoder().encode(text) });
    }
  } finally {
    context.close();
  }
  copyFileSync(rawFixture, path);
  const fd = openSync(path, 'r+');
  try {
    for (const { physical, bytes } of writes) writeSync(fd, bytes, 0, bytes.length, physical);
  } finally {
    closeSync(fd);
  }
  return { path, remove: () => rmSync(directory, { recursive: true, force: true }) };
}
