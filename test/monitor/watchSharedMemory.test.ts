import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { findAnalysis } from '../../src/analyses/registry.js';
import { writeLiveSnapshot } from '../../src/monitor/liveSnapshot.js';
import { loadPolicy, type Policy } from '../../src/monitor/policy.js';
import { QmpClient } from '../../src/monitor/qmp.js';
import { QemuSharedMemorySource } from '../../src/monitor/sources/qemuSharedMemorySource.js';
import { watch, type SnapshotTimings, type WatchAlert } from '../../src/monitor/watch.js';
import { fixturePath, truth } from '../support/fixtures.js';
import {
  bootGuest,
  qemuUnavailableReason,
  readNdjsonFile,
  sharedRamArgs,
  type GuestMode,
  type LiveGuest,
} from '../support/liveGuest.js';
import { materialized } from '../support/rows.js';

/**
 * The fixtures' guest booted with its RAM in a shared file under /dev/shm (TCG: KVM is not
 * needed, and the nested KVM of CI machines often cannot run this guest), watched in place.
 * Two boots in all: the rootkit guest (watch in both modes, the pause action, snapshot) and the
 * diff guest. QEMU is killed and the RAM file removed however the test ends.
 */
const work = mkdtempSync(join(tmpdir(), 'vms-'));
const cacheDir = join(work, 'profiles');
const ramFiles: string[] = [];
const guests: LiveGuest[] = [];
const children: ChildProcess[] = [];
const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../../bin/vmscope.js');
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const guest of guests) await guest.kill();
  for (const file of ramFiles) rmSync(file, { force: true });
  rmSync(work, { recursive: true, force: true });
});

const sharedRamPath = (mode: GuestMode) => `/dev/shm/vmscope-test-${process.pid}-${mode}`;

async function bootSharedGuest(mode: GuestMode): Promise<{ guest: LiveGuest; ramPath: string }> {
  const ramPath = sharedRamPath(mode);
  ramFiles.push(ramPath);
  const dir = join(work, mode);
  mkdirSync(dir);
  const guest = await bootGuest({
    mode,
    tmpDir: dir,
    extraArgs: sharedRamArgs(ramPath),
  });
  guests.push(guest);
  console.log(`shared-memory watch: ${mode} guest ready after ${guest.bootMs} ms`);
  return { guest, ramPath };
}

interface RootkitTruth {
  rootkit: { hidden_process: { comm: string }; module: { name: string }; syscall_hook: { index: number } };
}
const ROOTKIT_KINDS: readonly string[] = ['hidden_process', 'hidden_module', 'syscall_hook'];

