// Compiles each example plugin (plugins/NAME/index.ts, AssemblyScript) to a WASI command with
// @assemblyscript/wasi-shim, then embeds plugins/NAME/manifest.json as the module's
// "vmscope.manifest" custom section (docs/plugins.md): build/plugins/NAME.wasm is the plugin.
// Runs after the bundle: the section is appended by the library's own appendCustomSection.
import asc from 'assemblyscript/asc';
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { appendCustomSection, MANIFEST_SECTION } from '../dist/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// asc resolves the shim's `lib` relative to the working directory: build from the root.
process.chdir(root);
const outDir = join('build', 'plugins');
mkdirSync(outDir, { recursive: true });
mkdirSync(join('build', 'plugin-modules'), { recursive: true });

const names = readdirSync('plugins').filter((name) => existsSync(join('plugins', name, 'manifest.json')));
for (const name of names) {
  const compiled = join('build', 'plugin-modules', `${name}.wasm`);
  const { error } = await asc.main(
    [
      join('plugins', name, 'index.ts'),
      '--config',
      join('node_modules', '@assemblyscript', 'wasi-shim', 'asconfig.json'),
      '-O3',
      '--outFile',
      compiled,
    ],
    { stderr: process.stderr, stdout: process.stdout },
  );
  if (error) {
    console.error(`build-plugins: ${name}: ${error.message}`);
    process.exit(1);
  }
  const manifest = readFileSync(join('plugins', name, 'manifest.json'));
  const plugin = appendCustomSection(readFileSync(compiled), MANIFEST_SECTION, manifest);
  writeFileSync(join(outDir, `${name}.wasm`), plugin);
  console.log(`build-plugins: ${plugin.length} bytes -> build/plugins/${name}.wasm`);
}
