import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { syscallsAnalysis } from '../../src/analyses/syscalls.js';
import type { AnalysisResult, Row } from '../../src/analyses/types.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import { followSwitch } from '../../src/os/linux/x86Switch.js';
import { hex, parseHex } from '../../src/util/hex.js';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';
import { OverlayContext } from '../support/overlay.js';

interface SysCallTableTruth {
  address: string;
  count: number;
  entries: Array<{ index: number; value: string; symbol: string }>;
}
interface RootkitTruth {
  module: { name: string; base: string };
  syscall_hook: { index: number; syscall: string; hooked: string; original_symbol: string };
}

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-syscalls-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** One dump per snapshot (the first format it has). */
const snapshots = snapshotNames().map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);

const HANG_GUARD_MS = 2000;
const entriesOf = (rows: readonly Row[]) => rows.filter((row) => row.table === 'sys_call_table');
const hookedOf = (rows: readonly Row[]) => rows.filter((row) => row.hooked === true);

async function timedSyscalls(context: DumpContext): Promise<AnalysisResult> {
  const started = performance.now();
  const result = await syscallsAnalysis.run(context);
  const elapsed = performance.now() - started;
  console.log(
    `syscalls: ${elapsed.toFixed(1)} ms, ${result.rows.length} rows, ${hookedOf(result.rows).length} hooked, warnings: ${JSON.stringify(result.warnings)}`,
  );
  expect(elapsed).toBeLessThan(HANG_GUARD_MS);
  return result;
}

describe.each(snapshots)('syscalls of $name ($format)', ({ name, format }) => {
  let context: DumpContext;
  const table = truth(name).sys_call_table as SysCallTableTruth;
  const rootkit = truth(name).rootkit as RootkitTruth | undefined;
  beforeAll(async () => {
    context = new DumpContext(fixturePath(name, format), { cacheDir });
    await context.profile();
  });
  afterAll(() => context.close());

  it("every sys_call_table entry is the guest's, resolved to its handler in kernel text", async () => {
    const result = await timedSyscalls(context);
    expect(result.partial).toBe(false);
    expect(result.warnings).toEqual([]);
    const entries = entriesOf(result.rows);
    expect(entries.length).toBe(table.count);
    for (const [index, row] of entries.entries()) {
      const expected = table.entries[index]!;
      expect(row.index).toBe(index);
      expect(row.address).toBe(expected.value);
      if (row.hooked) continue;
      expect(row, `entry ${index}`).toMatchObject({
        symbol: expected.symbol,
        owner: 'kernel',
        name: expected.symbol.replace(/^__x64_sys_/, ''),
      });
    }
  });

  it(
    rootkit ? 'exactly one hook: getdents64, owned by the hidden module' : 'no hooked entry and no dispatcher finding',
    async () => {
      const { rows } = await syscallsAnalysis.run(context);
      const hook = rootkit?.syscall_hook;
      const expected = hook
        ? [
            {
              table: 'sys_call_table',
              kind: 'entry',
              index: hook.index,
              name: hook.syscall,
              address: hook.hooked,
              symbol: 'labkit_hook',
              owner: rootkit.module.name,
              hooked: true,
            },
          ]
        : [];
      expect(hookedOf(rows)).toEqual(expected);
      expect(rows.filter((row) => row.kind === 'dispatcher')).toEqual([]);
    },
  );
});

