import { chmodSync, closeSync, copyFileSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext, type CarriedKernel } from '../../src/analyses/context.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { openImage } from '../../src/image/open.js';
import { openQemuSharedMemory } from '../../src/image/qemuSharedMemory.js';
import type { MemoryImage } from '../../src/image/types.js';
import { sameKernelRuns } from '../../src/monitor/sources/qemuSharedMemorySource.js';
import { runsOnAVcpu } from '../../src/os/linux/runningKernel.js';
import type { Snapshot, SnapshotSource } from '../../src/monitor/sources/source.js';
import { watch, type SnapshotTimings } from '../../src/monitor/watch.js';
import { discoverLinuxKernel } from '../../src/os/linux/discovery.js';
import { fixturePath } from '../support/fixtures.js';

/**
 * Reads of a running guest are smeared: a list may change while it is walked. Here the guest is
 * a copy of the clean 6.1 guest's RAM (a pmemsave of [0, 512 MiB): byte for byte what QEMU's
 * shared RAM file of this 512 MiB pc guest holds, at the layout QEMU reports for it), and the
 * "guest" changes its task list between the watch's reads: a process is unlinked (as a task
 * list mid-update looks to a walker, and as DKOM looks) for one read only. The watch must alert
 * nothing the confirmation read does not repeat, and still alert what both reads see.
 */
