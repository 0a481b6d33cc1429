import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelReader } from '../../../src/os/linux/kernelReader.js';
import { formatDmesg, readKernelLog, type KernelLog } from '../../../src/os/linux/printk.js';
import { truth } from '../../support/fixtures.js';
import {
  consoleSection,
  kernelFixtureOf,
  openKernelFixture,
  READER_FIXTURES,
  type KernelFixture,
} from '../../support/kernelFixture.js';
import { OverlayContext } from '../../support/overlay.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-printk-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const HANG_GUARD_MS = 2000;

/** The dmesg lines the truth file quotes (the module's log, the kernel's BPF warning), wherever they are. */
function quotedDmesg(name: string): string[] {
  const facts = truth(name) as Record<string, { dmesg?: string[] } | undefined>;
  return ['bpf', 'modern', 'rootkit'].flatMap((key) => facts[key]?.dmesg ?? []);
}

/** `lines` appear in `log` in this order (not necessarily adjacent). */
function inOrder(log: readonly string[], lines: readonly string[]): string[] {
  const missing: string[] = [];
  let from = 0;
  for (const line of lines) {
    const at = log.indexOf(line, from);
    if (at < 0) missing.push(line);
    else from = at + 1;
  }
  return missing;
}

describe.each(READER_FIXTURES)('kernel log of $name ($format)', ({ name, format }) => {
  let fixture: KernelFixture;
  let log: KernelLog;
  beforeAll(async () => {
    fixture = await openKernelFixture(name, format, cacheDir);
    log = readKernelLog(fixture.reader);
  });
  afterAll(() => fixture.context.close());

  it("holds what the guest's own dmesg printed: same text, order and timestamps", () => {
    expect(log.problems).toEqual([]);
    const printed = consoleSection(name, 'dmesg');
    const lines = formatDmesg(log.records);
    const start = lines.indexOf(printed[0]!);
    expect(start).toBeGreaterThanOrEqual(0);
    expect(lines.slice(start, start + printed.length)).toEqual(printed);
  });

  it('holds the lines the truth quotes from the kernel log', () => {
    expect(inOrder(formatDmesg(log.records), quotedDmesg(name))).toEqual([]);
  });

  it('records are consecutive, with a syslog level and the kernel facility', () => {
    const first = log.records[0]!.sequence;
    expect(log.records.map((record) => record.sequence)).toEqual(log.records.map((_, index) => first + BigInt(index)));
    expect(log.records.every((record) => record.level >= 0 && record.level <= 7 && record.facility === 0)).toBe(true);
    expect(log.records[0]!.text).toMatch(/^Linux version /);
  });
});

describe('a hostile printk ring in linux61-clean', () => {
  let base: KernelFixture;
  let clean: KernelLog;
  beforeAll(async () => {
    base = await openKernelFixture('linux61-clean', 'elf', cacheDir);
    clean = readKernelLog(base.reader);
  });
  afterAll(() => base.context.close());

  it('descriptors whose text lies outside the data ring are problems, and the other records are still read', async () => {
    const context = new OverlayContext(base.context);
    const { reader } = base;
    const { profile } = reader;
    const ring = reader.u64(profile.requireSymbol('prb'));
    const descRing = ring + reader.offset('printk_ringbuffer', 'desc_ring');
    const dataRing = ring + reader.offset('printk_ringbuffer', 'text_data_ring');
    const descs = reader.pointerField(descRing, 'prb_desc_ring', 'descs');
    const count = 1n << BigInt(reader.u32Field(descRing, 'prb_desc_ring', 'count_bits'));
    const tailId = reader.u64(descRing + reader.offset('prb_desc_ring', 'tail_id'));
    const headLpos = reader.u64(dataRing + reader.offset('prb_data_ring', 'head_lpos'));
    const lpos = reader.offset('prb_desc', 'text_blk_lpos');
    const forged = [10n, 11n, 200n];
    for (const step of forged) {
      const descriptor = descs + ((tailId + 1n + step) & (count - 1n)) * BigInt(profile.sizeOf('prb_desc'));
      // A megabyte past the head: beyond anything the ring has written.
      context.patchKernelU64(descriptor + lpos + reader.offset('prb_data_blk_lpos', 'begin'), headLpos + 0x100000n);
      context.patchKernelU64(descriptor + lpos + reader.offset('prb_data_blk_lpos', 'next'), headLpos + 0x100040n);
    }
    const hostile = await kernelFixtureOf(context);
    const started = performance.now();
    const log = readKernelLog(hostile.reader);
    expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
    expect(log.problems.length).toBe(forged.length);
    for (const problem of log.problems)
      expect(problem).toMatch(
        /^printk record 0x[0-9a-f]+: its text block .* lies outside the data ring's valid window/,
      );
    expect(log.records.length).toBe(clean.records.length - forged.length);
    const kept = new Set(log.records.map((record) => record.sequence));
    expect(clean.records.filter((record) => !kept.has(record.sequence)).length).toBe(forged.length);
  });

  it('any forged descriptors leave a log whose every record is a real one (at most cut short)', () => {
    const { reader } = base;
    const { profile } = reader;
    const ring = reader.u64(profile.requireSymbol('prb'));
    const descRing = ring + reader.offset('printk_ringbuffer', 'desc_ring');
    const dataRing = ring + reader.offset('printk_ringbuffer', 'text_data_ring');
    const descs = reader.pointerField(descRing, 'prb_desc_ring', 'descs');
    const count = 1 << reader.u32Field(descRing, 'prb_desc_ring', 'count_bits');
    const headLpos = reader.u64(dataRing + reader.offset('prb_data_ring', 'head_lpos'));
    const fields = ['state_var', 'text_blk_lpos.begin', 'text_blk_lpos.next'].map((field) =>
      reader.offset('prb_desc', field),
    );
    const cleanText = new Map(clean.records.map((record) => [record.sequence, record.text]));
    // Positions near the head (inside, at and beyond the valid window) or anywhere at all.
    const lpos = fc.oneof(
      fc.bigInt({ min: -0x30000n, max: 0x10000n }).map((delta) => BigInt.asUintN(64, headLpos + delta)),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    );
    const forgery = fc.tuple(fc.nat({ max: count - 1 }), fc.nat({ max: 2 }), lpos);
    fc.assert(
      fc.property(fc.array(forgery, { minLength: 1, maxLength: 6 }), (forgeries) => {
        const context = new OverlayContext(base.context);
        for (const [index, field, value] of forgeries)
          context.patchKernelU64(descs + BigInt(index * profile.sizeOf('prb_desc')) + fields[field]!, value);
        const started = performance.now();
        const log = readKernelLog(new KernelReader(context.kernel.space, profile));
        expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
        for (const record of log.records)
          expect(cleanText.get(record.sequence)?.startsWith(record.text), `record ${record.sequence}`).toBe(true);
        // A forged descriptor costs its own record at most.
        expect(log.records.length).toBeGreaterThanOrEqual(clean.records.length - forgeries.length);
      }),
      { numRuns: 40 },
    );
  });
});
