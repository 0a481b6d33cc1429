import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFtraceRecords } from '../../../src/os/linux/ftrace.js';
import {
  checkFunctionEntries,
  kernelFtraceTrampolines,
  type FunctionEntryScan,
} from '../../../src/os/linux/inlineHooks.js';
import type { KernelReader } from '../../../src/os/linux/kernelReader.js';
import { MODULES_VADDR } from '../../../src/os/linux/layout.js';
import { parseHex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import {
  kernelFixtureOf,
  openKernelFixture,
  READER_FIXTURES,
  type KernelFixture,
} from '../../support/kernelFixture.js';
import { OverlayContext } from '../../support/overlay.js';

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
 * What the ftrace reader will hand over: the kernel's own trampolines and the trampoline
 * of every ftrace_ops on `ftrace_ops_list` (which ends at `ftrace_list_end`).
 */
function accountedTargets(reader: KernelReader): Set<bigint> {
  const { profile } = reader;
  const targets = new Set(kernelFtraceTrampolines(reader));
  expect(targets.size).toBe(2);
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
    console.log(
      `${name}: ${scan.checked} entries in ${elapsed.toFixed(0)} ms of CPU, ${scan.findings.length} findings`,
    );
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
    const traced = scan.findings
      .filter((finding) => !finding.suspicious)
      .map((finding) => `${finding.function} ${finding.target?.toString(16)}`);
    // "name (refs) flags \ttramp: 0xaddr (…)" as /sys/kernel/tracing/enabled_functions prints it.
    const enabled = (modern?.enabled_functions ?? []).map((line) => {
      const match = /^(\S+) .*tramp: 0x([0-9a-f]+)/.exec(line);
      if (!match) throw new Error(`unexpected enabled_functions line: ${line}`);
      return `${match[1]} ${match[2]}`;
    });
    expect(traced.sort()).toEqual(enabled.sort());
  });
});

