import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { diffSnapshots, type DiffRow } from '../../src/monitor/diff.js';
import type { SnapshotProcess, SnapshotSummary, SnapshotSyscall } from '../../src/monitor/snapshot.js';
import { summarizeSnapshot } from '../../src/monitor/summarize.js';
import { VmscopeError } from '../../src/util/errors.js';
import { syntheticSummary } from '../support/summaries.js';
import { fixturePath, truth, type FixtureFormat } from '../support/fixtures.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-diff-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** Each dump is summarized once for the whole file. */
const summaries = new Map<string, Promise<SnapshotSummary>>();
function summary(name: string, format: FixtureFormat): Promise<SnapshotSummary> {
  const path = fixturePath(name, format);
  let pending = summaries.get(path);
  if (!pending) {
    const context = new DumpContext(path, { cacheDir });
    pending = summarizeSnapshot(context).finally(() => context.close());
    summaries.set(path, pending);
  }
  return pending;
}

interface ProcessTruth {
  pid: number;
  comm: string;
}
/** The t0 → t1 changes, from whichever of the pair's truth files records them. */
function pairChanges(): { killed: ProcessTruth; started: ProcessTruth } {
  for (const name of ['linux61-t0', 'linux61-t1']) {
    const diff = truth(name).diff as { killed?: ProcessTruth; started?: ProcessTruth } | null;
    if (diff?.killed && diff.started) return { killed: diff.killed, started: diff.started };
  }
  throw new Error('neither linux61-t0 nor linux61-t1 records the killed and started processes');
}

const brief = (row: DiffRow) => ({ kind: row.kind, change: row.change, pid: row.pid, comm: row.comm });

