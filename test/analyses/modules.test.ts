import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { hiddenModulesAnalysis } from '../../src/analyses/hiddenModules.js';
import { lsmodAnalysis } from '../../src/analyses/lsmod.js';
import type { Analysis, AnalysisResult } from '../../src/analyses/types.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import { MODULES_END, MODULES_VADDR } from '../../src/os/linux/layout.js';
import { hex, parseHex } from '../../src/util/hex.js';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';
import { OverlayContext } from '../support/overlay.js';
import { materialized } from '../support/rows.js';

interface RootkitTruth {
  module: { name: string; struct_module: string; base: string; text_size: number; list_head: string };
}

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-modules-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** One dump per snapshot (the first format it has). */
const snapshots = snapshotNames().map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);

describe.each(snapshots)('modules of $name ($format)', ({ name, format }) => {
  let context: DumpContext;
  const expected = truth(name);
  const rootkit = expected.rootkit as RootkitTruth | undefined;
  beforeAll(async () => {
    context = new DumpContext(fixturePath(name, format), { cacheDir });
    await context.profile();
  });
  afterAll(() => context.close());

  it('lsmod lists exactly /proc/modules', async () => {
    const result = await lsmodAnalysis.run(context);
    expect(result.partial).toBe(false);
    expect(result.warnings).toEqual([]);
    expect(result.rows.map((row) => row.name)).toEqual(
      (expected.modules as Array<{ name: string }>).map((module) => module.name),
    );
  });

  it(
    rootkit
      ? `hidden-modules reports ${rootkit.module.name}, found by all three sources`
      : 'hidden-modules reports nothing',
    async () => {
      const result = await hiddenModulesAnalysis.run(context);
      expect(result.partial).toBe(false);
      expect(result.warnings).toEqual([]);
      const hidden = rootkit
        ? [
            {
              name: rootkit.module.name,
              struct_module: rootkit.module.struct_module,
              base: rootkit.module.base,
              size: rootkit.module.text_size,
              found_by: 'scan,mod_tree,sysfs',
            },
          ]
        : [];
      expect(result.rows).toEqual(hidden);
    },
  );
});

/**
 * The rootkit snapshot with its module list rewritten in memory. The guest lists no module, so
 * relinking the hidden module is also how lsmod is shown to read a real struct module right.
 */
describe('a rewritten module list in linux61-rootkit', () => {
  const HANG_GUARD_MS = 2000;
  const rootkit = (truth('linux61-rootkit').rootkit as RootkitTruth).module;
  const labkitList = parseHex(rootkit.list_head);
  let base: DumpContext;
  let reader: KernelReader;
  let head: bigint;
  beforeAll(async () => {
    base = new DumpContext(fixturePath('linux61-rootkit', 'lime'), { cacheDir });
    reader = new KernelReader(base.kernel.space, await base.profile());
    head = reader.profile.requireSymbol('modules');
  });
  afterAll(() => base.close());

  const prev = (node: bigint) => node + reader.offset('list_head', 'prev');
  const labkitRow = () => ({
    name: rootkit.name,
    base: rootkit.base,
    size: rootkit.text_size,
    state: 'MODULE_STATE_LIVE',
    refcount: 0,
  });

  async function timed(analysis: Analysis, context: DumpContext): Promise<AnalysisResult> {
    const started = performance.now();
    const result = await materialized(analysis.run(context));
    const elapsed = performance.now() - started;
    console.log(
      `${analysis.name}: ${elapsed.toFixed(1)} ms, ${result.rows.length} rows, warnings: ${JSON.stringify(result.warnings)}`,
    );
    expect(elapsed).toBeLessThan(HANG_GUARD_MS);
    return result;
  }

  it('relinked: lsmod shows the module with its base, size, state and users, and nothing is hidden', async () => {
    const context = new OverlayContext(base);
    for (const link of [head, prev(head)]) context.patchKernelU64(link, labkitList);
    for (const link of [labkitList, prev(labkitList)]) context.patchKernelU64(link, head);
    const listed = await timed(lsmodAnalysis, context);
    expect(listed.partial).toBe(false);
    expect(listed.rows).toEqual([labkitRow()]);
    expect((await timed(hiddenModulesAnalysis, context)).rows).toEqual([]);
  });

  it.each([
    ['the head reaches the module, whose next points to itself', false],
    ['the same, and the backward links loop too', true],
  ])('a loop (%s) ends promptly as a partial list', async (_, backwardLoop) => {
    const context = new OverlayContext(base);
    context.patchKernelU64(head, labkitList);
    context.patchKernelU64(labkitList, labkitList);
    if (backwardLoop) for (const link of [prev(head), prev(labkitList)]) context.patchKernelU64(link, labkitList);
    const result = await timed(lsmodAnalysis, context);
    expect(result.partial).toBe(true);
    expect(result.warnings.join('\n')).toMatch(/module list: list loops back to 0x[0-9a-f]+/);
    expect(result.rows).toEqual([labkitRow()]);
  });

  it('the head pointing to an unmapped address: partial, with the address in the warning', async () => {
    const context = new OverlayContext(base);
    const nowhere = context.kernel.pageOffsetBase + (1n << 44n);
    expect(context.kernel.space.tryTranslate(nowhere)).toBeUndefined();
    context.patchKernelU64(head, nowhere);
    const result = await timed(lsmodAnalysis, context);
    expect(result.partial).toBe(true);
    expect(result.warnings.join('\n')).toContain(nowhere.toString(16));
    expect(result.rows).toEqual([]);
  });

  it('also gone from mod_tree and sysfs: the scan of the module area alone still finds it', async () => {
    const context = new OverlayContext(base);
    const trees =
      reader.profile.requireSymbol('mod_tree') +
      reader.offset('mod_tree_root', 'root') +
      reader.offset('latch_tree_root', 'tree');
    for (const latch of [0n, 1n]) context.patchKernelU64(trees + latch * BigInt(reader.profile.sizeOf('rb_root')), 0n);
    // Unlink the module's kobject from the module_kset list, as kobject_del would.
    const kobjectEntry =
      parseHex(rootkit.struct_module) + reader.offset('module', 'mkobj') + reader.offset('kobject', 'entry');
    const next = reader.u64(kobjectEntry);
    const previous = reader.u64(prev(kobjectEntry));
    context.patchKernelU64(previous, next);
    context.patchKernelU64(prev(next), previous);
    const result = await timed(hiddenModulesAnalysis, context);
    expect(result.warnings).toEqual([]);
    expect(result.rows).toEqual([
      expect.objectContaining({ name: rootkit.name, struct_module: rootkit.struct_module, found_by: 'scan' }),
    ]);
  });

  it('a struct module that fails validation is not reported, but the sources that point at it are named', async () => {
    const context = new OverlayContext(base);
    // List links no kernel would leave (not a kernel address, not list_del's poison): the
    // candidate is rejected although mkobj.mod still points back. (Its name alone would not
    // do: a module can blank its own name, see test/analyses/evasion.test.ts.)
    context.patchKernelU64(parseHex(rootkit.struct_module) + reader.offset('module', 'list'), 0x0a0d0a0d0a0d0a0dn);
    const result = await timed(hiddenModulesAnalysis, context);
    expect(result.rows).toEqual([]);
    expect(result.partial).toBe(true);
    expect(result.warnings).toEqual([`mod_tree, sysfs: ${rootkit.struct_module} is not a valid struct module`]);
  });
});

