import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAnalysis } from '../../src/analyses/check.js';
import { DumpContext } from '../../src/analyses/context.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { psauxAnalysis } from '../../src/analyses/psaux.js';
import { pslistAnalysis } from '../../src/analyses/pslist.js';
import { syscallsAnalysis } from '../../src/analyses/syscalls.js';
import type { KernelReader } from '../../src/os/linux/kernelReader.js';
import { parseHex } from '../../src/util/hex.js';
import { fixturePath, truth } from '../support/fixtures.js';
import { OverlayContext } from '../support/overlay.js';

/**
 * What an intruder controls about its own objects must not hide them: a task names itself with
 * any byte (prctl PR_SET_NAME), a module can blank its own name or state. Each case mutates the
 * real rootkit snapshot in memory and the finding must still be there.
 */
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-evasion-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

interface RootkitTruth {
  module: { name: string; struct_module: string };
  hidden_process: { pid: number; task_struct: string };
  syscall_hook: { index: number };
}
const rootkit = () => truth('linux61-rootkit').rootkit as RootkitTruth;

let base: DumpContext;
let reader: KernelReader;
beforeAll(async () => {
  base = new DumpContext(fixturePath('linux61-rootkit', 'lime'), { cacheDir });
  reader = await base.get(readerProvider);
});
afterAll(() => base.close());

/** Overwrite `bytes.length` (a multiple of 8) bytes at a kernel virtual address of an overlay. */
function patchBytes(context: OverlayContext, at: bigint, bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let offset = 0; offset < bytes.length; offset += 8)
    context.patchKernelU64(at + BigInt(offset), view.getBigUint64(offset, true));
}

const kinds = (rows: ReadonlyArray<Record<string, unknown>>) => rows.map((row) => row.kind).sort();

describe('a hidden task that renames itself with control bytes stays hidden_process', () => {
  it('any comm the kernel would accept (NUL-terminated, any other byte)', async () => {
    const task = parseHex(rootkit().hidden_process.task_struct);
    const comm = task + reader.offset('task_struct', 'comm');
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 15 }),
        fc.integer({ min: 0, max: 0x1f }),
        async (name, control) => {
          const bytes = new Uint8Array(16);
          bytes.set(name.map((byte) => byte || 1));
          bytes[Math.min(name.length - 1, 3)] = control || 0x1b; // at least one control byte in the name
          const context = new OverlayContext(base);
          patchBytes(context, comm, bytes);
          const findings = (await checkAnalysis.run(context)).rows;
          const hidden = findings.filter((row) => row.kind === 'hidden_process');
          expect(hidden).toHaveLength(1);
          expect(String(hidden[0]!.subject)).toMatch(new RegExp(`^pid ${rootkit().hidden_process.pid} `));
        },
      ),
      { numRuns: 5 },
    );
  });
});

describe('a hidden module that blanks its name or state stays hidden_module, and owns its hook', () => {
  it.each([
    ['a zeroed first byte of its name', 'name', 0n],
    ['a bogus state', 'state', 0x7777n],
  ] as const)('%s', async (_, field, value) => {
    const module = parseHex(rootkit().module.struct_module);
    const context = new OverlayContext(base);
    const at = module + reader.offset('module', field);
    if (field === 'name') context.patchKernelU64(at, 0n);
    else context.patchKernelU64(at, (reader.u64(at) & ~0xffffffffn) | value);
    const findings = (await checkAnalysis.run(context)).rows;
    expect(kinds(findings)).toEqual(['hidden_module', 'hidden_process', 'syscall_hook']);
    const hook = (await syscallsAnalysis.run(context)).rows.find(
      (row) => row.index === rootkit().syscall_hook.index && row.table === 'sys_call_table',
    )!;
    expect(hook.hooked).toBe(true);
    expect(hook.owner).not.toBe('unknown');
    const hidden = findings.find((row) => row.kind === 'hidden_module')!;
    expect(hook.owner).toBe(hidden.subject);
    expect(String(hidden.detail)).toMatch(field === 'name' ? /no module name/ : /no module_state/);
  });
});

describe('impossible lists are warnings and partial rows, never a quiet empty answer', () => {
  it('init_task.tasks pointing to itself: pslist is partial with a warning', async () => {
    const context = new OverlayContext(base);
    const head = reader.profile.requireSymbol('init_task') + reader.offset('task_struct', 'tasks');
    context.patchKernelU64(head, head);
    context.patchKernelU64(head + 8n, head);
    const result = await pslistAnalysis.run(context);
    expect(result.rows).toEqual([]);
    expect(result.partial).toBe(true);
    expect(result.warnings.join('\n')).toMatch(/task list is empty/);
  });

  it('arg_start..arg_end in the kernel half: no kernel bytes as argv, a warning', async () => {
    const context = new OverlayContext(base);
    const victim = (await base.get(taskListProvider)).tasks.find((task) => !task.kernelThread && task.mm !== 0n)!;
    const argStart = victim.mm + reader.offset('mm_struct', 'arg_start');
    const argEnd = victim.mm + reader.offset('mm_struct', 'arg_end');
    context.patchKernelU64(argStart, context.kernel.pageOffsetBase + 0x1000n);
    context.patchKernelU64(argEnd, context.kernel.pageOffsetBase + 0x1100n);
    const result = await psauxAnalysis.run(context);
    const row = result.rows.find((candidate) => candidate.pid === victim.pid)!;
    expect(row.argv).toEqual([]);
    expect(result.partial).toBe(true);
    expect(result.warnings.join('\n')).toMatch(new RegExp(`pid ${victim.pid} .*not in user memory`));
  });
});
