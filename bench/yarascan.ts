/**
 * Rule scanning against the yara CLI, in one process and one run, on a 512 MiB raw dump (file
 * offset = physical address, so both report the same offsets), for three rule sets:
 * (a) eight everyday rules (plain, nocase, wide, short hex strings with ?? and jumps, a regex,
 * fullword, a header check), (b) the shared community set (1,475 rules written for files, never
 * tuned for here), (c) one plain string. For each: vmscope's phases (compile, scan on a pool of
 * two threads, condition evaluation), its total, `yara -s`'s total (its process included), the
 * ratio, GB/s, and whether the (rule, string, offset) sets agree; peak RSS of this process (the
 * pool's threads included) at the end; then the installed command (`node bin/vmscope.js yarascan`, attribution
 * included) end to end with its peak RSS measured by GNU time (/usr/bin/time, Debian package `time`).
 * Targets: (a) and (b) >= 3x yara, (c) >= 5 GB/s, peak RSS of the CLI on (a), (b) < 512 MiB.
 * Usage: node dist/bench/yarascan.js [raw dump] [community.yar] [another rule set…]: each further
 * rule file (another public set, to check nothing is tuned to the community one) is one more case
 * with the (a)/(b) target. Needs `yara` (Debian: apt-get
 * install yara) for the baseline; without it, vmscope's numbers are printed and the baseline is skipped.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openImage } from '../src/image/open.js';
import { compileSource } from '../src/rules/compile.js';
import type { RuleMatch } from '../src/rules/evaluate.js';
import { RuleScanner } from '../src/rules/scanner.js';
import { imageUnit } from '../src/rules/unit.js';
import { ScanPool } from '../src/workers/scanPool.js';
import { parseYaraOutput } from '../test/rules/yaraOutput.js';
import { fixturePath, truth } from '../test/support/fixtures.js';

// This bundle lives in dist/bench: the worker bundle one level up, the repository two.
const WORKER_SCRIPT = new URL('../scanWorker.js', import.meta.url);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const THREADS = 2;
const TARGET_PLAIN_GBPS = 5;
const TARGET_RATIO = 3;
/** Peak RSS of a whole-set scan, its threads included. */
const MAX_RSS_MIB = 512;
const CLI = resolve(repoRoot, 'bin/vmscope.js');

