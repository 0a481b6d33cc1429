import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { psauxAnalysis } from '../../src/analyses/psaux.js';
import { pslistAnalysis } from '../../src/analyses/pslist.js';
import { MAX_TREE_DEPTH, pstreeAnalysis, treeOrder } from '../../src/analyses/pstree.js';
import type { AnalysisResult, Row } from '../../src/analyses/types.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import { MAX_ARGV_BYTES } from '../../src/os/linux/processSpace.js';
import type { TaskInfo } from '../../src/os/linux/tasks.js';
import { parseHex } from '../../src/util/hex.js';
import { fixturePath } from '../support/fixtures.js';
import { OverlayContext, OverlayImage } from '../support/overlay.js';

/**
 * Guest memory is attacker-controlled: a rootkit or plain corruption can make the task list
 * loop, point nowhere, or claim a gigabyte of arguments. Each case patches a few bytes of a real
 * snapshot in memory and checks that every process analysis finishes promptly (a hang guard,
 * not a speed target), says its answer is partial and why, and still shows what it can.
 */
const HANG_GUARD_MS = 2000;
const analyses = { pslist: pslistAnalysis, pstree: pstreeAnalysis, psaux: psauxAnalysis } as const;
type AnalysisName = keyof typeof analyses;

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-adversarial-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

let base: DumpContext;
let reader: KernelReader;
const clean = {} as Record<AnalysisName, AnalysisResult>;

beforeAll(async () => {
  base = new DumpContext(fixturePath('linux61-clean', 'raw'), { cacheDir });
  reader = new KernelReader(base.kernel.space, await base.profile());
  for (const name of Object.keys(analyses) as AnalysisName[]) clean[name] = await analyses[name].run(base);
  expect(clean.pslist.partial).toBe(false);
});
afterAll(() => base.close());

/** Address of the task_struct of the listed process `comm`. */
function taskOf(comm: string): bigint {
  const row = clean.pslist.rows.find((candidate) => candidate.comm === comm);
  if (!row) throw new Error(`no ${comm} in the clean snapshot`);
  return parseHex(String(row.task));
}

const field = (base: bigint, struct: string, name: string) => base + reader.offset(struct, name);

async function timed(name: AnalysisName, context: DumpContext): Promise<AnalysisResult> {
  const started = performance.now();
  const result = await analyses[name].run(context);
  const elapsed = performance.now() - started;
  console.log(
    `${name}: ${elapsed.toFixed(1)} ms, ${result.rows.length} rows, warnings: ${JSON.stringify(result.warnings)}`,
  );
  expect(elapsed).toBeLessThan(HANG_GUARD_MS);
  return result;
}

const pids = (rows: readonly Row[]) => rows.map((row) => row.pid as number).sort((a, b) => a - b);

