import { closeSync, copyFileSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { infoAnalysis } from '../../src/analyses/info.js';
import { dumpFixtures, fixturePath, multiFormatSnapshots, truth, type FixtureFormat } from '../support/fixtures.js';

const u64 = (text: string) => BigInt.asUintN(64, BigInt(text));

async function infoOf(path: string): Promise<Record<string, unknown>> {
  const context = new DumpContext(path);
  try {
    return (await infoAnalysis.run(context)).rows[0] as Record<string, unknown>;
  } finally {
    context.close();
  }
}

/** The kernel facts `info` reports, which must not depend on the dump format. */
const KERNEL_KEYS = [
  'kernel_release',
  'linux_banner',
  'kaslr',
  'kaslr_slide',
  'phys_base',
  'dtb',
  'page_offset_base',
  'paging_levels',
] as const;

/** The `info` facts the guest itself reported, compared exactly. */
function expectGuestTruth(row: Record<string, unknown>, name: string): void {
  const expected = truth(name);
  expect(row.kernel_release).toBe(expected.kernel.release);
  expect(row.linux_banner).toBe(expected.kernel.linux_banner);
  expect(u64(row.kaslr_slide as string)).toBe(u64(expected.layout.virtual_kaslr_slide));
  expect(u64(row.phys_base as string)).toBe(u64(expected.layout.phys_base_value));
  expect(u64(row.dtb as string)).toBe(u64(expected.layout.init_top_pgt_phys));
  expect(u64(row.page_offset_base as string)).toBe(u64(expected.layout.page_offset_base_value));
  expect(row.paging_levels).toBe(expected.layout.paging_levels);
}

describe.each(dumpFixtures())('info on $name ($format) equals the guest truth', ({ name, format }) => {
  it('release, banner, slide, phys_base, DTB, page_offset_base, paging levels', async () => {
    const expected = truth(name);
    const row = await infoOf(fixturePath(name, format));
    expect(row.format).toBe(format);
    expectGuestTruth(row, name);
    expect(row.kaslr).toBe(expected.layout.kaslr_enabled);
    expect(row.discovery).toBe('vmcoreinfo');
    // JSON contract: lowercase 0x-hex strings for addresses.
    for (const key of ['kaslr_slide', 'phys_base', 'dtb', 'page_offset_base'])
      expect(row[key]).toMatch(/^0x[0-9a-f]+$/);
  });
});

describe.each(multiFormatSnapshots())('every format of $name gives the same kernel facts', ({ name, formats }) => {
  it('raw, LiME and ELF agree', async () => {
    const facts = [];
    for (const format of formats) {
      const row = await infoOf(fixturePath(name, format));
      facts.push(Object.fromEntries(KERNEL_KEYS.map((key) => [key, row[key]])));
    }
    for (const other of facts.slice(1)) expect(other).toEqual(facts[0]);
  });
});

describe('without VMCOREINFO: banner + page tables', () => {
  const work = mkdtempSync(join(tmpdir(), 'vmscope-novmcoreinfo-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** Copy a raw fixture and overwrite every "OSRELEASE=" so no VMCOREINFO note (or copy of it) is left. */
  function blankVmcoreinfo(name: string, format: FixtureFormat): string {
    const path = join(work, `${name}.${format}`);
    copyFileSync(fixturePath(name, format), path);
    const fd = openSync(path, 'r+');
    const chunk = Buffer.alloc(64 << 20);
    const needle = Buffer.from('OSRELEASE=');
    let blanked = 0;
    for (let position = 0; ; position += chunk.length - needle.length) {
      const got = readSync(fd, chunk, 0, chunk.length, position);
      for (let at = chunk.indexOf(needle); at >= 0 && at < got; at = chunk.indexOf(needle, at + 1)) {
        writeSync(fd, Buffer.from('XXXXXXXXXX'), 0, needle.length, position + at);
        blanked++;
      }
      if (got < chunk.length) break;
    }
    closeSync(fd);
    expect(blanked).toBeGreaterThan(0);
    return path;
  }

  it.each(['linux61-clean', 'linux612-clean'])('%s: same layout found by the fallback route', async (name) => {
    const row = await infoOf(blankVmcoreinfo(name, 'raw'));
    expect(row.discovery).toBe('page-table-scan');
    expectGuestTruth(row, name);
  });
});
