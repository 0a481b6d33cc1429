import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { kernelProvider, readerProvider } from '../../src/analyses/providers/kernel.js';
import { everyProcessProvider } from '../../src/analyses/providers/processes.js';
import type { Row } from '../../src/analyses/types.js';
import { yarascan } from '../../src/analyses/yarascan.js';
import { processAddressSpace } from '../../src/os/linux/processSpace.js';
import { readMemoryRegions } from '../../src/os/linux/vmas.js';
import { hex } from '../../src/util/hex.js';
import { fixturePath } from '../support/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vmscope-yarascan-regions-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const ET_EXEC = 2;
const ET_DYN = 3;

/** A region as the test names it: pid and start address. */
const key = (pid: unknown, start: unknown) => `${String(pid)} ${String(start)}`;

describe.each(['linux61-clean', 'linux612-clean'])('yarascan --per-region on %s', (name) => {
  let context: DumpContext;
  let rows: readonly Row[];
  /** Regions whose first bytes are an ELF header, read here page by page from the regions' own bytes. */
  const elfRegions = new Map<string, { type: number; fileBacked: boolean }>();
  let mappedImages = 0;
  const onePageRegions = new Set<string>();

  beforeAll(async () => {
    const rules = join(work, `${name}.yar`);
    writeFileSync(
      rules,
      `import "elf"
rule elf_image { strings: $magic = { 7F 45 4C 46 } condition: $magic at 0 and uint32(0) == 0x464c457f }
rule elf_loadable { condition: elf.type == elf.ET_EXEC or elf.type == elf.ET_DYN }
rule one_page { condition: filesize == 4096 }`,
    );
    context = new DumpContext(fixturePath(name, 'raw'), { cacheDir: join(work, 'profiles') });
    const result = await yarascan(context, { rules, perRegion: true });
    rows = [...result.rows];

    const kernel = await context.get(kernelProvider);
    const reader = await context.get(readerProvider);
    const { processes } = await context.get(everyProcessProvider);
    for (const task of processes.filter((process) => !process.kernelThread && process.mm !== 0n)) {
      const space = processAddressSpace(kernel, reader, task.mm);
      for (const region of readMemoryRegions(reader, task.mm).regions) {
        if (region.end - region.start === 4096n) onePageRegions.add(key(task.pid, hex(region.start)));
        const header = new Uint8Array(18);
        if (!space.tryTranslate(region.start)) continue;
        space.read(region.start, header);
        if (!ELF_MAGIC.equals(header.subarray(0, 4))) continue;
        const fileBacked = region.file !== 0n && region.offset === 0n;
        if (fileBacked) mappedImages++;
        elfRegions.set(key(task.pid, hex(region.start)), {
          type: header[16]! | (header[17]! << 8),
          fileBacked,
        });
      }
    }
  }, 600_000);
  afterAll(() => context.close());

  it('matches the start of every mapped ELF image, and only there', () => {
    expect(mappedImages).toBeGreaterThan(10);
    const found = rows.filter((row) => row.rule === 'elf_image');
    for (const row of found) {
      expect(row.offset).toBe('0x0');
      expect(row.virtual).toBe(row.regionStart);
      expect(row.string).toBe('$magic');
      expect(BigInt(row.regionEnd as string)).toBeGreaterThan(BigInt(row.regionStart as string));
    }
    expect(new Set(found.map((row) => key(row.pid, row.regionStart)))).toEqual(new Set(elfRegions.keys()));
    expect(found).toHaveLength(elfRegions.size);
  });

  it('gives elf.* the region: ET_EXEC and ET_DYN images match elf_loadable, other regions do not', () => {
    const loadable = [...elfRegions]
      .filter(([, region]) => region.type === ET_EXEC || region.type === ET_DYN)
      .map(([region]) => region);
    expect(loadable.length).toBeGreaterThan(10);
    const found = rows.filter((row) => row.rule === 'elf_loadable');
    expect(found.every((row) => row.string === null && row.offset === null)).toBe(true);
    expect(new Set(found.map((row) => key(row.pid, row.regionStart)))).toEqual(new Set(loadable));
  });

  it('sees filesize as the region size', () => {
    expect(onePageRegions.size).toBeGreaterThan(0);
    const found = rows.filter((row) => row.rule === 'one_page');
    expect(new Set(found.map((row) => key(row.pid, row.regionStart)))).toEqual(onePageRegions);
    expect(found).toHaveLength(onePageRegions.size);
  });
});