describe('a hostile task list in linux61-clean', () => {
  it.each(Object.keys(analyses) as AnalysisName[])('%s: tasks.next looping back to an earlier task', async (name) => {
    const context = new OverlayContext(base);
    // lab_db's next now points at lab_worker_1's list node: the forward walk goes round forever.
    context.patchKernelU64(
      field(taskOf('lab_db'), 'task_struct', 'tasks'),
      field(taskOf('lab_worker_1'), 'task_struct', 'tasks'),
    );
    const result = await timed(name, context);
    expect(result.partial).toBe(true);
    expect(result.warnings.join('\n')).toMatch(/task list: list loops back to 0x[0-9a-f]+/);
    // The prev links are intact, so the backward walk still finds everyone.
    expect(pids(result.rows)).toEqual(pids(clean[name].rows));
  });

  it.each(Object.keys(analyses) as AnalysisName[])('%s: tasks.next pointing to an unmapped address', async (name) => {
    const context = new OverlayContext(base);
    // Inside the direct map, far beyond the 512 MiB of RAM: canonical, but nothing maps it.
    const nowhere = context.kernel.pageOffsetBase + (1n << 44n);
    expect(context.kernel.space.tryTranslate(nowhere)).toBeUndefined();
    context.patchKernelU64(field(taskOf('lab_web'), 'task_struct', 'tasks'), nowhere);
    const result = await timed(name, context);
    expect(result.partial).toBe(true);
    expect(result.warnings.join('\n')).toMatch(
      /task list: 0x[0-9a-f]+ points to 0x[0-9a-f]+, which is unreadable: .*does not translate/,
    );
    // The tasks past the break (lab_cache onwards) are found walking backward from the head.
    expect(pids(result.rows)).toEqual(pids(clean[name].rows));
  });

  it("pstree: parents forming a cycle (a child made its grandchild's child)", async () => {
    const context = new OverlayContext(base);
    const child = taskOf('lab_tree_child1');
    const grandchild = taskOf('lab_tree_gchild');
    context.patchKernelU64(field(child, 'task_struct', 'real_parent'), grandchild);
    const result = await timed('pstree', context);
    expect(result.partial).toBe(true);
    const childPid = reader.i32Field(child, 'task_struct', 'pid');
    expect(result.warnings).toEqual([
      expect.stringMatching(new RegExp(`^pid ${childPid} is not below a root .* cycle`)),
    ]);
    // Every process still appears exactly once; the cycle is cut at its first member.
    expect(pids(result.rows)).toEqual(pids(clean.pstree.rows));
    const rows = new Map(result.rows.map((row) => [row.pid, row]));
    expect(rows.get(childPid)).toMatchObject({ depth: 0 });
    expect(rows.get(reader.i32Field(grandchild, 'task_struct', 'pid'))).toMatchObject({ depth: 1 });
  });
  it('pslist --threads: a thread group whose signal_struct points nowhere', async () => {
    const context = new OverlayContext(base);
    const task = taskOf('lab_cache');
    context.patchKernelU64(field(task, 'task_struct', 'signal'), context.kernel.pageOffsetBase + (1n << 44n));
    const started = performance.now();
    const result = await pslistAnalysis.run(context, { threads: true });
    expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
    const pid = reader.i32Field(task, 'task_struct', 'pid');
    expect(result.partial).toBe(true);
    expect(result.warnings).toEqual([
      expect.stringMatching(new RegExp(`^threads of pid ${pid}: list node 0x[0-9a-f]+ is unreadable`)),
    ]);
    // The process is still listed; only its thread count is unknown.
    expect(result.rows.find((row) => row.pid === pid)).toMatchObject({ comm: 'lab_cache', threads: null });
    expect(pids(result.rows)).toEqual(pids(clean.pslist.rows));
  });
});

describe('pstree order over forged parents', () => {
  const task = (pid: number, ppid: number) =>
    ({ task: BigInt(pid), pid, tgid: pid, ppid, comm: `t${pid}` }) as TaskInfo;

  it(`a chain of parents deeper than ${MAX_TREE_DEPTH} is cut there: the rest starts again at depth 0, with a warning`, () => {
    const chain = Array.from({ length: 2 * MAX_TREE_DEPTH + 10 }, (_, i) => task(i + 1, i));
    const warnings: string[] = [];
    const ordered = treeOrder(chain, warnings);
    expect(ordered.map(({ task }) => task.pid)).toEqual(chain.map(({ pid }) => pid));
    expect(Math.max(...ordered.map(({ depth }) => depth))).toBe(MAX_TREE_DEPTH);
    expect(ordered[MAX_TREE_DEPTH + 1]).toMatchObject({ depth: 0 });
    expect(warnings).toHaveLength(2);
  });

  it("tasks that are their own parent, or each other's, are each placed once", () => {
    const warnings: string[] = [];
    const ordered = treeOrder([task(5, 5), task(6, 7), task(7, 6), task(8, 6)], warnings);
    expect(ordered.map(({ task, depth }) => [task.pid, depth])).toEqual([
      [5, 0],
      [6, 0],
      [7, 1],
      [8, 1],
    ]);
    expect(warnings).toEqual([expect.stringMatching(/^pid 6 is not below a root/)]);
  });
});

