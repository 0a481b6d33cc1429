import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { readGuestClock } from '../../src/os/linux/guestClock.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import type { Profile } from '../../src/symbols/profile.js';
import { render } from '../../src/cli/render.js';
import { escapeControl } from '../../src/util/text.js';
import { fixturePath, snapshotNames, manifest } from '../support/fixtures.js';

/**
 * Output paths a new user hits first: big tables, pipes closed early, hostile strings in what
 * is printed for a person, and the guest clock on kernels whose timekeeper moved.
 */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'vmscope-output-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const env = { ...process.env, VMSCOPE_CACHE_DIR: join(work, 'profiles') };
const cli = join(repoRoot, 'bin/vmscope.js');

/** A shell pipeline with pipefail: the exit code is vmscope's unless `head` fails. */
function pipeline(command: string) {
  const result = spawnSync('bash', ['-o', 'pipefail', '-c', command], { encoding: 'utf8', env, maxBuffer: 64 << 20 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** One dump per snapshot (its first format). */
const oneDumpEach = snapshotNames().map((name) => {
  const format = (['elf', 'raw', 'lime'] as const).find(
    (candidate) => candidate in manifest().snapshots[name]!.formats,
  )!;
  return { name, format };
});

describe('kallsyms prints a table of every symbol', () => {
  it.each(oneDumpEach)('$name: every symbol as a table, in under 2 s of CPU with a warm cache', ({ name, format }) => {
    const dump = fixturePath(name, format);
    spawnSync(process.execPath, [cli, 'info', dump], { env }); // warms the profile cache
    // GNU time's user+system seconds of vmscope alone, on the last line of stderr.
    const result = spawnSync('/usr/bin/time', ['-f', '%U %S', process.execPath, cli, 'kallsyms', dump], {
      encoding: 'utf8',
      env,
      maxBuffer: 256 << 20,
    });
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^Address\s+Type\s+Name$/);
    const vmlinuxSymbols = readFileSync(fixturePath(name, 'kallsyms.txt'), 'utf8')
      .split('\n')
      .filter((line) => line !== '' && !line.includes('['));
    expect(lines.length - 1).toBeGreaterThanOrEqual(vmlinuxSymbols.length * 0.99);
    const [user, system] = result.stderr.trim().split('\n').at(-1)!.split(' ').map(Number) as [number, number];
    expect(user + system).toBeLessThan(2);
  });
});

describe('a reader that closes the pipe ends the command quietly with exit 0', () => {
  it('--help piped into head -1', () => {
    const { code, stdout, stderr } = pipeline(`node ${cli} pslist --help | head -1`);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: vmscope pslist/);
    expect(stderr).toBe('');
  });

  it.each(['--json', '--ndjson', ''])('kallsyms %s past 64 KiB piped into head -1', (format) => {
    const dump = fixturePath('linux612-clean', 'elf');
    const { code, stdout, stderr } = pipeline(`node ${cli} kallsyms ${dump} ${format} | head -1`);
    expect(code).toBe(0);
    expect(stdout.split('\n').length).toBe(2);
    expect(stderr).toBe('');
  });
});

describe('guest strings are escaped in what a person reads', () => {
  it('control characters become \\xNN, printable text stays', () => {
    expect(escapeControl('fake\n999 1 root\x1b[2J\x07\x9b')).toBe('fake\\x0a999 1 root\\x1b[2J\\x07\\x9b');
    expect(escapeControl('lab_worker-3 /tmp/ok')).toBe('lab_worker-3 /tmp/ok');
  });

  it('a comm forging a table row in a copy of a real dump prints as one escaped row', async () => {
    const copy = join(work, 'forged.raw');
    copyFileSync(fixturePath('linux61-clean', 'raw'), copy);
    // Write the forged name into a user process's task_struct.comm in the copy (raw: file offset = physical).
    const context = new DumpContext(copy, { cacheDir: join(work, 'profiles') });
    let pid: number;
    try {
      const reader = await context.get(readerProvider);
      const victim = (await context.get(taskListProvider)).tasks.find((task) => !task.kernelThread)!;
      pid = victim.pid;
      const comm = context.kernel.space.translate(victim.task + reader.offset('task_struct', 'comm')).physical;
      const { openSync, writeSync, closeSync } = await import('node:fs');
      const fd = openSync(copy, 'r+');
      const forged = Buffer.from('x\n999 1 r\x1b[2J\0', 'latin1');
      writeSync(fd, forged, 0, forged.length, comm);
      closeSync(fd);
    } finally {
      context.close();
    }
    const result = spawnSync(process.execPath, [cli, 'pslist', copy, '--no-cache'], { encoding: 'utf8', env });
    expect(result.status).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines.some((line) => /^\s*999\s/.test(line))).toBe(false);
    expect(result.stdout).not.toMatch(/\x1b/);
    const row = lines.find((line) => new RegExp(`^\\s*${pid}\\s`).test(line))!;
    expect(row).toContain('x\\x0a999 1 r\\x1b[2J');
    // JSON keeps the exact bytes, escaped as JSON escapes them.
    const json = JSON.parse(
      spawnSync(process.execPath, [cli, 'pslist', copy, '--json'], { encoding: 'utf8', env }).stdout,
    ) as Array<{ pid: number; comm: string }>;
    expect(json.find((entry) => entry.pid === pid)!.comm).toBe('x\n999 1 r\x1b[2J');
  });

  it('a rendered table never holds a raw control character', () => {
    const text = render(
      {
        columns: [{ key: 'comm', kind: 'text', title: 'Command' }],
        rows: [{ comm: 'a\nb' }, { comm: ['c\rd'] }],
        single: false,
        partial: false,
        warnings: [],
      },
      'table',
    );
    expect(text).toBe('Command\na\\x0ab\nc\\x0dd\n');
  });
});

describe('the guest clock', () => {
  it('is found through timekeeper_data[0] on kernels without tk_core (6.16+)', async () => {
    const context = new DumpContext(fixturePath('linux612-clean', 'elf'), { cacheDir: join(work, 'profiles') });
    try {
      const reader = await context.get(readerProvider);
      const clock = readGuestClock(reader)!;
      expect(clock).toBeInstanceOf(Date);
      const tkCore = reader.profile.requireSymbol('tk_core');
      // The same kernel as 6.16 lays it out: no tk_core, the core timekeeper first in timekeeper_data.
      const moved = Object.create(reader.profile) as Profile;
      moved.symbol = (name: string) =>
        name === 'tk_core' ? undefined : name === 'timekeeper_data' ? tkCore : reader.profile.symbol(name);
      expect(readGuestClock(new KernelReader(context.kernel.space, moved))).toEqual(clock);
      const neither = Object.create(reader.profile) as Profile;
      neither.symbol = (name: string) =>
        name === 'tk_core' || name === 'timekeeper_data' ? undefined : reader.profile.symbol(name);
      expect(readGuestClock(new KernelReader(context.kernel.space, neither))).toBeUndefined();
    } finally {
      context.close();
    }
  });
});
