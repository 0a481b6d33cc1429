import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DumpContext } from '../../../src/analyses/context.js';
import { CodeOwners } from '../../../src/os/linux/codeOwners.js';
import { KernelReader } from '../../../src/os/linux/kernelReader.js';
import { findHiddenModules, walkModuleList } from '../../../src/os/linux/modules.js';
import { dumpFixtures, fixturePath, snapshotNames, type FixtureFormat } from '../../support/fixtures.js';

/** The readers' inputs for one dump: its context, a kernel reader, and owners over listed and hidden modules. */
export interface KernelFixture {
  readonly context: DumpContext;
  readonly reader: KernelReader;
  readonly owners: CodeOwners;
  close(): void;
}

/** Owners as the analyses build them: every listed module plus the hidden ones. */
export function ownersOf(reader: KernelReader): CodeOwners {
  const listed = walkModuleList(reader).modules;
  return new CodeOwners(reader, [...listed, ...findHiddenModules(reader, listed).hidden.map((found) => found.module)]);
}

export async function openKernel(name: string, format: FixtureFormat): Promise<KernelFixture> {
  const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-readers-'));
  const context = new DumpContext(fixturePath(name, format), { cacheDir });
  const reader = new KernelReader(context.kernel.space, await context.profile());
  return {
    context,
    reader,
    owners: ownersOf(reader),
    close: () => {
      context.close();
      rmSync(cacheDir, { recursive: true, force: true });
    },
  };
}

/** The zero-false-positive referees: one dump of every snapshot but linux61-modern. */
export const otherSnapshots = snapshotNames()
  .filter((name) => name !== 'linux61-modern')
  .map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);
