import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { infoAnalysis } from '../../src/analyses/info.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { findAnalysis } from '../../src/analyses/registry.js';
import { openImage } from '../../src/image/open.js';
import { processAddressSpace } from '../../src/os/linux/processSpace.js';
import { userHalfEnd } from '../../src/os/linux/reverseMap.js';
import { AbsentMemoryError } from '../../src/util/errors.js';
import { formatCapture, formatCaptureUnavailable, type FormatCapture } from '../support/formatCapture.js';
import { kdumpFrom, vmcoreinfoText } from '../support/formatSet.js';
import { materialized } from '../support/rows.js';

/** One profile cache for the file: every format of the capture derives the same kernel's profile once. */
const profileCache = mkdtempSync(join(tmpdir(), 'vmscope-formats-profiles-'));
afterAll(() => rmSync(profileCache, { recursive: true, force: true }));

const PAGE = 4096;
const unavailable = formatCaptureUnavailable();

/**
 * Every page frame a user process maps (its page tables' user half, walked for every process on
 * the task list): what makedumpfile's dump level 31 leaves out as user (and, for file-backed
 * mappings, cache) pages. Together with the zero pages, this is our level-31 approximation; the
 * kernel's page flags would also drop free pages, which only makes a real level-31 dump smaller.
 */
async function userPageFrames(elf: string): Promise<Set<number>> {
  const context = new DumpContext(elf, { cacheDir: profileCache });
  try {
    const { tasks } = await context.get(taskListProvider);
    const reader = await context.get(readerProvider);
    const frames = new Set<number>();
    for (const task of tasks) {
      if (task.kernelThread || task.mm === 0n) continue;
      const space = processAddressSpace(context.kernel, reader, task.mm);
      for (const run of space.mappings(0n, userHalfEnd(space))) {
        for (let at = run.physical; at < run.physical + run.length; at += PAGE) frames.add(Math.floor(at / PAGE));
      }
    }
    return frames;
  } finally {
    context.close();
  }
}

async function run(path: string, analysis: string) {
  const context = new DumpContext(path, { cacheDir: profileCache });
  try {
    return await materialized(findAnalysis(analysis)!.run(context, {}));
  } finally {
    context.close();
  }
}

describe.skipIf(unavailable !== undefined)('a kdump filtered as dump level 31 (user and zero pages excluded)', () => {
  let capture: FormatCapture;
  let filtered: string;
  let userFrames: Set<number>;

  beforeAll(async () => {
    capture = await formatCapture();
    userFrames = await userPageFrames(capture.elf);
    const dir = join(capture.dir, 'derived');
    mkdirSync(dir, { recursive: true });
    filtered = join(dir, 'kdump-level31');
    if (!existsSync(filtered)) {
      kdumpFrom(capture.elf, `${filtered}.partial`, {
        codec: 'zlib',
        version: 6,
        dumpLevel: 31,
        exclude: userFrames,
        excludeZeroPages: true,
        vmcoreinfo: vmcoreinfoText(capture.raw),
      });
      renameSync(`${filtered}.partial`, filtered);
    }
  }, 900_000);

  it('excluded pages are absent (never zeros) and info reports the dump level and the bytes left out', () => {
    expect(userFrames.size).toBeGreaterThan(100);
    const image = openImage(filtered);
    try {
      expect(image.details).toMatchObject({ dumpLevel: 31, complete: true, compression: ['zlib'] });
      expect(image.details!.excludedBytes).toBeGreaterThan(userFrames.size * PAGE);
      const userFrame = [...userFrames].find((frame) => frame * PAGE < 0x20000000)!;
      expect(() => image.read(userFrame * PAGE, new Uint8Array(PAGE))).toThrow(AbsentMemoryError);
      expect(image.readPresent(userFrame * PAGE, new Uint8Array(PAGE))).toBe(0);
    } finally {
      image.close();
    }
  });

  it(
    'kernel analyses are exact: the same kernel facts, check findings and process list as the ELF core',
    { timeout: 900_000 },
    async () => {
      const facts = async (path: string) => {
        const context = new DumpContext(path, { cacheDir: profileCache });
        try {
          const row = (await infoAnalysis.run(context)).rows[0] as Record<string, unknown>;
          return [row.kernel_release, row.linux_banner, row.kaslr_slide, row.phys_base, row.dtb, row.page_offset_base];
        } finally {
          context.close();
        }
      };
      expect(await facts(filtered)).toEqual(await facts(capture.elf));
      for (const analysis of ['check', 'pslist', 'psscan', 'lsmod']) {
        const [mine, reference] = [await run(filtered, analysis), await run(capture.elf, analysis)];
        expect(mine.rows, analysis).toEqual(reference.rows);
      }
    },
  );

  it(
    'user-memory analyses are partial with a reason naming the pid: psaux cannot read argv from excluded pages',
    { timeout: 900_000 },
    async () => {
      const mine = await run(filtered, 'psaux');
      const reference = await run(capture.elf, 'psaux');
      expect(reference.partial).toBe(false);
      expect(mine.partial).toBe(true);
      expect(mine.warnings.some((warning) => /^pid \d+ .*not in the image/.test(warning))).toBe(true);
      // Same processes; kernel threads keep their [comm], user processes lose argv they cannot read.
      expect(mine.rows.map((row) => row.pid)).toEqual(reference.rows.map((row) => row.pid));
    },
  );
});
