import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RangeMappedImage } from '../../src/image/rangeImage.js';
import { BufferSource } from '../../src/image/source.js';
import { X86AddressSpace } from '../../src/space/x86.js';
import { decodeKallsyms, findKallsyms, type KallsymsLocation, type KernelSymbol } from '../../src/symbols/kallsyms.js';
import { VmscopeError } from '../../src/util/errors.js';

/**
 * The encodings and table layouts the fixtures do not have (big names, plain relative offsets,
 * kallsyms_addresses, u64 counts and markers, tables without seqs_of_names), built here the way
 * scripts/kallsyms.c builds them and mapped at the kernel's usual address with 4 KiB pages.
 */
const IMAGE_BASE = 0xffffffff81000000n;
const PAGE = 4096;

type Encoding = 'absolute-percpu' | 'relative' | 'place-relative' | 'addresses';

interface Layout {
  readonly name: string;
  readonly encoding: Encoding;
  /** kallsyms_offsets/relative_base (or kallsyms_addresses) before kallsyms_num_syms (up to 6.3), else after the token index (6.4+). */
  readonly addressesFirst: boolean;
  /** kallsyms_seqs_of_names between the markers and the token table (6.1 as Debian ships it). */
  readonly seqsBeforeTokens: boolean;
  readonly markerWidth: 4 | 8;
  readonly countWidth: 4 | 8;
  /** `.balign` of every label: 8 up to 6.19, 4 since 7.0. */
  readonly alignment: 4 | 8;
}

const LAYOUTS: readonly Layout[] = [
  {
    name: '6.1: absolute per-CPU, offsets first, seqs before tokens',
    encoding: 'absolute-percpu',
    addressesFirst: true,
    seqsBeforeTokens: true,
    markerWidth: 4,
    countWidth: 4,
    alignment: 8,
  },
  {
    name: '6.12: absolute per-CPU, offsets after the token index',
    encoding: 'absolute-percpu',
    addressesFirst: false,
    seqsBeforeTokens: false,
    markerWidth: 4,
    countWidth: 4,
    alignment: 8,
  },
  {
    name: '6.15: plain relative offsets',
    encoding: 'relative',
    addressesFirst: false,
    seqsBeforeTokens: false,
    markerWidth: 4,
    countWidth: 4,
    alignment: 8,
  },
  {
    name: '7.0: place-relative offsets, 4-byte labels',
    encoding: 'place-relative',
    addressesFirst: false,
    seqsBeforeTokens: false,
    markerWidth: 4,
    countWidth: 4,
    alignment: 4,
  },
  {
    name: '4.x: u64 count and markers',
    encoding: 'absolute-percpu',
    addressesFirst: true,
    seqsBeforeTokens: false,
    markerWidth: 8,
    countWidth: 8,
    alignment: 8,
  },
  {
    name: '!KALLSYMS_BASE_RELATIVE: u64 kallsyms_addresses',
    encoding: 'addresses',
    addressesFirst: true,
    seqsBeforeTokens: false,
    markerWidth: 8,
    countWidth: 8,
    alignment: 8,
  },
];

function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const NAME_CHARACTERS = 'abcdefghijklmnopqrstuvwxyz_0123456789.';
const TYPES = 'TtDdBbRrW';

/** Symbols in kallsyms order (by raw address: absolute per-CPU values first), every digit used. */
function symbolSet(seed: number, count: number, encoding: Encoding, longNames: boolean): KernelSymbol[] {
  const random = mulberry32(seed);
  const pick = (from: string) => from[Math.floor(random() * from.length)]!;
  const symbols: KernelSymbol[] = [];
  if (encoding === 'absolute-percpu' || encoding === 'addresses') {
    for (let i = 0; i < 20; i++)
      symbols.push({ name: `percpu_var${i}`, address: BigInt(i * 0x40), type: 'A', absolute: true });
  }
  symbols.push({ name: '_text', address: IMAGE_BASE, type: 'T', absolute: false });
  symbols.push({ name: 'digits_0123456789', address: IMAGE_BASE, type: 'T', absolute: false });
  let address = IMAGE_BASE;
  for (let i = 0; i < count; i++) {
    address += BigInt(Math.floor(random() * 64)); // 0 makes aliases, as kallsyms has
    const length = longNames && random() < 0.02 ? 300 + Math.floor(random() * 211) : 1 + Math.floor(random() * 30);
    let name = '';
    for (let j = 0; j < length; j++) name += pick(NAME_CHARACTERS);
    symbols.push({ name, address, type: pick(TYPES), absolute: false });
  }
  return symbols;
}

