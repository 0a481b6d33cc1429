import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { infoAnalysis } from '../../src/analyses/info.js';
import { findAnalysis } from '../../src/analyses/registry.js';
import { openImage } from '../../src/image/open.js';
import { fixturePath, truth } from '../support/fixtures.js';
import { materialized } from '../support/rows.js';

const PAGE = 4096;
const profileCache = mkdtempSync(join(tmpdir(), 'vmscope-avml-profiles-'));
afterAll(() => rmSync(profileCache, { recursive: true, force: true }));

async function rowsOf(path: string, analysis: string): Promise<readonly unknown[]> {
  const context = new DumpContext(path, { cacheDir: profileCache });
  try {
    return (await materialized(findAnalysis(analysis)!.run(context, {}))).rows;
  } finally {
    context.close();
  }
}

describe('AVML (linux61-rootkit: the same snapshot as its LiME file)', () => {
  it('every present page equals the LiME file; the omitted all-zero blocks are absent, not zeros', () => {
    const avml = openImage(fixturePath('linux61-rootkit', 'avml'));
    const lime = openImage(fixturePath('linux61-rootkit', 'lime'));
    try {
      expect(avml.format).toBe('avml');
      expect(avml.details).toMatchObject({ compression: ['snappy'], version: 2 });
      const mine = new Uint8Array(16 * PAGE);
      const expected = new Uint8Array(16 * PAGE);
      let pages = 0;
      for (const range of avml.ranges) {
        for (let at = range.start; at < range.end; at += mine.length) {
          const length = Math.min(mine.length, range.end - at);
          avml.read(at, mine.subarray(0, length));
          lime.read(at, expected.subarray(0, length));
          for (let page = 0; page < length; page += PAGE) {
            if (Buffer.compare(mine.subarray(page, page + PAGE), expected.subarray(page, page + PAGE)) !== 0)
              throw new Error(`page 0x${(at + page).toString(16)} differs`);
            pages++;
          }
        }
      }
      expect(pages).toBe(avml.totalBytes / PAGE);
      // Every 16 MiB block of the LiME that is not all zeros is in the AVML file.
      const block = new Uint8Array(16 << 20);
      for (const range of lime.ranges) {
        for (let at = range.start; at < range.end; at += block.length) {
          const length = Math.min(block.length, range.end - at);
          lime.read(at, block.subarray(0, length));
          const present = avml.readPresent(at, new Uint8Array(PAGE)) > 0;
          expect(present, `block 0x${at.toString(16)}`).toBe(block.subarray(0, length).some((byte) => byte !== 0));
        }
      }
    } finally {
      avml.close();
      lime.close();
    }
  });

  it(
    'the same kernel facts as the guest reported, and the same check, pslist and psaux rows as the LiME file',
    { timeout: 600_000 },
    async () => {
      const avml = fixturePath('linux61-rootkit', 'avml');
      const context = new DumpContext(avml, { cacheDir: profileCache });
      try {
        const row = (await infoAnalysis.run(context)).rows[0] as Record<string, unknown>;
        const expected = truth('linux61-rootkit');
        expect(row.kernel_release).toBe(expected.kernel.release);
        expect(row.linux_banner).toBe(expected.kernel.linux_banner);
        expect(BigInt(row.dtb as string)).toBe(BigInt(expected.layout.init_top_pgt_phys));
        expect(BigInt(row.page_offset_base as string)).toBe(BigInt(expected.layout.page_offset_base_value));
      } finally {
        context.close();
      }
      for (const analysis of ['check', 'pslist', 'psaux']) {
        expect(await rowsOf(avml, analysis), analysis).toEqual(
          await rowsOf(fixturePath('linux61-rootkit', 'lime'), analysis),
        );
      }
    },
  );
});
