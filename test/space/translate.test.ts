import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { RangeMappedImage } from '../../src/image/rangeImage.js';
import { BufferSource } from '../../src/image/source.js';
import { START_KERNEL_MAP } from '../../src/os/linux/layout.js';
import { X86AddressSpace } from '../../src/space/x86.js';
import { AbsentMemoryError, PageFaultError, VmscopeError } from '../../src/util/errors.js';
import { dumpFixtures, fixturePath, multiFormatSnapshots, truth } from '../support/fixtures.js';

const u64 = (text: string) => BigInt.asUintN(64, BigInt(text));

describe.each(dumpFixtures())('kernel address space of $name ($format)', ({ name, format }) => {
  it('translates _text and every /proc/kcore range the guest reported', () => {
    const expected = truth(name);
    const context = new DumpContext(fixturePath(name, format));
    try {
      const { space } = context.kernel;
      expect(BigInt(space.translate(u64(expected.layout.text_virt)).physical)).toBe(u64(expected.layout.text_phys));
      let checked = 0;
      for (const load of expected.layout.kcore_loads) {
        if (u64(load.paddr) === (1n << 64n) - 1n) continue; // vmalloc/vmemmap: no fixed physical address
        const size = u64(load.size);
        for (const offset of [0n, (size / 2n) & ~0xfffn, size - 0x1000n]) {
          expect(BigInt(space.translate(u64(load.vaddr) + offset).physical)).toBe(u64(load.paddr) + offset);
          checked++;
        }
      }
      expect(checked).toBeGreaterThanOrEqual(9);
    } finally {
      context.close();
    }
  });

  it('faults with the address and level on unmapped and non-canonical addresses', () => {
    const context = new DumpContext(fixturePath(name, format));
    try {
      const { space } = context.kernel;
      const unmapped = 0x1000n; // user space is empty in init_top_pgt
      const fault = (() => {
        try {
          space.translate(unmapped);
        } catch (error) {
          return error;
        }
      })();
      expect(fault).toBeInstanceOf(PageFaultError);
      expect((fault as PageFaultError).virtual).toBe(unmapped);
      expect((fault as PageFaultError).level).toBe(4);
      expect(() => space.translate(0x0000800000000000n)).toThrow(/non-canonical/);
      // A read across a page boundary equals the two halves read separately.
      const text = u64(truth(name).layout.text_virt) + 0x1ff8n;
      const across = new Uint8Array(16);
      space.read(text, across);
      const first = new Uint8Array(8);
      const second = new Uint8Array(8);
      space.read(text, first);
      space.read(text + 8n, second);
      expect([...across]).toEqual([...first, ...second]);
    } finally {
      context.close();
    }
  });
});

describe('translations asked for again', () => {
  it('say what a fresh walk says, wherever in the page and whatever was asked before; faults are not remembered', () => {
    const { name, format } = dumpFixtures()[0]!;
    const context = new DumpContext(fixturePath(name, format));
    try {
      const { space, image, dtb, pagingLevels } = context.kernel;
      const text = u64(truth(name).layout.text_virt);
      // Kernel text sits in 2 MiB pages: several 4 KiB pages of one of them, each at a few offsets, then again.
      const addresses = [0n, 0x10n, 0xff8n, 0x1000n, 0x1234n, 0x1fffffn, 0x200000n + 0x777n].map((at) => text + at);
      const first = addresses.map((address) => space.translate(address));
      const again = [...addresses].reverse().map((address) => space.translate(address));
      const fresh = addresses.map((address) => new X86AddressSpace(image, dtb, pagingLevels).translate(address));
      expect(first).toEqual(fresh);
      expect(again.reverse()).toEqual(fresh);
      expect(first[1]!.physical - first[0]!.physical).toBe(0x10);
      for (let asked = 0; asked < 2; asked++) {
        expect(() => space.translate(0x1000n)).toThrow(PageFaultError);
        expect(() => space.translate(0x0000800000000000n)).toThrow(/non-canonical/);
      }
    } finally {
      context.close();
    }
  });
});

