import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_STRINGS_PER_RULE } from '../../src/rules/parser.js';
import { compileSource } from '../../src/rules/compile.js';
import { VmscopeError } from '../../src/util/errors.js';
import { repoRoot } from '../support/fixtures.js';

const workDir = mkdtempSync(join(tmpdir(), 'vmscope-rulefile-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

const MIB = 1024 * 1024;

/** Compiles `file` with the built library in a child process: its rule count and peak RSS (whatever the heap did). */
function compileInChild(file: string): { rules: number; maxRssMiB: number } {
  const script = `
    import { readFileSync } from 'node:fs';
    import { compileSource } from ${JSON.stringify(join(repoRoot, 'dist/index.js'))};
    const compiled = compileSource(readFileSync(${JSON.stringify(file)}, 'utf8'), 'big.yar');
    console.log(JSON.stringify({ rules: compiled.rules.length, maxRssMiB: process.resourceUsage().maxRSS / 1024 }));`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(child.stderr).toBe('');
  expect(child.status).toBe(0);
  return JSON.parse(child.stdout) as { rules: number; maxRssMiB: number };
}

describe('rule files as an attacker would write them (issue 13, item 11)', () => {
  it('a 10 MB file of 190,000 rules compiles without overflowing the stack, in under 512 MiB', () => {
    const file = join(workDir, 'many.yar');
    const rules = Array.from(
      { length: 190_000 },
      (_, i) => `rule r${i} { strings: $a = "tok${String(i).padStart(6, '0')}xyz" condition: $a }\n`,
    );
    writeFileSync(file, rules.join(''));
    const { rules: compiled, maxRssMiB } = compileInChild(file);
    expect(compiled).toBe(190_000);
    // Each syntax tree is dropped once compiled and the lexer hands out one token at a time (it
    // held every token and every tree at once: 870 MiB).
    expect(maxRssMiB).toBeLessThan(512);
  }, 300_000);

  it("a rule with more strings than yara's limit is refused at the first one too many, naming rule, line and column", () => {
    const strings = Array.from({ length: 100_000 }, (_, i) => `  $s${i} = "str${i}q"\n`).join('');
    const source = `rule many_strings {\n strings:\n${strings} condition: any of them }\n`;
    let error: unknown;
    try {
      compileSource(source, 'wide.yar');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(VmscopeError);
    const message = (error as Error).message;
    expect(message).toContain(`wide.yar:${MAX_STRINGS_PER_RULE + 3}:3`);
    expect(message).toContain('rule "many_strings"');
    expect(message).toContain(`too many strings in rule (limit: ${MAX_STRINGS_PER_RULE}`);
  });

  it('a rule at the limit compiles', () => {
    const strings = Array.from({ length: MAX_STRINGS_PER_RULE }, (_, i) => `$s${i} = "str${i}q" `).join('');
    expect(
      compileSource(`rule at_limit { strings: ${strings} condition: any of them }`).rules[0]!.strings,
    ).toHaveLength(MAX_STRINGS_PER_RULE);
  });

  it('a 10 MB policy is refused before it is parsed', () => {
    const policy = join(workDir, 'policy.yaml');
    writeFileSync(policy, `rules:\n${'  - no_hidden_processes: {}\n'.repeat((10 * MIB) / 28)}`);
    const run = spawnSync(
      process.execPath,
      [join(repoRoot, 'bin/vmscope.js'), 'policy', 'check', '--policy', policy, policy],
      {
        encoding: 'utf8',
      },
    );
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/the policy is \d+ bytes, more than the 1048576 a policy may have/);
    expect(run.stderr).not.toContain('internal error');
  });
});
