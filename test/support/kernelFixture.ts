import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DumpContext } from '../../src/analyses/context.js';
import { CodeOwners } from '../../src/os/linux/codeOwners.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import { findHiddenModules, walkModuleList, type ModuleInfo } from '../../src/os/linux/modules.js';
import { fixturePath, sharedFixtures, type FixtureFormat } from './fixtures.js';

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
  if (listed.problems.length > 0 || hidden.problems.length > 0)
    throw new Error(`module search of ${context.path} is incomplete`);
  const modules = [...listed.modules, ...hidden.hidden.map((found) => found.module)];
  return { context, reader, modules, owners: new CodeOwners(reader, modules) };
}

/**
 * The lines of the guest's last `LAB:SECTION <name>` … `LAB:ENDSECTION <name>` block on its serial
 * console (what it printed from `dmesg`, /proc/sys/kernel/tainted, … right before the snapshot).
 */
export function consoleSection(name: string, section: string): string[] {
  const lines = readFileSync(join(sharedFixtures, `${name}.console.txt`), 'utf8')
    .replaceAll('\r', '')
    .split('\n');
  const start = lines.lastIndexOf(`LAB:SECTION ${section}`);
  const end = lines.indexOf(`LAB:ENDSECTION ${section}`, start);
  if (start < 0 || end < 0) throw new Error(`${name}.console.txt has no ${section} section`);
  const body = lines.slice(start + 1, end);
  while (body.at(-1) === '') body.pop();
  return body;
}