/** The installed command on the dump, timed, with its peak RSS as GNU time reports it (the process and its threads). */
function runCli(rulesFile: string): { seconds: number; maxRssMiB: number } {
  const started = process.hrtime.bigint();
  const run = spawnSync(
    '/usr/bin/time',
    [
      '-f',
      '%M',
      process.execPath,
      CLI,
      'yarascan',
      '--rules',
      rulesFile,
      '--threads',
      String(THREADS),
      '--no-progress',
      path,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const seconds = secondsSince(started);
  // yarascan exits 1 when a rule matched; anything else is a failure.
  if (run.status !== 0 && run.status !== 1) throw new Error(`vmscope yarascan failed (${run.status}): ${run.stderr}`);
  const maxRssKiB = Number(run.stderr.trim().split('\n').pop());
  return { seconds, maxRssMiB: maxRssKiB / 1024 };
}

const path = process.argv[2] ?? fixturePath('linux61-clean', 'raw');
const communityPath = process.argv[3] ?? resolve(repoRoot, '../shared/rules/community/community.yar');
const work = mkdtempSync(join(tmpdir(), 'vmscope-bench-yarascan-'));
const yaraAvailable = spawnSync('yara', ['--version'], { encoding: 'utf8' }).status === 0;
if (!yaraAvailable) console.log('yara is not installed: the baseline is skipped (Debian: apt-get install yara)');
console.log(
  `dump ${path}, load average ${loadavg()
    .map((load) => load.toFixed(2))
    .join(' ')}`,
);

const labmark = (truth('linux61-clean').markers as Array<{ kind: string; value: string }>).find(
  (marker) => marker.kind === 'labmark',
)!.value;
const EVERYDAY = `
rule plain_shell { strings: $a = "/bin/sh -c" condition: $a }
rule nocase_password { strings: $a = "password=" nocase condition: #a > 0 }
rule wide_windows { strings: $a = "Microsoft" wide ascii condition: $a }
rule syscall_stub { strings: $a = { B8 ?? 00 00 00 [0-8] 0F 05 } condition: $a }
rule mov_test { strings: $a = { 48 8B ?? ?? 48 85 C0 74 ?? } condition: #a > 10 }
rule url_regex { strings: $a = /https?:\\/\\/[a-z0-9.-]{4,64}\\/[a-z]{2,}/ condition: $a }
rule preload_word { strings: $a = "LD_PRELOAD" fullword $b = "ld.so.preload" condition: any of them }
rule elf_header { strings: $a = { 7F 45 4C 46 02 01 01 } condition: for any i in (1..#a) : (uint16(@a[i] + 18) == 0x3e) }
`;
const cases = [
  { name: '(a) eight everyday rules', source: EVERYDAY, target: 'ratio' as const },
  { name: '(b) the community set', source: readFileSync(communityPath, 'utf8'), target: 'ratio' as const },
  {
    name: '(c) one plain string',
    source: `rule plain { strings: $a = "${labmark}" condition: $a }`,
    target: 'gbps' as const,
  },
  ...process.argv.slice(4).map((file, i) => ({
    name: `(${String.fromCharCode(0x64 + i)}) ${file}`,
    source: readFileSync(file, 'utf8'),
    target: 'ratio' as const,
  })),
];

const image = openImage(path);
const gigabytes = image.totalBytes / 1e9;
const rate = (time: number) => `${(gigabytes / time).toFixed(2).padStart(6)} GB/s`;
const secondsSince = (started: bigint) => Number(process.hrtime.bigint() - started) / 1e9;
const keys = (matches: ReadonlyArray<{ rule: string; strings: ReadonlyArray<{ string: string; offset: number }> }>) =>
  new Set(
    matches.flatMap((match) =>
      match.strings.length === 0
        ? [match.rule]
        : match.strings.map((hit) => `${match.rule} ${hit.string} ${hit.offset}`),
    ),
  );
const poolStarted = process.hrtime.bigint();
const pool = await ScanPool.create({ threads: THREADS, workerScript: WORKER_SCRIPT });
console.log(`pool of ${THREADS} threads ready in ${secondsSince(poolStarted).toFixed(3)} s`);
let failures = 0;
try {
  for (const { name, source, target } of cases) {
    const rulesFile = join(work, 'rules.yar');
    writeFileSync(rulesFile, source);
    const started = process.hrtime.bigint();
    const scanner = RuleScanner.create(compileSource(source, 'rules.yar'));
    const compiled = secondsSince(started);
    const result = await pool.scanRules(path, scanner);
    const scanned = secondsSince(started);
    const matches: RuleMatch[] = scanner.evaluate(result.hits, image.totalBytes, imageUnit(image));
    const total = secondsSince(started);
    const ours = keys(matches);
    console.log(
      `\n${name}: ${scanner.rules.rules.length} rules, ${ours.size} string matches, ${result.truncated.length} strings capped`,
    );
    console.log(
      `  vmscope: compile ${compiled.toFixed(3)} s, scan ${(scanned - compiled).toFixed(3)} s, evaluate ${(total - scanned).toFixed(3)} s; total ${total.toFixed(3)} s ${rate(total)}`,
    );
    // Before yara's output is read into this process: the scan's own peak (the pool's threads share it).
    console.log(`  peak RSS so far ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB (target < 512 MiB)`);
    const cli = runCli(rulesFile);
    console.log(
      `  vmscope CLI end to end (node bin/vmscope.js yarascan --threads ${THREADS}, attribution included): ${cli.seconds.toFixed(3)} s, peak RSS ${cli.maxRssMiB.toFixed(0)} MiB${target === 'ratio' ? ` (target < ${MAX_RSS_MIB} MiB: ${cli.maxRssMiB < MAX_RSS_MIB ? 'met' : 'NOT MET'})` : ''}`,
    );
    if (target === 'ratio' && cli.maxRssMiB >= MAX_RSS_MIB) failures++;
    if (target === 'gbps') {
      const met = gigabytes / total >= TARGET_PLAIN_GBPS;
      console.log(`  target >= ${TARGET_PLAIN_GBPS} GB/s end to end: ${met ? 'met' : 'NOT MET'}`);
      if (!met) failures++;
    }
    if (!yaraAvailable) continue;
    const yaraStarted = process.hrtime.bigint();
    const run = spawnSync('yara', ['-s', '-w', rulesFile, path], { encoding: 'latin1', maxBuffer: 1 << 30 });
    const yaraTime = secondsSince(yaraStarted);
    if (run.status !== 0) throw new Error(`yara failed: ${run.stderr}`);
    const theirs = keys(parseYaraOutput(run.stdout));
    const onlyOurs = [...ours].filter((key) => !theirs.has(key));
    const onlyTheirs = [...theirs].filter((key) => !ours.has(key));
    const ratio = yaraTime / total;
    console.log(`  yara -s: total ${yaraTime.toFixed(3)} s ${rate(yaraTime)}`);
    console.log(`  vmscope (${THREADS} threads) / yara: x${ratio.toFixed(2)}`);
    console.log(
      `  match sets: ${onlyOurs.length === 0 && onlyTheirs.length === 0 ? `agree (${theirs.size})` : `DIFFER: ${onlyOurs.length} only vmscope (${onlyOurs.slice(0, 3).join('; ')}), ${onlyTheirs.length} only yara (${onlyTheirs.slice(0, 3).join('; ')})`}`,
    );
    if (onlyOurs.length > 0 || onlyTheirs.length > 0) failures++;
    if (target === 'ratio') {
      const met = ratio >= TARGET_RATIO;
      console.log(`  target >= x${TARGET_RATIO} yara: ${met ? 'met' : 'NOT MET'}`);
      if (!met) failures++;
      // The issue's target is end to end: the installed command (start-up, attribution, output) against yara's process.
      const cliRatio = yaraTime / cli.seconds;
      const cliMet = cliRatio >= TARGET_RATIO;
      console.log(
        `  vmscope CLI end to end / yara: x${cliRatio.toFixed(2)} (target >= x${TARGET_RATIO}: ${cliMet ? 'met' : 'NOT MET'})`,
      );
      if (!cliMet) failures++;
    }
  }
} finally {
  await pool.close();
  image.close();
  rmSync(work, { recursive: true, force: true });
}
process.exit(failures > 0 ? 1 : 0);