function rootkitPolicy(moduleAction: 'alert' | 'pause'): Policy {
  const file = join(work, `policy-${moduleAction}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      version: 1,
      rules: [
        { id: 'no-hidden-processes', severity: 'critical', no_hidden_processes: true },
        { id: 'no-hidden-modules', severity: 'critical', action: moduleAction, no_hidden_modules: true },
        { id: 'syscall-table', severity: 'critical', syscall_table_intact: true },
      ],
    }),
  );
  return loadPolicy(file);
}

/** Watch until `done` says so (checked after every snapshot) or `boundMs` passes. */
async function watchUntil(
  source: QemuSharedMemorySource,
  stop: AbortController,
  policy: Policy | undefined,
  done: (alerts: WatchAlert[], timings: SnapshotTimings[]) => boolean | Promise<boolean>,
  boundMs: number,
): Promise<{ alerts: WatchAlert[]; timings: SnapshotTimings[] }> {
  const alerts: WatchAlert[] = [];
  const timings: SnapshotTimings[] = [];
  const bound = setTimeout(() => stop.abort(), boundMs);
  try {
    for await (const alert of watch({
      source,
      ...(policy ? { policy } : {}),
      signal: stop.signal,
      contextOptions: { cacheDir },
      onSnapshotDone: (timing) => {
        timings.push(timing);
        void Promise.resolve(done(alerts, timings)).then((finished) => finished && stop.abort());
      },
    }))
      alerts.push(alert);
  } finally {
    clearTimeout(bound);
  }
  for (const timing of timings)
    console.log(
      `shared-memory watch: check: summarize ${timing.summarizeMs.toFixed(0)} ms, ${timing.reads} reads, paused ${timing.pausedMs?.toFixed(1) ?? '-'} ms, ${timing.alerts} alerts`,
    );
  return { alerts, timings };
}

async function rowsOf(context: DumpContext, name: string): Promise<readonly unknown[]> {
  const analysis = findAnalysis(name)!;
  const result = await materialized(analysis.run(context, analysis.parseOptions({})));
  return result.rows;
}

/** The built CLI as a user runs it. */
function runCli(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const unavailable = qemuUnavailableReason();
if (unavailable) console.warn(`skipping the shared-memory watch test: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('watch on a QEMU guest read in place from its shared RAM file', () => {
  it(
    "rootkit guest: the three rootkit violations once each (smeared and consistent), the pause action, and a snapshot equal to dump-guest-memory's",
    { timeout: 600_000 },
    async () => {
      const { guest, ramPath } = await bootSharedGuest('rootkit');
      const expected = truth('linux61-rootkit') as unknown as RootkitTruth;

      // 1. Smeared reads (the guest runs): each violation once, confirmed by a second read; the pause action stops the guest.
      const smeared = new QemuSharedMemorySource({ ramPath, qmpSocket: guest.qmpSocket, intervalMs: 1000 });
      const stopSmeared = new AbortController();
      let allSeenAt: number | undefined;
      const first = await watchUntil(
        smeared,
        stopSmeared,
        rootkitPolicy('pause'),
        (alerts, timings) => {
          const seen = new Set<string>(alerts.filter((alert) => alert.type === 'violation').map((alert) => alert.kind));
          if (allSeenAt === undefined && ROOTKIT_KINDS.every((kind) => seen.has(kind))) allSeenAt = timings.length;
          return allSeenAt !== undefined && timings.length >= allSeenAt + 2;
        },
        240_000,
      );
      const { hidden_process: hidden, module, syscall_hook: hook } = expected.rootkit;
      expect(
        first.alerts
          .filter((alert) => alert.type === 'violation')
          .map((alert) => [alert.kind, alert.comm ?? alert.name]),
      ).toEqual([
        ['hidden_process', hidden.comm],
        ['hidden_module', module.name],
        ['syscall_hook', `sys_call_table[${hook.index}]`],
      ]);
      expect(first.alerts.filter((alert) => alert.type === 'error')).toEqual([]);
      // Every finding was read twice before it was alerted.
      expect(first.timings[allSeenAt! - 1]!.reads).toBeGreaterThanOrEqual(2);
      const client = await QmpClient.connect(guest.qmpSocket);
      try {
        expect(await client.queryStatus()).toMatchObject({ running: false, status: 'paused' });
        await client.cont();
      } finally {
        await client.close();
      }

      // 2. Consistent reads: paused for each check only, running between checks (sampled on the watch's own connection).
      const consistent = new QemuSharedMemorySource({
        ramPath,
        qmpSocket: guest.qmpSocket,
        consistent: true,
        intervalMs: 1000,
      });
      const between: boolean[] = [];
      const second = await watchUntil(
        consistent,
        new AbortController(),
        rootkitPolicy('alert'),
        async (_alerts, timings) => {
          between.push((await consistent.client!.queryStatus()).running);
          return timings.length >= 3;
        },
        240_000,
      );
      expect(second.alerts.filter((alert) => alert.type === 'violation').map((alert) => alert.kind)).toEqual(
        ROOTKIT_KINDS,
      );
      expect(second.timings.every((timing) => timing.reads === 1 && (timing.pausedMs ?? 0) > 0)).toBe(true);
      expect(between.length).toBeGreaterThanOrEqual(3);
      expect(between.every((running) => running)).toBe(true);

      // 3. snapshot vs dump-guest-memory, both taken in one pause.
      const snapshotClient = await QmpClient.connect(guest.qmpSocket);
      const live = join(work, 'live.elf');
      const dumped = join(work, 'dumped.elf');
      try {
        await snapshotClient.stop();
        await snapshotClient.dumpGuestMemory(dumped);
        const written = await writeLiveSnapshot(snapshotClient, ramPath, live);
        expect(written.pausedMs).toBe(0); // already paused: not ours to pause or resume
        expect(await snapshotClient.queryStatus()).toMatchObject({ running: false });
        await snapshotClient.cont();
      } finally {
        await snapshotClient.close();
      }
      const liveContext = new DumpContext(live, { cacheDir });
      const dumpedContext = new DumpContext(dumped, { cacheDir });
      try {
        for (const name of ['info', 'pslist', 'check']) {
          expect(await rowsOf(liveContext, name), name).toEqual(await rowsOf(dumpedContext, name));
        }
        expect(liveContext.image.ranges).toEqual(
          dumpedContext.image.ranges.map((range) => ({ ...range, fileOffset: expect.any(Number) as number })),
        );
      } finally {
        liveContext.close();
        dumpedContext.close();
      }
      await guest.kill();
    },
  );

  it(
    'diff guest: lab_worker_3 killed and lab_newcomer started are alerted within two checks of the change (LAB:DIFF on the console)',
    { timeout: 780_000 },
    async () => {
      // The guest changes 5 s after LAB:READY t0: the watch's first check must come before that, so
      // the profile is in the cache already (from the t0 fixture, the same kernel build), not derived then.
      const primer = new DumpContext(fixturePath('linux61-t0', 'elf'), { cacheDir });
      await primer.profile();
      primer.close();
      // Watched from the start of its t0 listing (before LAB:READY t0, 5 s before the change), so the
      // first check is a baseline from before the change, however slow this machine is.
      const booting = bootSharedGuest('diff');
      const ramPath = sharedRamPath('diff');
      const consolePath = join(work, 'diff', 'console.log');
      for (const deadline = Date.now() + 300_000; Date.now() < deadline;) {
        if (existsSync(consolePath) && /LAB:BEGIN t0/.test(readFileSync(consolePath, 'utf8'))) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const { killed, started } = (
        truth('linux61-t1') as unknown as { diff: { killed: { comm: string }; started: { comm: string } } }
      ).diff;
      const source = new QemuSharedMemorySource({
        ramPath,
        qmpSocket: join(work, 'diff', 'qmp.sock'),
        intervalMs: 1000,
      });
      let t1AtCheck: number | undefined;
      let alertedAtCheck: number | undefined;
      const processChanges = (alerts: WatchAlert[]) =>
        alerts
          .filter((alert) => alert.type === 'change' && alert.kind === 'process')
          .map((alert) => [alert.change, alert.comm]);
      const { alerts } = await watchUntil(
        source,
        new AbortController(),
        undefined,
        (seen, timings) => {
          const checks = timings.length;
          // The guest prints LAB:DIFF right after killing one process and starting the other.
          if (t1AtCheck === undefined && /LAB:DIFF /.test(readFileSync(consolePath, 'utf8'))) t1AtCheck = checks;
          const changes = processChanges(seen);
          const both =
            changes.some(([change, comm]) => change === 'ended' && comm === killed.comm) &&
            changes.some(([change, comm]) => change === 'started' && comm === started.comm);
          if (both && alertedAtCheck === undefined) alertedAtCheck = checks;
          return alertedAtCheck !== undefined;
        },
        480_000,
      );
      expect(processChanges(alerts)).toEqual(
        expect.arrayContaining([
          ['ended', killed.comm],
          ['started', started.comm],
        ]),
      );
      const { guest } = await booting;
      // The guest prints LAB:DIFF after the change, and the console file can lag the memory: a watch may alert
      // before the line shows. The line must still come (the change is the lab's), and the alert no later than
      // two checks after it.
      for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
        if (/LAB:DIFF /.test(readFileSync(consolePath, 'utf8'))) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(readFileSync(consolePath, 'utf8')).toMatch(/LAB:DIFF /);
      expect(alertedAtCheck).toBeDefined();
      expect(alertedAtCheck! - (t1AtCheck ?? alertedAtCheck!)).toBeLessThanOrEqual(2);

      // The CLI on the same guest: a one-shot pslist read in place, then a watch that ends with exit 3 when QEMU goes.
      const live = ['--qemu-shm', ramPath, '--qmp', guest.qmpSocket, '--cache-dir', cacheDir, '--no-progress'];
      const pslist = await runCli(['pslist', ...live, '--consistent', '--json']);
      expect(pslist.code).toBe(0);
      expect(pslist.stderr).toMatch(/the guest was paused for [\d.]+ ms/);
      const comms = (JSON.parse(pslist.stdout) as Array<{ comm: string }>).map((row) => row.comm);
      expect(comms).toContain(started.comm);
      expect(comms).not.toContain(killed.comm);

      const policyFile = join(work, 'no-newcomer.json');
      writeFileSync(
        policyFile,
        JSON.stringify({
          version: 1,
          rules: [{ id: 'no-newcomer', severity: 'low', forbidden_processes: [{ name: started.comm }] }],
        }),
      );
      const alertsFile = join(work, 'diff-alerts.ndjson');
      const watching = runCli(['watch', ...live, '--interval', '1s', '--policy', policyFile, '--alerts', alertsFile]);
      const readAlerts = () => readNdjsonFile<WatchAlert>(alertsFile);
      for (const deadline = Date.now() + 120_000; readAlerts().length === 0 && Date.now() < deadline;)
        await new Promise((resolve) => setTimeout(resolve, 200));
      expect(readAlerts()[0]).toMatchObject({ type: 'violation', kind: 'forbidden_process', comm: started.comm });
      await guest.kill();
      const { code, stderr } = await watching;
      expect(code).toBe(3);
      expect(stderr).toMatch(/went away/);
      expect(readAlerts().at(-1)).toMatchObject({ type: 'error', kind: 'guest_gone' });
    },
  );
});
