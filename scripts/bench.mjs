// Run every bundled benchmark in dist/bench one after another; any failing bench fails the run.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const only = process.argv[2];
let failed = 0;
for (const name of readdirSync('dist/bench')
  .filter((file) => file.endsWith('.js'))
  .sort()) {
  if (only && !name.startsWith(only)) continue;
  console.log(`\n== bench/${name.replace(/\.js$/, '.ts')}`);
  const result = spawnSync(process.execPath, [`dist/bench/${name}`, ...process.argv.slice(3)], { stdio: 'inherit' });
  if (result.status !== 0) failed += 1;
}
process.exit(failed > 0 ? 1 : 0);
