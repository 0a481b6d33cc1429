/**
 * What running detection logic as a sandboxed WASI plugin costs, against the same logic as a
 * built-in analysis, in one run on one warm DumpContext (providers computed once, before):
 *   start            a plugin that does nothing: worker thread, @wasmer/wasi, instantiation
 *   marshalling      building the declared inputs as the JSON document on stdin
 *   reads/s          4 KiB read_physical calls through the import (SharedArrayBuffer bridge) vs
 *                    the same reads made directly on the host
 *   masquerade       the example plugin vs the same rules as a built-in analysis
 *   cryptominer      the example plugin (processes + regions, memory reads through the import)
 *                    vs the same scan as a built-in analysis
 * Usage: node dist/bench/plugins.js [dump] [plugin dir] (defaults: linux61-clean raw, build/plugins).
 */
import { join } from 'node:path';
import { DumpContext } from '../src/analyses/context.js';
import { kernelProvider, readerProvider } from '../src/analyses/providers/kernel.js';
import { executablesProvider } from '../src/analyses/providers/processContext.js';
import { taskListProvider } from '../src/analyses/providers/processes.js';
import { executableByGroup } from '../src/analyses/pslist.js';
import { defineAnalysis, type Analysis, type AnalysisInputs, type Row } from '../src/analyses/types.js';
import { readArguments, processAddressSpace, readUntilFault } from '../src/os/linux/processSpace.js';
import { readMemoryRegions } from '../src/os/linux/vmas.js';
import { pluginAnalysis, type PluginRunStats } from '../src/plugins/analysis.js';
import { gatherInputs } from '../src/plugins/inputs.js';
import { loadPlugin, loadPluginFile } from '../src/plugins/load.js';
import { testManifest, watPlugin } from '../test/plugins/watPlugin.js';
import { fixturePath, repoRoot } from '../test/support/fixtures.js';
import { coldAndBestAsync, milliseconds } from './support/timing.js';

const dumpPath = process.argv[2] ?? fixturePath('linux61-clean', 'raw');
const pluginDir = process.argv[3] ?? join(repoRoot, 'build', 'plugins');
const READS = 20_000;
const READ_BYTES = 4096;

const KERNEL_THREAD_PREFIXES = ['kworker/', 'ksoftirqd/', 'migration/', 'kthreadd', 'rcu_', 'cpuhp/', 'watchdog/'];
const baseName = (path: string) => path.slice(path.lastIndexOf('/') + 1);

/** plugins/masquerade as a built-in analysis (the rules, not the wording of every detail). */
const builtInMasquerade = defineAnalysis({
  name: 'masquerade-builtin',
  description: 'plugins/masquerade as TypeScript',
  columns: [{ key: 'subject', kind: 'text', title: 'Subject' }],
  uses: [kernelProvider, readerProvider, taskListProvider, executablesProvider],
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const reader = await inputs.get(readerProvider);
    const warnings: string[] = [];
    const exe = await executableByGroup(inputs.get(executablesProvider), warnings);
    const rows: Row[] = [];
    for (const task of (await inputs.get(taskListProvider)).tasks) {
      if (task.kernelThread || task.mm === 0n) continue;
      const { argv } = readArguments(kernel, reader, task);
      const path = exe.get(task.tgid) ?? '';
      const same = (candidate: string | undefined) =>
        candidate !== undefined &&
        (baseName(candidate) === task.comm || (task.comm.length === 15 && baseName(candidate).startsWith(task.comm)));
      const kernelLike = KERNEL_THREAD_PREFIXES.some((prefix) => task.comm.startsWith(prefix));
      if (kernelLike || !(same(argv[0]) || same(path) || same(argv[1])))
        rows.push({ subject: `pid ${task.pid} (${task.comm})` });
    }
    return { columns: this.columns, rows, single: false, partial: false, warnings };
  },
});

const POOL_MARKERS = ['stratum+tcp://', 'stratum+ssl://', 'supportxmr.com', 'minexmr.com', 'nanopool.org'].map(
  (marker) => Buffer.from(marker),
);

