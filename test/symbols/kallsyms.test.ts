import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import type { Vmcoreinfo } from '../../src/os/linux/vmcoreinfo.js';
import { X86AddressSpace } from '../../src/space/x86.js';
import { decodeKallsyms, findKallsyms, type KallsymsLocation, type KernelSymbol } from '../../src/symbols/kallsyms.js';
import { MAX_EXPANDED_NAME } from '../../src/symbols/kallsymsTables.js';
import { VmscopeError } from '../../src/util/errors.js';
import { hex } from '../../src/util/hex.js';
import { dumpFixtures, fixturePath, snapshotNames } from '../support/fixtures.js';
import { OverlayImage } from '../support/overlay.js';

/** The kernel image's virtual region: __START_KERNEL_map up to the module area. */
const KERNEL_IMAGE = { from: 0xffffffff80000000n, to: 0xffffffffc0000000n };

/** What 6.0+ kernels write to VMCOREINFO for makedumpfile and crash. */
function kallsymsFromVmcoreinfo(vmcoreinfo: Vmcoreinfo): KallsymsLocation {
  const symbol = (name: string): bigint => {
    const value = vmcoreinfo.symbol(name);
    if (value === undefined) throw new Error(`VMCOREINFO has no SYMBOL(${name})`);
    return value;
  };
  return {
    names: symbol('kallsyms_names'),
    numSyms: symbol('kallsyms_num_syms'),
    tokenTable: symbol('kallsyms_token_table'),
    tokenIndex: symbol('kallsyms_token_index'),
    offsets: symbol('kallsyms_offsets'),
    relativeBase: symbol('kallsyms_relative_base'),
  };
}

/** One line as /proc/kallsyms prints a vmlinux symbol: `%px %c %s`. */
function procLine(symbol: KernelSymbol): string {
  return `${symbol.address.toString(16).padStart(16, '0')} ${symbol.type} ${symbol.name}`;
}

/** The ELF core when the snapshot has one, else its first format. */
const snapshots = snapshotNames().map((name) => ({
  name,
  format: dumpFixtures().find((fixture) => fixture.name === name)!.format,
}));