describe('a tampered syscall path', () => {
  let clean: DumpContext;
  let rootkit: DumpContext;
  beforeAll(async () => {
    clean = new DumpContext(fixturePath('linux612-clean', 'elf'), { cacheDir });
    rootkit = new DumpContext(fixturePath('linux61-rootkit', 'lime'), { cacheDir });
    await Promise.all([clean.profile(), rootkit.profile()]);
  });
  afterAll(() => {
    clean.close();
    rootkit.close();
  });

  async function tableStart(context: DumpContext): Promise<bigint> {
    return (await context.profile()).requireSymbol('sys_call_table');
  }

  it('an entry pointing to an unmapped address: hooked, owner unknown, still named by its number', async () => {
    const context = new OverlayContext(clean);
    const nowhere = context.kernel.pageOffsetBase + (1n << 44n);
    expect(context.kernel.space.tryTranslate(nowhere)).toBeUndefined();
    context.patchKernelU64(await tableStart(context), nowhere);
    const result = await timedSyscalls(context);
    expect(result.partial).toBe(false);
    expect(hookedOf(result.rows)).toEqual([
      {
        table: 'sys_call_table',
        kind: 'entry',
        index: 0,
        name: 'read',
        address: hex(nowhere),
        symbol: null,
        owner: 'unknown',
        hooked: true,
      },
    ]);
  });

  it('two real handlers swapped, or one entered past its start: hooked although inside kernel text', async () => {
    const context = new OverlayContext(clean);
    const start = await tableStart(context);
    const original = entriesOf((await syscallsAnalysis.run(clean)).rows);
    const address = (index: number) => parseHex(String(original[index]!.address));
    context.patchKernelU64(start, address(1));
    context.patchKernelU64(start + 8n, address(0));
    context.patchKernelU64(start + 16n, address(2) + 4n);
    const hooked = hookedOf((await timedSyscalls(context)).rows);
    expect(hooked.map((row) => [row.index, row.name, row.symbol, row.owner])).toEqual([
      [0, 'read', '__x64_sys_write', 'kernel'],
      [1, 'write', '__x64_sys_read', 'kernel'],
      [2, 'open', '__x64_sys_open+0x4', 'kernel'],
    ]);
  });

  it("x64_sys_call's jump for execve redirected into the hidden module: one dispatcher finding", async () => {
    const context = new OverlayContext(rootkit);
    const profile = await context.profile();
    const reader = new KernelReader(context.kernel.space, profile);
    const dispatcher = profile.requireSymbol('x64_sys_call');
    const end = profile.symbolList.reduce(
      (nearest, symbol) => (symbol.address > dispatcher && symbol.address < nearest ? symbol.address : nearest),
      dispatcher + 0x10000n,
    );
    const { exits } = followSwitch(reader.bytes(dispatcher, Number(end - dispatcher)), dispatcher);
    const execve = exits.find((exit) => exit.first === 59 && exit.last === 59)!;
    // A rel32 jmp (e9) or jcc (0f 8x): its displacement is the instruction's last four bytes.
    const rel32At = execve.site + (reader.bytes(execve.site, 1)[0] === 0xe9 ? 1n : 2n);
    const hook = parseHex((truth('linux61-rootkit').rootkit as RootkitTruth).module.base);
    const displacement = new Uint8Array(4);
    new DataView(displacement.buffer).setInt32(0, Number(hook - (rel32At + 4n)), true);
    // The untouched kernel checked first: the switch it followed must not stand for the changed code.
    expect(hookedOf((await timedSyscalls(new OverlayContext(rootkit))).rows).map((row) => row.table)).toEqual([
      'sys_call_table',
    ]);
    context.image.patchVirtual(context.kernel.space, rel32At, displacement);

    const rows = hookedOf((await timedSyscalls(context)).rows);
    expect(rows).toContainEqual({
      table: 'x64_sys_call',
      kind: 'dispatcher',
      index: 59,
      name: 'execve',
      address: hex(hook),
      symbol: 'labkit_hook',
      owner: 'labkit',
      hooked: true,
    });
    // The table entry still points to the real handler, which is no longer what runs: only the dispatcher row says so.
    expect(rows.map((row) => `${String(row.table)}[${String(row.index)}]`)).toEqual([
      'sys_call_table[217]',
      'x64_sys_call[59]',
    ]);
  });

  it('a dispatcher it cannot follow: partial, and the table is still checked symbol by symbol', async () => {
    const context = new OverlayContext(rootkit);
    // mov %rsi,%rax and a nop over x64_sys_call's first five bytes (its ftrace nop).
    context.image.patchVirtual(
      context.kernel.space,
      (await context.profile()).requireSymbol('x64_sys_call'),
      Uint8Array.from([0x48, 0x89, 0xf0, 0x66, 0x90]),
    );
    const result = await timedSyscalls(context);
    expect(result.partial).toBe(true);
    expect(result.warnings).toEqual([
      expect.stringMatching(/^x64_sys_call: syscalls 0-4294967295 not checked: cannot decode instruction bytes 4889f0/),
    ]);
    expect(hookedOf(result.rows).map((row) => [row.index, row.owner])).toEqual([[217, 'labkit']]);
  });
});
