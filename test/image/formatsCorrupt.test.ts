import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lzo1xDecompress } from '../../src/image/lzo1x.js';
import { openImage, openImageSource } from '../../src/image/open.js';
import { BufferSource, type ByteSource } from '../../src/image/source.js';
import { VmscopeError } from '../../src/util/errors.js';
import { fixturePath } from '../support/fixtures.js';
import { formatCapture, formatCaptureUnavailable } from '../support/formatCapture.js';
import { lzoLiteralStream, writeFlattened, writeKdump } from '../support/formatWriters.js';

const PAGE = 4096;
const work = mkdtempSync(join(tmpdir(), 'vmscope-formats-bad-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** 64 pages: every third all zeros, the others compressible text with the page number in it. */
function syntheticMemory(): Uint8Array {
  const bytes = new Uint8Array(64 * PAGE);
  for (let page = 0; page < 64; page++) {
    if (page % 3 === 0) continue;
    bytes.set(new TextEncoder().encode(`page ${page} `.repeat(PAGE / 8).slice(0, PAGE)), page * PAGE);
  }
  return bytes;
}

function syntheticKdump(name: string, version: 5 | 6 = 6): string {
  const path = join(work, name);
  const image = openImageSource(new BufferSource('synthetic', syntheticMemory()));
  writeKdump(image, path, { codec: 'zlib', version, vmcoreinfo: 'OSRELEASE=6.1.0-test\nPAGESIZE=4096\n' });
  return path;
}

/** kdump layout numbers of a file our writer made: 1 header block, sub-header blocks, bitmaps. */
function kdumpLayout(path: string): { bitmap2: number; descriptors: number; bitmapHalf: number } {
  const header = readFileSync(path).subarray(0, 464);
  const view = new DataView(header.buffer, header.byteOffset);
  const blockSize = view.getInt32(428, true);
  const subBlocks = view.getInt32(432, true);
  const bitmapBytes = view.getUint32(436, true) * blockSize;
  const bitmap = (1 + subBlocks) * blockSize;
  return { bitmap2: bitmap + bitmapBytes / 2, descriptors: bitmap + bitmapBytes, bitmapHalf: bitmapBytes / 2 };
}

function patch(path: string, offset: number, bytes: Uint8Array): void {
  const contents = readFileSync(path);
  contents.set(bytes, offset);
  writeFileSync(path, contents);
}

function u64le(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  return bytes;
}

/** Open the file and read all of its memory: the typed error it must raise, within a second. */
function expectTypedError(path: string, code: string, offset?: number): VmscopeError {
  const started = performance.now();
  let caught: unknown;
  try {
    const image = openImage(path);
    try {
      const buffer = new Uint8Array(1 << 20);
      for (const range of image.ranges) {
        for (let at = range.start; at < range.end; at += buffer.length)
          image.read(at, buffer.subarray(0, Math.min(buffer.length, range.end - at)));
      }
    } finally {
      image.close();
    }
  } catch (error) {
    caught = error;
  }
  const elapsed = performance.now() - started;
  expect(caught, `no error for ${path}`).toBeInstanceOf(VmscopeError);
  const error = caught as VmscopeError;
  expect(error.code, error.describe()).toBe(code);
  expect(error.file).toBe(path);
  expect(error.offset, `${error.describe()} names no offset`).not.toBeUndefined();
  if (offset !== undefined) expect(error.offset, error.describe()).toBe(offset);
  expect(error.describe()).toContain(path);
  expect(elapsed).toBeLessThan(1000);
  return error;
}

describe('corrupt kdump files give a typed error naming file and offset', () => {
  it('the synthetic dump itself reads back exactly, with the default cache and with a one-page cache (the baseline of the cases below)', () => {
    const path = syntheticKdump('good.kdump');
    for (const options of [{}, { cacheBytes: PAGE }]) {
      const image = openImage(path, options);
      try {
        const memory = new Uint8Array(64 * PAGE);
        image.read(0, memory);
        expect(Buffer.compare(memory, syntheticMemory())).toBe(0);
        image.read(0, memory);
        expect(Buffer.compare(memory, syntheticMemory())).toBe(0);
        expect(image.notes.find((note) => note.name === 'VMCOREINFO')).toBeDefined();
      } finally {
        image.close();
      }
    }
  });

  it('bitmap 2 claiming more pages than the file has descriptors for', () => {
    const path = syntheticKdump('more-bits.kdump');
    const { bitmap2, bitmapHalf } = kdumpLayout(path);
    const pages = bitmapHalf * 8;
    patch(path, 440, Uint8Array.from([pages & 0xff, (pages >> 8) & 0xff, (pages >> 16) & 0xff, pages >>> 24]));
    patch(path, PAGE + 96, u64le(BigInt(pages))); // max_mapnr_64 (v6)
    patch(path, bitmap2, new Uint8Array(bitmapHalf).fill(0xff));
    const error = expectTypedError(path, 'CORRUPT_HEADER', bitmap2);
    expect(error.message).toMatch(/claims \d+ dumped pages/);
  });

  it('a page descriptor pointing past the end of the file', () => {
    const path = syntheticKdump('desc-past-eof.kdump');
    const { descriptors } = kdumpLayout(path);
    const second = descriptors + 24; // page 1: the first non-zero page
    patch(path, second, u64le(BigInt(statSync(path).size + 100)));
    expectTypedError(path, 'TRUNCATED_FILE', second);
  });

  it('a zlib page that inflates past 4 KiB (a decompression bomb)', () => {
    const path = syntheticKdump('bomb.kdump');
    const { descriptors } = kdumpLayout(path);
    const bomb = deflateSync(new Uint8Array(1 << 20));
    const bombAt = statSync(path).size;
    writeFileSync(path, Buffer.concat([readFileSync(path), bomb]));
    const descriptor = new Uint8Array(16);
    const view = new DataView(descriptor.buffer);
    view.setBigUint64(0, BigInt(bombAt), true);
    view.setUint32(8, bomb.length, true);
    view.setUint32(12, 0x1, true);
    patch(path, descriptors + 24, descriptor);
    const error = expectTypedError(path, 'CORRUPT_HEADER', bombAt);
    expect(error.message).toContain('4096');
  });

  it('truncated inside the page data, inside the header, and a flattened stream cut short', () => {
    const data = syntheticKdump('cut-data.kdump');
    truncateSync(data, statSync(data).size - 100);
    expectTypedError(data, 'TRUNCATED_FILE');
    const header = syntheticKdump('cut-header.kdump');
    truncateSync(header, 300);
    expectTypedError(header, 'TRUNCATED_FILE', 300);
    const flat = join(work, 'cut.flat');
    writeFlattened(syntheticKdump('to-flatten.kdump'), flat, 8192);
    truncateSync(flat, statSync(flat).size - 16);
    expect(expectTypedError(flat, 'TRUNCATED_FILE').message).toContain('end record');
  });
});

describe('an incomplete kdump (DUMP_DH_COMPRESSED_INCOMPLETE: the writer ran out of space)', () => {
  it('opens; pages whose descriptors were never written are absent, the rest read exactly', () => {
    const path = syntheticKdump('incomplete.kdump');
    const { descriptors } = kdumpLayout(path);
    const contents = readFileSync(path);
    const view = new DataView(contents.buffer, contents.byteOffset);
    view.setUint32(424, view.getUint32(424, true) | 0x8, true);
    // The last 10 dumped pages: descriptors zeroed, as makedumpfile leaves them when it stops.
    const dumped = 64; // the writer dumps every synthetic page (zero pages share the zero page)
    contents.fill(0, descriptors + (dumped - 10) * 24, descriptors + dumped * 24);
    writeFileSync(path, contents);
    const image = openImage(path);
    try {
      expect(image.details).toMatchObject({ complete: false });
      expect(image.totalBytes).toBe(54 * PAGE);
      const memory = syntheticMemory();
      const page = new Uint8Array(PAGE);
      image.read(53 * PAGE, page);
      expect(page).toEqual(memory.subarray(53 * PAGE, 54 * PAGE));
      expect(image.readPresent(54 * PAGE, page)).toBe(0);
    } finally {
      image.close();
    }
  });
});

describe('one file of a split kdump (makedumpfile --split)', () => {
  it.each([2, 6] as const)('header v%i: pages of its pfn range read exactly, the others are absent', (version) => {
    const path = join(work, `split-v${version}.kdump`);
    writeKdump(openImageSource(new BufferSource('synthetic', syntheticMemory())), path, {
      codec: 'zlib',
      version,
      split: { startPfn: 20, endPfn: 40 },
    });
    const image = openImage(path);
    try {
      expect(image.ranges.map((range) => [range.start, range.end])).toEqual([[20 * PAGE, 40 * PAGE]]);
      const bytes = new Uint8Array(20 * PAGE);
      image.read(20 * PAGE, bytes);
      expect(bytes).toEqual(syntheticMemory().subarray(20 * PAGE, 40 * PAGE));
      expect(image.readPresent(19 * PAGE, new Uint8Array(PAGE))).toBe(0);
    } finally {
      image.close();
    }
  });
});

describe('LZO1X decoding', () => {
  it('decodes literal runs of every length class and a hand-assembled stream with an M2 match', () => {
    for (const length of [1, 3, 4, 238, 239, 4096]) {
      const data = Uint8Array.from({ length }, (_, i) => (i * 7) & 0xff);
      expect(lzo1xDecompress(lzoLiteralStream(data), length)).toEqual(data);
    }
    // "abc", then an M2 match of 8 bytes at distance 3, then the end marker.
    const stream = Uint8Array.from([17 + 3, 0x61, 0x62, 0x63, (7 << 5) | (2 << 2), 0x00, 0x11, 0x00, 0x00]);
    expect(new TextDecoder().decode(lzo1xDecompress(stream, 11))).toBe('abcabcabcab');
  });

  it('refuses output past the bound, matches before the start and cut streams', () => {
    expect(() => lzo1xDecompress(lzoLiteralStream(new Uint8Array(8192)), 4096)).toThrow(/overrun|past the output size/);
    expect(() => lzo1xDecompress(Uint8Array.from([17 + 1, 0x61, (7 << 5) | (7 << 2), 0xff, 0x11, 0, 0]), 64)).toThrow(
      /before the output start/,
    );
    expect(() => lzo1xDecompress(Uint8Array.from([17 + 3, 0x61]), 3)).toThrow(/input overrun/);
  });
});

describe('corrupt AVML and migration files', () => {
  it('an AVML chunk whose CRC fails', () => {
    const path = join(work, 'bad-crc.avml');
    copyFileSync(fixturePath('linux61-rootkit', 'avml'), path);
    // Block header (32) + stream identifier chunk (4 + 6) + first chunk header (4): its CRC.
    const crcAt = 32 + 10 + 4;
    const contents = readFileSync(path);
    contents[crcAt] = contents[crcAt]! ^ 0xff;
    writeFileSync(path, contents);
    const error = expectTypedError(path, 'CORRUPT_HEADER', crcAt - 4);
    expect(error.message).toContain('CRC');
  });

  it('a truncated AVML file', () => {
    const path = join(work, 'cut.avml');
    copyFileSync(fixturePath('linux61-rootkit', 'avml'), path);
    truncateSync(path, 1 << 20);
    expectTypedError(path, 'TRUNCATED_FILE');
  });

  describe.skipIf(formatCaptureUnavailable() !== undefined)('on the captured migration stream', () => {
    let migration: string;
    beforeAll(async () => {
      migration = (await formatCapture()).migration;
    }, 900_000);

    it('a page naming a RAM block the stream never declared', () => {
      const path = join(work, 'undeclared.migration');
      const contents = readFileSync(migration);
      // The first page item: flags RAM_SAVE_FLAG_PAGE (0x08) with an idstr, after the block list.
      const name = Buffer.from('\x06pc.ram');
      const listEnd = contents.indexOf(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x10]));
      const at = contents.indexOf(name, listEnd);
      contents.set(Buffer.from('\x06pc.rXm'), at);
      writeFileSync(path, contents);
      const error = expectTypedError(path, 'CORRUPT_HEADER', at);
      expect(error.message).toContain('pc.rXm');
    });

    // Found by the fuzz below (seed 1127161386): a 256 TiB block length used to allocate its
    // page table up front, a raw RangeError. The table now grows with the pages the file holds.
    it('a RAM block declared at 256 TiB costs only the pages the stream sends', () => {
      const path = join(work, 'huge-block.migration');
      const contents = readFileSync(migration);
      const original = openImage(migration);
      const declared = 1n << 48n;
      // The MEM_SIZE item (total | 0x04) precedes the first block of the list, pc.ram here.
      const firstBlock = contents.indexOf(Buffer.from('\x06pc.ram'));
      const total = contents.readBigUInt64BE(firstBlock - 8);
      expect(total & 0xfffn).toBe(0x04n);
      contents.writeBigUInt64BE(total + declared, firstBlock - 8);
      const lengthAt = firstBlock + 7;
      contents.writeBigUInt64BE(contents.readBigUInt64BE(lengthAt) + declared, lengthAt);
      writeFileSync(path, contents);
      const image = openImage(path);
      const ramBytes = (blocks: unknown) =>
        (blocks as { name: string; bytes: number }[]).find((block) => block.name === 'pc.ram')!.bytes;
      expect(ramBytes(image.details?.ramBlocks)).toBe(ramBytes(original.details?.ramBlocks) + Number(declared));
      expect(image.ranges).toEqual(original.ranges);
      const page = new Uint8Array(PAGE);
      const expected = new Uint8Array(PAGE);
      const last = original.ranges.at(-1)!;
      image.read(last.end - PAGE, page);
      original.read(last.end - PAGE, expected);
      expect(page).toEqual(expected);
      image.close();
      original.close();
    });

    it('a truncated migration stream', () => {
      const path = join(work, 'cut.migration');
      copyFileSync(migration, path);
      truncateSync(path, statSync(path).size >> 1);
      expectTypedError(path, 'TRUNCATED_FILE');
    });
  });

  it('a corrupt zstd-compressed whole file', () => {
    const path = join(work, 'dump.zst');
    writeFileSync(path, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]));
    expect(expectTypedError(path, 'CORRUPT_HEADER', 0).message).toContain('zstd');
  });
});

