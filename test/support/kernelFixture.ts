import { DumpContext } from '../../src/analyses/context.js';
import { CodeOwners } from '../../src/os/linux/codeOwners.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import { findHiddenModules, walkModuleList, type ModuleInfo } from '../../src/os/linux/modules.js';
import { fixturePath, type FixtureFormat } from './fixtures.js';

/** The snapshots the kernel readers are judged on, each in one of its formats (the rootkit only exists as LiME). */
export const READER_FIXTURES: ReadonlyArray<{ name: string; format: FixtureFormat }> = [
  { name: 'linux61-modern', format: 'elf' },
  { name: 'linux61-clean', format: 'elf' },
  { name: 'linux61-rootkit', format: 'lime' },
  { name: 'linux612-clean', format: 'elf' },
  { name: 'linux61-t0', format: 'elf' },
];

/** A fixture opened for the os/linux readers: its reader, its modules (listed and hidden) and their owners. */
export interface KernelFixture {
  readonly context: DumpContext;
  readonly reader: KernelReader;
  readonly modules: readonly ModuleInfo[];
  readonly owners: CodeOwners;
}

export async function openKernelFixture(name: string, format: FixtureFormat, cacheDir: string): Promise<KernelFixture> {
  return kernelFixtureOf(new DumpContext(fixturePath(name, format), { cacheDir }));
}

/** The readers' inputs for an opened context (an overlay of a fixture included). */
export async function kernelFixtureOf(context: DumpContext): Promise<KernelFixture> {
  const reader = new KernelReader(context.kernel.space, await context.profile());
  const listed = walkModuleList(reader);
  const hidden = findHiddenModules(reader, listed.modules);
  if (listed.problems.length > 0 || hidden.problems.length > 0) throw new Error(`module search of ${context.path} is incomplete`);
  const modules = [...listed.modules, ...hidden.hidden.map((found) => found.module)];
  return { context, reader, modules, owners: new CodeOwners(reader, modules) };
}