describe.each(snapshots)('kallsyms of $name ($format)', ({ name, format }) => {
  let context: DumpContext;
  beforeAll(() => {
    context = new DumpContext(fixturePath(name, format));
  });
  afterAll(() => context.close());

  it('decodes every vmlinux line of the guest /proc/kallsyms: address, type letter and name, in order', () => {
    const { space, vmcoreinfo } = context.kernel;
    const lines = readFileSync(fixturePath(name, 'kallsyms.txt'), 'latin1')
      .split('\n')
      .filter((line) => line !== '');
    // Module, BPF, ftrace and kprobe symbols carry a `\t[owner]` suffix: they are not in vmlinux's tables.
    const vmlinux = lines.filter((line) => !/\t\[[^\]]+\]$/.test(line));
    const started = performance.now();
    const symbols = decodeKallsyms(space, kallsymsFromVmcoreinfo(vmcoreinfo!));
    const milliseconds = performance.now() - started;
    const decoded = symbols.map(procLine);

    const unmatched = new Map<string, number>();
    for (const line of decoded) unmatched.set(line, (unmatched.get(line) ?? 0) + 1);
    let matched = 0;
    for (const line of vmlinux) {
      const left = unmatched.get(line) ?? 0;
      if (left > 0) {
        matched += 1;
        unmatched.set(line, left - 1);
      }
    }
    console.log(
      `${name}: ${matched}/${vmlinux.length} vmlinux lines of /proc/kallsyms decoded (${((100 * matched) / vmlinux.length).toFixed(3)}%); ` +
        `${symbols.length} symbols decoded; ${lines.length - vmlinux.length} [module] lines; ${milliseconds.toFixed(0)} ms`,
    );
    expect(vmlinux.length).toBeGreaterThan(50_000);
    expect(matched).toBe(vmlinux.length);
    expect(symbols.length).toBe(vmlinux.length);
    const firstDifference = decoded.findIndex((line, i) => line !== vmlinux[i]);
    expect(
      firstDifference < 0
        ? undefined
        : { index: firstDifference, decoded: decoded[firstDifference], guest: vmlinux[firstDifference] },
    ).toBeUndefined();
    expect(milliseconds).toBeLessThan(1000);
  });

  it('marks exactly the per-CPU symbols absolute: type A, below the kernel half, unmoved by KASLR', () => {
    const { space, vmcoreinfo, kaslrSlide } = context.kernel;
    const symbols = decodeKallsyms(space, kallsymsFromVmcoreinfo(vmcoreinfo!));
    const absolute = symbols.filter((symbol) => symbol.absolute);
    expect(absolute.length).toBeGreaterThan(100);
    expect(absolute.every((symbol) => symbol.type === 'A' && symbol.address < 1n << 32n)).toBe(true);
    expect(symbols.filter((symbol) => symbol.type === 'A').length).toBe(absolute.length);
    expect(symbols.find((symbol) => symbol.name === '__per_cpu_start')?.address).toBe(0n);
    // Relocatable symbols moved with the slide: _text sits at the default 0xffffffff81000000 plus it.
    expect(symbols.find((symbol) => symbol.name === '_text')?.address).toBe(0xffffffff81000000n + kaslrSlide);
    expect(symbols.filter((symbol) => !symbol.absolute).every((symbol) => symbol.address >= KERNEL_IMAGE.from)).toBe(
      true,
    );
  });

  it('the structural scan finds the tables VMCOREINFO names, and they decode the same', () => {
    const { space, vmcoreinfo, release } = context.kernel;
    const expected = kallsymsFromVmcoreinfo(vmcoreinfo!);
    const found = findKallsyms(space, KERNEL_IMAGE.from, KERNEL_IMAGE.to);
    const { markers, ...tables } = found;
    expect(tables).toEqual(expected);

    // kallsyms_markers starts at the 8-aligned end of the names stream, and says where entry 256 starts.
    const stream = new Uint8Array(Number(markers! - found.names));
    space.read(found.names, stream);
    const count = Number(new DataView(readBytes(context, found.numSyms, 4).buffer).getUint32(0, true));
    const entryStarts: number[] = [];
    let at = 0;
    for (let i = 0; i < count; i++) {
      entryStarts.push(at);
      const length = stream[at]! & 0x80 ? (stream[at]! & 0x7f) | (stream[at + 1]! << 7) : stream[at]!;
      at += (stream[at]! & 0x80 ? 2 : 1) + length;
    }
    expect(Math.ceil(at / 8) * 8).toBe(stream.length);
    const markerTable = new DataView(readBytes(context, markers!, 8).buffer);
    expect([markerTable.getUint32(0, true), markerTable.getUint32(4, true)]).toEqual([0, entryStarts[256]]);

    // The table order differs: 6.1 puts the addresses before the count, 6.12 after the token index.
    const order = Object.entries(found)
      .sort(([, a], [, b]) => (a! < b! ? -1 : 1))
      .map(([key]) => key);
    expect(order).toEqual(
      release.startsWith('6.1.')
        ? ['offsets', 'relativeBase', 'numSyms', 'names', 'markers', 'tokenTable', 'tokenIndex']
        : ['numSyms', 'names', 'markers', 'tokenTable', 'tokenIndex', 'offsets', 'relativeBase'],
    );
    expect(decodeKallsyms(space, found)).toEqual(decodeKallsyms(space, expected));
  });
});

function readBytes(context: DumpContext, address: bigint, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  context.kernel.space.read(address, bytes);
  return bytes;
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  return bytes;
}

/** The thrown error, or a failure saying nothing was thrown. */
function thrownBy(run: () => unknown): VmscopeError {
  try {
    run();
  } catch (error) {
    if (error instanceof VmscopeError) return error;
    throw error;
  }
  throw new Error('expected a VmscopeError, nothing was thrown');
}

const regions = ['names', 'tokenTable', 'tokenIndex', 'offsets', 'numSyms', 'relativeBase'] as const;
const mutation = fc.record({
  region: fc.constantFrom(...regions),
  /** single bytes set anywhere in the region */
  bytes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 16 }),
  /** a run of one value (zeros, 0xff, a big-length prefix…) */
  fill: fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 4096 }), fc.constantFrom(0, 0x80, 0xff, 0x41)), {
    nil: undefined,
  }),
});

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

