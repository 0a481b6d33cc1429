import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import { carveVmlinuxBtf } from '../../src/symbols/btf.js';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';

const u64 = (text: string) => BigInt.asUintN(64, BigInt(text));

describe('carveVmlinuxBtf on the shared fixtures', () => {
  it('every snapshot is held in at least one dump format, so none is skipped below', () => {
    expect(new Set(dumpFixtures().map((fixture) => fixture.name))).toEqual(new Set(snapshotNames()));
  });

  describe.each(dumpFixtures())('$name ($format)', ({ name, format }) => {
    it('carves exactly /sys/kernel/btf/vmlinux (size and sha256 as the guest read them), from inside the kernel image', () => {
      const expected = truth(name);
      const image = openImage(fixturePath(name, format));
      try {
        const carved = carveVmlinuxBtf(image);
        expect(carved.bytes.length).toBe(expected.kernel.btf.size);
        expect(createHash('sha256').update(carved.bytes).digest('hex')).toBe(expected.kernel.btf.sha256);
        // The kernel's own /proc/kcore mapping of its image: the .BTF section lies within it
        // (the dumps also hold a stale, partly overwritten copy lower down, which must lose).
        const text = u64(expected.layout.text_virt);
        const kernelImage = expected.layout.kcore_loads.find(
          (load) => u64(load.vaddr) <= text && text < u64(load.vaddr) + u64(load.size),
        )!;
        expect(BigInt(carved.physical)).toBeGreaterThanOrEqual(u64(kernelImage.paddr));
        expect(BigInt(carved.physical + carved.bytes.length)).toBeLessThanOrEqual(
          u64(kernelImage.paddr) + u64(kernelImage.size),
        );
        expect(carved.types.find('struct', 'task_struct')).toBeDefined();
      } finally {
        image.close();
      }
    });
  });
});
