import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/monitor/qmp.js';
import type { SnapshotSummary } from '../../src/monitor/snapshot.js';
import { QemuSharedMemorySource } from '../../src/monitor/sources/qemuSharedMemorySource.js';
import { watch, type SnapshotTimings, type WatchAlert } from '../../src/monitor/watch.js';
import { truth } from '../support/fixtures.js';
import {
  bootGuest,
  qemuUnavailableReason,
  readNdjsonFile,
  sharedRamArgs,
  type LiveGuest,
} from '../support/liveGuest.js';

/**
 * What a live monitor meets besides a guest that runs (issue 19, scope 5), on one boot of the
 * clean guest with its RAM in a shared file: the guest reset (the same kernel boots again, elsewhere
 * with KASLR), its RAM file replaced under the monitor and put back, then truncated, then QEMU
 * killed. Each must give a clear alert (and from the CLI an exit code), never a crash, a hang or
 * findings read from a kernel that no longer runs. QEMU is killed and the file removed however
 * the test ends.
 */
const work = mkdtempSync(join(tmpdir(), 'vmr-'));
const cacheDir = join(work, 'profiles');
const ramPath = `/dev/shm/vmscope-robust-${process.pid}`;
const movedPath = `${ramPath}.moved`;
const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../../bin/vmscope.js');
let guest: LiveGuest | undefined;
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await guest?.kill();
  for (const file of [ramPath, movedPath]) rmSync(file, { force: true });
  rmSync(work, { recursive: true, force: true });
});

