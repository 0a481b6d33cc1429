import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readIdt, type IdtReport } from '../../../src/os/linux/idt.js';
import { parseHex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import {
  kernelFixtureOf,
  openKernelFixture,
  READER_FIXTURES,
  type KernelFixture,
} from '../../support/kernelFixture.js';
import { OverlayContext } from '../../support/overlay.js';

interface IdtHookTruth {
  vector: number;
  orig: string;
  orig_symbol: string;
  new: string;
  new_symbol: string;
  table: string;
  gate: string;
}
interface ModernTruth {
  module: { name: string };
  idt_hooks: IdtHookTruth[];
}

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-idt-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const HANG_GUARD_MS = 2000;
const GATES = 256;

describe.each(READER_FIXTURES)('IDT of $name ($format)', ({ name, format }) => {
  const modern = truth(name).modern as ModernTruth | undefined;
  let fixture: KernelFixture;
  let report: IdtReport;
  beforeAll(async () => {
    fixture = await openKernelFixture(name, format, cacheDir);
    report = readIdt(fixture.reader, fixture.owners);
  });
  afterAll(() => fixture.context.close());

  it('decodes all 256 gates, each present with a kernel code segment', () => {
    expect(report.problems).toEqual([]);
    expect(report.gates.map((gate) => gate.vector)).toEqual([...Array(GATES).keys()]);
    // Every vector is set up on x86-64 Linux: exceptions, the int 0x80 gate, device and system vectors.
    expect(report.gates.filter((gate) => !gate.present)).toEqual([]);
    expect(new Set(report.gates.map((gate) => gate.segment)).size).toBe(1);
  });

  it(modern ? 'finds gate 128 repointed at the module, and what the kernel put there' : 'finds no hooked gate', () => {
    const expected = (modern?.idt_hooks ?? []).map((hook) => ({
      vector: hook.vector,
      gate: parseHex(hook.gate),
      handler: parseHex(hook.new),
      symbol: hook.new_symbol,
      owner: modern!.module.name,
      expected: parseHex(hook.orig),
      expectedSymbol: hook.orig_symbol,
      suspicious: true,
    }));
    expect(report.gates.filter((gate) => gate.suspicious)).toMatchObject(expected);
    expect(report.gates.filter((gate) => gate.suspicious).length).toBe(expected.length);
    if (modern) expect(report.table).toBe(parseHex(modern.idt_hooks[0]!.table));
  });

  it('user space may raise only int3, into and int 0x80', () => {
    expect(report.gates.filter((gate) => gate.dpl === 3).map((gate) => gate.vector)).toEqual([3, 4, 128]);
  });

  it('the architectural exceptions go to the kernel entry points named for them', () => {
    // Vector 14 is the page fault: a kernel without asm_exc_page_fault there would not boot.
    const pageFault = report.gates[14]!;
    expect(pageFault).toMatchObject({ symbol: 'asm_exc_page_fault', owner: 'kernel', suspicious: false });
    expect(pageFault.expected).toBe(pageFault.handler);
  });
});

describe('a hostile IDT in linux61-clean', () => {
  let base: KernelFixture;
  beforeAll(async () => {
    base = await openKernelFixture('linux61-clean', 'elf', cacheDir);
  });
  afterAll(() => base.context.close());

  it('a kernel gate opened to user space (DPL 3) is a finding', async () => {
    const context = new OverlayContext(base.context);
    const { profile } = base.reader;
    const bits =
      profile.requireSymbol('idt_table') +
      BigInt(14 * profile.sizeOf('gate_struct') + profile.offsetOf('gate_struct', 'bits'));
    const word = new DataView(base.reader.bytes(bits, 2).buffer).getUint16(0, true);
    const dplBits = profile.field('idt_bits', 'dpl').type as { bit_position: number };
    context.image.patchVirtual(
      context.kernel.space,
      bits,
      new Uint8Array(new Uint16Array([word | (3 << dplBits.bit_position)]).buffer),
    );
    const hostile = await kernelFixtureOf(context);
    const report = readIdt(hostile.reader, hostile.owners);
    expect(report.problems).toEqual([]);
    expect(report.gates.filter((gate) => gate.suspicious)).toMatchObject([
      { vector: 14, dpl: 3, symbol: 'asm_exc_page_fault', owner: 'kernel' },
    ]);
    expect(report.gates[14]!.evidence).toMatch(/callable from user space/);
  });

  it('a gate pointing to unmapped memory is a finding and a problem, and the other gates are still read', async () => {
    const context = new OverlayContext(base.context);
    // Inside the direct map, far beyond the 512 MiB of RAM: canonical, but nothing maps it.
    const nowhere = context.kernel.pageOffsetBase + (1n << 44n);
    expect(context.kernel.space.tryTranslate(nowhere)).toBeUndefined();
    const { reader } = base;
    const { profile } = reader;
    const gate = profile.requireSymbol('idt_table') + BigInt(14 * profile.sizeOf('gate_struct'));
    // The page-fault gate, its handler's three parts rewritten (segment and bits kept).
    const bytes = reader.bytes(gate, profile.sizeOf('gate_struct'));
    const view = new DataView(bytes.buffer);
    view.setUint16(profile.offsetOf('gate_struct', 'offset_low'), Number(nowhere & 0xffffn), true);
    view.setUint16(profile.offsetOf('gate_struct', 'offset_middle'), Number((nowhere >> 16n) & 0xffffn), true);
    view.setUint32(profile.offsetOf('gate_struct', 'offset_high'), Number(nowhere >> 32n), true);
    context.image.patchVirtual(context.kernel.space, gate, bytes);

    const hostile = await kernelFixtureOf(context);
    const started = performance.now();
    const report = readIdt(hostile.reader, hostile.owners);
    expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
    expect(report.problems).toEqual([`IDT gate 14: handler 0x${nowhere.toString(16)} is not mapped`]);
    expect(report.gates.length).toBe(GATES);
    expect(report.gates.filter((gate) => gate.suspicious)).toMatchObject([
      { vector: 14, handler: nowhere, owner: 'unknown', expectedSymbol: 'asm_exc_page_fault' },
    ]);
  });
});