/** plugins/cryptominer's memory scan as a built-in analysis: the writable regions of each listed process, 64 KiB at a time. */
const builtInCryptominer = defineAnalysis({
  name: 'cryptominer-builtin',
  description: 'plugins/cryptominer as TypeScript',
  columns: [{ key: 'subject', kind: 'text', title: 'Subject' }],
  uses: [kernelProvider, readerProvider, taskListProvider],
  async compute(inputs: AnalysisInputs) {
    const kernel = await inputs.get(kernelProvider);
    const reader = await inputs.get(readerProvider);
    const rows: Row[] = [];
    for (const task of (await inputs.get(taskListProvider)).tasks) {
      if (task.kernelThread || task.mm === 0n) continue;
      const space = processAddressSpace(kernel, reader, task.mm);
      let budget = 32 * 2 ** 20;
      const found = readMemoryRegions(reader, task.mm).regions.some((region) => {
        if (region.perms[1] !== 'w') return false;
        for (let at = region.start; at < region.end && budget > 0;) {
          const length = Number(region.end - at < 65536n ? region.end - at : 65536n);
          const { bytes } = readUntilFault(space, at, length);
          budget -= length;
          if (POOL_MARKERS.some((marker) => Buffer.from(bytes).includes(marker))) return true;
          if (length <= 64) break;
          at += BigInt(length - 64);
        }
        return false;
      });
      if (found) rows.push({ subject: `pid ${task.pid} (${task.comm})` });
    }
    return { columns: this.columns, rows, single: false, partial: false, warnings: [] };
  },
});

const nothing = loadPlugin(watPlugin(testManifest('nothing'), { body: '(func (export "_start"))' }), 'nothing.wasm');
const reader = loadPlugin(
  watPlugin(testManifest('reader', { access: ['memory.physical'] }), {
    imports: '(import "vmscope" "read_physical" (func $read (param i64 i32 i32) (result i32)))',
    body: `(func (export "_start") (local $left i32) (local.set $left (i32.const ${READS}))
      (loop $again (drop (call $read (i64.extend_i32_u (i32.mul (local.get $left) (i32.const ${READ_BYTES})))
        (i32.const ${READ_BYTES}) (i32.const 4096)))
        (local.set $left (i32.sub (local.get $left) (i32.const 1))) (br_if $again (local.get $left))))`,
    memory: '2',
  }),
  'reader.wasm',
);

async function timed(label: string, analysis: Analysis, context: DumpContext) {
  const { cold, best, result } = await coldAndBestAsync(() => analysis.run(context));
  console.log(`${label.padEnd(34)} cold ${milliseconds(cold)}  best ${milliseconds(best)}  rows ${result.rows.length}`);
  return best;
}

const context = new DumpContext(dumpPath);
try {
  console.log(`dump ${dumpPath}`);
  const masquerade = loadPluginFile(join(pluginDir, 'masquerade.wasm'));
  const cryptominer = loadPluginFile(join(pluginDir, 'cryptominer.wasm'));
  // Providers (task list, executables, regions' inputs) computed once, outside every timing.
  await pluginAnalysis(cryptominer).run(context);
  await builtInMasquerade.run(context);

  const start = await timed('start (empty plugin)', pluginAnalysis(nothing), context);

  const marshalling = await coldAndBestAsync(() =>
    gatherInputs(
      {
        path: context.path,
        identity: undefined,
        get: (provider) => context.get(provider),
        progress: () => () => {},
        parallelRuleScan: undefined,
        defaultThreads: undefined,
      },
      cryptominer.manifest,
    ),
  );
  console.log(
    `${'marshalling (processes + regions)'.padEnd(34)} cold ${milliseconds(marshalling.cold)}  best ${milliseconds(marshalling.best)}  ${marshalling.result.stdin.length} bytes of JSON`,
  );

  const throughImport = await timed(`${READS} reads through the import`, pluginAnalysis(reader), context);
  const buffer = new Uint8Array(READ_BYTES);
  const direct = await coldAndBestAsync(async () => {
    for (let left = READS; left > 0; left--) context.image.readPresent(left * READ_BYTES, buffer);
    return Promise.resolve({ rows: [] });
  });
  const importRate = READS / Math.max(throughImport - start, 1e-9);
  const directRate = READS / direct.best;
  console.log(
    `reads/s: through the import ${Math.round(importRate)} (start subtracted), direct ${Math.round(directRate)}: ${(directRate / importRate).toFixed(1)}x`,
  );

  const plugged = await timed('masquerade plugin', pluginAnalysis(masquerade), context);
  const builtIn = await timed('masquerade built-in', builtInMasquerade, context);
  console.log(`masquerade: plugin / built-in = ${(plugged / builtIn).toFixed(1)}x`);

  const stats: PluginRunStats = { reads: 0, readBytes: 0 };
  const minerPlugged = await timed('cryptominer plugin', pluginAnalysis(cryptominer, {}, stats), context);
  const minerBuiltIn = await timed('cryptominer built-in', builtInCryptominer, context);
  const runs = 4; // timed() runs an analysis 1 + ROUNDS times
  console.log(
    `cryptominer: plugin / built-in = ${(minerPlugged / minerBuiltIn).toFixed(1)}x; the plugin read ${stats.reads / runs} times, ${(stats.readBytes / runs / 2 ** 20).toFixed(1)} MiB per run (${Math.round(stats.reads / runs / minerPlugged)} reads/s)`,
  );
} finally {
  context.close();
}
