import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { summarizeSnapshot } from '../../src/monitor/summarize.js';
import { dumpFixtures, fixturePath, truth } from '../support/fixtures.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-summarize-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** The guest's xtime advances on ticks and the host stamps the dump a moment later: seconds apart, never minutes. */
const CLOCK_TOLERANCE_SECONDS = 30;

interface CaptureTruth {
  capture: { captured_at_utc: string };
  processes: Array<{ pid: number; comm: string; cmdline: string[]; kernel_thread: boolean; in_task_list: boolean }>;
}

const snapshots = ['linux61-t0', 'linux61-t1', 'linux612-clean'].map((name) =>
  dumpFixtures().find((fixture) => fixture.name === name)!,
);

describe.each(snapshots)('summary of $name ($format)', ({ name, format }) => {
  const expected = truth(name) as unknown as CaptureTruth;

  it("reads the capture time from the guest's own clock", async () => {
    const context = new DumpContext(fixturePath(name, format), { cacheDir });
    try {
      const summary = await summarizeSnapshot(context);
      expect(expected.capture.captured_at_utc).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(summary.capturedAtSource).toBe('guest-clock');
      const skewSeconds = Math.abs(summary.capturedAt.getTime() - Date.parse(expected.capture.captured_at_utc)) / 1000;
      expect(skewSeconds).toBeLessThanOrEqual(CLOCK_TOLERANCE_SECONDS);

      expect(summary.banner).toBe(truth(name).kernel.linux_banner);
      expect(summary.warnings).toEqual([]);
      // Every user process the guest listed, with the argv it listed.
      const userProcesses = expected.processes.filter((process) => !process.kernel_thread && process.in_task_list);
      const summarized = new Map(summary.processes.map((process) => [process.pid, process]));
      for (const process of userProcesses) {
        expect(summarized.get(process.pid), `pid ${process.pid}`).toMatchObject({
          comm: process.comm,
          cmdline: process.cmdline,
          kernelThread: false,
        });
      }
      expect(
        summary.processes.filter((process) => process.kernelThread).every((process) => process.cmdline === null),
      ).toBe(true);
      expect(summary.hiddenProcesses).toEqual([]);
      expect(summary.hiddenModules).toEqual([]);
      expect(summary.syscalls.filter((syscall) => syscall.hooked)).toEqual([]);
      expect(summary.syscalls.length).toBeGreaterThan(300);
      expect(summary.signatures).toBeUndefined();
    } finally {
      context.close();
    }
  });
});
