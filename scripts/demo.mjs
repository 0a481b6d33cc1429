// The demo: decompress the bundled real snapshot once into .cache/, then run vmscope on it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ensureDecompressed } from '../dist/index.js';

const bundled = JSON.parse(readFileSync('fixtures/bundled.json', 'utf8')).demo;
process.stderr.write(`vmscope demo: ${bundled.what}\n`);
const dump = ensureDecompressed(`fixtures/${bundled.file}`, '.cache/demo', bundled.sha256);

// check exits 1 when it finds tampering, which on this snapshot it must; yarascan when a rule matches.
for (const args of [
  ['info', dump],
  ['pstree', dump],
  ['check', dump],
  ['yarascan', '--rules', 'fixtures/demo.yar', dump],
]) {
  process.stdout.write(`\n$ vmscope ${args.join(' ')}\n`);
  const result = spawnSync(process.execPath, ['bin/vmscope.js', ...args], { stdio: 'inherit' });
  if (result.status !== 0 && result.status !== 1) process.exit(result.status ?? 1);
}
