import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { psscanAnalysis } from '../../src/analyses/psscan.js';
import { psxviewAnalysis } from '../../src/analyses/psxview.js';
import type { AnalysisResult, Row } from '../../src/analyses/types.js';
import { parseHex } from '../../src/util/hex.js';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';

interface TruthProcess {
  pid: number;
  ppid: number;
  comm: string;
  kernel_thread: boolean;
  in_task_list: boolean;
  hidden?: boolean;
}

/** Kernel threads (kworkers) may start or exit between the guest's listing and the pause. */
const KERNEL_THREAD_CHURN = 2;
/** The budget for a whole psxview (kernel discovery, cached profile, four views) on 512 MiB. */

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-psxview-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** One dump per snapshot (the first format it has). */
const snapshots = snapshotNames().map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);

const key = (row: Row | TruthProcess) => `${String(row.pid)} ${String(row.comm)}`;

/** Truth processes with no row of the same pid and comm among `rows`. */
function missing(processes: readonly TruthProcess[], rows: readonly Row[]): string[] {
  const found = new Set(rows.map(key));
  return processes.filter((process) => !found.has(key(process))).map(key);
}

describe.each(snapshots)('hidden-process views of $name ($format)', ({ name, format }) => {
  const processes = truth(name).processes as TruthProcess[];
  const users = processes.filter((process) => !process.kernel_thread);
  const kernelThreads = processes.filter((process) => process.kernel_thread);
  let context: DumpContext;
  let scan: AnalysisResult;
  let view: AnalysisResult;
  beforeAll(async () => {
    context = new DumpContext(fixturePath(name, format), { cacheDir });
    await context.profile();
    [scan, view] = [await psscanAnalysis.run(context), await psxviewAnalysis.run(context)];
  });
  afterAll(() => context.close());

  it('psscan carves every process the guest listed, with its pid, comm, ppid, kind and task-list links', () => {
    expect(scan.partial).toBe(false);
    expect(missing(users, scan.rows)).toEqual([]);
    expect(missing(kernelThreads, scan.rows).length).toBeLessThanOrEqual(KERNEL_THREAD_CHURN);
    const alive = scan.rows.filter((row) => row.state === 'alive');
    for (const process of users) {
      // The guest's rootkit hides with list_del_init, which leaves the task's links on itself.
      const taskList = process.hidden === true ? 'unlinked' : 'linked';
      expect(
        alive.find((row) => row.pid === process.pid),
        key(process),
      ).toMatchObject({
        comm: process.comm,
        ppid: process.ppid,
        tgid: process.pid,
        kernel_thread: false,
        task_list: taskList,
      });
    }
    // Each task's direct-map address maps to the physical address it was carved at.
    for (const row of scan.rows)
      expect(context.kernel.space.translate(parseHex(String(row.task))).physical, key(row)).toBe(
        Number(parseHex(String(row.physical))),
      );
  });

  it('psscan: what the guest did not list is an exited task, an idle task (pid 0) or kernel-thread churn', () => {
    const listed = new Set(processes.map(key));
    const unlisted = scan.rows.filter((row) => !listed.has(key(row)));
    const unexplained = unlisted.filter((row) => row.state !== 'exited' && row.pid !== 0);
    expect(unexplained.every((row) => row.kernel_thread === true)).toBe(true);
    expect(unexplained.length).toBeLessThanOrEqual(KERNEL_THREAD_CHURN);
    // Reaped tasks left the task list through list_del, which poisons prev.
    for (const row of unlisted.filter((candidate) => candidate.state === 'exited'))
      expect(row.task_list, key(row)).toBe('deleted');
  });

  it('psscan: one idle task per CPU, swapper/0 being init_task at its symbol address', async () => {
    const idle = scan.rows.filter((row) => row.pid === 0);
    expect(idle.map((row) => row.comm).sort()).toEqual(
      Array.from({ length: truth(name).cpu_count as number }, (_, cpu) => `swapper/${cpu}`),
    );
    const initTask = (await context.profile()).requireSymbol('init_task');
    expect(idle.find((row) => row.comm === 'swapper/0')?.task).toBe(`0x${initTask.toString(16)}`);
  });

  it("psxview: every user process is in all four views; hidden are exactly the guest's hidden ones, at their task_struct", () => {
    expect(view.partial).toBe(false);
    expect(view.warnings).toEqual([]);
    const hiddenInTruth = users.filter((process) => process.hidden === true);
    expect(view.rows.filter((row) => row.hidden).map(key)).toEqual(hiddenInTruth.map(key));
    const rootkit = truth(name).rootkit as { hidden_process: { pid: number; task_struct: string } } | null;
    for (const process of users) {
      const hidden = process.hidden === true;
      const row = view.rows.find((candidate) => candidate.pid === process.pid && candidate.state === 'alive');
      expect(row, key(process)).toMatchObject({
        comm: process.comm,
        pslist: !hidden,
        pid_hash: true,
        children: true,
        psscan: true,
        hidden,
      });
      if (hidden) expect(parseHex(String(row!.task))).toBe(parseHex(rootkit!.hidden_process.task_struct));
    }
  });

  it('psxview: kernel threads are in every view but for churn, and none is hidden', () => {
    const everywhere = view.rows.filter((row) => row.pslist && row.pid_hash && row.children && row.psscan);
    expect(missing(kernelThreads, everywhere).length).toBeLessThanOrEqual(KERNEL_THREAD_CHURN);
    // Rows are processes: no idle task, and only exited tasks outside the task list.
    expect(view.rows.some((row) => row.pid === 0)).toBe(false);
    for (const row of view.rows.filter((candidate) => !candidate.pslist && !candidate.hidden))
      expect(row.state, key(row)).toBe('exited');
  });

  it('psxview on a fresh context (kernel found again, profile from the cache) gives the same rows', async () => {
    const fresh = new DumpContext(fixturePath(name, format), { cacheDir });
    try {
      expect((await psxviewAnalysis.run(fresh)).rows).toEqual(view.rows);
    } finally {
      fresh.close();
    }
  });
});
