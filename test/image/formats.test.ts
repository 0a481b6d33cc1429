import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { infoAnalysis } from '../../src/analyses/info.js';
import { findAnalysis } from '../../src/analyses/registry.js';
import { openImage } from '../../src/image/open.js';
import type { MemoryImage } from '../../src/image/types.js';
import { formatCapture, formatCaptureUnavailable, type FormatCapture } from '../support/formatCapture.js';
import { formatSet, type FormatFile } from '../support/formatSet.js';

/** One profile cache for the file: every format of the capture derives the same kernel's profile once. */
const profileCache = mkdtempSync(join(tmpdir(), 'vmscope-formats-profiles-'));
afterAll(() => rmSync(profileCache, { recursive: true, force: true }));

const PAGE = 4096;
/** The kernel facts `info` reports, which must not depend on the capture format. */
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

const unavailable = formatCaptureUnavailable();
if (unavailable)
  console.warn(`skipping the capture-format tests: ${unavailable} (they boot the fixtures' guest once under QEMU)`);

/**
 * Every present page of `image` equals the reference's bytes, read 64 KiB at a time and compared
 * page by page; returns how many pages were compared. The raw file (pmemsave) reads the legacy
 * VGA/ROM window [0xa0000, 0x100000) through the memory map, not the RAM behind it: pages there
 * are compared with the ELF core, as is the BIOS above the raw file's end.
 */
function comparePages(image: MemoryImage, raw: MemoryImage, elf: MemoryImage): number {
  const chunk = new Uint8Array(16 * PAGE);
  const expected = new Uint8Array(16 * PAGE);
  let pages = 0;
  for (const range of image.ranges) {
    for (let at = range.start; at < range.end; at += chunk.length) {
      const length = Math.min(chunk.length, range.end - at);
      image.read(at, chunk.subarray(0, length));
      for (let page = 0; page < length; page += PAGE) {
        const physical = at + page;
        const reference =
          physical >= 0xa0000 && physical < 0x100000
            ? elf
            : raw.readPresent(physical, expected.subarray(0, PAGE)) === PAGE
              ? raw
              : elf;
        reference.read(physical, expected.subarray(0, PAGE));
        const mine = chunk.subarray(page, page + PAGE);
        if (Buffer.compare(mine, expected.subarray(0, PAGE)) !== 0) {
          throw new Error(`${image.path}: page 0x${physical.toString(16)} differs from the reference`);
        }
        pages++;
      }
    }
  }
  return pages;
}

function pageCount(image: MemoryImage): number {
  return image.totalBytes / PAGE;
}

async function rowsOf(
  path: string,
  analysis: string,
): Promise<{ rows: Array<Record<string, unknown>>; partial: boolean; warnings: readonly string[] }> {
  const context = new DumpContext(path, { cacheDir: profileCache });
  try {
    const result = await findAnalysis(analysis)!.run(context, {});
    return { rows: result.rows as Array<Record<string, unknown>>, partial: result.partial, warnings: result.warnings };
  } finally {
    context.close();
  }
}

async function kernelFacts(path: string): Promise<Record<string, unknown>> {
  const context = new DumpContext(path, { cacheDir: profileCache });
  try {
    const row = (await infoAnalysis.run(context)).rows[0] as Record<string, unknown>;
    return Object.fromEntries(KERNEL_KEYS.map((key) => [key, row[key]]));
  } finally {
    context.close();
  }
}

