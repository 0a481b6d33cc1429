/**
 * The installed command's entry (dist/cli.js): runs the CLI's CommonJS bundle (dist/cliBundle.cjs)
 * from V8's code cache. Compiling the 1.7 MB bundle was ~50 ms of every command's start; Node 20
 * has no compile cache for ES modules (module.enableCompileCache came with Node 22), so the CLI
 * is bundled as a script and compiled here with `cachedData`, as v8-compile-cache does for
 * CommonJS packages. The cache is written once, when missing or refused (V8 refuses data of
 * another bundle, Node or V8 flags), after the run, so that it holds the functions that command
 * compiled. It lives in ~/.cache/vmscope/code ($XDG_CACHE_HOME respected); a cache that cannot
 * be read or written costs only the compile.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

const bundle = fileURLToPath(new URL('./cliBundle.cjs', import.meta.url));
const source = readFileSync(bundle, 'utf8');
const cacheDir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'vmscope', 'code');
const key = createHash('sha256').update(`${process.version} ${process.arch} ${bundle}\n`).update(source).digest('hex');
const cacheFile = join(cacheDir, `${key.slice(0, 32)}.v8cache`);

let cachedData: Buffer | undefined;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  // no cache yet: compiled from source, cached at exit
}
// Node's own CommonJS wrapper, on the bundle's first line so that its line numbers stay those of the file.
const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
  filename: bundle,
  ...(cachedData ? { cachedData } : {}),
});
if (!cachedData || script.cachedDataRejected) process.once('exit', () => saveCache(script));
const module = { exports: {} };
(script.runInThisContext() as (...args: unknown[]) => void)(
  module.exports,
  createRequire(bundle),
  module,
  bundle,
  dirname(bundle),
);

function saveCache(compiled: Script): void {
  try {
    mkdirSync(cacheDir, { recursive: true });
    const temporary = `${cacheFile}.${process.pid}.tmp`;
    writeFileSync(temporary, compiled.createCachedData());
    renameSync(temporary, cacheFile);
  } catch {
    // an unwritable cache: the next run compiles again
  }
}
