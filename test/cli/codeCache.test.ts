import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/fixtures.js';

/** The installed command compiles its bundle from V8's code cache (src/cli/launch.ts). */
const cacheHome = mkdtempSync(join(tmpdir(), 'vmscope-code-cache-'));
afterAll(() => rmSync(cacheHome, { recursive: true, force: true }));
const codeDir = join(cacheHome, 'vmscope', 'code');

function vmscope(...args: string[]) {
  return spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), ...args], {
    env: { ...process.env, XDG_CACHE_HOME: cacheHome },
    encoding: 'utf8',
  });
}

describe('code cache of the CLI bundle', () => {
  it('is written by the first run, used by the next, and a damaged one is replaced, never obeyed', () => {
    const first = vmscope('--version');
    expect(first.status).toBe(0);
    const files = readdirSync(codeDir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[0-9a-f]{32}\.v8cache$/);

    const second = vmscope('--version');
    expect([second.status, second.stdout, second.stderr]).toEqual([0, first.stdout, '']);

    const damage = Buffer.alloc(4096, 0x5a);
    writeFileSync(join(codeDir, files[0]!), damage);
    const damaged = vmscope('--version');
    expect([damaged.status, damaged.stdout, damaged.stderr]).toEqual([0, first.stdout, '']);
    expect(readdirSync(codeDir)).toEqual(files);
    expect(readFileSync(join(codeDir, files[0]!)).equals(damage)).toBe(false);
    expect(vmscope('--version').stdout).toBe(first.stdout);
  });

  it('an unwritable cache directory costs the cache, not the command', () => {
    writeFileSync(join(cacheHome, 'blocked'), 'a file where the cache directory would be');
    const result = spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), '--version'], {
      env: { ...process.env, XDG_CACHE_HOME: join(cacheHome, 'blocked') },
      encoding: 'utf8',
    });
    expect([result.status, result.stderr]).toEqual([0, '']);
  });
});
