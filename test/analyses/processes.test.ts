import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { psauxAnalysis } from '../../src/analyses/psaux.js';
import { pslistAnalysis } from '../../src/analyses/pslist.js';
import { pstreeAnalysis } from '../../src/analyses/pstree.js';
import type { Row } from '../../src/analyses/types.js';
import { dumpFixtures, fixturePath, multiFormatSnapshots, snapshotNames, truth } from '../support/fixtures.js';

interface TruthProcess {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: string[];
  threads: number;
  kernel_thread: boolean;
  in_task_list: boolean;
}

function truthProcesses(name: string): TruthProcess[] {
  return truth(name).processes as TruthProcess[];
}

/** Kernel threads (kworkers) may start or exit between the guest's listing and the pause. */
const KERNEL_THREAD_CHURN = 2;

// One profile derivation per kernel, not per test file run on a developer's cache.
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-processes-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** One dump per snapshot (the first format it has). */
const snapshots = snapshotNames().map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);

const byPid = (rows: readonly Row[]) => new Map(rows.map((row) => [row.pid as number, row]));
const pidComm = (process: Row | TruthProcess) => `${String(process.pid)} ${String(process.comm)}`;

describe.each(snapshots)('processes of $name ($format)', ({ name, format }) => {
  let context: DumpContext;
  const listed = truthProcesses(name).filter((process) => process.in_task_list);
  const userProcesses = listed.filter((process) => !process.kernel_thread);
  beforeAll(async () => {
    context = new DumpContext(fixturePath(name, format), { cacheDir });
    await context.profile();
  });
  afterAll(() => context.close());

  it('pslist: exactly the user processes of the task list, with their pid, ppid, comm and thread count', async () => {
    const result = await pslistAnalysis.run(context);
    expect(result.partial).toBe(false);
    expect(result.warnings).toEqual([]);
    const users = result.rows.filter((row) => row.kernel_thread === false);
    expect(users.map((row) => row.pid).sort((a, b) => Number(a) - Number(b))).toEqual(
      userProcesses.map((process) => process.pid).sort((a, b) => a - b),
    );
    const rows = byPid(users);
    for (const process of userProcesses) {
      expect(rows.get(process.pid), `pid ${process.pid}`).toMatchObject({
        ppid: process.ppid,
        comm: process.comm,
        threads: process.threads,
        tgid: process.pid,
      });
    }
    for (const row of result.rows) expect(row.task).toMatch(/^0xffff[0-9a-f]{12}$/);
  });

  it(`pslist: the kernel threads of the task list, give or take ${KERNEL_THREAD_CHURN} that came or went`, async () => {
    const found = new Set(
      (await pslistAnalysis.run(context)).rows.filter((row) => row.kernel_thread === true).map(pidComm),
    );
    const expected = new Set(listed.filter((process) => process.kernel_thread).map(pidComm));
    const onlyFound = [...found].filter((thread) => !expected.has(thread));
    const onlyExpected = [...expected].filter((thread) => !found.has(thread));
    console.log(
      `${name}: ${found.size} kernel threads found, ${expected.size} in the truth; only found: [${onlyFound.join(', ')}], only in the truth: [${onlyExpected.join(', ')}]`,
    );
    expect(onlyFound.length + onlyExpected.length).toBeLessThanOrEqual(KERNEL_THREAD_CHURN);
  });

  it('pslist --threads: each leader followed by its other threads, as many as its thread count', async () => {
    const leaders = (await pslistAnalysis.run(context)).rows;
    const threads = await pslistAnalysis.run(context, { threads: true });
    expect(threads.partial).toBe(false);
    expect(threads.rows.length).toBe(leaders.reduce((sum, row) => sum + Number(row.threads), 0));
    const leaderPids = new Set(leaders.map((row) => row.pid));
    for (const row of threads.rows) expect(leaderPids.has(row.tgid)).toBe(true);
    expect(new Set(threads.rows.map((row) => row.task)).size).toBe(threads.rows.length);
  });

  it("psaux: argv read from each user process's own memory equals its /proc cmdline", async () => {
    const result = await psauxAnalysis.run(context);
    expect(result.partial).toBe(false);
    const rows = byPid(result.rows);
    for (const process of userProcesses)
      expect(rows.get(process.pid)?.argv, `pid ${process.pid} ${process.comm}`).toEqual(process.cmdline);
    const longArgs = userProcesses.find((process) => process.comm === 'lab_longargs')!;
    // 200 arguments over 4 KiB: the read crosses at least one page boundary.
    expect(longArgs.cmdline.length).toBeGreaterThan(200);
    expect(longArgs.cmdline.join('\0').length).toBeGreaterThan(4096);
    const userPids = new Set(userProcesses.map((process) => process.pid));
    for (const row of result.rows)
      if (!userPids.has(row.pid as number)) expect(row.argv).toEqual([`[${String(row.comm)}]`]);
  });

  it('pstree: parents before children, depth = parent depth + 1, the lab_tree family as the guest saw it', async () => {
    const result = await pstreeAnalysis.run(context);
    expect(result.partial).toBe(false);
    const seen = new Map<number, Row>();
    for (const row of result.rows) {
      const parent = seen.get(row.ppid as number);
      expect(row.depth, `pid ${String(row.pid)}`).toBe(parent ? Number(parent.depth) + 1 : 0);
      seen.set(row.pid as number, row);
    }
    expect(seen.size).toBe((await pslistAnalysis.run(context)).rows.length);
    const family = (comm: string) => userProcesses.find((process) => process.comm === comm)!;
    const [root, child1, child2, grandchild] = [
      'lab_tree_root',
      'lab_tree_child1',
      'lab_tree_child2',
      'lab_tree_gchild',
    ].map(family);
    expect([child1!.ppid, child2!.ppid, grandchild!.ppid]).toEqual([root!.pid, root!.pid, child1!.pid]);
    const order = result.rows.map((row) => row.pid);
    const depthOf = (pid: number) => seen.get(pid)!.depth;
    expect(depthOf(child1!.pid)).toBe(Number(depthOf(root!.pid)) + 1);
    expect(depthOf(grandchild!.pid)).toBe(Number(depthOf(root!.pid)) + 2);
    // A subtree is contiguous: the grandchild comes right after its parent, before the second child.
    expect(order.indexOf(grandchild!.pid)).toBe(order.indexOf(child1!.pid) + 1);
    expect(order.indexOf(child2!.pid)).toBeGreaterThan(order.indexOf(grandchild!.pid));
  });
});