describe('diffSnapshots on real snapshots', () => {
  it('t0 → t1: exactly the killed process ended and the new one started', async () => {
    const { killed, started } = pairChanges();
    const rows = diffSnapshots(await summary('linux61-t0', 'elf'), await summary('linux61-t1', 'elf'));
    expect(rows.map(brief)).toEqual(
      [
        { kind: 'process', change: 'ended', pid: killed.pid, comm: killed.comm },
        { kind: 'process', change: 'started', pid: started.pid, comm: started.comm },
      ].sort((a, b) => a.pid - b.pid),
    );
    const startedRow = rows.find((row) => row.change === 'started')!;
    expect(startedRow.detail).toContain(`/bin/${started.comm}`);
  });

  it('t1 → t0: the reverse', async () => {
    const { killed, started } = pairChanges();
    const rows = diffSnapshots(await summary('linux61-t1', 'elf'), await summary('linux61-t0', 'elf'));
    expect(rows.map(brief)).toEqual(
      [
        { kind: 'process', change: 'started', pid: killed.pid, comm: killed.comm },
        { kind: 'process', change: 'ended', pid: started.pid, comm: started.comm },
      ].sort((a, b) => a.pid - b.pid),
    );
  });

  it('one snapshot in two formats has no differences at all', async () => {
    const elf = await summary('linux61-clean', 'elf');
    const lime = await summary('linux61-clean', 'lime');
    expect(elf.processes.length).toBeGreaterThan(0);
    expect(diffSnapshots(elf, lime, { includeKernelThreads: true })).toEqual([]);
    expect(diffSnapshots(lime, elf)).toEqual([]);
  });

  it('refuses two different kernels, naming both files and both banners', async () => {
    const before = await summary('linux61-t0', 'elf');
    const after = await summary('linux612-clean', 'elf');
    let error: unknown;
    try {
      diffSnapshots(before, after);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(VmscopeError);
    const { message } = error as VmscopeError;
    expect(message).toContain(before.path);
    expect(message).toContain(after.path);
    expect(message).toContain(truth('linux61-t0').kernel.linux_banner.trimEnd());
    expect(message).toContain(truth('linux612-clean').kernel.linux_banner.trimEnd());
  });

  it("clean → rootkit (another boot of the same kernel): the rootkit's hidden process, hidden module and hook", async () => {
    expect(truth('linux61-clean').kernel.linux_banner).toBe(truth('linux61-rootkit').kernel.linux_banner);
    const { rootkit } = truth('linux61-rootkit') as unknown as {
      rootkit: {
        hidden_process: { pid: number; comm: string };
        module: { name: string; struct_module: string };
        syscall_hook: { index: number; syscall: string; hooked: string; original_symbol: string };
      };
    };
    const clean = await summary('linux61-clean', 'elf');
    const infected = await summary('linux61-rootkit', 'lime');
    const rows = diffSnapshots(clean, infected);
    const integrity = rows.filter((row) => row.kind !== 'process');
    expect(
      integrity.map((row) => ({ kind: row.kind, change: row.change, pid: row.pid, name: row.name, comm: row.comm })),
    ).toEqual([
      // No syscall row but the hook: entries compare by symbol, which KASLR does not move.
      { kind: 'syscall', change: 'changed', pid: null, name: rootkit.syscall_hook.syscall, comm: null },
      {
        kind: 'hidden_process',
        change: 'appeared',
        pid: rootkit.hidden_process.pid,
        name: null,
        comm: rootkit.hidden_process.comm,
      },
      { kind: 'hidden_module', change: 'appeared', pid: null, name: rootkit.module.name, comm: null },
    ]);
    const [hook, , module] = integrity;
    expect(hook!.detail).toContain(`sys_call_table[${rootkit.syscall_hook.index}]`);
    expect(hook!.detail).toContain(rootkit.syscall_hook.original_symbol);
    expect(hook!.detail).toContain(`${BigInt(rootkit.syscall_hook.hooked).toString(16)}, hooked)`);
    expect(module!.detail).toContain(BigInt(rootkit.module.struct_module).toString(16));

    const reverse = diffSnapshots(infected, clean).filter(
      (row) => row.kind === 'hidden_process' || row.kind === 'hidden_module',
    );
    expect(reverse.map((row) => row.change)).toEqual(['disappeared', 'disappeared']);
  });
});

describe('diffSnapshots on synthetic summaries', () => {
  const banner = 'Linux version 6.1.0-test (synthetic)\n';
  const process = (
    pid: number,
    startTime: bigint,
    comm: string,
    cmdline: string[] | null,
    kernelThread = false,
  ): SnapshotProcess => ({
    pid,
    ppid: 1,
    comm,
    cmdline,
    startTime,
    kernelThread,
  });
  const syscall = (index: number, value: bigint, symbol: string | null, hooked = false): SnapshotSyscall => ({
    table: 'sys_call_table',
    index,
    name: `call${index}`,
    value,
    symbol,
    hooked,
  });
  const snapshot = (path: string, parts: Partial<SnapshotSummary>): SnapshotSummary =>
    syntheticSummary({ path, banner, ...parts });

  it('a reused pid is one process ended and another started', () => {
    const rows = diffSnapshots(
      snapshot('a', { processes: [process(300, 5_000_000_000n, 'sshd', ['/usr/sbin/sshd'])] }),
      snapshot('b', { processes: [process(300, 9_000_000_000n, 'nc', ['nc', '-l', '4444'])] }),
    );
    expect(rows.map(brief)).toEqual([
      { kind: 'process', change: 'ended', pid: 300, comm: 'sshd' },
      { kind: 'process', change: 'started', pid: 300, comm: 'nc' },
    ]);
    expect(rows[1]!.detail).toContain('nc -l 4444');
  });

  it('the same process with a new argv or comm is changed, old → new; an unreadable argv is no change', () => {
    const rows = diffSnapshots(
      snapshot('a', {
        processes: [
          process(10, 1n, 'worker', ['worker', '--idle']),
          process(11, 2n, 'sh', ['sh']),
          process(12, 3n, 'db', ['db', '-p', '1']),
        ],
      }),
      snapshot('b', {
        processes: [
          process(10, 1n, 'worker', ['worker', '--busy']),
          process(11, 2n, 'miner', ['miner', '-o', 'pool']),
          process(12, 3n, 'db', null),
        ],
      }),
    );
    expect(rows).toEqual([
      {
        kind: 'process',
        change: 'changed',
        pid: 10,
        name: null,
        comm: 'worker',
        detail: 'cmdline worker --idle → worker --busy',
      },
      {
        kind: 'process',
        change: 'changed',
        pid: 11,
        name: null,
        comm: 'miner',
        detail: 'comm sh → miner; cmdline sh → miner -o pool',
      },
    ]);
  });

  it('kernel threads count only when asked for', () => {
    const before = snapshot('a', { processes: [process(50, 1n, 'kworker/0:1', null, true)] });
    const after = snapshot('b', { processes: [process(51, 2n, 'kworker/0:2', null, true)] });
    expect(diffSnapshots(before, after)).toEqual([]);
    expect(diffSnapshots(before, after, { includeKernelThreads: true }).map(brief)).toEqual([
      { kind: 'process', change: 'ended', pid: 50, comm: 'kworker/0:1' },
      { kind: 'process', change: 'started', pid: 51, comm: 'kworker/0:2' },
    ]);
  });

  it('syscalls compare by symbol (KASLR moves values), by value when unresolved', () => {
    const rows = diffSnapshots(
      snapshot('a', { syscalls: [syscall(0, 0x1000n, 'read'), syscall(1, 0x2000n, null), syscall(2, 0x3000n, null)] }),
      snapshot('b', {
        syscalls: [syscall(0, 0x9000n, 'read'), syscall(1, 0x2000n, null), syscall(2, 0x3100n, null, true)],
      }),
    );
    expect(rows).toEqual([
      {
        kind: 'syscall',
        change: 'changed',
        pid: null,
        name: 'call2',
        comm: null,
        detail: 'sys_call_table[2]: ? (0x3000) → ? (0x3100, hooked)',
      },
    ]);
  });

  it('modules load and unload by name; hidden ones appear and disappear', () => {
    const rows = diffSnapshots(
      snapshot('a', {
        modules: [{ name: 'e1000', address: 0x10n }],
        hiddenModules: [{ name: 'old_kit', address: 0x20n }],
      }),
      snapshot('b', {
        modules: [
          { name: 'e1000', address: 0x99n },
          { name: 'nf_tables', address: 0x30n },
        ],
        hiddenModules: [{ name: 'new_kit', address: 0x40n }],
      }),
    );
    expect(rows.map((row) => [row.kind, row.change, row.name])).toEqual([
      ['module', 'loaded', 'nf_tables'],
      ['hidden_module', 'appeared', 'new_kit'],
      ['hidden_module', 'disappeared', 'old_kit'],
    ]);
  });

  it('signatures compare by (rule, string, pid), and only when both summaries have them', () => {
    const hit = (rule: string, string: string, pid: number | null) => ({
      rule,
      string,
      pid,
      comm: pid === null ? null : 'p',
    });
    const before = snapshot('a', { signatures: [hit('eicar', '$s', 7), hit('marker', '$a', 8)] });
    const after = snapshot('b', {
      signatures: [hit('eicar', '$s', 7), hit('marker', '$a', 9), hit('marker', '$a', null)],
    });
    expect(diffSnapshots(before, after).map((row) => [row.kind, row.change, row.name, row.pid])).toEqual([
      ['signature', 'appeared', 'marker', null],
      ['signature', 'disappeared', 'marker', 8],
      ['signature', 'appeared', 'marker', 9],
    ]);
    expect(diffSnapshots(before, snapshot('b', {}))).toEqual([]);
  });

  it('row order does not depend on input order', () => {
    const processes = [process(3, 3n, 'c', ['c']), process(1, 1n, 'a', ['a']), process(2, 2n, 'b', ['b'])];
    const forward = diffSnapshots(snapshot('a', { processes }), snapshot('b', {}));
    const backward = diffSnapshots(snapshot('a', { processes: [...processes].reverse() }), snapshot('b', {}));
    expect(forward).toEqual(backward);
    expect(forward.map((row) => row.pid)).toEqual([1, 2, 3]);
  });
});

/** The bundled CLI as a user runs it (npm run build first). */
function vmscope(...args: string[]) {
  const result = spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, VMSCOPE_CACHE_DIR: cacheDir },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('vmscope diff', () => {
  it('prints the changes as JSON rows and exits 1', () => {
    const { killed, started } = pairChanges();
    const { code, stdout, stderr } = vmscope(
      'diff',
      '--json',
      fixturePath('linux61-t0', 'elf'),
      fixturePath('linux61-t1', 'elf'),
    );
    expect(stderr).toBe('');
    expect(code).toBe(1);
    const rows = JSON.parse(stdout) as Array<Record<string, unknown>>;
    expect(rows.map((row) => Object.keys(row))).toEqual(
      rows.map(() => ['kind', 'change', 'pid', 'name', 'comm', 'detail']),
    );
    expect(rows.map((row) => [row.kind, row.change, row.pid, row.name, row.comm])).toEqual(
      [
        ['process', 'ended', killed.pid, null, killed.comm],
        ['process', 'started', started.pid, null, started.comm],
      ].sort((a, b) => (a[2] as number) - (b[2] as number)),
    );
  });

  it('--rules adds the signature hits that appeared: the new process holds its own name', () => {
    const { started } = pairChanges();
    const rules = join(cacheDir, 'newcomer.yar');
    writeFileSync(rules, `rule newcomer_name { strings: $name = "${started.comm}" condition: $name }`);
    const { code, stdout } = vmscope(
      'diff',
      '--json',
      '--rules',
      rules,
      fixturePath('linux61-t0', 'elf'),
      fixturePath('linux61-t1', 'elf'),
    );
    expect(code).toBe(1);
    const signatures = (JSON.parse(stdout) as Array<Record<string, unknown>>).filter((row) => row.kind === 'signature');
    expect(signatures.filter((row) => row.pid === started.pid).map((row) => [row.change, row.comm])).toEqual([
      ['appeared', started.comm],
    ]);
    expect(signatures.every((row) => row.change === 'appeared' || row.pid !== started.pid)).toBe(true);
  });

  it('exits 0 with no rows when nothing changed', () => {
    const { code, stdout } = vmscope(
      'diff',
      fixturePath('linux61-clean', 'elf'),
      fixturePath('linux61-clean', 'lime'),
      '--ndjson',
    );
    expect(code).toBe(0);
    expect(stdout).toBe('');
  });

  it('refuses different kernels: exit 2, one line naming both banners', () => {
    const { code, stdout, stderr } = vmscope(
      'diff',
      '--json',
      fixturePath('linux61-t0', 'elf'),
      fixturePath('linux612-clean', 'elf'),
    );
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(stderr).toContain('USAGE');
    expect(stderr).toContain(truth('linux61-t0').kernel.release);
    expect(stderr).toContain(truth('linux612-clean').kernel.linux_banner.trimEnd());
  });

  it('--help explains the rows, the exit codes and gives an example', () => {
    const { code, stdout } = vmscope('diff', '--help');
    expect(code).toBe(0);
    expect(stdout).toContain('--include-kernel-threads');
    expect(stdout).toMatch(/Exit code 1 when anything changed/);
    expect(stdout).toMatch(/vmscope diff \S+ \S+/);
  });
});
