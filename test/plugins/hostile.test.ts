import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { pslistAnalysis } from '../../src/analyses/pslist.js';
import type { AnalysisResult } from '../../src/analyses/types.js';
import { pluginAnalysis, type PluginRunOptions } from '../../src/plugins/analysis.js';
import { loadPlugin } from '../../src/plugins/load.js';
import { fixturePath } from '../support/fixtures.js';
import { testManifest, watPlugin } from './watPlugin.js';
import { materialized } from '../support/rows.js';

const START = '(func (export "_start")';

/** One well-behaved plugin: after each hostile one, it and a built-in must give what they gave before. */
const wellBehaved = loadPlugin(
  watPlugin(testManifest('well-behaved'), {
    body: `(data (i32.const 1024) "fine") ${START} (call $row (i32.const 1024) (i32.const 4) (i32.const 1) (i32.const 2)))`,
  }),
  'well-behaved.wasm',
);

describe('hostile plugins', () => {
  let context: DumpContext;
  let before: { pslist: AnalysisResult; plugin: AnalysisResult };
  beforeAll(async () => {
    context = new DumpContext(fixturePath('linux61-clean', 'raw'), { cacheDir: false });
    before = {
      pslist: await pslistAnalysis.run(context),
      plugin: await materialized(pluginAnalysis(wellBehaved).run(context)),
    };
    expect(before.plugin.rows).toEqual([{ what: 'fine', a: 1, b: 2 }]);
  }, 120_000);
  afterAll(() => context?.close());

  const run = (bytes: Uint8Array<ArrayBuffer>, options: PluginRunOptions = {}) =>
    pluginAnalysis(loadPlugin(bytes, 'hostile.wasm'), options).run(context);

  /** What every hostile test ends with: the context still serves the analyses after it, unchanged. */
  async function othersUnaffected(): Promise<void> {
    expect(await pslistAnalysis.run(context)).toEqual(before.pslist);
    expect(await pluginAnalysis(wellBehaved).run(context)).toEqual(before.plugin);
  }

  it('opening /etc/passwd or ../shared fails: no preopened directory, argv is the name alone, the environment empty', async () => {
    const plugin = watPlugin(testManifest('opener'), {
      imports: `
        (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes (param i32 i32) (result i32)))`,
      body: `
        (data (i32.const 1024) "/etc/passwd")
        (data (i32.const 1040) "../shared")
        (data (i32.const 1056) "prestat")
        (data (i32.const 1064) "argv")
        (data (i32.const 1072) "environ")
        ;; open PATH under directory fd DIR; a: errno, b: bytes read through the fd when it opened
        (func $try (param $dir i32) (param $ptr i32) (param $len i32) (local $errno i32) (local $read i32)
          (local.set $errno (call $path_open (local.get $dir) (i32.const 1) (local.get $ptr) (local.get $len)
            (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 16)))
          (if (i32.eqz (local.get $errno)) (then
            (i32.store (i32.const 20) (i32.const 4096))
            (i32.store (i32.const 24) (i32.const 4096))
            (drop (call $fd_read (i32.load (i32.const 16)) (i32.const 20) (i32.const 1) (i32.const 28)))
            (local.set $read (i32.load (i32.const 28)))))
          (call $row (local.get $ptr) (local.get $len) (local.get $errno) (local.get $read)))
        ${START}
          (call $try (i32.const 3) (i32.const 1024) (i32.const 11))
          (call $try (i32.const 3) (i32.const 1040) (i32.const 9))
          (call $try (i32.const 4) (i32.const 1024) (i32.const 11))
          (call $row (i32.const 1056) (i32.const 7) (call $prestat (i32.const 3) (i32.const 32)) (i32.const 0))
          (drop (call $args_sizes (i32.const 40) (i32.const 44)))
          (call $row (i32.const 1064) (i32.const 4) (i32.load (i32.const 40)) (i32.load (i32.const 44)))
          (drop (call $environ_sizes (i32.const 40) (i32.const 44)))
          (call $row (i32.const 1072) (i32.const 7) (i32.load (i32.const 40)) (i32.load (i32.const 44))))`,
    });
    const [EBADF, ENOTCAPABLE] = [8, 76];
    expect((await run(plugin)).rows).toEqual([
      { what: '/etc/passwd', a: ENOTCAPABLE, b: 0 },
      { what: '../shared', a: ENOTCAPABLE, b: 0 },
      { what: '/etc/passwd', a: ENOTCAPABLE, b: 0 },
      { what: 'prestat', a: EBADF, b: 0 },
      { what: 'argv', a: 1, b: 'opener\0'.length },
      { what: 'environ', a: 0, b: 0 },
    ]);
    await othersUnaffected();
  }, 120_000);

  it('an endless loop is terminated at the time budget', async () => {
    const plugin = watPlugin(testManifest('spinner'), { body: `${START} (loop $forever (br $forever)))` });
    await expect(run(plugin, { limits: { timeMs: 2000 } })).rejects.toThrow(
      'plugin spinner: stopped at its time budget of 2000 ms',
    );
    await othersUnaffected();
  }, 120_000);

  it('memory grows only up to the cap: memory.grow fails there, and a module asking for more at start is refused', async () => {
    const grower = watPlugin(testManifest('grower'), {
      body: `(data (i32.const 1024) "pages")
        ${START} (loop $more (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
          (call $row (i32.const 1024) (i32.const 5) (memory.size) (i32.const 0)))`,
    });
    expect((await pluginAnalysis(loadPlugin(grower, 'grower.wasm', { memoryPages: 64 })).run(context)).rows).toEqual([
      { what: 'pages', a: 64, b: 0 },
    ]);
    const greedy = watPlugin(testManifest('greedy'), { memory: '2000', body: `${START})` });
    expect(() => loadPlugin(greedy, 'greedy.wasm', { memoryPages: 64 })).toThrow(
      'plugin greedy: its memory starts at 2000 pages, above the cap of 64 pages (4 MiB)',
    );
    await othersUnaffected();
  }, 120_000);

  it('printing 1 GB stops at the output cap', async () => {
    const plugin = watPlugin(testManifest('printer'), {
      body: `${START} (local $left i32) (local.set $left (i32.const 16384))
          (loop $print (call $write (i32.const 1024) (i32.const 65536))
            (local.set $left (i32.sub (local.get $left) (i32.const 1)))
            (br_if $print (local.get $left))))`,
    });
    await expect(run(plugin, { limits: { outputBytes: 4 * 2 ** 20 } })).rejects.toThrow(
      'plugin printer: output cap of 4194304 bytes exceeded',
    );
    await othersUnaffected();
  }, 120_000);

  it('rows that do not match the manifest are refused with the plugin name and the line', async () => {
    const plugin = watPlugin(testManifest('liar'), {
      body: `(data (i32.const 1024) "ok")
        (data (i32.const 1040) "{\\"what\\":\\"x\\",\\"a\\":\\"not a number\\",\\"b\\":1}\\n")
        ${START} (call $row (i32.const 1024) (i32.const 2) (i32.const 1) (i32.const 2))
          (call $write (i32.const 1040) (i32.const 38)))`,
    });
    await expect(run(plugin)).rejects.toThrow(/^plugin liar: output line 2: column a: .*expected number/);
    await othersUnaffected();
  }, 120_000);

  it('an unknown import is refused at load, naming the plugin; so is a vmscope import it did not declare', () => {
    const unknown = watPlugin(testManifest('shell'), {
      imports: '(import "env" "system" (func $system (param i32) (result i32)))',
      body: `${START})`,
    });
    expect(() => loadPlugin(unknown, 'shell.wasm')).toThrow('plugin shell: imports unknown function env.system');
    const undeclared = watPlugin(testManifest('peeker'), {
      imports: '(import "vmscope" "read_physical" (func $read (param i64 i32 i32) (result i32)))',
      body: `${START})`,
    });
    expect(() => loadPlugin(undeclared, 'peeker.wasm')).toThrow(
      'plugin peeker: imports vmscope.read_physical but its manifest does not declare access "memory.physical"',
    );
  });

  it('memory reads past the budget end the run, naming the budget', async () => {
    const plugin = watPlugin(testManifest('reader', { access: ['memory.physical'] }), {
      imports: '(import "vmscope" "read_physical" (func $read (param i64 i32 i32) (result i32)))',
      body: `${START} (loop $again (drop (call $read (i64.const 0x100000) (i32.const 4096) (i32.const 4096))) (br $again)))`,
    });
    await expect(run(plugin, { limits: { reads: 100 } })).rejects.toThrow(
      'plugin reader: memory-read budget exceeded: more than 100 reads',
    );
    await expect(run(plugin, { limits: { readBytes: 40960 } })).rejects.toThrow(
      'plugin reader: memory-read budget exceeded: more than 40960 bytes read',
    );
    await othersUnaffected();
  }, 120_000);

  it('bytes that are not a plugin are refused at load with a typed error', () => {
    expect(() => loadPlugin(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]), 'junk.wasm')).toThrow(
      /^plugin junk\.wasm: is not a valid WebAssembly module/,
    );
    const withoutManifest = watPlugin(null, { body: `${START})` });
    expect(() => loadPlugin(withoutManifest, 'bare.wasm')).toThrow(
      'plugin bare.wasm: needs exactly one "vmscope.manifest" custom section (found 0)',
    );
    const noFindingColumns = watPlugin(testManifest('vague', { rows: 'findings' }), { body: `${START})` });
    expect(() => loadPlugin(noFindingColumns, 'vague.wasm')).toThrow(
      'plugin vague.wasm: its manifest is invalid at (top): a plugin whose rows are findings has the text columns kind, severity, subject, detail',
    );
    expect(() => loadPlugin(withoutManifest, 'bare.wasm')).toThrow(expect.objectContaining({ code: 'PLUGIN_REFUSED' }));
  });

  it('symbol() answers with the kernel symbol it was asked for, 0 for an unknown one', async () => {
    const plugin = watPlugin(testManifest('symbols', { access: ['symbols'] }), {
      imports: '(import "vmscope" "symbol" (func $symbol (param i32 i32) (result i64)))',
      body: `(data (i32.const 1024) "init_task") (data (i32.const 1040) "no_such_symbol")
        ${START}
          (call $row (i32.const 1024) (i32.const 9) (i64.ne (call $symbol (i32.const 1024) (i32.const 9)) (i64.const 0)) (i32.const 0))
          (call $row (i32.const 1040) (i32.const 14) (i64.ne (call $symbol (i32.const 1040) (i32.const 14)) (i64.const 0)) (i32.const 0)))`,
    });
    expect((await run(plugin)).rows).toEqual([
      { what: 'init_task', a: 1, b: 0 },
      { what: 'no_such_symbol', a: 0, b: 0 },
    ]);
  }, 120_000);
});
