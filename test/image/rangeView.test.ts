import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { openImageSource } from '../../src/image/open.js';
import { imageWithout, rangesWithout, viewOverRanges } from '../../src/image/rangeView.js';
import { BufferSource } from '../../src/image/source.js';
import type { PhysicalRange } from '../../src/image/types.js';

/** Sorted, disjoint ranges over [0, 256), each with a file offset or -1 (decoded). */
const someRanges = fc
  .uniqueArray(fc.integer({ min: 0, max: 256 }), { minLength: 0, maxLength: 12 })
  .chain((cuts) =>
    fc.tuple(
      fc.constant([...cuts].sort((a, b) => a - b)),
      fc.array(fc.boolean(), { minLength: cuts.length, maxLength: cuts.length }),
    ),
  )
  .map(([cuts, decoded]) => {
    const ranges: PhysicalRange[] = [];
    for (let i = 0; i + 1 < cuts.length; i += 2)
      ranges.push({ start: cuts[i]!, end: cuts[i + 1]!, fileOffset: decoded[i] ? -1 : cuts[i]! + 1000 });
    return ranges;
  });

const bytesOf = (ranges: readonly PhysicalRange[]) =>
  ranges.flatMap((range) => Array.from({ length: range.end - range.start }, (_, i) => range.start + i));

describe('range views', () => {
  it('rangesWithout takes out exactly the bytes asked, keeping file offsets in step', () => {
    fc.assert(
      fc.property(
        someRanges,
        fc.integer({ min: 0, max: 256 }),
        fc.integer({ min: 0, max: 64 }),
        (ranges, start, length) => {
          const cut = rangesWithout(ranges, start, start + length);
          expect(bytesOf(cut)).toEqual(bytesOf(ranges).filter((at) => at < start || at >= start + length));
          for (const part of cut) {
            const whole = ranges.find((range) => range.start <= part.start && part.end <= range.end)!;
            expect(part.fileOffset).toBe(whole.fileOffset < 0 ? -1 : whole.fileOffset + (part.start - whole.start));
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('imageWithout reads the same bytes outside the cut, and cuts nonZeroRanges too', () => {
    const bytes = Uint8Array.from({ length: 4 * 4096 }, (_, i) => i & 0xff);
    const image = openImageSource(new BufferSource('plain', bytes));
    const nonZero: PhysicalRange[] = [{ start: 0, end: 8192, fileOffset: -1 }];
    const view = imageWithout(
      viewOverRanges(image, image.ranges, () => nonZero),
      4096,
      12288,
    );
    expect(view.ranges.map((range) => [range.start, range.end])).toEqual([
      [0, 4096],
      [12288, 16384],
    ]);
    expect(view.totalBytes).toBe(8192);
    expect(view.nonZeroRanges!().map((range) => [range.start, range.end])).toEqual([[0, 4096]]);
    const page = new Uint8Array(4096);
    view.read(12288, page);
    expect(page).toEqual(bytes.subarray(12288));
    expect('nonZeroRanges' in imageWithout(image, 0, 4096)).toBe(false);
  });
});