describe('hooks written into linux61-clean', () => {
  let base: KernelFixture;
  let sites: Set<bigint>;
  beforeAll(async () => {
    base = await openKernelFixture('linux61-clean', 'elf', cacheDir);
    sites = new Set(readFtraceRecords(base.reader).records.map((record) => record.ip));
  });
  afterAll(() => base.context.close());

  /** Write `bytes` at `address` in an overlay of the clean snapshot, and scan it. */
  async function scanPatched(
    patches: ReadonlyArray<{ address: bigint; bytes: Uint8Array }>,
  ): Promise<FunctionEntryScan> {
    const context = new OverlayContext(base.context);
    for (const { address, bytes } of patches) context.image.patchVirtual(context.kernel.space, address, bytes);
    const hostile = await kernelFixtureOf(context);
    return checkFunctionEntries(hostile.reader, hostile.owners, hostile.modules, {
      accountedTargets: accountedTargets(hostile.reader),
    });
  }
  const suspiciousOf = (scan: FunctionEntryScan) => scan.findings.filter((finding) => finding.suspicious);
  const symbol = (name: string) => base.reader.profile.requireSymbol(name);
  /** Somewhere in the module area that no module owns. */
  const nowhere = MODULES_VADDR + 0x100000n;
  const le64 = (value: bigint) => new Uint8Array(new BigUint64Array([value]).buffer);
  const le32 = (value: number) => new Uint8Array(new Int32Array([value]).buffer);
  const rel32 = (from: bigint, to: bigint) => le32(Number(BigInt.asIntN(32, to - (from + 5n))));

  /** A kernel function that is no ftrace site and starts after padding, as notrace functions do. */
  function notraceFunction(): { name: string; address: bigint } {
    const { profile } = base.reader;
    const [start, end] = [symbol('_stext'), symbol('_etext')];
    const found = profile.symbolList.find(
      (candidate) =>
        candidate.type === 'T' &&
        candidate.address > start &&
        candidate.address < end &&
        !candidate.name.startsWith('__SCT__') &&
        !sites.has(candidate.address) &&
        !sites.has(candidate.address + 4n) &&
        profile.symbolsAt(candidate.address).length === 1 &&
        (profile.symbolAfter(candidate.address)?.address ?? end) - candidate.address >= 16n &&
        base.reader.bytes(candidate.address - 1n, 1)[0] === 0xcc,
    );
    if (!found) throw new Error('no notrace function in the clean kernel');
    return found;
  }

  it('movabs + jmp reg over an ftrace site', async () => {
    const site = symbol('__x64_sys_acct');
    expect(sites.has(site)).toBe(true);
    const scan = await scanPatched([
      { address: site, bytes: Uint8Array.from([0x48, 0xb8, ...le64(nowhere), 0xff, 0xe0]) },
    ]);
    expect(suspiciousOf(scan)).toMatchObject([
      {
        function: '__x64_sys_acct',
        patchAt: site,
        ftraceSite: true,
        bytes: `48b8${Buffer.from(le64(nowhere)).toString('hex')}ffe0`,
        target: nowhere,
        targetOwner: 'unknown',
      },
    ]);
    expect(suspiciousOf(scan)[0]!.instruction).toBe(`mov rax, 0x${nowhere.toString(16)}; jmp rax`);
  });

  it('a jmp written after an untouched ftrace site', async () => {
    const site = symbol('__x64_sys_acct');
    const after = site + 5n;
    const scan = await scanPatched([{ address: after, bytes: Uint8Array.from([0xe9, ...rel32(after, nowhere)]) }]);
    expect(suspiciousOf(scan)).toMatchObject([
      {
        function: '__x64_sys_acct',
        patchAt: after,
        ftraceSite: false,
        instruction: `jmp 0x${nowhere.toString(16)}`,
        target: nowhere,
      },
    ]);
    expect(suspiciousOf(scan)[0]!.evidence).toMatch(/^the instruction after the ftrace site jumps to/);
  });

  it('a verdict on unchanged kernel text is reused from check to check of one kernel, never once the text changed', async () => {
    // A live monitor judges the same kernel (one profile) every check: a hook written between two checks must show.
    const scanClean = async () => scanPatched([]);
    expect(suspiciousOf(await scanClean())).toEqual([]);
    const site = symbol('__x64_sys_acct');
    expect(suspiciousOf(await scanPatched([{ address: site, bytes: Uint8Array.from([0xcc]) }]))).toMatchObject([
      { function: '__x64_sys_acct', instruction: 'int3' },
    ]);
    const clean = await scanClean();
    expect(suspiciousOf(clean)).toEqual([]);
    expect((await scanClean()).checked).toBe(clean.checked);
  });

  it('int3 over an ftrace site', async () => {
    const site = symbol('__x64_sys_acct');
    const scan = await scanPatched([{ address: site, bytes: Uint8Array.from([0xcc]) }]);
    expect(suspiciousOf(scan)).toMatchObject([
      { function: '__x64_sys_acct', instruction: 'int3', ftraceSite: true, target: undefined },
    ]);
  });

  it('push + ret, and a jmp out of kernel text, at functions ftrace does not know', async () => {
    const victim = notraceFunction();
    const scan = await scanPatched([
      { address: victim.address, bytes: Uint8Array.from([0x68, ...le32(Number(BigInt.asIntN(32, nowhere))), 0xc3]) },
    ]);
    expect(suspiciousOf(scan)).toMatchObject([
      { function: victim.name, ftraceSite: false, target: nowhere, targetOwner: 'unknown' },
    ]);
    expect(suspiciousOf(scan)[0]!.evidence).toMatch(/pushes .* and returns to it/);

    const jumped = await scanPatched([
      { address: victim.address, bytes: Uint8Array.from([0xe9, ...rel32(victim.address, nowhere)]) },
    ]);
    expect(suspiciousOf(jumped)).toMatchObject([
      { function: victim.name, ftraceSite: false, instruction: `jmp 0x${nowhere.toString(16)}`, target: nowhere },
    ]);
  });

  it('an entry whose jump hides behind prefixes is still decoded and judged (most entries are passed over undecoded)', async () => {
    const victim = notraceFunction();
    const rel32After = (prefixes: number) => {
      const from = victim.address + BigInt(prefixes);
      return rel32(from, nowhere);
    };
    const hooks: Array<{ bytes: number[]; evidence: RegExp }> = [
      // A segment prefix before a jmp rel32, and a REX byte before one: the decoder skips both.
      { bytes: [0x2e, 0xe9, ...rel32After(1)], evidence: /^entry jumps to/ },
      { bytes: [0x40, 0xe9, ...rel32After(1)], evidence: /^entry jumps to/ },
      // `movabs` with an operand-size prefix before its REX.W, then `jmp rax`.
      { bytes: [0x66, 0x48, 0xb8, ...le64(nowhere), 0xff, 0xe0], evidence: /loads .* into a register and jumps there/ },
      // `notrack jmp [rip+0]`, through the 8 bytes that follow it.
      { bytes: [0x3e, 0xff, 0x25, 0, 0, 0, 0, ...le64(nowhere)], evidence: /jumps through a pointer to/ },
    ];
    for (const { bytes, evidence } of hooks) {
      const scan = await scanPatched([{ address: victim.address, bytes: Uint8Array.from(bytes) }]);
      expect(suspiciousOf(scan)).toMatchObject([{ function: victim.name, ftraceSite: false, target: nowhere }]);
      expect(suspiciousOf(scan)[0]!.evidence).toMatch(evidence);
    }
  });

  it('a static-call trampoline may jump out of kernel text only where its key says', async () => {
    const { profile } = base.reader;
    const trampoline = profile.symbolList.find(
      (candidate) => candidate.name.startsWith('__SCT__') && base.reader.bytes(candidate.address, 1)[0] === 0xe9,
    )!;
    const key = symbol(trampoline.name.replace('__SCT__', '__SCK__'));
    const jump = { address: trampoline.address, bytes: Uint8Array.from([0xe9, ...rel32(trampoline.address, nowhere)]) };
    const updated = await scanPatched([
      jump,
      { address: key + base.reader.offset('static_call_key', 'func'), bytes: le64(nowhere) },
    ]);
    expect(suspiciousOf(updated)).toEqual([]);
    const forged = await scanPatched([jump]);
    expect(suspiciousOf(forged)).toMatchObject([{ function: trampoline.name, target: nowhere }]);
  });
});
