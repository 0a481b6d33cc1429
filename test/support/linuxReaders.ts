import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DumpContext } from '../../src/analyses/context.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import { walkTaskList, type TaskInfo } from '../../src/os/linux/tasks.js';
import { fixturePath, type FixtureFormat } from './fixtures.js';

/** A fixture opened for the os/linux readers: its context, a kernel reader and the task list. */
export interface LinuxFixture {
  readonly context: DumpContext;
  readonly reader: KernelReader;
  readonly tasks: TaskInfo[];
  /** The thread-group leader named `comm` (lab processes have unique names). */
  task(comm: string): TaskInfo;
  close(): void;
}

/** Open a fixture with a private profile cache, removed on close. */
export async function openLinuxFixture(name: string, format: FixtureFormat): Promise<LinuxFixture> {
  const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-readers-'));
  const context = new DumpContext(fixturePath(name, format), { cacheDir });
  return readersOver(context, () => {
    context.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });
}

/** Readers over an existing context (an OverlayContext with patched guest memory). */
export async function readersOver(context: DumpContext, close: () => void = () => {}): Promise<LinuxFixture> {
  const profile = await context.profile();
  const reader = new KernelReader(context.kernel.space, profile);
  const { tasks, problems } = walkTaskList(reader, profile.requireSymbol('init_task'));
  if (problems.length > 0)
    throw new Error(`task list of ${context.path}: ${problems.map((problem) => problem.detail).join('; ')}`);
  return {
    context,
    reader,
    tasks,
    task(comm) {
      const found = tasks.find((task) => task.comm === comm);
      if (!found) throw new Error(`no ${comm} in ${context.path}`);
      return found;
    },
    close,
  };
}
