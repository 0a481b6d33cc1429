import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadPolicy, type Policy, type Violation } from '../../src/monitor/policy.js';
import { FolderSource } from '../../src/monitor/sources/index.js';
import { reconcileViolations, watch, type SnapshotTimings, type WatchAlert } from '../../src/monitor/watch.js';
import { fixturePath, truth } from '../support/fixtures.js';

interface WatchTruth {
  processes: Array<{ pid: number; comm: string; kernel_thread: boolean }>;
  diff: { killed: { pid: number; comm: string }; started: { pid: number; comm: string } };
  rootkit: { hidden_process: { pid: number; comm: string }; module: { name: string }; syscall_hook: { index: number } };
}

const work = mkdtempSync(join(tmpdir(), 'vmscope-watch-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const contextOptions = { cacheDir: join(work, 'profiles') };

const t0 = truth('linux61-t0') as unknown as WatchTruth;
const t1 = truth('linux61-t1') as unknown as WatchTruth;
const rootkit = truth('linux61-rootkit') as unknown as WatchTruth;
const userNames = (expected: WatchTruth) => [
  ...new Set(expected.processes.filter((process) => !process.kernel_thread).map((process) => process.comm)),
];

/** A node script that appends its stdin to the file named by its argument: what an exec action received. */
const recorder = join(work, 'record-stdin.mjs');
writeFileSync(
  recorder,
  `import { appendFileSync } from 'node:fs';\nconst chunks = [];\nprocess.stdin.on('data', (chunk) => chunks.push(chunk));\nprocess.stdin.on('end', () => appendFileSync(process.argv[2], Buffer.concat(chunks)));\n`,
);
const execReceived = join(work, 'exec-received.ndjson');

function writePolicy(name: string, rules: unknown[]): Policy {
  const file = join(work, name);
  writeFileSync(file, stringify({ version: 1, rules }));
  return loadPolicy(file);
}

/** What a test asserts of an alert: no times, no paths. */
function brief(alert: WatchAlert) {
  return {
    type: alert.type,
    rule: alert.rule,
    kind: alert.kind,
    change: alert.change,
    pid: alert.pid,
    name: alert.name,
    comm: alert.comm,
  };
}

const snapshotName = (alert: WatchAlert) => (alert.snapshot ? basename(alert.snapshot) : null);

describe('watch over a folder of real snapshots', () => {
  // Dropped into the folder one by one, each once the previous has been analysed: the order is the test's, not the files' mtimes.
  const sequence: Array<{ name: string; target: () => string }> = [
    { name: '1-t0.elf', target: () => fixturePath('linux61-t0', 'elf') },
    { name: '2-t1.elf', target: () => fixturePath('linux61-t1', 'elf') },
    { name: '3-t1-again.elf', target: () => fixturePath('linux61-t1', 'elf') },
    { name: '4-garbage.raw', target: () => garbage },
    { name: '5-rootkit.lime', target: () => fixturePath('linux61-rootkit', 'lime') },
    { name: '6-linux612.elf', target: () => fixturePath('linux612-clean', 'elf') },
  ];
  const garbage = join(work, 'garbage.raw');
  const alerts: WatchAlert[] = [];
  const timings: SnapshotTimings[] = [];
  const bySnapshot = (name: string) => alerts.filter((alert) => snapshotName(alert) === name);

  beforeAll(async () => {
    // 4 MiB of one byte: opens as a raw dump, holds no kernel.
    writeFileSync(garbage, Buffer.alloc(4 << 20, 0xab));
    const policy = writePolicy('policy.yaml', [
      { id: 'known-processes', severity: 'high', allowed_processes: userNames(t0).map((comm) => ({ name: comm })) },
      { id: 'no-worker-3', severity: 'low', forbidden_processes: [{ name: t1.diff.killed.comm }] },
      {
        id: 'no-hidden-processes',
        severity: 'critical',
        action: 'exec',
        command: [process.execPath, recorder, execReceived],
        no_hidden_processes: true,
      },
      {
        id: 'no-hidden-modules',
        severity: 'critical',
        action: 'exec',
        command: [process.execPath, '-e', 'process.stderr.write("notifier is down"); process.exit(3)'],
        no_hidden_modules: true,
      },
      { id: 'syscalls', severity: 'critical', action: 'pause', syscall_table_intact: true },
    ]);
    const folder = join(work, 'dumps');
    mkdirSync(folder);
    const stop = new AbortController();
    const link = (index: number) => symlinkSync(sequence[index]!.target(), join(folder, sequence[index]!.name));
    link(0);
    const source = new FolderSource(folder, { pollMs: 50, settleMs: 100, includeExisting: true });
    const onSnapshotDone = (done: SnapshotTimings): void => {
      timings.push(done);
      if (timings.length < sequence.length) link(timings.length);
      else stop.abort();
    };
    for await (const alert of watch({ source, policy, signal: stop.signal, contextOptions, onSnapshotDone }))
      alerts.push(alert);
    for (const done of timings) {
      const ms = (value: number) => `${(value / 1000).toFixed(2)} s`;
      console.log(
        `watch: ${basename(done.snapshot)}: wait ${ms(done.waitMs)}, summarize ${ms(done.summarizeMs)}, diff ${ms(done.diffMs)}, policy ${ms(done.policyMs)}, actions ${ms(done.actionsMs)}, ${done.alerts} alerts`,
      );
    }
  }, 600_000);

  it('analyses every dump once, in order, and ends when aborted while waiting for the next', () => {
    expect(timings.map((done) => basename(done.snapshot))).toEqual(sequence.map((entry) => entry.name));
  });

  it('the first snapshot alerts every violation, and reports no change', () => {
    const worker3 = t0.processes.find((process) => process.comm === t1.diff.killed.comm)!;
    expect(bySnapshot('1-t0.elf').map(brief)).toEqual([
      {
        type: 'violation',
        rule: 'no-worker-3',
        kind: 'forbidden_process',
        change: null,
        pid: worker3.pid,
        name: null,
        comm: worker3.comm,
      },
    ]);
  });

  it("t0 → t1: the truth's ended and started processes are the changes; the new process violates once; the gone one resolves", () => {
    const { killed, started } = t1.diff;
    expect(bySnapshot('2-t1.elf').map(brief)).toEqual([
      { type: 'change', rule: null, kind: 'process', change: 'ended', pid: killed.pid, name: null, comm: killed.comm },
      {
        type: 'change',
        rule: null,
        kind: 'process',
        change: 'started',
        pid: started.pid,
        name: null,
        comm: started.comm,
      },
      {
        type: 'violation',
        rule: 'known-processes',
        kind: 'unexpected_process',
        change: null,
        pid: started.pid,
        name: null,
        comm: started.comm,
      },
      {
        type: 'resolved',
        rule: 'no-worker-3',
        kind: 'forbidden_process',
        change: null,
        pid: killed.pid,
        name: null,
        comm: killed.comm,
      },
    ]);
    const violation = bySnapshot('2-t1.elf').find((alert) => alert.type === 'violation')!;
    expect(violation).toMatchObject({
      severity: 'high',
      action: 'alert',
      snapshot: expect.stringMatching(/2-t1\.elf$/),
    });
    expect(Date.parse(violation.captured_at!)).not.toBeNaN();
    expect(Date.parse(violation.time)).not.toBeNaN();
  });

  it('a violation that persists is not repeated: the same snapshot again alerts nothing', () => {
    expect(bySnapshot('3-t1-again.elf')).toEqual([]);
  });

  it('a dump that cannot be analysed is an error alert, and the watch goes on', () => {
    expect(bySnapshot('4-garbage.raw').map((alert) => [alert.type, alert.kind])).toEqual([
      ['error', 'unreadable_dump'],
    ]);
    expect(bySnapshot('4-garbage.raw')[0]!.detail).toMatch(/NO_KERNEL_FOUND|could not be analysed/);
    expect(bySnapshot('5-rootkit.lime').length).toBeGreaterThan(0);
  });

  it("the rootkit's violations alert once each, and each rule's action runs: exec gets the alert on stdin, failures are error alerts", () => {
    const { hidden_process: hidden, module, syscall_hook: hook } = rootkit.rootkit;
    const snapshotAlerts = bySnapshot('5-rootkit.lime').filter((alert) => alert.type !== 'change');
    const worker3 = rootkit.processes.find((process) => process.comm === t1.diff.killed.comm)!;
    expect(snapshotAlerts.map((alert) => [alert.type, alert.rule, alert.kind, alert.pid ?? alert.name])).toEqual([
      // Another boot: lab_worker_3 runs again (another pid, so another violation).
      ['violation', 'no-worker-3', 'forbidden_process', worker3.pid],
      ['violation', 'no-hidden-processes', 'hidden_process', hidden.pid],
      ['violation', 'no-hidden-modules', 'hidden_module', module.name],
      ['error', 'no-hidden-modules', 'action_failed', module.name],
      ['violation', 'syscalls', 'syscall_hook', `sys_call_table[${hook.index}]`],
      ['error', 'syscalls', 'action_failed', `sys_call_table[${hook.index}]`],
      ['resolved', 'known-processes', 'unexpected_process', t1.diff.started.pid],
    ]);
    expect(snapshotAlerts[3]!.detail).toMatch(/exited with status 3: notifier is down$/);
    expect(snapshotAlerts[5]!.detail).toMatch(/^pause is impossible/);

    // The exec'd command read exactly the alert that was emitted, as one JSON line.
    const received = readFileSync(execReceived, 'utf8')
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as WatchAlert);
    expect(received).toEqual([snapshotAlerts[1]]);
    // Another boot of the same kernel still diffs, and the diff sees the rootkit's work too.
    const changes = bySnapshot('5-rootkit.lime')
      .filter((alert) => alert.type === 'change')
      .map(brief);
    expect(changes).toContainEqual({
      type: 'change',
      rule: null,
      kind: 'hidden_process',
      change: 'appeared',
      pid: hidden.pid,
      name: null,
      comm: hidden.comm,
    });
    expect(changes).toContainEqual({
      type: 'change',
      rule: null,
      kind: 'hidden_module',
      change: 'appeared',
      pid: null,
      name: module.name,
      comm: null,
    });
  });

  it('another kernel (a reboot into 6.12) is one change alert; open violations resolve and the watch starts over', () => {
    const snapshotAlerts = bySnapshot('6-linux612.elf');
    expect(snapshotAlerts[0]).toMatchObject({ type: 'change', kind: 'kernel', change: 'changed' });
    expect(snapshotAlerts[0]!.detail).toMatch(/6\.1\.0-56-amd64.*→.*6\.12/);
    expect(snapshotAlerts.slice(1).map((alert) => [alert.type, alert.rule])).toEqual([
      ['resolved', 'no-worker-3'],
      ['resolved', 'no-hidden-processes'],
      ['resolved', 'no-hidden-modules'],
      ['resolved', 'syscalls'],
      // Judged as a first snapshot: its violations alert again.
      ['violation', 'no-worker-3'],
    ]);
    expect(snapshotAlerts[1]!.detail).toMatch(/^the guest rebooted into another kernel/);
  });
});

describe("watch with a policy's signature rules", () => {
  it("scans each dump with the policy's rules files: a hit is a violation, never not_evaluated", async () => {
    const folder = mkdtempSync(join(work, 'signatures-'));
    symlinkSync(fixturePath('linux61-t0', 'elf'), join(folder, 't0.elf'));
    writeFileSync(
      join(work, 'eicar.yar'),
      'rule eicar_test_string {\n  strings:\n    $eicar = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE"\n  condition:\n    $eicar\n}\n',
    );
    const policy = writePolicy('signatures.yaml', [
      { id: 'no-malware', severity: 'high', signatures: { rules_file: 'eicar.yar' } },
    ]);
    const stop = new AbortController();
    const source = new FolderSource(folder, { pollMs: 50, settleMs: 100, includeExisting: true });
    const alerts: WatchAlert[] = [];
    for await (const alert of watch({
      source,
      policy,
      signal: stop.signal,
      contextOptions,
      onSnapshotDone: () => stop.abort(),
    }))
      alerts.push(alert);
    const sample = t0.processes.find((process) => process.comm === 'lab_av_sample')!;
    expect(alerts.map((alert) => alert.kind)).not.toContain('not_evaluated');
    expect(alerts.map(brief)).toContainEqual({
      type: 'violation',
      rule: 'no-malware',
      kind: 'signature_hit',
      change: null,
      pid: sample.pid,
      name: 'eicar_test_string',
      comm: 'lab_av_sample',
    });
  }, 300_000);
});

describe('stopping a watch', () => {
  it('an abort during a snapshot finishes that snapshot (all its alerts) and analyses no other', async () => {
    const folder = mkdtempSync(join(work, 'abort-'));
    symlinkSync(fixturePath('linux61-t0', 'elf'), join(folder, 'a.elf'));
    symlinkSync(fixturePath('linux61-t1', 'elf'), join(folder, 'b.elf'));
    const policy = writePolicy('forbid-workers.yaml', [
      {
        id: 'no-workers',
        severity: 'medium',
        forbidden_processes: [{ name: 'lab_worker_1' }, { name: 'lab_worker_2' }],
      },
    ]);
    const stop = new AbortController();
    const source = new FolderSource(folder, { pollMs: 50, settleMs: 100, includeExisting: true });
    const alerts: WatchAlert[] = [];
    const analysed: string[] = [];
    const generator = watch({
      source,
      policy,
      signal: stop.signal,
      contextOptions,
      onAlert: () => stop.abort(),
      onSnapshotDone: (done) => analysed.push(done.snapshot),
    });
    for await (const alert of generator) alerts.push(alert);
    expect(analysed).toHaveLength(1);
    expect(alerts.map((alert) => alert.comm)).toEqual(['lab_worker_1', 'lab_worker_2']);
    expect(new Set(alerts.map((alert) => alert.snapshot))).toEqual(new Set(analysed));
  }, 60_000);

  it('an abort while waiting for the next snapshot ends the watch at once', async () => {
    const folder = mkdtempSync(join(work, 'empty-'));
    const source = new FolderSource(folder, { pollMs: 5000 });
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 200);
    const started = Date.now();
    const alerts: WatchAlert[] = [];
    for await (const alert of watch({ source, signal: stop.signal })) alerts.push(alert);
    expect(alerts).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('reconcileViolations', () => {
  const violation = (name: string): Violation => ({
    rule: 'r',
    severity: 'high',
    action: 'alert',
    kind: 'hidden_module',
    pid: null,
    name,
    comm: null,
    detail: name,
  });

  it('a complete summary resolves what it no longer sees; a partial one only adds', () => {
    const [labkit, other] = [violation('labkit'), violation('other')];
    const first = reconcileViolations(new Map(), [labkit], false);
    expect([first.appeared, first.resolved]).toEqual([[labkit], []]);
    const partial = reconcileViolations(first.open, [other], true);
    expect([partial.appeared, partial.resolved, [...partial.open.values()]]).toEqual([[other], [], [labkit, other]]);
    const complete = reconcileViolations(partial.open, [other], false);
    expect([complete.appeared, complete.resolved, [...complete.open.values()]]).toEqual([[], [labkit], [other]]);
  });

  it('a pid reused by another process with the same comm is a new violation, the old one resolved', () => {
    const process = (startTime: bigint): Violation => ({
      rule: 'r',
      severity: 'high',
      action: 'alert',
      kind: 'forbidden_process',
      pid: 42,
      name: null,
      comm: 'nc',
      detail: 'nc',
      startTime,
    });
    const [first, reused] = [process(1_000n), process(9_000n)];
    const opened = reconcileViolations(new Map(), [first], false).open;
    const next = reconcileViolations(opened, [reused], false);
    expect([next.appeared, next.resolved]).toEqual([[reused], [first]]);
    expect(reconcileViolations(next.open, [reused], false).appeared).toEqual([]);
  });
});