const work = mkdtempSync(join(tmpdir(), 'vmsmear-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const cacheDir = join(work, 'profiles');
const VICTIM = 'lab_worker_2';
/** Two tasks after VICTIM on the task list: unlinking one leaves the other's links alone. */
const SECOND_VICTIM = 'lab_web';

interface Unlink {
  /** Physical address and bytes of the predecessor's tasks.next and the successor's tasks.prev: unlinked and linked. */
  readonly writes: ReadonlyArray<{ physical: number; unlinked: bigint; linked: bigint }>;
}

/** Where to write to take each victim off the task list (and put it back), found by walking the list once. */
async function planUnlinks(image: MemoryImage, victims: readonly string[]): Promise<Map<string, Unlink>> {
  const context = DumpContext.overLiveImage(image, { cacheDir });
  try {
    const reader = await context.get(readerProvider);
    const { tasks } = await context.get(taskListProvider);
    const link = BigInt(reader.profile.offsetOf('task_struct', 'tasks'));
    const physical = (virtual: bigint) => context.kernel.space.translate(virtual).physical;
    const positions = victims.map((victim) => tasks.findIndex((task) => task.comm === victim));
    // Neighbours' links are rewritten: victims next to each other would rewrite each other's.
    for (const [i, at] of positions.entries()) {
      expect(at).toBeGreaterThan(0);
      for (const other of positions.slice(i + 1)) expect(Math.abs(other - at)).toBeGreaterThanOrEqual(2);
    }
    return new Map(
      victims.map((victim, i) => {
        const at = positions[i]!;
        const [before, unlinked, after] = [tasks[at - 1]!, tasks[at]!, tasks[at + 1]!];
        const writes = [
          // before.tasks.next: victim.tasks → after.tasks
          { physical: physical(before.task + link), unlinked: after.task + link, linked: unlinked.task + link },
          // after.tasks.prev: victim.tasks → before.tasks
          { physical: physical(after.task + link + 8n), unlinked: before.task + link, linked: unlinked.task + link },
        ];
        return [victim, { writes }];
      }),
    );
  } finally {
    context.close();
  }
}

function applyUnlink(file: string, unlink: Unlink, unlinked: boolean): void {
  const fd = openSync(file, 'r+');
  try {
    for (const write of unlink.writes) {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, unlinked ? write.unlinked : write.linked, true);
      writeSync(fd, bytes, 0, 8, write.physical);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Snapshots of the RAM copy, read as the live source reads it (fresh contexts over one image,
 * the kernel carried), where each read first takes off the task list the victims its plan
 * names (and puts the others back): `plan[snapshot][read]`, the last entry repeated.
 */
function mutatingSource(
  file: string,
  image: MemoryImage,
  unlinks: ReadonlyMap<string, Unlink>,
  plan: ReadonlyArray<ReadonlyArray<readonly string[]>>,
): SnapshotSource {
  let carried: CarriedKernel | undefined;
  const snapshots = plan.map((unlinkedAtRead): Snapshot => {
    let read = 0;
    return {
      path: file,
      receivedAt: new Date(),
      smeared: true,
      release: () => Promise.resolve(),
      openContext: async (options) => {
        const unlinked = unlinkedAtRead[Math.min(read, unlinkedAtRead.length - 1)]!;
        for (const [victim, unlink] of unlinks) applyUnlink(file, unlink, unlinked.includes(victim));
        read++;
        const context = DumpContext.overLiveImage(image, options, carried);
        carried ??= await context.carriedKernel();
        return context;
      },
    };
  });
  const iterator = snapshots[Symbol.iterator]();
  return {
    [Symbol.asyncIterator]: () => ({ next: () => Promise.resolve(iterator.next()) }),
    close: () => Promise.resolve(),
  };
}

/** A copy of the clean guest's RAM, opened as QEMU's shared RAM file. */
function guestRamCopy(name: string): { ram: string; image: MemoryImage } {
  const ram = join(work, name);
  copyFileSync(fixturePath('linux61-clean', 'raw'), ram);
  chmodSync(ram, 0o600); // the fixture is read-only, its copy is the guest's to write
  const size = statSync(ram).size;
  return { ram, image: openQemuSharedMemory(ram, { ranges: [{ start: 0, end: size, fileOffset: 0 }], cpus: [] }) };
}

/** Watches the plan through; every alert with the check (1-based) that raised it, and the reads of each check. */
async function watchPlan(
  ram: string,
  image: MemoryImage,
  unlinks: ReadonlyMap<string, Unlink>,
  plan: ReadonlyArray<ReadonlyArray<readonly string[]>>,
): Promise<{ alerts: Array<Array<string | number | null>>; reads: Array<number | undefined> }> {
  const alerts: Array<Array<string | number | null>> = [];
  const timings: SnapshotTimings[] = [];
  for await (const alert of watch({
    source: mutatingSource(ram, image, unlinks, plan),
    contextOptions: { cacheDir },
    onSnapshotDone: (timing) => timings.push(timing),
  }))
    alerts.push([timings.length + 1, alert.type, alert.kind, alert.change, alert.comm]);
  return { alerts: alerts.sort(), reads: timings.map((timing) => timing.reads) };
}

describe('smeared live reads: a finding is alerted only when the confirmation read repeats it', () => {
  it(
    'a process unlinked for one read raises nothing; unlinked for both reads, it is alerted',
    { timeout: 300_000 },
    async () => {
      const { ram, image } = guestRamCopy('guest-ram');
      try {
        const unlinks = await planUnlinks(image, [VICTIM]);
        // Snapshot 2 unlinks it for its first read only (the confirmation and a third read disagree with it), snapshot 3 for both reads.
        const { alerts, reads } = await watchPlan(ram, image, unlinks, [
          [[]],
          [[VICTIM], [], []],
          [[VICTIM], [VICTIM]],
        ]);
        expect(reads).toEqual([1, 3, 2]);
        expect(alerts).toEqual([
          [3, 'change', 'hidden_process', 'appeared', VICTIM],
          [3, 'change', 'process', 'ended', VICTIM],
        ]);
      } finally {
        image.close();
      }
    },
  );

  it(
    'a lasting change that begins between the reads of one check is alerted, by that check or the next, never lost',
    { timeout: 300_000 },
    async () => {
      const { ram, image } = guestRamCopy('changing-ram');
      try {
        const unlinks = await planUnlinks(image, [VICTIM, SECOND_VICTIM]);
        const { alerts, reads } = await watchPlan(ram, image, unlinks, [
          [[]],
          // A blip in the first read, then the second victim goes for good: reads 2 and 3 agree on it.
          [[VICTIM], [SECOND_VICTIM], [SECOND_VICTIM]],
          // A blip, a quiet read, then the second victim is back in the last read only: out of reads, nothing agreed ...
          [[VICTIM, SECOND_VICTIM], [SECOND_VICTIM], []],
          // ... so its return is still news to the next check.
          [[], []],
        ]);
        expect(reads).toEqual([1, 3, 3, 2]);
        expect(alerts).toEqual([
          [2, 'change', 'hidden_process', 'appeared', SECOND_VICTIM],
          [2, 'change', 'process', 'ended', SECOND_VICTIM],
          [4, 'change', 'hidden_process', 'disappeared', SECOND_VICTIM],
          [4, 'change', 'process', 'started', SECOND_VICTIM],
        ]);
      } finally {
        image.close();
      }
    },
  );

  it(
    'a guest rebooted into another kernel is noticed: the carried kernel is dropped and found again',
    { timeout: 300_000 },
    async () => {
      const ram = join(work, 'rebooting-ram');
      copyFileSync(fixturePath('linux61-clean', 'raw'), ram);
      const image = openQemuSharedMemory(ram, {
        ranges: [{ start: 0, end: statSync(ram).size, fileOffset: 0 }],
        cpus: [],
      });
      try {
        const before = DumpContext.overLiveImage(image, { cacheDir });
        const carried = await before.carriedKernel();
        before.close();
        expect(sameKernelRuns(image, carried)).toBe(true);
        // The same file, now holding the 6.12 guest's RAM (what QEMU's file holds after a reboot into it).
        copyFileSync(fixturePath('linux612-clean', 'raw'), ram);
        expect(sameKernelRuns(image, carried)).toBe(false);
        const after = DumpContext.overLiveImage(image, { cacheDir });
        expect(after.kernel.release).not.toBe(carried.kernel.release);
        after.close();
      } finally {
        image.close();
      }
    },
  );

  it('a kernel no vCPU runs (what an earlier boot left in memory) is not the running one', () => {
    // t0's own vCPUs run t0's kernel; the clean guest's (another boot, other page tables) do not, nor one in the firmware.
    const t0 = openImage(fixturePath('linux61-t0', 'elf'));
    const other = openImage(fixturePath('linux61-clean', 'elf'));
    try {
      const { dtb } = discoverLinuxKernel(t0);
      expect(t0.cpus.length).toBeGreaterThan(0);
      expect(runsOnAVcpu(t0, t0.cpus, dtb)).toBe(true);
      expect(runsOnAVcpu(t0, other.cpus, dtb)).toBe(false);
      expect(runsOnAVcpu(t0, [{ cpu: 0, cr3: 0n, rip: 0xfff0n }], dtb)).toBe(false);
      // No vCPU state from QEMU: nothing says the kernel is not running.
      expect(runsOnAVcpu(t0, [], dtb)).toBe(true);
    } finally {
      t0.close();
      other.close();
    }
  });
});
