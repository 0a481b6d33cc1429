import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatDmesg, readKernelLog } from '../../../src/os/linux/printk.js';
import { readTaint, type KernelTaint } from '../../../src/os/linux/taint.js';
import { consoleSection, openKernelFixture, READER_FIXTURES, type KernelFixture } from '../../support/kernelFixture.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-taint-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe.each(READER_FIXTURES)('taint of $name ($format)', ({ name, format }) => {
  // What the guest read from /proc/sys/kernel/tainted right before the snapshot.
  const printed = BigInt(consoleSection(name, 'tainted')[0]!);
  let fixture: KernelFixture;
  let taint: KernelTaint;
  beforeAll(async () => {
    fixture = await openKernelFixture(name, format, cacheDir);
    taint = readTaint(fixture.reader);
  });
  afterAll(() => fixture.context.close());

  it("tainted_mask is /proc/sys/kernel/tainted, each set bit decoded by the kernel's own table", () => {
    expect(taint.problems).toEqual([]);
    expect(taint.mask).toBe(printed);
    const bits = [...Array(64).keys()].filter((bit) => ((printed >> BigInt(bit)) & 1n) === 1n);
    expect(taint.flags.map((flag) => flag.bit)).toEqual(bits);
    expect(taint.flags.every((flag) => /^[A-Z]$/.test(flag.letter) && flag.name !== undefined)).toBe(true);
    expect(taint.summary).toMatch(printed === 0n ? /^Not tainted$/ : /^Tainted: /);
  });

  it('an out-of-tree, unsigned module taints O and E, as the kernel log says it did', () => {
    const log = formatDmesg(readKernelLog(fixture.reader).records).join('\n');
    const outOfTree = /loading out-of-tree module taints kernel/.test(log);
    const unsigned = /module verification failed: signature and\/or required key missing - tainting kernel/.test(log);
    const letters = taint.flags.map((flag) => `${flag.letter}:${flag.name}`);
    expect(letters.includes('O:OOT_MODULE')).toBe(outOfTree);
    expect(letters.includes('E:UNSIGNED_MODULE')).toBe(unsigned);
    // Both say a module nobody built with the kernel is in it.
    expect(taint.flags.filter((flag) => flag.suspicious).map((flag) => flag.letter)).toEqual([
      ...(outOfTree ? ['O'] : []),
      ...(unsigned ? ['E'] : []),
    ]);
  });
});
