import { describe, expect, it } from 'vitest';
import { openImageSource } from '../../src/image/open.js';
import { BufferSource } from '../../src/image/source.js';
import { migrationStream } from '../support/formatWriters.js';

const PAGE = 4096;
const GiB = 2 ** 30;

function pageOf(label: string): Uint8Array {
  return new TextEncoder().encode(label.padEnd(PAGE, '.'));
}

/** A sparse stream of a guest with `ramBytes` of pc.ram: pages at the edges of the PCI hole split, and the BIOS. */
function streamFor(machine: string, ramBytes: number, lowEnd: number) {
  const pages = [
    { block: 'pc.ram', offset: 0, bytes: pageOf('first') },
    { block: 'pc.ram', offset: PAGE, bytes: new Uint8Array(PAGE) },
    { block: 'pc.ram', offset: lowEnd - PAGE, bytes: pageOf('last below 4 GiB') },
    { block: 'pc.ram', offset: lowEnd, bytes: pageOf('first above 4 GiB') },
    { block: 'pc.bios', offset: 0x3f000, bytes: pageOf('reset vector page') },
    { block: '/rom@etc/acpi/tables', offset: 0, bytes: pageOf('acpi') },
  ];
  const blocks = [
    { name: 'pc.ram', bytes: ramBytes },
    { name: 'pc.bios', bytes: 0x40000 },
    { name: '/rom@etc/acpi/tables', bytes: 0x20000 },
  ];
  return openImageSource(new BufferSource(`${machine}.migration`, migrationStream(machine, blocks, pages)));
}

function read(image: ReturnType<typeof streamFor>, physical: number): string {
  const page = new Uint8Array(PAGE);
  image.read(physical, page);
  return new TextDecoder().decode(page).replace(/\.+$/, '');
}

describe('migration stream RAM blocks in guest-physical memory', () => {
  it('i440fx with 5 GiB: pc.ram below 3 GiB, the rest from 4 GiB; pc.bios below 4 GiB; ROM blobs unmapped', () => {
    const image = streamFor('pc-i440fx-7.2', 5 * GiB, 3 * GiB);
    expect(read(image, 0)).toBe('first');
    expect(read(image, PAGE)).toBe(''.padEnd(PAGE, '\0'));
    expect(read(image, 3 * GiB - PAGE)).toBe('last below 4 GiB');
    expect(read(image, 4 * GiB)).toBe('first above 4 GiB');
    expect(read(image, 4 * GiB - PAGE)).toBe('reset vector page');
    // Pages the stream never sent are absent, not zeros.
    expect(image.readPresent(2 * PAGE, new Uint8Array(PAGE))).toBe(0);
    expect(image.ranges.map((range) => [range.start, range.end])).toEqual([
      [0, 2 * PAGE],
      [3 * GiB - PAGE, 3 * GiB],
      [4 * GiB - PAGE, 4 * GiB],
      [4 * GiB, 4 * GiB + PAGE],
    ]);
    expect(image.details?.ramBlocks).toEqual([
      { name: 'pc.ram', bytes: 5 * GiB, mappedAt: [0, 4 * GiB] },
      { name: 'pc.bios', bytes: 0x40000, mappedAt: [4 * GiB - 0x40000] },
      { name: '/rom@etc/acpi/tables', bytes: 0x20000, mappedAt: [] },
    ]);
  });

  it('q35 with 3 GiB: the low part ends at 2 GiB', () => {
    const image = streamFor('pc-q35-7.2', 3 * GiB, 2 * GiB);
    expect(read(image, 2 * GiB - PAGE)).toBe('last below 4 GiB');
    expect(read(image, 4 * GiB)).toBe('first above 4 GiB');
  });

  it('i440fx with 3 GiB (below the 3.5 GiB threshold): all of pc.ram below 4 GiB', () => {
    const image = streamFor('pc-i440fx-7.2', 3 * GiB, 3 * GiB - PAGE);
    expect(read(image, 3 * GiB - PAGE)).toBe('first above 4 GiB');
    expect(image.details?.ramBlocks?.[0]?.mappedAt).toEqual([0]);
  });

  it('a long read returns pages stored behind their headers, in stream order or not, around zero and absent pages', () => {
    // Stream order: pages 0, 1, 2 (zero), 3, 5, 4: a span breaks at the zero page and where the stream goes back.
    const order = [0, 1, 2, 3, 5, 4];
    const contents = order.map((page) => (page === 2 ? new Uint8Array(PAGE) : pageOf(`page ${page}`)));
    const pages = order.map((page, i) => ({ block: 'pc.ram', offset: page * PAGE, bytes: contents[i]! }));
    pages.push({ block: 'pc.ram', offset: 7 * PAGE, bytes: pageOf('page 7') });
    const stream = migrationStream('pc-i440fx-7.2', [{ name: 'pc.ram', bytes: 16 * PAGE }], pages);
    const image = openImageSource(new BufferSource('spans.migration', stream));
    const expected = new Uint8Array(6 * PAGE);
    order.forEach((page, i) => expected.set(contents[i]!, page * PAGE));
    // From inside page 0 to inside page 5, then everything present up to the absent page 6.
    const part = new Uint8Array(5 * PAGE);
    image.read(100, part);
    expect(Buffer.compare(part, expected.subarray(100, 100 + part.length))).toBe(0);
    const all = new Uint8Array(8 * PAGE);
    expect(image.readPresent(0, all)).toBe(6 * PAGE);
    expect(Buffer.compare(all.subarray(0, 6 * PAGE), expected)).toBe(0);
  });
});
