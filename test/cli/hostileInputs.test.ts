import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturePath } from '../support/fixtures.js';

/**
 * Hostile files and options handed to the CLI: each must end in one typed error line with the
 * file or option at fault and exit 2, promptly, never an internal error, a hang or a huge
 * allocation.
 */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'vmscope-hostile-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const env = { ...process.env, VMSCOPE_CACHE_DIR: join(work, 'profiles') };

function vmscope(...args: string[]) {
  const result = spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), ...args], {
    encoding: 'utf8',
    env,
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** One error line naming the culprit, exit 2, no stack. */
function expectUsageError(result: ReturnType<typeof vmscope>, culprit: RegExp): void {
  expect(result.code, result.stderr).toBe(2);
  expect(result.stderr).toMatch(culprit);
  expect(result.stderr).not.toMatch(/internal error|\n\s+at /);
}

const dump = () => fixturePath('linux61-clean', 'elf');

describe('input files that are not what they claim', () => {
  const fifo = join(work, 'rules.fifo');
  execFileSync('mkfifo', [fifo]);

  it.each([
    [
      'a FIFO with no writer as the rule file',
      () => ['yarascan', '--rules', fifo, dump()],
      /rules\.fifo.*not a regular file/,
    ],
    [
      '/dev/zero as the rule file',
      () => ['yarascan', '--rules', '/dev/zero', dump()],
      /\/dev\/zero.*not a regular file/,
    ],
    ['a FIFO with no writer as the dump', () => ['info', fifo], /rules\.fifo.*not a regular file/],
    ['/dev/zero as the dump', () => ['pslist', '/dev/zero'], /\/dev\/zero.*not a regular file/],
    [
      '/dev/zero as the policy',
      () => ['policy', 'check', '--policy', '/dev/zero', dump()],
      /\/dev\/zero.*not a regular file/,
    ],
    ['a directory as the ISF', () => ['pslist', dump(), '--isf', work], /not a regular file/],
  ])('%s', (_, args, culprit) => {
    expectUsageError(vmscope(...args()), culprit);
  });

  it('an xz bomb as the ISF stops at its bound, not in memory exhaustion', () => {
    const bomb = join(work, 'bomb.json.xz');
    // 600 MiB of spaces compress to ~100 KiB: over the ISF bound once decompressed.
    execFileSync('bash', ['-c', `head -c 629145600 /dev/zero | tr '\\0' ' ' | xz -1 -T1 > ${bomb}`]);
    const result = vmscope('pslist', dump(), '--isf', bomb);
    expectUsageError(result, /bomb\.json\.xz.*decompresses to more than/);
  });
});

describe('an ISF whose values are not what Volatility writes', () => {
  it('a field offset that is a string is one typed error naming the field, not a crash', () => {
    const isf = join(work, 'exported.json');
    expect(vmscope('isf', dump(), '-o', isf).code).toBe(0);
    const document = JSON.parse(readFileSync(isf, 'utf8')) as {
      user_types: Record<string, { fields: Record<string, { offset: unknown }> }>;
    };
    document.user_types.task_struct!.fields.pid!.offset = '8';
    const broken = join(work, 'broken.json');
    writeFileSync(broken, JSON.stringify(document));
    expectUsageError(
      vmscope('pslist', dump(), '--isf', broken),
      /broken\.json.*CORRUPT_STRUCTURE.*user_types\.task_struct\.fields\.pid\.offset/,
    );
  });
});

describe('outputs that would destroy an input or cannot be written', () => {
  it.each([
    ['the dump itself', () => dump(), /refusing to write over an input/],
    ['a directory', () => work, /is a directory/],
    ['a file in a missing folder', () => join(work, 'missing', 'out.json'), /does not exist/],
    ['/dev/full', () => '/dev/full', /ENOSPC/],
  ])('isf -o %s', (_, output, culprit) => {
    expectUsageError(vmscope('isf', dump(), '-o', output()), culprit);
  });
});

describe('names and numbers from the user', () => {
  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty'])('types DUMP %s is "no such type"', (name) => {
    expectUsageError(vmscope('types', dump(), name), /NO_PROFILE: the profile has no struct or union/);
  });

  it('thread counts out of range are refused before any work', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.constantFrom('1000', '1e9', '0', '-1', '2.5', 'NaN', 'many'),
          fc.integer({ min: 257, max: 2 ** 40 }).map(String),
        ),
        (threads) => {
          const started = performance.now();
          expectUsageError(
            vmscope('yarascan', '--rules', '/nonexistent.yar', '--threads', threads, dump()),
            /--threads/,
          );
          expect(performance.now() - started).toBeLessThan(10_000);
        },
      ),
      { numRuns: 8 },
    );
  });
});

describe('batch over hostile folders', () => {
  it('a symlink loop and an --out that is a file', () => {
    const folder = join(work, 'loop');
    mkdirSync(folder);
    symlinkSync(folder, join(folder, 'again'));
    symlinkSync(dump(), join(folder, 'guest.elf'));
    const loop = vmscope('batch', folder, '--run', 'pslist', '--out', join(work, 'loop-out'));
    expect(loop.stderr).not.toMatch(/internal error|ELOOP|\n\s+at /);
    expect(loop.code).toBe(0);
    const file = join(work, 'a-file');
    writeFileSync(file, '');
    expectUsageError(vmscope('batch', folder, '--run', 'pslist', '--out', file), /a-file/);
  });
});
