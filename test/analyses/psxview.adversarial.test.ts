import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { psscanAnalysis } from '../../src/analyses/psscan.js';
import { psxviewAnalysis } from '../../src/analyses/psxview.js';
import type { AnalysisResult, Row } from '../../src/analyses/types.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import { walkPidNamespace } from '../../src/os/linux/pidNamespace.js';
import { parseHex } from '../../src/util/hex.js';
import { fixturePath } from '../support/fixtures.js';
import { OverlayContext } from '../support/overlay.js';

/**
 * The views psxview cross-checks live in attacker-controlled memory too: each case forges a few
 * pointers of a real clean snapshot in memory and checks that psxview ends promptly (a hang
 * guard, not a speed target), says what it could not walk, and invents no hidden process.
 */
const HANG_GUARD_MS = 2000;

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-psxview-adversarial-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

let base: DumpContext;
let reader: KernelReader;
let clean: AnalysisResult;

beforeAll(async () => {
  base = new DumpContext(fixturePath('linux61-clean', 'raw'), { cacheDir });
  reader = new KernelReader(base.kernel.space, await base.profile());
  clean = await psxviewAnalysis.run(base);
  expect(clean.partial).toBe(false);
});
afterAll(() => base.close());

function taskOf(comm: string): bigint {
  const row = clean.rows.find((candidate) => candidate.comm === comm && candidate.pslist);
  if (!row) throw new Error(`no listed ${comm} in the clean snapshot`);
  return parseHex(String(row.task));
}

const field = (address: bigint, struct: string, name: string) => address + reader.offset(struct, name);

async function timedPsxview(context: DumpContext): Promise<AnalysisResult> {
  const started = performance.now();
  const result = await psxviewAnalysis.run(context);
  const elapsed = performance.now() - started;
  console.log(
    `psxview: ${elapsed.toFixed(1)} ms, ${result.rows.length} rows, warnings: ${JSON.stringify(result.warnings)}`,
  );
  expect(elapsed).toBeLessThan(HANG_GUARD_MS);
  return result;
}

const views = (rows: readonly Row[]) =>
  rows.map(({ pid, comm, pslist, pid_hash, children, psscan: carved, hidden }) => ({
    pid,
    comm,
    pslist,
    pid_hash,
    children,
    psscan: carved,
    hidden,
  }));

describe('psxview over hostile kernel structures in linux61-clean', () => {
  it('an xarray node of the pid namespace pointing back to the root: the loop is reported, every pid still found', async () => {
    const context = new OverlayContext(base);
    const xarray = field(field(reader.profile.requireSymbol('init_pid_ns'), 'pid_namespace', 'idr'), 'idr', 'idr_rt');
    const head = reader.pointerField(xarray, 'xarray', 'xa_head');
    const root = head - 2n;
    const slots = field(root, 'xa_node', 'slots');
    const emptySlot = Array.from({ length: 64 }, (_, slot) => slot).find(
      (slot) => reader.u64(slots + BigInt(8 * slot)) === 0n,
    )!;
    context.patchKernelU64(slots + BigInt(8 * emptySlot), head);
    const result = await timedPsxview(context);
    expect(result.partial).toBe(true);
    expect(result.warnings.join('\n')).toMatch(/pid namespace: xarray node 0x[0-9a-f]+ is reached twice/);
    expect(views(result.rows)).toEqual(views(clean.rows));
  });

  it('a pid namespace larger than the node bound: the walk stops there and says so', () => {
    const bounded = walkPidNamespace(reader, reader.profile.requireSymbol('init_pid_ns'), 2);
    expect(bounded.problems).toEqual([
      expect.objectContaining({ kind: 'step-limit', detail: 'stopped after 2 xarray nodes' }),
    ]);
    const whole = walkPidNamespace(reader, reader.profile.requireSymbol('init_pid_ns'));
    expect(whole.problems).toEqual([]);
    expect(bounded.found.length).toBeGreaterThan(0);
    expect(bounded.found.length).toBeLessThan(whole.found.length);
  });

  it('a children list looping back to an earlier child: the loop is reported, every child still found', async () => {
    const context = new OverlayContext(base);
    const init = taskOf('init');
    const siblings = reader.walkList(
      field(init, 'task_struct', 'children'),
      reader.offset('task_struct', 'sibling'),
    ).entries;
    expect(siblings.length).toBeGreaterThan(2);
    context.patchKernelU64(
      field(siblings.at(-1)!, 'task_struct', 'sibling'),
      field(siblings[0]!, 'task_struct', 'sibling'),
    );
    const result = await timedPsxview(context);
    expect(result.partial).toBe(true);
    expect(result.warnings.join('\n')).toMatch(/children of 0x[0-9a-f]+: list loops back to 0x[0-9a-f]+/);
    expect(views(result.rows)).toEqual(views(clean.rows));
  });

  it('a struct pid naming something that is not a task: rejected with a warning, no row, nothing hidden', async () => {
    const context = new OverlayContext(base);
    const pid = reader.pointerField(taskOf('lab_db'), 'task_struct', 'thread_pid');
    // The pid's task hlist now starts inside init_pid_ns, which no plausibility check takes for a task.
    const forged = field(reader.profile.requireSymbol('init_pid_ns'), 'pid_namespace', 'idr');
    context.patchKernelU64(field(pid, 'pid', 'tasks'), forged);
    const result = await timedPsxview(context);
    expect(result.partial).toBe(true);
    expect(result.warnings.join('\n')).toMatch(/pid namespace, pid \d+: 0x[0-9a-f]+ is not a task_struct/);
    expect(result.rows.filter((row) => row.hidden)).toEqual([]);
    expect(result.rows.find((row) => row.comm === 'lab_db')).toMatchObject({
      pslist: true,
      pid_hash: false,
      children: true,
      psscan: true,
    });
  });

  it("a naive DKOM unlink (neighbours rewired, the task's own links left) is hidden, and only it", async () => {
    const context = new OverlayContext(base);
    const victim = field(taskOf('lab_db'), 'task_struct', 'tasks');
    const next = reader.pointerField(victim, 'list_head', 'next');
    const prev = reader.pointerField(victim, 'list_head', 'prev');
    context.patchKernelU64(field(prev, 'list_head', 'next'), next);
    context.patchKernelU64(field(next, 'list_head', 'prev'), prev);
    const result = await timedPsxview(context);
    expect(result.partial).toBe(false);
    expect(result.rows.filter((row) => row.hidden)).toEqual([
      expect.objectContaining({
        comm: 'lab_db',
        pslist: false,
        pid_hash: true,
        children: true,
        psscan: true,
        state: 'alive',
      }),
    ]);
    const carved = (await psscanAnalysis.run(context)).rows.find((row) => row.comm === 'lab_db');
    expect(carved).toMatchObject({ state: 'alive', task_list: 'stale' });
  });
});
