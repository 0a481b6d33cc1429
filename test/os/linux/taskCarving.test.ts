import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../../src/analyses/context.js';
import { taskCarverProvider } from '../../../src/analyses/providers/processes.js';
import { needleSearcher } from '../../../src/kernels/needleSearcher.js';
import { fixturePath, truth } from '../../support/fixtures.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-task-carving-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe('carving task_structs', () => {
  it("leaves the kernel's text and read-only data unread and finds every task a search of all memory finds", async () => {
    const context = new DumpContext(fixturePath('linux61-rootkit', 'lime'), { cacheDir });
    try {
      const carver = await context.get(taskCarverProvider);
      let searchedBytes = 0;
      const carved = carver.carve((_, total) => (searchedBytes = total));
      const everywhere = carver.tasksAt(
        needleSearcher(carver.needles, { wordAligned: true }).searchImage(context.image),
      );
      expect(carved.map((task) => task.physical)).toEqual(everywhere.map((task) => task.physical));
      // The rootkit's hidden process is among them, and the kernel's 14 MiB of text and 9 MiB of rodata were not read.
      const { rootkit } = truth('linux61-rootkit') as unknown as { rootkit: { hidden_process: { pid: number } } };
      const hidden = rootkit.hidden_process.pid;
      expect(carved.some((task) => task.info.pid === hidden)).toBe(true);
      expect(context.image.totalBytes - searchedBytes).toBeGreaterThan(20 << 20);
    } finally {
      context.close();
    }
  });
});
