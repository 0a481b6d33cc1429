import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialsProvider } from '../../../src/analyses/providers/tampering.js';
import type { CredentialsReport } from '../../../src/os/linux/creds.js';
import { parseHex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import { openKernelFixture, READER_FIXTURES, type KernelFixture } from '../../support/kernelFixture.js';
import { OverlayContext } from '../../support/overlay.js';

interface EscalatedTruth {
  pid: number;
  comm: string;
  cred_after: string;
}
/** Per pid, /proc/PID/status's Uid and Gid lines: real, effective, saved, filesystem. */
type CredsTruth = Record<string, { uid: [number, number, number, number]; gid: [number, number, number, number] }>;
interface ProcessTruth {
  pid: number;
  kernel_thread: boolean;
}

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-creds-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe.each(READER_FIXTURES)('credentials of $name ($format)', ({ name, format }) => {
  const facts = truth(name);
  const escalated = (facts.modern as { escalated: EscalatedTruth } | undefined)?.escalated;
  const creds = facts.creds as CredsTruth | undefined;
  let fixture: KernelFixture;
  let report: CredentialsReport;
  beforeAll(async () => {
    fixture = await openKernelFixture(name, format, cacheDir);
    report = await fixture.context.get(credentialsProvider);
  });
  afterAll(() => fixture.context.close());

  it('reads every user process the guest listed, hidden ones included, without a problem', () => {
    expect(report.problems).toEqual([]);
    const pids = new Set(report.tasks.map((task) => task.pid));
    const users = (facts.processes as ProcessTruth[])
      .filter((process) => !process.kernel_thread)
      .map((process) => process.pid);
    expect(users.filter((pid) => !pids.has(pid))).toEqual([]);
  });

  it(
    escalated ? "finds lab_escalated holding init_task's credentials, and nothing else" : 'finds no stolen credentials',
    () => {
      const expected = escalated
        ? [
            {
              pid: escalated.pid,
              comm: escalated.comm,
              kernelThread: false,
              cred: parseHex(escalated.cred_after),
              realCred: parseHex(escalated.cred_after),
              suspicious: true,
            },
          ]
        : [];
      const suspicious = report.tasks.filter((task) => task.suspicious);
      expect(suspicious).toMatchObject(expected);
      expect(suspicious.length).toBe(expected.length);
      if (escalated)
        expect(fixture.reader.profile.symbolAt(parseHex(escalated.cred_after))?.symbol.name).toBe('init_cred');
    },
  );

  // Only the modern snapshot's guest printed per-process credentials.
  if (creds)
    it("every process's uids and gids are what /proc/PID/status showed", () => {
      const byPid = new Map(report.tasks.filter((task) => task.pid === task.tgid).map((task) => [task.pid, task]));
      for (const [pid, expected] of Object.entries(creds)) {
        const ids = byPid.get(Number(pid))?.ids;
        expect(ids && [ids.uid, ids.euid, ids.suid, ids.fsuid], `uids of ${pid}`).toEqual(expected.uid);
        expect(ids && [ids.gid, ids.egid, ids.sgid, ids.fsgid], `gids of ${pid}`).toEqual(expected.gid);
      }
    });

  it('init runs as root with every capability the kernel knows', () => {
    const init = report.tasks.find((task) => task.pid === 1)!;
    expect(init.ids?.euid).toBe(0);
    const { effective, bounding } = init.capabilities!;
    expect(effective).toBe(bounding);
    // The full set is bits 0..CAP_LAST_CAP (at least CAP_AUDIT_READ, 37, on any 6.x kernel).
    expect(bounding & (bounding + 1n)).toBe(0n);
    expect(bounding).toBeGreaterThan((1n << 37n) - 1n);
  });
});

describe('credentials behind a hostile task list in linux61-clean', () => {
  let base: KernelFixture;
  let clean: CredentialsReport;
  beforeAll(async () => {
    base = await openKernelFixture('linux61-clean', 'elf', cacheDir);
    clean = await base.context.get(credentialsProvider);
  });
  afterAll(() => base.context.close());

  it('a task list looping back on itself is a problem, and the pid namespace still yields every task', async () => {
    const context = new OverlayContext(base.context);
    const { reader } = base;
    const tasks = reader.offset('task_struct', 'tasks');
    const [first, second] = clean.tasks.filter((task) => !task.kernelThread && task.pid === task.tgid).slice(-2);
    // The later process's next now points back at the earlier one: the forward walk would go round forever.
    context.patchKernelU64(second!.task + tasks, first!.task + tasks);
    const started = performance.now();
    const report = await context.get(credentialsProvider);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(report.problems.join('\n')).toMatch(/^task list: list loops back to 0x[0-9a-f]+/);
    expect(report.tasks.map((task) => task.task)).toEqual(clean.tasks.map((task) => task.task));
    expect(report.tasks.filter((task) => task.suspicious)).toEqual([]);
  });
});
