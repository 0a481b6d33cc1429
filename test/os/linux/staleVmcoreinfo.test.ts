import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openImage } from '../../../src/image/open.js';
import type { MemoryImage } from '../../../src/image/types.js';
import { discoverLinuxKernel, type LinuxKernel } from '../../../src/os/linux/discovery.js';
import { START_KERNEL_MAP } from '../../../src/os/linux/layout.js';
import { fixturePath } from '../../support/fixtures.js';
import { OverlayImage } from '../../support/overlay.js';

/**
 * After a reboot, the VMCOREINFO note of the earlier boot can still sit in RAM, below the new
 * one, with the page tables it names: a self-consistent layout of a kernel no vCPU runs. The
 * test plants such a note in a real dump that has its vCPUs' CR3 (a dump-guest-memory ELF):
 * below the real note, naming a copy of the kernel's top-level table whose kernel half differs
 * in an unused entry (as an earlier boot's would), so it still maps the kernel's text and banner.
 */
const PAGE = 4096;
const NOTE_NAME = 'VMCOREINFO';
/** An entry of the kernel half that maps nothing in this dump: changed, it makes the copy another table but translates the same. */
const UNUSED_KERNEL_ENTRY = 300;

function answer(kernel: LinuxKernel) {
  const { release, banner, bannerPhysical, kaslrSlide, physBase, dtb, pageOffsetBase, method } = kernel;
  return {
    release,
    banner,
    bannerPhysical,
    kaslrSlide,
    physBase,
    dtb,
    pageOffsetBase,
    method,
    note: kernel.vmcoreinfo?.physical,
  };
}

/** Zeroed pages below `below` (nothing of the kernel's is there to break), lowest first. */
function zeroPages(image: MemoryImage, below: number, count: number): number[] {
  const found: number[] = [];
  const page = new Uint8Array(PAGE);
  for (let physical = 1 << 20; physical + PAGE <= below && found.length < count; physical += PAGE) {
    if (image.readPresent(physical, page) === PAGE && page.every((byte) => byte === 0)) found.push(physical);
  }
  if (found.length < count) throw new Error(`only ${found.length} zero pages below 0x${below.toString(16)}`);
  return found;
}

/** An Elf64 note as the kernel writes VMCOREINFO: namesz 11, descsz, type 0, "VMCOREINFO\0" padded to 12, then the text. */
function vmcoreinfoNote(text: string): Uint8Array {
  const desc = new TextEncoder().encode(`${text}\0`);
  const bytes = new Uint8Array(24 + desc.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, NOTE_NAME.length + 1, true);
  view.setUint32(4, desc.length, true);
  view.setUint32(8, 0, true);
  bytes.set(new TextEncoder().encode(NOTE_NAME), 12);
  bytes.set(desc, 24);
  return bytes;
}

/** The dump as a monitor without QEMU's vCPU state sees it. */
class WithoutCpus extends OverlayImage {
  override get cpus(): MemoryImage['cpus'] {
    return [];
  }
}

describe('a VMCOREINFO note an earlier boot left in RAM', () => {
  let base: MemoryImage;
  let clean: ReturnType<typeof answer>;
  let stalePatches: Array<[number, Uint8Array]>;
  let staleTable: number;
  const planted = (image: OverlayImage) => {
    for (const [physical, bytes] of stalePatches) image.patch(physical, bytes);
    return image;
  };

  beforeAll(() => {
    base = openImage(fixturePath('linux61-clean', 'elf'));
    const kernel = discoverLinuxKernel(base);
    clean = answer(kernel);
    expect(base.cpus.length).toBeGreaterThan(0);
    expect(kernel.vmcoreinfo?.source).toBe('memory-note');

    const [notePage, tablePage] = zeroPages(base, kernel.vmcoreinfo!.physical!, 2);
    staleTable = tablePage!;
    const table = new Uint8Array(PAGE);
    base.read(kernel.dtb, table);
    const entry = new DataView(table.buffer, UNUSED_KERNEL_ENTRY * 8, 8);
    expect(entry.getBigUint64(0, true)).toBe(0n);
    entry.setBigUint64(0, 0x2n, true); // writable, not present: maps nothing
    const tableVirtual = BigInt.asUintN(64, BigInt(staleTable) - kernel.physBase + START_KERNEL_MAP);
    const text = kernel.vmcoreinfo!.text.replace(
      /^SYMBOL\(init_top_pgt\)=[0-9a-f]+$/m,
      `SYMBOL(init_top_pgt)=${tableVirtual.toString(16)}`,
    );
    expect(text).not.toBe(kernel.vmcoreinfo!.text);
    stalePatches = [
      [staleTable, table],
      [notePage!, vmcoreinfoNote(text)],
    ];
  });
  afterAll(() => base.close());

  test('lies first in RAM and is self-consistent: without the vCPU state, it is the kernel found', () => {
    const found = discoverLinuxKernel(planted(new WithoutCpus(base)));
    expect(found.dtb).toBe(staleTable);
    expect(found.vmcoreinfo!.physical).toBeLessThan(clean.note!);
  });

  test("is passed over for the note of the kernel a vCPU runs, from the quick path's first candidates", () => {
    expect(answer(discoverLinuxKernel(planted(new OverlayImage(base))))).toEqual(clean);
  });
});