describe('the rootkit snapshot', () => {
  it('pslist does not show the process the rootkit unlinked from the task list', async () => {
    const name = 'linux61-rootkit';
    const hidden = (truth(name).rootkit as { hidden_process: { pid: number; comm: string } }).hidden_process;
    const context = new DumpContext(fixturePath(name, 'lime'), { cacheDir });
    const result = await pslistAnalysis.run(context);
    context.close();
    expect(truthProcesses(name).find((process) => process.pid === hidden.pid)).toMatchObject({
      in_task_list: false,
      hidden: true,
    });
    expect(result.rows.map((row) => row.pid)).not.toContain(hidden.pid);
    expect(result.rows.map((row) => row.comm)).not.toContain(hidden.comm);
    expect(result.partial).toBe(false);
  });
});

describe.each(multiFormatSnapshots())('$name in every format', ({ name, formats }) => {
  it(`pslist rows are identical from ${formats.join(', ')}`, async () => {
    const results = [];
    for (const format of formats) {
      const context = new DumpContext(fixturePath(name, format), { cacheDir });
      results.push((await pslistAnalysis.run(context)).rows);
      context.close();
    }
    expect(results[0]!.length).toBeGreaterThan(0);
    for (const rows of results.slice(1)) expect(rows).toEqual(results[0]);
  });
});