/** A file of `size` bytes whose `head` is real (mutated) bytes and whose rest reads as zeros. */
class SparseSource implements ByteSource {
  constructor(
    readonly path: string,
    readonly size: number,
    private readonly head: Uint8Array,
  ) {}
  readAt(offset: number, into: Uint8Array): number {
    const length = Math.max(0, Math.min(into.length, this.size - offset));
    into.fill(0, 0, length);
    if (offset < this.head.length) into.set(this.head.subarray(offset, Math.min(this.head.length, offset + length)), 0);
    return length;
  }
  close(): void {}
}

const mutation = fc.record({
  flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
  words: fc.array(
    fc.tuple(
      fc.nat(),
      fc.oneof(
        fc.constantFrom(0n, 1n, 0xffffffffn, 0x7fffffffffffffffn, 0xffffffffffffffffn),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      ),
    ),
    { maxLength: 3 },
  ),
  truncateTo: fc.option(fc.nat(), { nil: undefined }),
});

/** Mutations land in the first `span` bytes (the headers), the rest of the file kept. */
function mutated(
  original: Uint8Array,
  span: number,
  change: typeof mutation extends fc.Arbitrary<infer T> ? T : never,
): Uint8Array {
  const bytes = original.slice();
  const view = new DataView(bytes.buffer);
  for (const [position, value] of change.flips) bytes[position % span] = value;
  for (const [position, value] of change.words) view.setBigUint64(((position % (span - 8)) >> 3) << 3, value, true);
  return change.truncateTo === undefined ? bytes : bytes.subarray(0, change.truncateTo % (bytes.length + 1));
}