describe.each([
  { name: 'linux61-clean', format: 'elf' as const },
  { name: 'linux612-clean', format: 'elf' as const },
])('corrupt kallsyms tables of $name', ({ name, format }) => {
  let context: DumpContext;
  let location: KallsymsLocation;
  /** A fresh patchable copy of the kernel's address space. */
  let patched: () => { image: OverlayImage; space: X86AddressSpace };
  beforeAll(() => {
    context = new DumpContext(fixturePath(name, format));
    const { kernel } = context;
    location = kallsymsFromVmcoreinfo(kernel.vmcoreinfo!);
    patched = () => {
      const image = new OverlayImage(context.image);
      return { image, space: new X86AddressSpace(image, kernel.dtb, kernel.pagingLevels) };
    };
  });
  afterAll(() => context.close());

  /** Decoding must fail fast with a CORRUPT_STRUCTURE error naming the table and the address. */
  function expectCorrupt(space: X86AddressSpace, at: KallsymsLocation, table: string, address: bigint): VmscopeError {
    const started = performance.now();
    const error = thrownBy(() => decodeKallsyms(space, at));
    expect(performance.now() - started).toBeLessThan(5000); // a hang guard, not a speed target
    expect(error.code).toBe('CORRUPT_STRUCTURE');
    expect(error.message).toContain(table);
    expect(error.message).toContain(hex(address));
    expect(error.file).toBe(context.image.path);
    expect(error.offset).toBe(address);
    return error;
  }

  it('num_syms = 2^31 is refused before anything is allocated for it', () => {
    const { image, space } = patched();
    image.patchVirtual(space, location.numSyms, u32(2 ** 31));
    const error = expectCorrupt(space, location, 'kallsyms_num_syms', location.numSyms);
    expect(error.message).toContain('2147483648');
    // The scan then finds no count in front of the names stream.
    const missed = thrownBy(() => findKallsyms(space, KERNEL_IMAGE.from, KERNEL_IMAGE.to));
    expect(missed.code).toBe('NO_PROFILE');
    expect(missed.message).toContain(
      `kallsyms_num_syms and kallsyms_names before the token table at ${hex(location.tokenTable)}`,
    );
  });

  it('num_syms = 0 is refused', () => {
    const { image, space } = patched();
    image.patchVirtual(space, location.numSyms, u32(0));
    expectCorrupt(space, location, 'kallsyms_num_syms', location.numSyms);
  });

  it('a token table without NUL terminators is refused, naming the table', () => {
    const { image, space } = patched();
    image.patchVirtual(
      space,
      location.tokenTable,
      new Uint8Array(Number(location.tokenIndex - location.tokenTable)).fill(0x41),
    );
    const error = expectCorrupt(space, location, 'kallsyms_token_table', location.tokenTable);
    expect(error.message).toContain('no NUL terminator');
  });

  it('a token index pointing past the token table is refused, naming the token', () => {
    const { image, space } = patched();
    const index = new Uint8Array(2);
    new DataView(index.buffer).setUint16(0, 0xffff, true);
    image.patchVirtual(space, location.tokenIndex + 2n * 7n, index);
    const error = expectCorrupt(space, location, 'kallsyms_token_table', location.tokenTable + 0xffffn);
    expect(error.message).toContain(
      `token 7 at ${hex(location.tokenTable + 0xffffn)} (offset 0xffff) lies past the end of the table`,
    );
  });

  it('a names stream cut short by its region is refused where it runs past', () => {
    const { space } = patched();
    // Room for the count's minimal two-byte names, far less than the real stream needs.
    const truncated = { ...location, markers: location.names + 400_000n };
    const error = thrownBy(() => decodeKallsyms(space, truncated));
    expect(error.code).toBe('CORRUPT_STRUCTURE');
    expect(error.message).toMatch(
      /^kallsyms_names at 0x[0-9a-f]+: entry \d+ of \d+ at 0x[0-9a-f]+ runs past the end of the names region \(400000 bytes\)$/,
    );
    expect(error.offset! >= location.names && error.offset! < truncated.markers).toBe(true);
  });

  it('tables on unmapped pages fail with a page fault naming the table, not a hang', () => {
    const { space } = patched();
    let imageEnd = 0n;
    for (const run of space.mappings(KERNEL_IMAGE.from, KERNEL_IMAGE.to)) imageEnd = run.virtual + BigInt(run.length);
    const error = thrownBy(() =>
      decodeKallsyms(space, { ...location, names: imageEnd - 0x1000n, markers: imageEnd + 0x100000n }),
    );
    expect(error.code).toBe('PAGE_FAULT');
    expect(error.message).toContain(`kallsyms_names at ${hex(imageEnd - 0x1000n)}`);
    expect(error.offset).toBe(imageEnd);
  });

  function regionBytes(region: (typeof regions)[number]): { start: bigint; length: number } {
    switch (region) {
      case 'names':
        return { start: location.names, length: Number(location.tokenTable - location.names) };
      case 'tokenTable':
        return { start: location.tokenTable, length: Number(location.tokenIndex - location.tokenTable) };
      case 'tokenIndex':
        return { start: location.tokenIndex, length: 512 };
      case 'offsets': // the first thousand
        return { start: location.offsets!, length: 4 * 1000 };
      case 'numSyms':
        return { start: location.numSyms, length: 4 };
      case 'relativeBase':
        return { start: location.relativeBase!, length: 8 };
    }
  }

  function mutated({ region, bytes, fill }: Mutation): X86AddressSpace {
    const { image, space } = patched();
    const { start, length } = regionBytes(region);
    if (fill)
      image.patchVirtual(
        space,
        start + BigInt(fill[0] % length),
        new Uint8Array(Math.min(fill[1], length - (fill[0] % length))).fill(fill[2]),
      );
    for (const [position, value] of bytes)
      image.patchVirtual(space, start + BigInt(position % length), Uint8Array.of(value));
    return space;
  }

  it('decoding mutated tables returns bounded symbols or a VmscopeError, quickly', () => {
    const namesBytes = Number(location.tokenTable - location.names);
    const outcomes = new Map<string, number>();
    fc.assert(
      fc.property(mutation, (change) => {
        const space = mutated(change);
        const started = performance.now();
        let outcome = 'decoded';
        try {
          const symbols = decodeKallsyms(space, location);
          expect(symbols.length).toBeLessThanOrEqual(namesBytes / 2);
          expect(symbols.reduce((longest, symbol) => Math.max(longest, symbol.name.length), 0)).toBeLessThan(
            MAX_EXPANDED_NAME,
          );
        } catch (error) {
          if (!(error instanceof VmscopeError)) throw error;
          expect(error.file).toBe(context.image.path);
          outcome = error.code;
        }
        expect(performance.now() - started).toBeLessThan(10_000); // a hang guard, not a speed target
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }),
      { numRuns: 40 },
    );
    console.log(`${name}: mutated tables gave ${JSON.stringify(Object.fromEntries(outcomes))}`);
    expect(outcomes.get('decoded')).toBeGreaterThan(0);
    expect(outcomes.get('CORRUPT_STRUCTURE')).toBeGreaterThan(0);
  });

  it('the scan over mutated tables finds tables that decode, or fails with a VmscopeError, quickly', () => {
    const outcomes = new Map<string, number>();
    fc.assert(
      fc.property(mutation, (change) => {
        const space = mutated(change);
        const started = performance.now();
        let outcome = 'found';
        try {
          decodeKallsyms(space, findKallsyms(space, KERNEL_IMAGE.from, KERNEL_IMAGE.to));
        } catch (error) {
          if (!(error instanceof VmscopeError)) throw error;
          outcome = error.code;
        }
        expect(performance.now() - started).toBeLessThan(5000);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }),
      { numRuns: 12 },
    );
    console.log(`${name}: scans over mutated tables gave ${JSON.stringify(Object.fromEntries(outcomes))}`);
  });
});
