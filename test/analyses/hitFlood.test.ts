import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturePath } from '../support/fixtures.js';

/**
 * Issue 13, item 7: a string that matches everywhere. yara keeps a million matches per string and
 * says so; vmscope must too, and its memory must not grow with the matches it reports: the capped
 * string gives a million rows (more, one per owner of shared pages), written as they are made.
 * Measured on the installed command (its threads included) by GNU time.
 */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'vmscope-hit-flood-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const RSS_LIMIT_MIB = 512;
const CAP = 1_000_000;
const RULE_CAP = 2_000_000;
const SCAN_CAP = 3_000_000;

/** Per string, how many distinct offsets its rows name (rows of one match are consecutive), reading the file in chunks. */
function distinctOffsetsByString(path: string): Map<string, number> {
  const counts = new Map<string, number>();
  let last = '';
  const fd = openSync(path, 'r');
  const buffer = Buffer.alloc(1 << 20);
  let pending = '';
  try {
    for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) {
      const lines = (pending + buffer.toString('utf8', 0, read)).split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        const row = JSON.parse(line) as { string: string; physical: string };
        const key = `${row.string} ${row.physical}`;
        if (key !== last) counts.set(row.string, (counts.get(row.string) ?? 0) + 1);
        last = key;
      }
    }
  } finally {
    closeSync(fd);
  }
  expect(pending).toBe('');
  return counts;
}

/** sh arguments running the installed command's 2-thread NDJSON yarascan of the 512 MiB dump under GNU time (peak RSS last on stderr). */
function timedScan(rules: string, redirect: string, ...options: string[]): string[] {
  return [
    '-c',
    `exec /usr/bin/time -f '%M' "$0" "$@" ${redirect}`,
    process.execPath,
    join(repoRoot, 'bin/vmscope.js'),
    'yarascan',
    '--rules',
    rules,
    '--threads',
    '2',
    '--ndjson',
    '--no-progress',
    ...options,
    fixturePath('linux61-clean', 'raw'),
  ];
}

describe('yarascan with strings matching at every offset of a 512 MiB dump', () => {
  it('keeps a million matches of { 00 00 00 00 }, says so, and stays under 512 MiB', () => {
    const rules = join(work, 'flood.yar');
    writeFileSync(rules, 'rule flood { strings: $zeros = { 00 00 00 00 } condition: $zeros }\n');
    const output = join(work, 'rows.ndjson');
    const result = spawnSync('sh', timedScan(rules, `> '${output}'`, '--no-cache'), {
      encoding: 'utf8',
      timeout: 10 * 60_000,
    });
    expect(result.status, result.stderr).toBe(1); // a rule matched
    const stderr = result.stderr.trim().split('\n');
    const peakMiB = Number(stderr.at(-1)) / 1024;
    console.log(`peak RSS ${peakMiB.toFixed(0)} MiB`);
    expect(peakMiB).toBeLessThan(RSS_LIMIT_MIB);
    expect(stderr).toContain(
      'vmscope: warning: flood:$zeros: too many matches, only the first ones by offset are kept',
    );
    expect(distinctOffsetsByString(output)).toEqual(new Map([['$zeros', CAP]]));
  }, 600_000);

  it('bounds many strings matching everywhere per string, per rule and per scan, and stays under 512 MiB', async () => {
    // Three rules of three strings each, every one matching at (nearly) every offset of a zero page: a rule file,
    // not the dump, is the attacker here. yara would keep nine million matches; vmscope keeps its limits and says so.
    const rules = join(work, 'floods.yar');
    writeFileSync(
      rules,
      [
        'rule f1 { strings: $a = { 00 00 00 00 } $b = { ?? ?? } $c = { 00 00 } condition: any of them }',
        'rule f2 { strings: $a = { 00 ?? 00 } $b = { ?? 00 } $c = /\\x00\\x00\\x00/ condition: any of them }',
        `rule f3 { strings: $a = { ${'00 '.repeat(8)}} $b = { 00 [0-2] 00 } $c = { ${'?? '.repeat(64)}} condition: any of them }`,
      ].join('\n') + '\n',
    );
    const child = spawn('sh', timedScan(rules, ''), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // Rows of one match are consecutive (one per owner): matches counted per rule and string as the rows stream by.
    const matches = new Map<string, number>();
    let last = '';
    for await (const line of createInterface({ input: child.stdout })) {
      const row = JSON.parse(line) as { rule: string; string: string; physical: string };
      const key = `${row.rule}:${row.string} ${row.physical}`;
      if (key !== last) matches.set(`${row.rule}:${row.string}`, (matches.get(`${row.rule}:${row.string}`) ?? 0) + 1);
      last = key;
    }
    const status = await new Promise<number | null>((done) => child.on('close', done));
    expect(status, stderr).toBe(1);
    const lines = stderr.trim().split('\n');
    const peakMiB = Number(lines.at(-1)) / 1024;
    console.log(`peak RSS ${peakMiB.toFixed(0)} MiB, ${[...matches.values()].reduce((a, b) => a + b, 0)} matches`);
    expect(peakMiB).toBeLessThan(RSS_LIMIT_MIB);
    const total = [...matches.values()].reduce((sum, count) => sum + count, 0);
    expect(total).toBe(SCAN_CAP);
    for (const count of matches.values()) expect(count).toBeLessThanOrEqual(CAP);
    for (const rule of ['f1', 'f2', 'f3']) {
      const ruleTotal = [...matches].filter(([key]) => key.startsWith(`${rule}:`)).reduce((sum, [, n]) => sum + n, 0);
      expect(ruleTotal).toBeLessThanOrEqual(RULE_CAP);
    }
    // Every string that lost matches is named; here every rule lost some.
    const warned = lines.filter((line) => line.endsWith('too many matches, only the first ones by offset are kept'));
    for (const rule of ['f1', 'f2', 'f3']) expect(warned.some((line) => line.includes(` ${rule}:$`))).toBe(true);
  }, 900_000);
});
