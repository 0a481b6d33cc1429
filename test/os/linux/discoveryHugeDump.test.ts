import { copyFileSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { openImage } from '../../../src/image/open.js';
import type { MemoryImage } from '../../../src/image/types.js';
import { discoverLinuxKernel, type LinuxKernel } from '../../../src/os/linux/discovery.js';
import { fixturePath } from '../../support/fixtures.js';

const TIB = 2 ** 40;
const workDir = mkdtempSync(join(tmpdir(), 'vmscope-sparse-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

/** The image, with every byte it hands out counted: what discovery had to read. */
function counted(image: MemoryImage): { image: MemoryImage; bytesRead: () => number } {
  let bytes = 0;
  const wrapped: MemoryImage = {
    get path() {
      return image.path;
    },
    format: image.format,
    ranges: image.ranges,
    totalBytes: image.totalBytes,
    notes: image.notes,
    cpus: image.cpus,
    read(physical, into) {
      bytes += into.length;
      image.read(physical, into);
    },
    readPresent(physical, into) {
      const got = image.readPresent(physical, into);
      bytes += got;
      return got;
    },
    close: () => image.close(),
  };
  return { image: wrapped, bytesRead: () => bytes };
}

function answer(kernel: LinuxKernel) {
  const { release, banner, bannerPhysical, kaslrSlide, physBase, dtb, pageOffsetBase, method, warnings } = kernel;
  return { release, banner, bannerPhysical, kaslrSlide, physBase, dtb, pageOffsetBase, method, warnings };
}

describe('kernel discovery does not read a huge dump end to end (issue 13, item 13)', () => {
  test('a 1 TiB sparse raw dump: the same answer as the 512 MiB original, with under 1 GiB read, not a TiB', () => {
    const original = fixturePath('linux61-clean', 'raw');
    const sparse = join(workDir, 'sparse-1tib.raw');
    copyFileSync(original, sparse);
    truncateSync(sparse, TIB);

    const plain = openImage(original);
    const big = counted(openImage(sparse));
    try {
      expect(big.image.totalBytes).toBe(TIB);
      const expected = answer(discoverLinuxKernel(plain));
      expect(answer(discoverLinuxKernel(big.image))).toEqual(expected);
      // The first VMCOREINFO note, then banners only where its page tables map the kernel image.
      expect(big.bytesRead()).toBeLessThan(2 ** 30);
    } finally {
      plain.close();
      big.image.close();
    }
  });
});
