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

describe('kernel discovery stops once the answer cannot change (issue 13, item 13)', () => {
  test('a 1 TiB sparse raw dump: the same answer as the 512 MiB original, with a few GiB read, not a TiB', () => {
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
      // The first stage (1 GiB) finds VMCOREINFO, and phys_base + 1 GiB (the end of the kernel-image
      // mapping) lies below 1 GiB here, so no second stage is needed; a later one would stop at 5 GiB.
      expect(big.bytesRead()).toBeLessThan(2 * 2 ** 30);
    } finally {
      plain.close();
      big.image.close();
    }
  });

  test('progress over the stages counts up to what was searched, never past the image', () => {
    const sparse = join(workDir, 'sparse-64gib.raw');
    copyFileSync(fixturePath('linux61-clean', 'raw'), sparse);
    truncateSync(sparse, 64 * 2 ** 30);
    const image = openImage(sparse);
    const reports: Array<[number, number]> = [];
    try {
      discoverLinuxKernel(image, { onProgress: (done, total) => reports.push([done, total]) });
    } finally {
      image.close();
    }
    expect(reports.length).toBeGreaterThan(0);
    for (let i = 1; i < reports.length; i++) expect(reports[i]![0]).toBeGreaterThanOrEqual(reports[i - 1]![0]);
    const [lastDone, total] = reports[reports.length - 1]!;
    expect(total).toBe(64 * 2 ** 30);
    expect(lastDone).toBeGreaterThan(0);
    expect(lastDone).toBeLessThanOrEqual(2 ** 30);
  });
});
