// Bundle the CLI, the library and the benchmarks with esbuild. The WASM kernels are already
// inlined as a generated module (scripts/build-wasm.mjs), so no loader or copy step is needed.
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';

const benches = readdirSync('bench')
  .filter((name) => name.endsWith('.ts'))
  .map((name) => `bench/${name}`);

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  packages: 'external',
  logLevel: 'warning',
};

// The scan pool's worker threads load dist/scanWorker.js (src/workers/scanPool.ts finds it beside the bundle),
// the batch's job threads dist/batchWorker.js (src/batch/jobPool.ts, likewise), a plugin's sandbox thread
// dist/pluginWorker.js (src/plugins/sandbox.ts).
await build({
  ...common,
  entryPoints: {
    cli: 'src/cli/entry.ts',
    index: 'src/index.ts',
    scanWorker: 'src/workers/scanWorker.ts',
    // The job thread with the WASI plugin loader registered (src/batch cannot import src/plugins).
    batchWorker: 'src/plugins/batchThread.ts',
    pluginWorker: 'src/plugins/pluginWorker.ts',
  },
  outdir: 'dist',
});
if (benches.length > 0) await build({ ...common, entryPoints: benches, outdir: 'dist/bench' });
