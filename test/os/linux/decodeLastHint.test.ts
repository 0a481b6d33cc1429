import { describe, expect, it } from 'vitest';
import { openImage } from '../../../src/image/open.js';
import { viewOverRanges } from '../../../src/image/rangeView.js';
import type { MemoryImage } from '../../../src/image/types.js';
import { discoverLinuxKernel } from '../../../src/os/linux/discovery.js';
import { dumpFixtures, fixturePath, truth } from '../../support/fixtures.js';

/**
 * Kernel discovery tells the image which memory is read last (MemoryImage.decodeLast): the
 * kernel's text, which a kdump's helper thread then inflates after every other page (the carve
 * skips it; check reads its function entries at the end). The hinted range must be the text
 * the guest's own /proc/iomem names "Kernel code", and stop before "Kernel rodata": the
 * profile's fingerprint reads BTF and kallsyms there early.
 */

/** One fixture per snapshot: the first dump format it has. */
const fixtures = dumpFixtures().filter(
  (fixture, at, all) => all.findIndex((other) => other.name === fixture.name) === at,
);

function iomemSection(name: string, section: string): { start: number; end: number } {
  const line = (truth(name).layout as unknown as { iomem: string[] }).iomem.find((text) =>
    text.endsWith(` : Kernel ${section}`),
  );
  const match = line && /^\s*([0-9a-f]+)-([0-9a-f]+) :/.exec(line);
  if (!match) throw new Error(`${name}: no Kernel ${section} in /proc/iomem`);
  return { start: parseInt(match[1]!, 16), end: parseInt(match[2]!, 16) + 1 };
}

describe('discovery hints the kernel text to be decoded last', () => {
  it.each(fixtures)(
    '$name ($format): the hint is the Kernel code of /proc/iomem, not its rodata',
    ({ name, format }) => {
      const image = openImage(fixturePath(name, format));
      try {
        const hints: Array<{ start: number; end: number }> = [];
        const watched: MemoryImage = {
          ...viewOverRanges(image, image.ranges),
          decodeLast: (start, end) => hints.push({ start, end }),
        };
        discoverLinuxKernel(watched);
        const code = iomemSection(name, 'code');
        const rodata = iomemSection(name, 'rodata');
        expect(hints).toHaveLength(1);
        const [hint] = hints;
        expect(hint!.start).toBeLessThanOrEqual(code.start);
        expect(hint!.end).toBeGreaterThanOrEqual(code.end);
        expect(hint!.end).toBeLessThanOrEqual(rodata.start);
        // Within the 2 MiB pages around the text: nothing of the memory below it is deferred.
        expect(code.start - hint!.start).toBeLessThan(2 << 20);
      } finally {
        image.close();
      }
    },
  );
});