/** Poll `done` until it holds, or fail naming `what` after `boundMs` (with what `explain` says happened meanwhile). */
async function until(what: string, done: () => boolean, boundMs: number, explain?: () => string): Promise<void> {
  for (const deadline = Date.now() + boundMs; !done();) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${boundMs} ms${explain ? `; ${explain()}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const tableEntry = (summary: SnapshotSummary, index: number) =>
  summary.syscalls.find((entry) => entry.table === 'sys_call_table' && entry.index === index)?.value;

/** The built CLI as a user runs it. */
function runCli(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('close', (code) => resolve({ code, stderr }));
  });
}

const unavailable = qemuUnavailableReason();
if (unavailable) console.warn(`skipping the live robustness test: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('a live monitor when the guest or its RAM file goes wrong', () => {
  it(
    'a reset is followed to the kernel booted again; a replaced file and a truncated one are error alerts; a killed QEMU ends the watch with exit 3',
    { timeout: 900_000 },
    async () => {
      guest = await bootGuest({
        mode: 'clean',
        tmpDir: work,
        extraArgs: [
          ...sharedRamArgs(ramPath),
          // bootGuest's -no-reboot makes a reset end QEMU; this guest must reboot.
          '-action',
          'reboot=reset',
        ],
      });
      const { console: consolePath, qmpSocket } = guest;
      const readies = () => (readFileSync(consolePath, 'utf8').match(/LAB:READY/g) ?? []).length;
      const labComms = (truth('linux61-clean') as unknown as { processes: Array<{ comm: string }> }).processes
        .map((process) => process.comm)
        .filter((comm) => comm.startsWith('lab_'));
      expect(labComms.length).toBeGreaterThan(0);

      const source = new QemuSharedMemorySource({ ramPath, qmpSocket, intervalMs: 1000 });
      const stop = new AbortController();
      const judged: Array<{ at: number; summary: SnapshotSummary }> = [];
      const alerts: Array<{ at: number; alert: WatchAlert }> = [];
      const checks: Array<{ at: number; timings: SnapshotTimings }> = [];
      const watching = (async () => {
        for await (const alert of watch({
          source,
          signal: stop.signal,
          contextOptions: { cacheDir },
          onSnapshotJudged: (summary) => void judged.push({ at: Date.now(), summary }),
          onSnapshotDone: (timings) => void checks.push({ at: Date.now(), timings }),
        }))
          alerts.push({ at: Date.now(), alert });
      })();
      const judgedSince = (at: number) => judged.filter((entry) => entry.at > at).map((entry) => entry.summary);
      // What the watch did since `at`, for a failure message: each check's times, each alert.
      const historySince = (at: number) =>
        [
          ...checks
            .filter((entry) => entry.at > at)
            .map(
              ({ at: end, timings }) =>
                `check done at +${end - at} ms: waited ${Math.round(timings.waitMs)}, summarized ${Math.round(timings.summarizeMs)} ms, ${timings.reads ?? 1} read(s), ${timings.alerts} alert(s)`,
            ),
          ...alerts
            .filter((entry) => entry.at > at)
            .map(
              ({ at: when, alert }) =>
                `alert at +${when - at} ms: ${alert.type} ${alert.kind} ${alert.detail.slice(0, 160)}`,
            ),
        ].join(' | ') || 'no check finished';
      const errorsSince = (at: number) =>
        alerts.filter((entry) => entry.at > at && entry.alert.type === 'error').map((entry) => entry.alert);
      try {
        await until('a first check of the guest', () => judged.length > 0, 240_000);
        const before = judged[0]!.summary;
        expect(before.processes.map((process) => process.comm)).toEqual(expect.arrayContaining(labComms));

        // 1. Reset: the same kernel boots again (another KASLR slide); the watch goes on and follows it.
        const resetAt = Date.now();
        await source.client!.execute('system_reset');
        await until(
          'the guest ready again after the reset',
          () => readies() >= 2,
          300_000,
          () => historySince(resetAt),
        );
        const readyAgainAt = Date.now();
        await until(
          'a check of the guest booted again',
          () => judgedSince(readyAgainAt).length > 0,
          120_000,
          () => `ready again ${readyAgainAt - resetAt} ms after the reset; since the reset: ${historySince(resetAt)}`,
        );
        const after = judgedSince(readyAgainAt)[0]!;
        expect(after.banner).toBe(before.banner);
        expect(after.processes.map((process) => process.comm)).toEqual(expect.arrayContaining(labComms));
        // Read from the kernel that runs now, not from what the last boot left in memory.
        expect(tableEntry(after, 0)).toBeDefined();
        expect(tableEntry(after, 0)).not.toBe(tableEntry(before, 0));
        expect(after.syscalls.filter((entry) => entry.hooked)).toEqual([]);
        expect(errorsSince(resetAt).filter((alert) => alert.kind === 'guest_gone')).toEqual([]);
        console.log(
          `live robustness: reset to ready again ${readyAgainAt - resetAt} ms; since the reset: ${historySince(resetAt)}`,
        );

        // 2. The file replaced (another file at its path, QEMU keeps the old one): error alerts, then back to normal.
        renameSync(ramPath, movedPath);
        writeFileSync(ramPath, '');
        truncateSync(ramPath, 512 << 20);
        const replacedAt = Date.now();
        await until('an error alert for the replaced file', () => errorsSince(replacedAt).length > 0, 60_000);
        expect(errorsSince(replacedAt)[0]).toMatchObject({ type: 'error', kind: 'unreadable_dump' });
        expect(judgedSince(replacedAt)).toEqual([]);
        renameSync(movedPath, ramPath);
        const restoredAt = Date.now();
        await until(
          'a check of the file put back',
          () => judgedSince(restoredAt).length > 0,
          120_000,
          () => historySince(restoredAt),
        );
        expect(tableEntry(judgedSince(restoredAt)[0]!, 0)).toBe(tableEntry(after, 0));
      } finally {
        stop.abort();
        await watching;
      }

      // 3. Truncated under a paused guest (a running one would fault on its own RAM), watched by the CLI;
      // 4. then QEMU killed: the watch says so and exits 3.
      const client = await QmpClient.connect(qmpSocket);
      await client.stop();
      await client.close();
      const alertsFile = join(work, 'alerts.ndjson');
      const policyFile = join(work, 'policy.json');
      // A rule the guest breaks at once: its alert says the first check is done.
      writeFileSync(
        policyFile,
        JSON.stringify({
          version: 1,
          rules: [{ id: 'lab', severity: 'low', forbidden_processes: [{ name: labComms[0] }] }],
        }),
      );
      const readAlerts = () => readNdjsonFile<WatchAlert>(alertsFile);
      const watchingCli = runCli([
        'watch',
        '--qemu-shm',
        ramPath,
        '--qmp',
        qmpSocket,
        '--cache-dir',
        cacheDir,
        '--no-progress',
        '--interval',
        '1s',
        '--policy',
        policyFile,
        '--alerts',
        alertsFile,
      ]);
      await until('the CLI watch judged the guest', () => readAlerts().length > 0, 120_000);
      expect(readAlerts()[0]).toMatchObject({ type: 'violation', comm: labComms[0] });
      truncateSync(ramPath, 64 << 20);
      // A check reading when the file shrank fails (unreadable_dump); the next ones find the file too short to open.
      await until(
        'a memory_unreadable alert for the truncated file',
        () => readAlerts().some((alert) => alert.kind === 'memory_unreadable'),
        60_000,
      );
      const errors = readAlerts().filter((alert) => alert.type === 'error');
      expect(errors.every((alert) => ['unreadable_dump', 'memory_unreadable'].includes(alert.kind))).toBe(true);
      expect(errors.every((alert) => alert.detail.includes('TRUNCATED_FILE'))).toBe(true);
      expect(errors.find((alert) => alert.kind === 'memory_unreadable')!.detail).toMatch(/needs file bytes up to/);
      await guest.kill();
      const { code, stderr } = await watchingCli;
      expect(code).toBe(3);
      expect(stderr).toMatch(/went away/);
      expect(readAlerts().at(-1)).toMatchObject({ type: 'error', kind: 'guest_gone' });
    },
  );
});
