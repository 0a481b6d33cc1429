import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openImage } from '../../../src/image/open.js';
import type { MemoryImage } from '../../../src/image/types.js';
import { discoverLinuxKernel, type LinuxKernel } from '../../../src/os/linux/discovery.js';
import { fixturePath } from '../../support/fixtures.js';
import { OverlayImage } from '../../support/overlay.js';
import { staleVmcoreinfo, type StaleVmcoreinfo } from '../../support/staleVmcoreinfo.js';

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

/** The dump as a monitor without QEMU's vCPU state sees it. */
class WithoutCpus extends OverlayImage {
  override get cpus(): MemoryImage['cpus'] {
    return [];
  }
}

/**
 * A note an earlier boot left below the running kernel's (test/support/staleVmcoreinfo.ts),
 * planted in a real dump that has its vCPUs' CR3 (a dump-guest-memory ELF).
 */
describe('a VMCOREINFO note an earlier boot left in RAM', () => {
  let base: MemoryImage;
  let clean: ReturnType<typeof answer>;
  let stalePatches: StaleVmcoreinfo['patches'];
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
    ({ patches: stalePatches, staleTable } = staleVmcoreinfo(base, kernel));
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