describe.skipIf(unavailable !== undefined)('one paused guest captured in every format', () => {
  let capture: FormatCapture;
  let files: FormatFile[];
  let elfFacts: Record<string, unknown>;

  beforeAll(async () => {
    capture = await formatCapture();
    files = formatSet(capture);
    elfFacts = await kernelFacts(capture.elf);
  }, 900_000);

  it('QEMU wrote the formats this test needs', () => {
    expect(files.map((file) => file.format)).toEqual(expect.arrayContaining(['elf', 'raw', 'kdump', 'migration']));
    expect(Object.keys(capture.kdumpFlat)).toContain('kdump-zlib');
  });

  it('each file is recognised by content, with the details info shows', () => {
    for (const file of files) {
      const image = openImage(file.path);
      try {
        expect(image.format, file.name).toBe(file.format);
        if (file.format === 'kdump') {
          expect(image.details?.complete, file.name).toBe(true);
          expect(image.details?.compression?.length, file.name).toBeGreaterThan(0);
          expect(image.details?.layout, file.name).toBe(/flat/.test(file.name) ? 'flattened' : 'random-access');
          // What a kdump offers readers, in a compressed container too: zero pages left out, the text decoded last.
          expect(typeof image.nonZeroRanges, file.name).toBe('function');
          expect(typeof image.decodeLast, file.name).toBe('function');
        }
        if (file.name.endsWith('.zst')) expect(image.details?.container).toBe('zstd');
        if (file.name.endsWith('.gz')) expect(image.details?.container).toBe('gzip');
        if (file.name.endsWith('.xz')) expect(image.details?.container).toBe('xz');
        if (file.name === 'libvirt save image') expect(image.details?.wrapper).toBe('libvirt save image');
        if (file.format === 'migration') expect(image.details?.machine).toMatch(/^pc-i440fx/);
      } finally {
        image.close();
      }
    }
  });

  it(
    'every format holds the same bytes as the raw file for every present page, and the unfiltered ones every page of the ELF core',
    { timeout: 900_000 },
    () => {
      const raw = openImage(capture.raw);
      const elf = openImage(capture.elf);
      try {
        for (const file of files) {
          // As the analyses open it: a zlib kdump's pages come through the inflate-ahead thread.
          const image = openImage(file.path, { readAhead: true });
          try {
            const compared = comparePages(image, raw, elf);
            expect(compared, file.name).toBe(pageCount(image));
            const spans = (of: MemoryImage) => of.ranges.map(({ start, end }) => ({ start, end }));
            if (file.complete) expect(spans(image), file.name).toEqual(spans(elf));
          } finally {
            image.close();
          }
        }
      } finally {
        raw.close();
        elf.close();
      }
    },
  );

  it(
    'kernel discovery gives the same release, banner, slide, phys_base, DTB and page_offset_base on every format',
    { timeout: 900_000 },
    async () => {
      expect(elfFacts.kernel_release).toBe('6.1.0-56-amd64');
      for (const file of files) expect(await kernelFacts(file.path), file.name).toEqual(elfFacts);
    },
  );

  it("the kdump sub-header's VMCOREINFO and ELF notes reach discovery: CPU state and a file-note VMCOREINFO", () => {
    const snappyV6 = files.find((file) => file.name.startsWith('kdump-snappy.v6'))!;
    const context = new DumpContext(snappyV6.path, { cacheDir: profileCache });
    try {
      expect(context.kernel.vmcoreinfo?.source).toBe('file-note');
      expect(context.image.cpus.map((cpu) => cpu.cr3)).toEqual(openImage(capture.elf).cpus.map((cpu) => cpu.cr3));
    } finally {
      context.close();
    }
    // QEMU's kdump carries the CPU notes (no VMCOREINFO: the guest has no fw_cfg driver to hand it over).
    const qemuKdump = openImage(capture.kdumpFlat['kdump-zlib']!);
    try {
      expect(qemuKdump.cpus.length).toBe(2);
    } finally {
      qemuKdump.close();
    }
  });

  it(
    'check finds the same hidden process, hidden module and hooked syscall on every format; pslist and psaux agree',
    { timeout: 1_800_000 },
    async () => {
      const reference = {
        check: await rowsOf(capture.elf, 'check'),
        pslist: await rowsOf(capture.elf, 'pslist'),
        psaux: await rowsOf(capture.elf, 'psaux'),
      };
      const kinds = reference.check.rows.map((row) => row.kind).sort();
      expect(kinds).toEqual(['hidden_module', 'hidden_process', 'syscall_hook']);
      const hidden = reference.check.rows.find((row) => row.kind === 'hidden_process')!;
      expect(String(hidden.subject)).toMatch(new RegExp(`^pid ${capture.hiddenPid} `));
      const hook = reference.check.rows.find((row) => row.kind === 'syscall_hook')!;
      expect(String(hook.subject)).toContain(`sys_call_table[${capture.hookedSyscall}]`);
      expect(reference.pslist.rows.length).toBeGreaterThan(20);
      for (const file of files.filter((candidate) => candidate.path !== capture.elf)) {
        for (const analysis of ['check', 'pslist', 'psaux'] as const) {
          const result = await rowsOf(file.path, analysis);
          expect(result.rows, `${analysis} on ${file.name}`).toEqual(reference[analysis].rows);
        }
      }
    },
  );
});