/**
 * No module is loaded in the 6.12 guest, so its layout (`mem[]` instead of core_layout, since
 * 6.4) is shown with a struct module forged in memory: the fields lsmod and the scan read, over a
 * page of the module area.
 */
describe('a struct module forged in linux612-clean (mem[] layout)', () => {
  let base: DumpContext;
  let reader: KernelReader;
  beforeAll(async () => {
    base = new DumpContext(fixturePath('linux612-clean', 'elf'), { cacheDir });
    reader = new KernelReader(base.kernel.space, await base.profile());
  });
  afterAll(() => base.close());

  function forge(linked: boolean): { context: OverlayContext; module: bigint; text: bigint } {
    const context = new OverlayContext(base);
    const { profile } = reader;
    const run = [...context.kernel.space.mappings(MODULES_VADDR, MODULES_END)].find(
      (candidate) => candidate.length >= 0x3000,
    )!;
    const text = run.virtual;
    const module = run.virtual + 0x1000n;
    const at = (path: string) => module + reader.offset('module', path);
    const write = (address: bigint, bytes: Uint8Array) =>
      context.image.patchVirtual(context.kernel.space, address, bytes);
    write(at('name'), new TextEncoder().encode('forged\0'));
    write(at('state'), new Uint8Array(4)); // MODULE_STATE_LIVE
    write(at('refcnt'), Uint8Array.of(3, 0, 0, 0));
    context.patchKernelU64(at('mkobj.mod'), module);
    const stride = BigInt(profile.sizeOf('module_memory'));
    const memoryTypes = profile.field('module', 'mem').type;
    for (let type = 0n; type < BigInt(memoryTypes.kind === 'array' ? memoryTypes.count : 0); type++) {
      const memory = at('mem') + type * stride;
      context.patchKernelU64(memory + reader.offset('module_memory', 'base'), type === 0n ? text : 0n);
      write(memory + reader.offset('module_memory', 'size'), Uint8Array.of(0, type === 0n ? 0x10 : 0, 0, 0)); // 0x1000 bytes of text
    }
    const head = profile.requireSymbol('modules');
    const [next, prev] = linked ? [head, head] : [0xdead000000000100n, 0xdead000000000122n];
    context.patchKernelU64(at('list'), next);
    context.patchKernelU64(at('list') + reader.offset('list_head', 'prev'), prev);
    if (linked)
      for (const link of [head, head + reader.offset('list_head', 'prev')]) context.patchKernelU64(link, at('list'));
    return { context, module, text };
  }

  it('linked: lsmod reads its name, text base, total size and users from mem[]', async () => {
    const { context, text } = forge(true);
    const result = await lsmodAnalysis.run(context);
    expect(result.rows).toEqual([
      { name: 'forged', base: hex(text), size: 0x1000, state: 'MODULE_STATE_LIVE', refcount: 2 },
    ]);
    expect((await hiddenModulesAnalysis.run(context)).rows).toEqual([]);
  });

  it('unlinked: the scan finds it, and only the scan (it is in neither mod_tree nor sysfs)', async () => {
    const { context, module, text } = forge(false);
    const result = await hiddenModulesAnalysis.run(context);
    expect(result.warnings).toEqual([]);
    expect(result.rows).toEqual([
      { name: 'forged', struct_module: hex(module), base: hex(text), size: 0x1000, found_by: 'scan' },
    ]);
  });
});