/** Hash of every kernel page readable through the kernel's page tables, deduplicated by physical page. */
function kernelPagesDigest(path: string): { digest: string; pages: number } {
  const context = new DumpContext(path);
  try {
    const { space, image } = context.kernel;
    const ram = image.ranges[0]!; // every format holds the RAM block at physical 0
    const seen = new Set<number>();
    const hash = createHash('sha256');
    const page = new Uint8Array(4096);
    for (const run of space.mappings(START_KERNEL_MAP, 1n << 64n)) {
      for (let offset = 0; offset < run.length; offset += 4096) {
        const physical = run.physical + offset;
        if (physical >= ram.end || seen.has(physical)) continue;
        seen.add(physical);
        space.read(run.virtual + BigInt(offset), page);
        hash.update(page);
      }
    }
    return { digest: hash.digest('hex'), pages: seen.size };
  } finally {
    context.close();
  }
}

describe.each(multiFormatSnapshots())('kernel pages of $name', ({ name, formats }) => {
  it('read identically through every format', () => {
    const digests = formats.map((format) => kernelPagesDigest(fixturePath(name, format)));
    expect(digests[0]!.pages).toBeGreaterThan(5000);
    for (const other of digests.slice(1)) expect(other).toEqual(digests[0]);
  });
});

describe('hostile page tables', () => {
  it('a PML4 whose every entry points back to itself is walked in bounded time', () => {
    const memory = new Uint8Array(1 << 20);
    const table = new BigUint64Array(memory.buffer, 0x1000, 512);
    table.fill(0x1000n | 0x7n);
    const image = new RangeMappedImage(new BufferSource('cyclic', memory), 'raw', [
      { start: 0, end: memory.length, fileOffset: 0 },
    ]);
    const space = new X86AddressSpace(image, 0x1000, 4);
    // translate terminates: 4 levels, whatever the entries say
    expect(space.translate(0x12345678n).physical).toBe(0x1000 + 0x678);
    const started = performance.now();
    expect(() => {
      for (const _run of space.mappings()) {
        // consume
      }
    }).toThrow(VmscopeError);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('small reads give the image bytes, and fail where the image does, also in a page the image holds only part of', () => {
    const memory = new Uint8Array(1 << 16).map((_, index) => (index * 7) & 0xff);
    // Identity map of the first 64 KiB: PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000, PT at 0x4000.
    const entries = (at: number) => new BigUint64Array(memory.buffer, at, 512);
    entries(0x1000).fill(0n)[0] = 0x2000n | 0x7n;
    entries(0x2000).fill(0n)[0] = 0x3000n | 0x7n;
    entries(0x3000).fill(0n)[0] = 0x4000n | 0x7n;
    entries(0x4000)
      .fill(0n)
      .set(Array.from({ length: 16 }, (_, page) => BigInt(page * 0x1000) | 0x7n));
    // The image ends in the middle of page 6.
    const image = new RangeMappedImage(new BufferSource('partial', memory), 'raw', [
      { start: 0, end: 0x6800, fileOffset: 0 },
    ]);
    const space = new X86AddressSpace(image, 0x1000, 4);
    const failure = (read: () => void) => {
      try {
        read();
      } catch (error) {
        return error;
      }
    };
    for (const [at, length] of [
      [0x5010, 8],
      [0x5018, 4],
      [0x5ffc, 8],
      [0x6000, 8],
      [0x67f8, 8],
      [0x6000, 8],
      [0x67fc, 8],
      [0x6800, 1],
    ] as const) {
      const through = new Uint8Array(length);
      const direct = new Uint8Array(length);
      const expected = failure(() => image.read(at, direct));
      expect(failure(() => space.read(BigInt(at), through))).toEqual(expected);
      if (!expected) expect(through).toEqual(memory.subarray(at, at + length));
    }
    expect(failure(() => space.read(0x67fcn, new Uint8Array(8)))).toBeInstanceOf(AbsentMemoryError);
  });

  it('a page table outside the image is a page fault, not a crash', () => {
    const memory = new Uint8Array(1 << 16);
    new BigUint64Array(memory.buffer, 0x1000, 512)[0] = 0x7fff_f000n | 0x7n;
    const image = new RangeMappedImage(new BufferSource('sparse', memory), 'raw', [
      { start: 0, end: memory.length, fileOffset: 0 },
    ]);
    const space = new X86AddressSpace(image, 0x1000, 4);
    expect(() => space.translate(0n)).toThrow(/not in the image/);
    expect([...space.mappings()]).toEqual([]);
  });
});
