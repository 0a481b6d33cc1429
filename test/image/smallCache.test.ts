import { beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import type { MemoryImage } from '../../src/image/types.js';
import { fixturePath } from '../support/fixtures.js';
import { formatCapture, formatCaptureUnavailable } from '../support/formatCapture.js';

/** What a scan thread opens a compressed dump with (scanWorker.ts): units a read covers whole skip its cache. */
const SCAN_THREAD_CACHE_BYTES = 256 << 10;
/**
 * Reads like a scan's: long, overlapping by a few bytes, at offsets that cut pages and chunks, so
 * each read's first and last unit comes from the previous read's edge.
 */
const READ_BYTES = (4 << 20) - 4093;
const OVERLAP = 17;

/** Every present byte of `image` as streamed reads see it equals `reference`'s; returns the bytes compared. */
function compareStreamed(image: MemoryImage, reference: MemoryImage): number {
  const mine = new Uint8Array(READ_BYTES);
  const expected = new Uint8Array(READ_BYTES);
  let compared = 0;
  for (const range of image.ranges) {
    for (let at = range.start; at < range.end; at += READ_BYTES - OVERLAP) {
      const length = Math.min(READ_BYTES, range.end - at);
      image.read(at, mine.subarray(0, length));
      reference.read(at, expected.subarray(0, length));
      if (Buffer.compare(mine.subarray(0, length), expected.subarray(0, length)) !== 0)
        throw new Error(`${image.format} bytes at 0x${at.toString(16)}+0x${length.toString(16)} differ`);
      compared += length;
      if (at + length === range.end) break;
    }
  }
  return compared;
}

describe("a scan thread's small image cache reads the same bytes", () => {
  it('AVML: the same bytes as its LiME twin', () => {
    const avml = openImage(fixturePath('linux61-rootkit', 'avml'), { cacheBytes: SCAN_THREAD_CACHE_BYTES });
    const lime = openImage(fixturePath('linux61-rootkit', 'lime'));
    try {
      expect(compareStreamed(avml, lime)).toBeGreaterThanOrEqual(avml.totalBytes);
    } finally {
      avml.close();
      lime.close();
    }
  });

  describe.skipIf(formatCaptureUnavailable() !== undefined)('on the captured kdump-zlib file', () => {
    let kdump: string;
    beforeAll(async () => {
      const capture = await formatCapture();
      kdump = capture.kdumpZlib ?? capture.kdumpFlat['kdump-zlib']!;
    }, 900_000);

    it('the same bytes as the same file read with the default cache', () => {
      const small = openImage(kdump, { cacheBytes: SCAN_THREAD_CACHE_BYTES });
      const large = openImage(kdump);
      try {
        expect(small.format).toBe('kdump');
        expect(compareStreamed(small, large)).toBeGreaterThanOrEqual(small.totalBytes);
      } finally {
        small.close();
        large.close();
      }
    });
  });
});
