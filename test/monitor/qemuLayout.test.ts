import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  backendRanges,
  openQemuSharedMemory,
  parseCpuRegisters,
  parseSystemFlatView,
} from '../../src/image/qemuSharedMemory.js';
import { VmscopeError } from '../../src/util/errors.js';

/** QEMU 7.2's `info mtree -f` of a 4 GiB pc guest (-S, before the BIOS ran): the PCI hole splits its RAM file in two. */
const FOUR_GIB = `FlatView #0
 AS "I/O", root: io
 Root memory region: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan

FlatView #1
 AS "memory", root: system
 AS "cpu-memory-0", root: system
 Root memory region: system
  0000000000000000-00000000000bffff (prio 0, ram): ram0
  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom
  00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000
  0000000000100000-00000000bfffffff (prio 0, ram): ram0 @0000000000100000
  00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic
  00000000fed00000-00000000fed003ff (prio 0, i/o): hpet
  00000000fee00000-00000000feefffff (prio 4096, i/o): apic-msi
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
  0000000100000000-000000013fffffff (prio 0, ram): ram0 @00000000c0000000
`;

/** The 512 MiB fixture guest once booted: the BIOS areas are the RAM file again (PAM), partly read-only. */
const BOOTED_512M = `FlatView #1
 AS "cpu-smm-0", root: memory
 Root memory region: memory
  0000000000000000-000000001fffffff (prio 0, ram): ram0

FlatView #2
 AS "memory", root: system
 AS "cpu-memory-0", root: system
 AS "cpu-memory-1", root: system
 Root memory region: system
  0000000000000000-00000000000c2fff (prio 0, ram): ram0
  00000000000c3000-00000000000e7fff (prio 0, rom): ram0 @00000000000c3000
  00000000000e8000-00000000000effff (prio 0, ram): ram0 @00000000000e8000
  00000000000f0000-00000000000fffff (prio 0, rom): ram0 @00000000000f0000
  0000000000100000-000000001fffffff (prio 0, ram): ram0 @0000000000100000
  00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
`;

const REGISTERS = `CPU#0
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000001 RDX=0000000000000000
RIP=ffffffff866592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
CR0=80050033 CR2=000000000731cb40 CR3=00000000013bc000 CR4=00750ef0
CPU#1
RIP=ffffffff866592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
CR0=80050033 CR2=0000000000584980 CR3=000000000f610000 CR4=00750ee0
`;

const work = mkdtempSync(join(tmpdir(), 'vmlayout-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("a QEMU guest's RAM file layout, from QEMU's flat view", () => {
  it('maps both halves of a RAM file split by the PCI hole, and nothing another region shadows', () => {
    expect(backendRanges(parseSystemFlatView(FOUR_GIB, 'qmp'), 'ram0')).toEqual([
      { start: 0, end: 0xc0000, fileOffset: 0 },
      { start: 0x100000, end: 0xc0000000, fileOffset: 0x100000 },
      { start: 0x100000000, end: 0x140000000, fileOffset: 0xc0000000 },
    ]);
  });

  it('merges the ram and rom pieces of one mapping, and reads the system view, not the SMM one', () => {
    expect(backendRanges(parseSystemFlatView(BOOTED_512M, 'qmp'), 'ram0')).toEqual([
      { start: 0, end: 0x20000000, fileOffset: 0 },
    ]);
  });

  it('refuses text without a system flat view, and a file shorter than the layout', () => {
    expect(() => parseSystemFlatView('FlatView #0\n AS "I/O", root: io\n', 'qmp')).toThrow(VmscopeError);
    const file = join(work, 'ram');
    writeFileSync(file, new Uint8Array(0x1000));
    truncateSync(file, 0x800);
    expect(() => openQemuSharedMemory(file, { ranges: [{ start: 0, end: 0x1000, fileOffset: 0 }], cpus: [] })).toThrow(
      expect.objectContaining({ code: 'TRUNCATED_FILE' }) as Error,
    );
  });

  it("reads each vCPU's CR3 and RIP from info registers -a", () => {
    expect(parseCpuRegisters(REGISTERS)).toEqual([
      { cpu: 0, cr3: 0x13bc000n, rip: 0xffffffff866592ebn },
      { cpu: 1, cr3: 0xf610000n, rip: 0xffffffff866592ebn },
    ]);
  });
});