/** Parse, then read every present byte: an image or a VmscopeError, never another error, quickly. */
function parseAndRead(source: ByteSource): void {
  const started = performance.now();
  try {
    const image = openImageSource(source);
    for (let i = 1; i < image.ranges.length; i++)
      expect(image.ranges[i]!.start).toBeGreaterThanOrEqual(image.ranges[i - 1]!.end);
    const buffer = new Uint8Array(1 << 16);
    let read = 0;
    for (const range of image.ranges) {
      for (let at = range.start; at < range.end && read < 64 << 20; at += buffer.length) {
        image.read(at, buffer.subarray(0, Math.min(buffer.length, range.end - at)));
        read += buffer.length;
      }
    }
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    expect(error.file).toBe('fuzzed');
  }
  expect(performance.now() - started).toBeLessThan(1000);
}

describe('fuzzing the kdump, migration and AVML header parsers with mutated copies', () => {
  it('kdump: header, sub-header, notes, bitmaps and descriptors', () => {
    const original = new Uint8Array(readFileSync(syntheticKdump('fuzz.kdump')));
    const { descriptors } = kdumpLayout(join(work, 'fuzz.kdump'));
    const span = descriptors + 64 * 24;
    fc.assert(
      fc.property(mutation, (change) => parseAndRead(new BufferSource('fuzzed', mutated(original, span, change)))),
      { numRuns: 1500 },
    );
  });

  it('AVML: block header and snappy chunk headers', () => {
    const avml = fixturePath('linux61-rootkit', 'avml');
    const size = statSync(avml).size;
    const head = new Uint8Array(readFileSync(avml).subarray(0, 1 << 20));
    fc.assert(
      fc.property(mutation, (change) => {
        const bytes = mutated(head, 4096, { ...change, truncateTo: undefined });
        const truncated = change.truncateTo === undefined ? size : change.truncateTo % (size + 1);
        parseAndRead(new SparseSource('fuzzed', truncated, bytes));
      }),
      { numRuns: 300 },
    );
  });

  describe.skipIf(formatCaptureUnavailable() !== undefined)('migration', () => {
    let head: Uint8Array;
    let size: number;
    beforeAll(async () => {
      const migration = (await formatCapture()).migration;
      size = statSync(migration).size;
      head = new Uint8Array(readFileSync(migration).subarray(0, 1 << 20));
    }, 900_000);

    it('QEVM header, configuration, RAM block list and the first pages', () => {
      fc.assert(
        fc.property(mutation, (change) => {
          const bytes = mutated(head, 8192, { ...change, truncateTo: undefined });
          const truncated = change.truncateTo === undefined ? size : change.truncateTo % (size + 1);
          parseAndRead(new SparseSource('fuzzed', truncated, bytes));
        }),
        { numRuns: 1000 },
      );
    });
  });
});
