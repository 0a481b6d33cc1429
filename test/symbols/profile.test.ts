import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { exportIsf } from '../../src/analyses/isfExport.js';
import { parseIsf } from '../../src/symbols/isf.js';
import { Profile } from '../../src/symbols/profile.js';
import { VmscopeError } from '../../src/util/errors.js';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vmscope-profile-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** One dump per snapshot (the first format it has). */
const snapshots = snapshotNames().map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);

const FIELDS: Record<string, string[]> = {
  task_struct: ['tasks', 'pid', 'tgid', 'comm', 'mm', 'real_parent', 'children', 'sibling', 'cred'],
  mm_struct: ['pgd', 'arg_start', 'arg_end', 'env_start', 'env_end'],
  list_head: ['next', 'prev'],
  module: ['list', 'name', 'state'],
};

function readCString(context: DumpContext, address: bigint, max: number): string {
  const bytes = new Uint8Array(max);
  context.kernel.space.read(address, bytes);
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(bytes.subarray(0, end < 0 ? max : end));
}

describe.each(snapshots)('profile derived from $name ($format) alone', ({ name, format }) => {
  let context: DumpContext;
  let profile: Profile;
  beforeAll(async () => {
    context = new DumpContext(fixturePath(name, format), { cacheDir: false });
    profile = await context.profile();
  });
  afterAll(() => context.close());

  it('layouts are right: init_task is "swapper/0" and one hop of tasks reaches pid 1', () => {
    const { space } = context.kernel;
    const initTask = profile.requireSymbol('init_task');
    expect(readCString(context, initTask + BigInt(profile.offsetOf('task_struct', 'comm')), 16)).toBe('swapper/0');
    const tasksOffset = BigInt(profile.offsetOf('task_struct', 'tasks'));
    const next = space.readU64(initTask + tasksOffset + BigInt(profile.offsetOf('list_head', 'next')));
    const first = next - tasksOffset;
    const pidBytes = new Uint8Array(4);
    space.read(first + BigInt(profile.offsetOf('task_struct', 'pid')), pidBytes);
    expect(new DataView(pidBytes.buffer).getInt32(0, true)).toBe(1);
    const init = (truth(name).processes as Array<{ pid: number; comm: string }>).find((process) => process.pid === 1)!;
    expect(readCString(context, first + BigInt(profile.offsetOf('task_struct', 'comm')), 16)).toBe(init.comm);
    // real_parent of pid 1 is init_task itself
    expect(space.readU64(first + BigInt(profile.offsetOf('task_struct', 'real_parent')))).toBe(initTask);
  });

  it('has every field the analyses need, inside its struct', () => {
    for (const [struct, fields] of Object.entries(FIELDS)) {
      const size = profile.sizeOf(struct);
      for (const field of fields) {
        const offset = profile.offsetOf(struct, field);
        expect(offset, `${struct}.${field}`).toBeGreaterThanOrEqual(0);
        expect(offset, `${struct}.${field}`).toBeLessThan(size);
      }
    }
    expect(profile.sizeOf('list_head')).toBe(16);
    const comm = profile.field('task_struct', 'comm').type;
    expect(comm).toMatchObject({ kind: 'array', count: 16 });
    // module memory layout: core_layout until 6.3, mem[] since 6.4
    const release = truth(name).kernel.release;
    const layoutField = release.startsWith('6.1.') ? 'core_layout' : 'mem';
    expect(profile.hasField('module', layoutField), `${release} module.${layoutField}`).toBe(true);
    expect(profile.hasField('module', layoutField === 'mem' ? 'core_layout' : 'mem')).toBe(false);
  });

  it('symbolAt finds the nearest symbol below an address', () => {
    const initTask = profile.requireSymbol('init_task');
    expect(profile.symbolAt(initTask)).toMatchObject({ symbol: { name: 'init_task' }, offset: 0n });
    expect(profile.symbolAt(initTask + 24n)).toMatchObject({ symbol: { name: 'init_task' }, offset: 24n });
    const table = (truth(name).sys_call_table as { entries: Array<{ value: string; symbol: string }> }).entries[0]!;
    expect(profile.symbolAt(BigInt(table.value))?.symbol.name).toBe(table.symbol);
    // The next symbol bounds init_task, and the aliases at _text all come back together.
    const after = profile.symbolAfter(initTask)!;
    expect(after.address).toBeGreaterThan(initTask);
    expect(profile.symbolAt(after.address - 1n)?.symbol.address).toBeLessThanOrEqual(initTask);
    const text = profile.requireSymbol('_text');
    expect(profile.symbolsAt(text).map((symbol) => symbol.name)).toEqual(expect.arrayContaining(['_text', '_stext']));
  });

  it('exported ISF round-trips to identical answers', async () => {
    const text = await exportIsf(context);
    const document = parseIsf(text, 'exported.json');
    expect(document.metadata.format).toMatch(/^6\./);
    expect(Buffer.from(document.symbols.linux_banner!.constant_data!, 'base64').toString('latin1')).toBe(
      context.kernel.banner,
    );
    const reloaded = Profile.fromIsf(document, context.kernel.kaslrSlide, 'isf', 'exported.json');
    for (const [struct, fields] of Object.entries(FIELDS)) {
      expect(reloaded.sizeOf(struct)).toBe(profile.sizeOf(struct));
      for (const field of fields) expect(reloaded.field(struct, field)).toEqual(profile.field(struct, field));
    }
    expect(reloaded.types).toEqual(profile.types);
    const names = new Set(profile.symbolList.map((symbol) => symbol.name));
    expect(Object.keys(document.symbols).length).toBe(names.size);
    for (const symbolName of names) expect(reloaded.symbol(symbolName), symbolName).toBe(profile.symbol(symbolName));
  });
});

