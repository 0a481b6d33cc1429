import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkFunctionEntries, type FunctionEntryScan } from '../../../src/os/linux/inlineHooks.js';
import type { KernelReader } from '../../../src/os/linux/kernelReader.js';
import { parseHex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import { openKernelFixture, READER_FIXTURES, type KernelFixture } from '../../support/kernelFixture.js';

interface InlineHookTruth {
  function: string;
  function_addr: string;
  patch_at: string;
  new_bytes: string;
  target: string;
  target_symbol: string;
}
interface ModernTruth {
  module: { name: string };
  inline_hooks: InlineHookTruth[];
  enabled_functions: string[];
}

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-inline-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** A bound for the test's own walk; a real kernel registers a handful of ftrace_ops. */
const MAX_OPS = 256;
/** CPU time for all entries of one kernel (its pages cached by the module search before). */
const BUDGET_MS = 1000;

/**
 * What the ftrace reader will hand over: ftrace_caller, ftrace_regs_caller and the
 * trampoline of every ftrace_ops on `ftrace_ops_list` (which ends at `ftrace_list_end`).
 */
function accountedTargets(reader: KernelReader): Set<bigint> {
  const { profile } = reader;
  const targets = new Set(['ftrace_caller', 'ftrace_regs_caller'].map((name) => profile.requireSymbol(name)));
  const end = profile.requireSymbol('ftrace_list_end');
  let ops = reader.u64(profile.requireSymbol('ftrace_ops_list'));
  for (let count = 0; ops !== end; count++) {
    if (count >= MAX_OPS) throw new Error('ftrace_ops_list does not end');
    const trampoline = reader.pointerField(ops, 'ftrace_ops', 'trampoline');
    if (trampoline !== 0n) targets.add(trampoline);
    ops = reader.pointerField(ops, 'ftrace_ops', 'next');
  }
  return targets;
}

describe.each(READER_FIXTURES)('function entries of $name ($format)', ({ name, format }) => {
  const modern = truth(name).modern as ModernTruth | undefined;
  let fixture: KernelFixture;
  let scan: FunctionEntryScan;
  let elapsed: number;
  beforeAll(async () => {
    fixture = await openKernelFixture(name, format, cacheDir);
    const accounted = accountedTargets(fixture.reader);
    // CPU time, not wall time: the budget is the reader's cost, not the machine's load.
    const started = process.cpuUsage();
    scan = checkFunctionEntries(fixture.reader, fixture.owners, fixture.modules, { accountedTargets: accounted });
    const used = process.cpuUsage(started);
    elapsed = (used.user + used.system) / 1000;
    console.log(`${name}: ${scan.checked} entries in ${elapsed.toFixed(0)} ms of CPU, ${scan.findings.length} findings`);
  });
  afterAll(() => fixture.context.close());

  it('reads every kernel and module function entry without a problem, in well under a second', () => {
    expect(scan.problems).toEqual([]);
    // The kernel's text symbols (aliases once) plus the modules' functions.
    const { profile } = fixture.reader;
    expect(scan.checked).toBeGreaterThan(profile.symbolList.filter((symbol) => symbol.type === 'T').length);
    expect(elapsed).toBeLessThan(BUDGET_MS);
  });

  it(modern ? 'finds the jmp written over __x64_sys_acct, and only that' : 'finds no inline hook', () => {
    const suspicious = scan.findings.filter((finding) => finding.suspicious);
    const expected = (modern?.inline_hooks ?? []).map((hook) => ({
      function: hook.function,
      address: parseHex(hook.function_addr),
      functionOwner: 'kernel',
      patchAt: parseHex(hook.patch_at),
      bytes: hook.new_bytes,
      instruction: `jmp ${hook.target}`,
      ftraceSite: true,
      target: parseHex(hook.target),
      targetSymbol: hook.target_symbol,
      targetOwner: modern!.module.name,
      suspicious: true,
    }));
    expect(suspicious).toMatchObject(expected);
    expect(suspicious.length).toBe(expected.length);
  });

  it('the traced functions are the ones tracefs lists in enabled_functions, with their trampolines', () => {
    const traced = scan.findings.filter((finding) => !finding.suspicious).map((finding) => `${finding.function} ${finding.target?.toString(16)}`);
    // "name (refs) flags \ttramp: 0xaddr (…)" as /sys/kernel/tracing/enabled_functions prints it.
    const enabled = (modern?.enabled_functions ?? []).map((line) => {
      const match = /^(\S+) .*tramp: 0x([0-9a-f]+)/.exec(line);
      if (!match) throw new Error(`unexpected enabled_functions line: ${line}`);
      return `${match[1]} ${match[2]}`;
    });
    expect(traced.sort()).toEqual(enabled.sort());
  });
});