describe('hostile argument ranges in linux61-clean', () => {
  it.each(Object.keys(analyses) as AnalysisName[])('%s: one process claims 1 GiB of arguments', async (name) => {
    const context = new OverlayContext(base);
    const task = taskOf('lab_worker_1');
    const mm = reader.pointerField(task, 'task_struct', 'mm');
    const argStart = reader.pointerField(mm, 'mm_struct', 'arg_start');
    context.patchKernelU64(field(mm, 'mm_struct', 'arg_end'), argStart + (1n << 30n));
    const result = await timed(name, context);
    expect(pids(result.rows)).toEqual(pids(clean[name].rows));
    if (name !== 'psaux') {
      // Only psaux reads arguments.
      expect(result.partial).toBe(false);
      return;
    }
    const pid = reader.i32Field(task, 'task_struct', 'pid');
    expect(result.partial).toBe(true);
    expect(result.warnings[0]).toBe(
      `pid ${pid} (lab_worker_1): argv claims ${1 << 30} bytes (0x${argStart.toString(16)}..0x${(argStart + (1n << 30n)).toString(16)}); read only the first ${MAX_ARGV_BYTES}`,
    );
    expect(result.warnings.every((warning) => warning.startsWith(`pid ${pid} `))).toBe(true);
    // What was read starts with the real arguments (the environment strings follow them).
    const before = clean.psaux.rows.find((row) => row.pid === pid)!.argv as string[];
    const after = result.rows.find((row) => row.pid === pid)!.argv as string[];
    expect(after.slice(0, before.length)).toEqual(before);
    for (const row of result.rows.filter((row) => row.pid !== pid)) {
      expect(row.argv).toEqual(clean.psaux.rows.find((other) => other.pid === row.pid)!.argv);
    }
  });

  it('psaux: arguments on a page that is not mapped give an empty argv and a warning, not a crash', async () => {
    const context = new OverlayContext(base);
    const task = taskOf('lab_secret');
    const mm = reader.pointerField(task, 'task_struct', 'mm');
    // Below mmap_min_addr (64 KiB) nothing is ever mapped in a user space.
    context.patchKernelU64(field(mm, 'mm_struct', 'arg_start'), 0x1000n);
    context.patchKernelU64(field(mm, 'mm_struct', 'arg_end'), 0x1040n);
    const result = await timed('psaux', context);
    const pid = reader.i32Field(task, 'task_struct', 'pid');
    expect(result.partial).toBe(true);
    expect(result.warnings).toEqual([
      expect.stringMatching(
        new RegExp(
          `^pid ${pid} \\(lab_secret\\): argv is readable only up to byte 0 of 64: virtual 0x1000 does not translate`,
        ),
      ),
    ]);
    expect(result.rows.find((row) => row.pid === pid)).toMatchObject({ comm: 'lab_secret', argv: [] });
    expect(pids(result.rows)).toEqual(pids(clean.psaux.rows));
  });
});

describe('OverlayImage', () => {
  it('shows patches in every read that overlaps them, later ones winning, and leaves the base untouched', () => {
    const overlay = new OverlayImage(base.image);
    const at = base.image.ranges[0]!.start + 0x1000;
    const original = new Uint8Array(16);
    base.image.read(at, original);
    overlay.patch(at + 4, new Uint8Array([1, 2, 3, 4]));
    overlay.patch(at + 6, new Uint8Array([9]));
    const seen = new Uint8Array(16);
    overlay.read(at, seen);
    expect([...seen]).toEqual([...original.subarray(0, 4), 1, 2, 9, 4, ...original.subarray(8)]);
    // A read that starts inside a patch sees only its tail.
    const tail = new Uint8Array(2);
    expect(overlay.readPresent(at + 7, tail)).toBe(2);
    expect([...tail]).toEqual([4, original[8]]);
    const again = new Uint8Array(16);
    base.image.read(at, again);
    expect(again).toEqual(original);
  });

  it('refuses a patch of memory the image does not hold', () => {
    const overlay = new OverlayImage(base.image);
    const last = base.image.ranges[base.image.ranges.length - 1]!;
    expect(() => overlay.patch(last.end - 2, new Uint8Array(4))).toThrow(/not in the base image/);
  });
});