describe('profile cache and --isf', () => {
  const name = 'linux61-clean';

  it('a second run on the same kernel loads the cached profile instead of decoding again', async () => {
    const cacheDir = join(work, 'cache');
    const first = new DumpContext(fixturePath(name, 'elf'), { cacheDir });
    const derived = await first.profile();
    first.close();
    expect(derived.origin).toBe('derived');
    // The same kernel in another snapshot format: the banner matches, so the cache answers.
    const second = new DumpContext(fixturePath(name, 'lime'), { cacheDir });
    const cached = await second.profile();
    second.close();
    expect(cached.origin).toBe('cache');
    expect(cached.symbolList).toEqual(derived.symbolList);
    expect(cached.types).toEqual(derived.types);
    // The cache's name and address orders answer as the derived profile's maps do, local duplicates and aliases included.
    for (const [at, symbol] of derived.symbolList.entries()) {
      if (at % 37 !== 0 && !/^__(start|stop)_/.test(symbol.name)) continue;
      expect(cached.symbol(symbol.name), symbol.name).toBe(derived.symbol(symbol.name));
      for (const address of [symbol.address, symbol.address + 1n, symbol.address - 1n]) {
        expect(cached.symbolAt(address), symbol.name).toEqual(derived.symbolAt(address));
        expect(cached.symbolsAt(address), symbol.name).toEqual(derived.symbolsAt(address));
        expect(cached.symbolAfter(address), symbol.name).toEqual(derived.symbolAfter(address));
      }
    }
    expect(cached.symbol('no_such_symbol_anywhere')).toBeUndefined();
    // Only the enums whose text holds the prefix are decoded from the cache: the constants are those of every enum.
    for (const prefix of [
      'FTRACE_OPS_FL_',
      'FTRACE_FL_',
      'NFPROTO_',
      'NF_INET_',
      'BPF_FUNC_',
      'PIDTYPE_',
      'TASK_',
      'NO_SUCH_',
    ])
      expect(cached.enumConstants(prefix), prefix).toEqual(derived.enumConstants(prefix));
    expect(cached.symbolAt(0n)).toEqual(derived.symbolAt(0n));
  });

  it('an ISF given by the user is used, compressed or not, and one for another kernel is refused', async () => {
    const source = new DumpContext(fixturePath(name, 'elf'), { cacheDir: false });
    const isfPath = join(work, 'linux61.json');
    writeFileSync(isfPath, await exportIsf(source));
    const derived = await source.profile();
    source.close();
    const rootkitDerived = new DumpContext(fixturePath('linux61-rootkit', 'lime'), { cacheDir: false });
    const rootkitInitTask = (await rootkitDerived.profile()).symbol('init_task');
    rootkitDerived.close();
    execFileSync('xz', ['-k', '-1', isfPath]);
    for (const isf of [isfPath, `${isfPath}.xz`]) {
      const context = new DumpContext(fixturePath('linux61-rootkit', 'lime'), { isf });
      const profile = await context.profile();
      expect(profile.origin).toBe('isf');
      expect(profile.offsetOf('task_struct', 'tasks')).toBe(derived.offsetOf('task_struct', 'tasks'));
      // Another boot of the same build: the ISF's link-time addresses follow this dump's slide.
      expect(profile.symbol('init_task')).toBe(rootkitInitTask);
      context.close();
    }
    const other = new DumpContext(fixturePath('linux612-clean', 'elf'), { isf: isfPath });
    await expect(other.profile()).rejects.toThrow(VmscopeError);
    other.close();
  });
});
