import { afterAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import { PageCopyImage } from '../../src/image/pageCopyImage.js';
import { AbsentMemoryError } from '../../src/util/errors.js';
import { fixturePath } from '../support/fixtures.js';
import { OverlayImage } from '../support/overlay.js';

/**
 * A consistent live check reads a copy of the pages it needs, taken in one pause, while the
 * guest runs on: the copy must not follow the guest's later writes, and a page it lacks must be
 * said to be read live (the check is then read again).
 */
const PAGE = 4096;
const base = openImage(fixturePath('linux61-clean', 'lime'));
afterAll(() => base.close());

const bytesAt = (image: { read(physical: number, into: Uint8Array): void }, physical: number, length: number) => {
  const bytes = new Uint8Array(length);
  image.read(physical, bytes);
  return bytes;
};

describe('PageCopyImage', () => {
  it('serves copied pages as they were when copied, reads others live as misses, and records every page read', () => {
    const live = new OverlayImage(base);
    const [first, second, third] = [0x100000, 0x101000, 0x200000];
    const before = bytesAt(live, first, 2 * PAGE);
    const copy = new PageCopyImage(live, [first / PAGE, second / PAGE]);
    expect(copy.copiedPages).toBe(2);
    // The guest writes all three pages after the copy.
    for (const page of [first, second, third]) live.patch(page + 8, Uint8Array.from([1, 2, 3, 4]));

    expect(bytesAt(copy, first, 2 * PAGE)).toEqual(before); // across the two copied pages
    expect(copy.missed.size).toBe(0);
    expect(bytesAt(copy, third + 8, 4)).toEqual(Uint8Array.from([1, 2, 3, 4]));
    expect([...copy.missed]).toEqual([third / PAGE]);
    expect([...copy.touched].sort((a, b) => a - b)).toEqual([first / PAGE, second / PAGE, third / PAGE]);

    // A read that runs from a copied page into one not copied is a miss for the second only.
    const next = new PageCopyImage(live, [second / PAGE], copy);
    bytesAt(next, second + PAGE - 4, 8);
    expect([...next.missed]).toEqual([second / PAGE + 1]);
    // The new copy took the old one's buffer: the old one cannot be read any more.
    expect(() => bytesAt(copy, first, 8)).toThrow(/newer copy took its buffer/);
  });

  it('leaves out pages the image does not hold: they stay absent', () => {
    const end = base.ranges.at(-1)!.end;
    const copy = new PageCopyImage(base, [end / PAGE - 1, end / PAGE, end / PAGE + 1]);
    expect(copy.copiedPages).toBe(1);
    expect(copy.readPresent(end - PAGE, new Uint8Array(2 * PAGE))).toBe(PAGE);
    expect(() => bytesAt(copy, end, 8)).toThrow(AbsentMemoryError);
    expect(copy.missed.size).toBe(0);
  });
});
