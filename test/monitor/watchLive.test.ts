import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { QmpClient } from '../../src/monitor/qmp.js';
import { QmpSource, type SourceProblem } from '../../src/monitor/sources/index.js';
import { loadPolicy } from '../../src/monitor/policy.js';
import { watch, type SnapshotTimings, type WatchAlert } from '../../src/monitor/watch.js';
import { fixturePath, truth } from '../support/fixtures.js';
import { bootGuest, qemuUnavailableReason, type LiveGuest } from '../support/liveGuest.js';

const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../../bin/vmscope.js');
// Short: the QMP socket lives here, and unix socket paths are limited to 107 bytes.
const work = mkdtempSync(join(tmpdir(), 'vmw-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const cacheDir = join(work, 'profiles');

interface RootkitTruth {
  processes: Array<{ comm: string; kernel_thread: boolean }>;
  rootkit: { hidden_process: { comm: string }; module: { name: string }; syscall_hook: { index: number } };
}
const expected = truth('linux61-rootkit') as unknown as RootkitTruth;
const ROOTKIT_KINDS = ['hidden_process', 'hidden_module', 'syscall_hook'] as const;

/** Allows the guest's user processes (by the truth's names); no hiding, no hooking; pauses the guest on a hidden module. */
function writeRootkitPolicy(): string {
  const names = [
    ...new Set(expected.processes.filter((process) => !process.kernel_thread).map((process) => process.comm)),
  ];
  const file = join(work, 'policy.yaml');
  writeFileSync(
    file,
    stringify({
      version: 1,
      rules: [
        { id: 'known-processes', severity: 'high', allowed_processes: names.map((comm) => ({ name: comm })) },
        { id: 'no-hidden-processes', severity: 'critical', no_hidden_processes: true },
        { id: 'no-hidden-modules', severity: 'critical', action: 'pause', no_hidden_modules: true },
        { id: 'syscall-table', severity: 'critical', syscall_table_intact: true },
      ],
    }),
  );
  return file;
}

function readAlerts(file: string): WatchAlert[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as WatchAlert);
}

async function waitFor(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The CLI as a user runs it; `exited` resolves with its exit code and stderr. */
function runCli(args: readonly string[]): {
  child: ChildProcess;
  exited: Promise<{ code: number | null; stderr: string }>;
} {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout.resume();
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.once('close', (code) => resolve({ code, stderr })),
  );
  return { child, exited };
}

const unavailable = qemuUnavailableReason();
if (unavailable) console.warn(`skipping the live watch test: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('watch over QMP on a live rootkit guest (QEMU TCG)', () => {
  let guest: LiveGuest | undefined;
  const children: ChildProcess[] = [];
  // However the test ends, QEMU and any CLI it started go (liveGuest also kills QEMU if this process dies).
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await guest?.kill();
  });

  it(
    "sees the rootkit's three violations, each once, pauses the guest, and the CLI exits 3 when the guest goes away",
    { timeout: 420_000 },
    async () => {
      const guestDir = join(work, 'g');
      mkdirSync(guestDir);
      guest = await bootGuest({ mode: 'rootkit', tmpDir: guestDir });
      console.log(`live watch: guest ready after ${guest.bootMs} ms`);
      const policyFile = writeRootkitPolicy();

      // The rootkit is loaded about 2 s after LAB:READY, so the first snapshot may show a clean guest: keep watching until all three appear, within a bound.
      const stop = new AbortController();
      const bound = setTimeout(() => stop.abort(), 150_000);
      const problems: SourceProblem[] = [];
      const source = new QmpSource(guest.qmpSocket, {
        intervalMs: 3000,
        tempDir: guestDir,
        signal: stop.signal,
        onProblem: (problem) => problems.push(problem),
      });
      const alerts: WatchAlert[] = [];
      const timings: SnapshotTimings[] = [];
      const startedAt = Date.now();
      try {
        // Once all three have appeared, one more snapshot: they must not be reported again.
        let allSeenAtSnapshot: number | undefined;
        const onSnapshotDone = (done: SnapshotTimings): void => {
          timings.push(done);
          const seen = new Set(alerts.filter((alert) => alert.type === 'violation').map((alert) => alert.kind));
          if (allSeenAtSnapshot === undefined && ROOTKIT_KINDS.every((kind) => seen.has(kind)))
            allSeenAtSnapshot = timings.length;
          if (allSeenAtSnapshot !== undefined && timings.length > allSeenAtSnapshot) stop.abort();
        };
        for await (const alert of watch({
          source,
          policy: loadPolicy(policyFile),
          signal: stop.signal,
          contextOptions: { cacheDir },
          onSnapshotDone,
        }))
          alerts.push(alert);
      } finally {
        clearTimeout(bound);
      }
      for (const done of timings) {
        const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
        console.log(
          `live watch: snapshot: wait (interval + dump) ${s(done.waitMs)}, summarize ${s(done.summarizeMs)}, diff ${s(done.diffMs)}, policy ${s(done.policyMs)}, actions ${s(done.actionsMs)}, ${done.alerts} alerts`,
        );
      }
      console.log(
        `live watch: ${timings.length} snapshots in ${((Date.now() - startedAt) / 1000).toFixed(1)} s; problems: ${problems.map((problem) => problem.message).join('; ') || 'none'}`,
      );

      const violations = alerts.filter((alert) => alert.type === 'violation');
      const { hidden_process: hidden, module, syscall_hook: hook } = expected.rootkit;
      const rootkitViolations = violations.filter((alert) => (ROOTKIT_KINDS as readonly string[]).includes(alert.kind));
      expect(rootkitViolations.map((alert) => [alert.rule, alert.kind, alert.comm ?? alert.name])).toEqual([
        ['no-hidden-processes', 'hidden_process', hidden.comm],
        ['no-hidden-modules', 'hidden_module', module.name],
        ['syscall-table', 'syscall_hook', `sys_call_table[${hook.index}]`],
      ]);
      expect(timings.length).toBeGreaterThanOrEqual(2);
      expect(alerts.filter((alert) => alert.type === 'error')).toEqual([]);
      // Each dump was removed once analysed, and the source's private folder with the last one.
      expect(readdirSync(guestDir).filter((name) => name.startsWith('vmscope-qmp-'))).toEqual([]);

      // The pause action went through the watch's QMP connection; a fresh one (the watch has closed its own) sees the result.
      const client = await QmpClient.connect(guest.qmpSocket);
      try {
        expect(await client.queryStatus()).toMatchObject({ running: false, status: 'paused' });
      } finally {
        await client.close();
      }

      // The CLI on the same guest: the paused guest still dumps; killing QEMU ends the watch with exit code 3.
      const alertsFile = join(work, 'live-alerts.ndjson');
      const run = runCli([
        'watch',
        '--qmp',
        guest.qmpSocket,
        '--interval',
        '2',
        '--temp-dir',
        guestDir,
        '--policy',
        policyFile,
        '--alerts',
        alertsFile,
        '--cache-dir',
        cacheDir,
        '--no-progress',
      ]);
      children.push(run.child);
      await waitFor(
        "the CLI's first violations",
        () => readAlerts(alertsFile).filter((alert) => alert.type === 'violation').length >= 3,
        120_000,
      );
      await guest.kill();
      const { code, stderr } = await run.exited;
      expect(code).toBe(3);
      expect(stderr).toMatch(/went away/);
      expect(readAlerts(alertsFile).at(-1)).toMatchObject({ type: 'error', kind: 'guest_gone' });
    },
  );
});

describe('vmscope watch (the built CLI) on a folder', () => {
  it(
    'SIGINT while waiting for the next dump: exit 0, every alert flushed to the alerts file',
    { timeout: 180_000 },
    async () => {
      const folder = join(work, 'cli-dumps');
      mkdirSync(folder);
      symlinkSync(fixturePath('linux61-t0', 'elf'), join(folder, 'a-t0.elf'));
      const policyFile = join(work, 'forbid.yaml');
      writeFileSync(
        policyFile,
        stringify({
          version: 1,
          rules: [{ id: 'no-worker-1', severity: 'low', forbidden_processes: [{ name: 'lab_worker_1' }] }],
        }),
      );
      const alertsFile = join(work, 'cli-alerts.ndjson');

      const run = runCli([
        'watch',
        '--folder',
        folder,
        '--include-existing',
        '--policy',
        policyFile,
        '--alerts',
        alertsFile,
        '--cache-dir',
        cacheDir,
        '--no-progress',
      ]);
      await waitFor('the t0 violation', () => readAlerts(alertsFile).length >= 1, 120_000);
      // A second dump, dropped while the watch runs: the t0 → t1 changes.
      symlinkSync(fixturePath('linux61-t1', 'elf'), join(folder, 'b-t1.elf'));
      await waitFor('the t0 → t1 changes', () => readAlerts(alertsFile).length >= 3, 120_000);
      const interruptedAt = Date.now();
      run.child.kill('SIGINT');
      const { code, stderr } = await run.exited;
      expect(code).toBe(0);
      expect(Date.now() - interruptedAt).toBeLessThan(10_000);
      expect(stderr).toMatch(/SIGINT: finishing the current snapshot/);
      const { killed, started } = (
        truth('linux61-t1') as unknown as { diff: { killed: { comm: string }; started: { comm: string } } }
      ).diff;
      expect(readAlerts(alertsFile).map((alert) => [alert.type, alert.kind, alert.change, alert.comm])).toEqual([
        ['violation', 'forbidden_process', null, 'lab_worker_1'],
        ['change', 'process', 'ended', killed.comm],
        ['change', 'process', 'started', started.comm],
      ]);
    },
  );
});
