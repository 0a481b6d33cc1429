import { closeSync, copyFileSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import type { CpuState } from '../../src/image/types.js';
import { discoverLinuxKernel } from '../../src/os/linux/discovery.js';
import { QemuSharedMemorySource } from '../../src/monitor/sources/qemuSharedMemorySource.js';
import { FakeQmp } from '../support/fakeQmp.js';
import { fixturePath } from '../support/fixtures.js';
import { staleVmcoreinfo } from '../support/staleVmcoreinfo.js';

/**
 * A guest reset under a live monitor, without QEMU: the clean guest's RAM (its raw dump) in a file
 * served by a fake QMP that gives the vCPUs' registers of the moment. The RAM also holds a
 * VMCOREINFO note an earlier boot left, below the running kernel's (test/support/staleVmcoreinfo.ts).
 * The first check sees the vCPU as a reset leaves it (real mode, CR3 0): no kernel runs. The next
 * sees the running kernel's registers: its kernel, not the one the earlier boot left, must be found.
 * The RAM file stays open from the first check on, so the registers must be each check's own.
 */
const RESET_VCPU: CpuState = { cpu: 0, cr3: 0n, rip: 0xfff0n };

const work = mkdtempSync(join(tmpdir(), 'vmreset-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function registersText(cpus: readonly CpuState[]): string {
  const hex = (value: bigint) => value.toString(16).padStart(16, '0');
  return cpus
    .map(
      ({ cpu, cr3, rip }) =>
        `CPU#${cpu}\nRIP=${hex(rip)} RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\nCR0=80050033 CR2=0000000000000000 CR3=${hex(cr3)} CR4=00750ef0\n`,
    )
    .join('');
}

describe('a live check after a reset', () => {
  const ramPath = join(work, 'ram');
  let runningCpus: readonly CpuState[];
  let runningDtb: number;
  let staleTable: number;
  let ramBytes: number;

  beforeAll(() => {
    // The raw dump is the RAM file as QEMU keeps it (guest-physical = file offset); the ELF of the same moment has the vCPUs.
    const elf = openImage(fixturePath('linux61-clean', 'elf'));
    try {
      const kernel = discoverLinuxKernel(elf);
      runningCpus = elf.cpus;
      runningDtb = kernel.dtb;
      const stale = staleVmcoreinfo(elf, kernel);
      staleTable = stale.staleTable;
      const raw = openImage(fixturePath('linux61-clean', 'raw'));
      expect(raw.ranges).toEqual([{ start: 0, end: raw.totalBytes, fileOffset: 0 }]);
      ramBytes = raw.totalBytes;
      raw.close();
      copyFileSync(fixturePath('linux61-clean', 'raw'), ramPath);
      const fd = openSync(ramPath, 'r+');
      for (const [physical, bytes] of stale.patches) writeSync(fd, bytes, 0, bytes.length, physical);
      closeSync(fd);
    } finally {
      elf.close();
    }
    expect(runningCpus.length).toBeGreaterThan(0);
  });

  it('finds the kernel the vCPUs run now, by the registers of this check, not of the check before', async () => {
    let vcpus: readonly CpuState[] = [RESET_VCPU];
    const flatView = `FlatView #0\n AS "memory", root: system\n Root memory region: system\n  0000000000000000-${(ramBytes - 1).toString(16).padStart(16, '0')} (prio 0, ram): ram0\n`;
    const qmp = new FakeQmp(work, (command, _socket, send) => {
      const reply = (value: unknown) => send({ return: value, id: command.id });
      if (command.execute === 'query-memdev') reply([{ id: 'ram0', share: true, size: ramBytes }]);
      else if (command.execute === 'qom-get') reply(ramPath);
      else if (command.execute === 'query-status') reply({ running: true, status: 'running' });
      else if (command.execute === 'human-monitor-command') {
        const line = command.arguments?.['command-line'];
        reply(line === 'info mtree -f' ? flatView : registersText(vcpus));
      } else send({ error: { class: 'CommandNotFound', desc: command.execute }, id: command.id });
    });
    await qmp.listen();
    const source = new QemuSharedMemorySource({ ramPath, qmpSocket: qmp.socketPath, intervalMs: 0 });
    const snapshots = source[Symbol.asyncIterator]();
    const contextOptions = { cacheDir: join(work, 'profiles') };
    try {
      const atReset = (await snapshots.next()).value!;
      await expect(atReset.openContext!(contextOptions)).rejects.toMatchObject({
        code: 'NO_KERNEL_FOUND',
        message: expect.stringMatching(/runs on no vCPU/) as string,
      });
      await atReset.release();

      vcpus = runningCpus;
      const booted = (await snapshots.next()).value!;
      const context = await booted.openContext!(contextOptions);
      try {
        expect(context.image.cpus).toEqual(runningCpus);
        expect(context.kernel.dtb).toBe(runningDtb);
        expect(context.kernel.dtb).not.toBe(staleTable);
      } finally {
        context.close();
      }
      await booted.release();
    } finally {
      await snapshots.return?.();
      await qmp.close();
    }
  });
});
