import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage, openImageSource } from '../../src/image/open.js';
import { BufferSource } from '../../src/image/source.js';
import type { MemoryImage, PhysicalRange } from '../../src/image/types.js';
import { AlignedWordSearcher } from '../../src/kernels/alignedWords.js';
import { writeKdump, type KdumpCodec } from '../support/formatWriters.js';

/**
 * kdump's shared zero page: nonZeroRanges leaves out exactly the pages pointed at a stored page of
 * zeros, and the aligned-word search, which reads only those ranges, finds what it finds in the
 * memory itself (unless it looks for the word 0, when it reads every page).
 */
const PAGE = 4096;
const WORD = 0xffffffff81e2a4c0n;
const work = mkdtempSync(join(tmpdir(), 'vmscope-kdump-zero-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Pages of zeros where `zero` says, the others holding a page-numbered pattern and WORD in their first and last words. */
function memory(zero: readonly boolean[]): Uint8Array {
  const bytes = new Uint8Array(zero.length * PAGE);
  const view = new DataView(bytes.buffer);
  zero.forEach((isZero, page) => {
    if (isZero) return;
    for (let at = 8; at < PAGE - 8; at += 8) view.setUint32(page * PAGE + at, page * 0x10001 + at, true);
    view.setBigUint64(page * PAGE, WORD, true);
    view.setBigUint64(page * PAGE + PAGE - 8, WORD, true);
  });
  return bytes;
}

/** Runs of the pages `keep` says, as physical ranges. */
function runsOf(keep: readonly boolean[]): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  keep.forEach((kept, page) => {
    if (!kept) return;
    const last = runs[runs.length - 1];
    if (last && last[1] === page * PAGE) last[1] += PAGE;
    else runs.push([page * PAGE, (page + 1) * PAGE]);
  });
  return runs;
}

const spans = (ranges: readonly PhysicalRange[]) => ranges.map((range): [number, number] => [range.start, range.end]);

function withKdump<T>(bytes: Uint8Array, codec: KdumpCodec, name: string, use: (image: MemoryImage) => T): T {
  const path = join(work, name);
  writeKdump(openImageSource(new BufferSource('synthetic', bytes)), path, { codec });
  const image = openImage(path);
  try {
    return use(image);
  } finally {
    image.close();
  }
}

describe('kdump zero pages', () => {
  it('nonZeroRanges leaves out exactly the zero pages, and word searches find what the memory holds', () => {
    let run = 0;
    fc.assert(
      fc.property(
        fc.array(fc.boolean(), { minLength: 1, maxLength: 80 }),
        fc.constantFrom<KdumpCodec>('zlib', 'none', 'snappy'),
        (zero, codec) => {
          const bytes = memory(zero);
          const plain = openImageSource(new BufferSource('plain', bytes));
          withKdump(bytes, codec, `zero-${run++}.kdump`, (image) => {
            expect(spans(image.ranges)).toEqual([[0, zero.length * PAGE]]);
            expect(spans(image.nonZeroRanges!())).toEqual(runsOf(zero.map((isZero) => !isZero)));
            const searchWord = AlignedWordSearcher.create([WORD]);
            expect(searchWord.searchImage(image)).toEqual(searchWord.searchImage(plain));
            // The word 0 lies in zero pages too: that search reads every page.
            const searchZero = AlignedWordSearcher.create([0n, WORD]);
            expect(searchZero.searchImage(image)).toEqual(searchZero.searchImage(plain));
          });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('a page shared by two descriptors is left out only when its bytes are zeros', () => {
    const zero = [false, true, false, false, true, false];
    const path = join(work, 'shared.kdump');
    writeKdump(openImageSource(new BufferSource('synthetic', memory(zero))), path, { codec: 'zlib' });
    // Page 3's descriptor now points at page 2's stored bytes: a shared page that holds data.
    const file = readFileSync(path);
    const view = new DataView(file.buffer, file.byteOffset);
    const blockSize = view.getInt32(428, true);
    const descriptors = (1 + view.getInt32(432, true) + view.getUint32(436, true)) * blockSize;
    file.copyWithin(descriptors + 3 * 24, descriptors + 2 * 24, descriptors + 3 * 24);
    writeFileSync(path, file);
    const image = openImage(path);
    try {
      expect(spans(image.nonZeroRanges!())).toEqual(runsOf(zero.map((isZero) => !isZero)));
      const page3 = new Uint8Array(PAGE);
      image.read(3 * PAGE, page3);
      expect(page3).toEqual(memory(zero).subarray(2 * PAGE, 3 * PAGE));
    } finally {
      image.close();
    }
  });

  it('a dump of no zero pages, and a DISKDUMP (no descriptors), read every present range', () => {
    const bytes = memory([false, false, false]);
    withKdump(bytes, 'zlib', 'dense.kdump', (image) => expect(image.nonZeroRanges!()).toEqual(image.ranges));
    const path = join(work, 'zeros.diskdump');
    writeKdump(openImageSource(new BufferSource('synthetic', memory([true, false, true]))), path, {
      codec: 'none',
      signature: 'DISKDUMP',
    });
    const image = openImage(path);
    try {
      expect(image.nonZeroRanges!()).toEqual(image.ranges);
    } finally {
      image.close();
    }
  });
});