/** scripts/kallsyms.c's token table: each used character as itself, the other slots filled with frequent pairs and triples. */
function tokenTable(strings: readonly string[]): string[] {
  const tokens = new Array<string | undefined>(256).fill(undefined);
  const frequency = new Map<string, number>();
  for (const text of strings) {
    for (let i = 0; i < text.length; i++) {
      tokens[text.charCodeAt(i)] = text[i]!;
      for (const length of [2, 3])
        if (i + length <= text.length)
          frequency.set(text.slice(i, i + length), (frequency.get(text.slice(i, i + length)) ?? 0) + 1);
    }
  }
  const frequent = [...frequency.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([token]) => token);
  return tokens.map((token, i) => token ?? frequent.shift() ?? `unused${i}`);
}

function compress(text: string, codes: ReadonlyMap<string, number>): number[] {
  const compressed: number[] = [];
  for (let at = 0; at < text.length;) {
    const length = [3, 2, 1].find((candidate) => codes.has(text.slice(at, at + candidate)))!;
    compressed.push(codes.get(text.slice(at, at + length))!);
    at += length;
  }
  return compressed;
}

class Writer {
  private bytes = new Uint8Array(1 << 16);
  length = 0;

  constructor(private readonly alignment: number) {}

  private grow(by: number): DataView {
    if (this.length + by > this.bytes.length) {
      const bigger = new Uint8Array(Math.max(this.bytes.length * 2, this.length + by));
      bigger.set(this.bytes);
      this.bytes = bigger;
    }
    const view = new DataView(this.bytes.buffer, this.length, by);
    this.length += by;
    return view;
  }

  /** `.balign`, then the label's offset. */
  label(): number {
    this.grow((this.alignment - (this.length % this.alignment)) % this.alignment);
    return this.length;
  }
  u8s(values: ArrayLike<number>): void {
    const view = this.grow(values.length);
    for (let i = 0; i < values.length; i++) view.setUint8(i, values[i]!);
  }
  u16(value: number): void {
    this.grow(2).setUint16(0, value, true);
  }
  u32(value: number): void {
    this.grow(4).setUint32(0, value >>> 0, true);
  }
  u64(value: bigint): void {
    this.grow(8).setBigUint64(0, BigInt.asUintN(64, value), true);
  }
  noise(length: number, random: () => number): void {
    this.u8s(Array.from({ length }, () => Math.floor(random() * 256)));
  }
  done(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }
}

/** The digit run alone, not in a token table: the scan must try it and move on. */
const DECOY = [...'0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00'].map((c) => c.charCodeAt(0));

/** What the image holds before the real tables to mislead the scan: lone digit runs, and token tables with no names before them. */
interface Decoys {
  readonly digitRuns: number;
  readonly tokenTables: number;
}

/** A kernel image: noise with decoys, the kallsyms tables laid out as `layout` says, more noise. */
function buildImage(
  symbols: readonly KernelSymbol[],
  layout: Layout,
  seed: number,
  decoys: Decoys = { digitRuns: 1, tokenTables: 0 },
): { image: Uint8Array; location: KallsymsLocation; namesStream: Uint8Array } {
  const random = mulberry32(seed ^ 0x5eed);
  const strings = symbols.map((symbol) => symbol.type + symbol.name);
  const tokens = tokenTable(strings);
  const codes = new Map<string, number>();
  tokens.forEach((token, i) => codes.set(token, i));
  const stream: number[] = [];
  const markers: number[] = [];
  strings.forEach((text, i) => {
    if (i % 256 === 0) markers.push(stream.length);
    const compressed = compress(text, codes);
    stream.push(
      ...(compressed.length < 0x80 ? [compressed.length] : [0x80 | (compressed.length & 0x7f), compressed.length >> 7]),
      ...compressed,
    );
  });
  const seqsOfNames = strings
    .map((text, i) => ({ text: text.slice(1), i }))
    .sort((a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : a.i - b.i))
    .flatMap(({ i }) => [(i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff]);

  const writer = new Writer(layout.alignment);
  const at = (offset: number) => IMAGE_BASE + BigInt(offset);
  writer.noise(20_000, random);
  for (let i = 0; i < decoys.digitRuns; i++) {
    writer.u8s(DECOY);
    writer.noise(100, random);
  }
  const tokenBytes = tokens.map((token) => [...[...token].map((c) => c.charCodeAt(0)), 0]);
  const tokenOffsets = tokenBytes.map((_, i) => tokenBytes.slice(0, i).reduce((sum, bytes) => sum + bytes.length, 0));
  const writeTokens = (): { tokenTable: bigint; tokenIndex: bigint } => {
    const tokenTable = at(writer.label());
    writer.u8s(tokenBytes.flat());
    const tokenIndex = at(writer.label());
    for (const offset of tokenOffsets) writer.u16(offset);
    return { tokenTable, tokenIndex };
  };
  for (let i = 0; i < decoys.tokenTables; i++) {
    writeTokens();
    writer.noise(3000, random);
  }
  writer.noise(45_000, random);
  const location: Partial<KallsymsLocation> = {};
  const writeAddresses = () => {
    if (layout.encoding === 'addresses') {
      location.addresses = at(writer.label());
      for (const symbol of symbols) writer.u64(symbol.address);
      return;
    }
    location.offsets = at(writer.label());
    if (layout.encoding === 'place-relative') {
      for (const [i, symbol] of symbols.entries())
        writer.u32(Number(symbol.address - (location.offsets + BigInt(4 * i))));
      return;
    }
    const relativeBase = symbols.reduce(
      (lowest, symbol) => (!symbol.absolute && symbol.address < lowest ? symbol.address : lowest),
      1n << 64n,
    );
    for (const symbol of symbols) {
      if (layout.encoding === 'relative') writer.u32(Number(symbol.address - relativeBase));
      else writer.u32(symbol.absolute ? Number(symbol.address) : Number(relativeBase - symbol.address - 1n));
    }
    location.relativeBase = at(writer.label());
    writer.u64(relativeBase);
  };
  if (layout.addressesFirst) writeAddresses();
  location.numSyms = at(writer.label());
  if (layout.countWidth === 8) writer.u64(BigInt(symbols.length));
  else writer.u32(symbols.length);
  location.names = at(writer.label());
  writer.u8s(stream);
  location.markers = at(writer.label());
  for (const marker of markers) {
    if (layout.markerWidth === 8) writer.u64(BigInt(marker));
    else writer.u32(marker);
  }
  if (layout.seqsBeforeTokens) {
    writer.label();
    writer.u8s(seqsOfNames);
  }
  Object.assign(location, writeTokens());
  if (!layout.addressesFirst) writeAddresses();
  if (!layout.seqsBeforeTokens && layout.encoding !== 'addresses') {
    writer.label();
    writer.u8s(seqsOfNames);
  }
  writer.noise(5_000, random);
  return { image: writer.done(), location: location as KallsymsLocation, namesStream: Uint8Array.from(stream) };
}

/** `image` mapped at IMAGE_BASE by 4-level page tables of 4 KiB pages, in a raw in-memory dump. */
function mappedAtKernelBase(image: Uint8Array): X86AddressSpace {
  const pages = Math.ceil(image.length / PAGE);
  const pageTables = Math.ceil(pages / 512);
  const imagePhysical = (3 + pageTables) * PAGE;
  const memory = new Uint8Array(imagePhysical + pages * PAGE);
  const view = new DataView(memory.buffer);
  const entry = (at: number, target: number) => view.setBigUint64(at, BigInt(target) | 3n, true); // present, writable
  entry(511 * 8, PAGE); // PML4[511] → PDPT
  entry(PAGE + 510 * 8, 2 * PAGE); // PDPT[510] → PD: 0xffffffff80000000
  for (let table = 0; table < pageTables; table++) entry(2 * PAGE + (8 + table) * 8, (3 + table) * PAGE); // PD[8…]: 0xffffffff81000000
  for (let page = 0; page < pages; page++) entry(3 * PAGE + page * 8, imagePhysical + page * PAGE);
  memory.set(image, imagePhysical);
  const dump = new RangeMappedImage(new BufferSource('synthetic', memory), 'raw', [
    { start: 0, end: memory.length, fileOffset: 0 },
  ]);
  return new X86AddressSpace(dump, 0, 4);
}

describe.each(LAYOUTS)('synthetic kallsyms, $name', (layout) => {
  it('decodes and is found by the structural scan, for random symbol sets', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 260, max: 1500 }), fc.boolean(), (seed, count, longNames) => {
        const symbols = symbolSet(seed, count, layout.encoding, longNames);
        const { image, location } = buildImage(symbols, layout, seed);
        const space = mappedAtKernelBase(image);
        expect(decodeKallsyms(space, location)).toEqual(symbols);
        expect(findKallsyms(space, IMAGE_BASE, IMAGE_BASE + BigInt(image.length))).toEqual(location);
      }),
      { numRuns: 15 },
    );
  });
});

describe('synthetic kallsyms: decoys planted for the scan', () => {
  const layout = LAYOUTS[1]!;
  const symbols = symbolSet(5, 600, layout.encoding, false);

  it('steps over lone digit runs and token tables with no names before them', () => {
    const { image, location } = buildImage(symbols, layout, 5, { digitRuns: 50, tokenTables: 3 });
    expect(findKallsyms(mappedAtKernelBase(image), IMAGE_BASE, IMAGE_BASE + BigInt(image.length))).toEqual(location);
  });

  it('gives up after 1024 digit runs, quickly', () => {
    const { image } = buildImage(symbols, layout, 5, { digitRuns: 1100, tokenTables: 0 });
    const started = performance.now();
    expect(() => findKallsyms(mappedAtKernelBase(image), IMAGE_BASE, IMAGE_BASE + BigInt(image.length))).toThrow(
      /gave up after 1024 digit runs and 0 token tables/,
    );
    expect(performance.now() - started).toBeLessThan(10_000); // a hang guard (CI shares 2 cores), not a speed target
  });

  it('gives up after 8 token tables that lead nowhere, quickly', () => {
    const { image } = buildImage(symbols, layout, 5, { digitRuns: 0, tokenTables: 10 });
    const started = performance.now();
    expect(() => findKallsyms(mappedAtKernelBase(image), IMAGE_BASE, IMAGE_BASE + BigInt(image.length))).toThrow(
      /gave up after 8 digit runs and 8 token tables/,
    );
    expect(performance.now() - started).toBeLessThan(10_000); // a hang guard, not a speed target
  });
});

describe('synthetic kallsyms: names', () => {
  const layout = LAYOUTS[1]!;

  it('a name of 128 tokens or more has a two-byte length (6.1+ "big" symbols)', () => {
    const symbols = symbolSet(7, 300, layout.encoding, false);
    const long = {
      name: 'x'.repeat(200) + NAME_CHARACTERS.repeat(8),
      address: symbols[symbols.length - 1]!.address + 16n,
      type: 't',
      absolute: false,
    };
    symbols.push(long);
    const { image, location, namesStream } = buildImage(symbols, layout, 7);
    // The last entry's length byte has its top bit set.
    let at = 0;
    for (let i = 0; i < symbols.length - 1; i++)
      at +=
        namesStream[at]! & 0x80 ? 2 + ((namesStream[at]! & 0x7f) | (namesStream[at + 1]! << 7)) : 1 + namesStream[at]!;
    expect(namesStream[at]! & 0x80).toBe(0x80);
    expect(decodeKallsyms(mappedAtKernelBase(image), location).at(-1)).toEqual(long);
  });

  it('a name longer than KSYM_NAME_LEN is refused, naming the entry', () => {
    const symbols = symbolSet(8, 300, layout.encoding, false);
    symbols.push({
      name: 'y'.repeat(600),
      address: symbols[symbols.length - 1]!.address + 16n,
      type: 't',
      absolute: false,
    });
    const { image, location } = buildImage(symbols, layout, 8);
    const space = mappedAtKernelBase(image);
    expect(() => decodeKallsyms(space, location)).toThrow(VmscopeError);
    expect(() => decodeKallsyms(space, location)).toThrow(
      new RegExp(`kallsyms_names entry ${symbols.length - 1} at 0x[0-9a-f]+ expands to 601 characters`),
    );
  });

  it('a location with neither offsets nor addresses is refused', () => {
    const symbols = symbolSet(9, 300, layout.encoding, false);
    const { image, location } = buildImage(symbols, layout, 9);
    const { offsets: _offsets, relativeBase: _relativeBase, ...namesOnly } = location;
    expect(() => decodeKallsyms(mappedAtKernelBase(image), namesOnly)).toThrow(
      /neither kallsyms_offsets nor kallsyms_addresses/,
    );
  });
});
