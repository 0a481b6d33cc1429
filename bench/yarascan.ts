/**
 * Rule scanning against the yara CLI, in one process and one run, on a 512 MiB raw dump (file
 * offset = physical address, so both report the same offsets): (a) one plain string, (b) the
 * equivalence corpus of test/rules (every supported construct). For each: yara -s's time,
 * vmscope's best time on one thread and on a pool of two, the ratio, GB/s, and whether the
 * (rule, string, offset) sets agree. Targets: (a) >= 5 GB/s, (b) >= 3x yara on two threads.
 * The corpus's global rule (`filesize < 1MB`, there to test global rules on small inputs) would
 * hide every match on a dump, so its gate is lifted here, for both tools alike.
 * Usage: node dist/bench/yarascan.js [raw dump]. Needs `yara` (Debian: apt-get install yara)
 * for the baseline; without it, vmscope's numbers are printed and the baseline is skipped.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openImage } from '../src/image/open.js';
import { compileSource } from '../src/rules/compile.js';
import { RuleScanner } from '../src/rules/scanner.js';
import { ScanPool } from '../src/workers/scanPool.js';
import { fixturePath, truth } from '../test/support/fixtures.js';
import { parseYaraOutput } from '../test/rules/yaraOutput.js';
import { coldAndBest, coldAndBestAsync, seconds } from './support/timing.js';

// This bundle lives in dist/bench: the worker bundle one level up, the repository two.
const WORKER_SCRIPT = new URL('../scanWorker.js', import.meta.url);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const THREADS = 2;
const TARGET_PLAIN_GBPS = 5;
const TARGET_CORPUS_RATIO = 3;

const path = process.argv[2] ?? fixturePath('linux61-clean', 'raw');
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
const cases = [
  {
    name: '(a) one plain string',
    source: `rule plain { strings: $a = "${labmark}" condition: $a }`,
    target: 'gbps' as const,
  },
  {
    name: '(b) the rules corpus',
    source: readFileSync(join(repoRoot, 'test/rules/corpus/corpus.yar'), 'utf8').replace(
      /^global rule global_small_input/m,
      'rule global_small_input',
    ),
    target: 'ratio' as const,
  },
];

const image = openImage(path);
const gigabytes = image.totalBytes / 1e9;
const rate = (time: number) => `${(gigabytes / time).toFixed(2).padStart(6)} GB/s`;
const pool = await ScanPool.create({ threads: THREADS, workerScript: WORKER_SCRIPT });
let failures = 0;
try {
  for (const { name, source, target } of cases) {
    const rulesFile = join(work, 'rules.yar');
    writeFileSync(rulesFile, source);
    const scanner = RuleScanner.create(compileSource(source, 'rules.yar'));
    const single = coldAndBest(() => scanner.scanImage(image));
    const pooled = await coldAndBestAsync(() => pool.scanRules(path, scanner, source, 'rules.yar'));
    const ours = new Set(
      scanner
        .evaluate(pooled.result.hits, image.totalBytes)
        .flatMap((match) => match.strings.map((hit) => `${hit.rule} ${hit.string} ${hit.offset}`)),
    );
    console.log(`\n${name}: ${ours.size} string matches`);
    console.log(
      `  vmscope, 1 thread   ${single.best.toFixed(3)} s ${rate(single.best)} (cold ${single.cold.toFixed(3)} s)`,
    );
    console.log(
      `  vmscope, ${THREADS} threads  ${pooled.best.toFixed(3)} s ${rate(pooled.best)} (cold ${pooled.cold.toFixed(3)} s)`,
    );
    if (target === 'gbps') {
      const best = Math.min(single.best, pooled.best);
      const met = gigabytes / best >= TARGET_PLAIN_GBPS;
      console.log(`  target >= ${TARGET_PLAIN_GBPS} GB/s: ${met ? 'met' : 'NOT MET'}`);
      if (!met) failures++;
    }
    if (!yaraAvailable) continue;
    let output = '';
    const yaraTime = seconds(() => {
      const run = spawnSync('yara', ['-s', rulesFile, path], { encoding: 'latin1', maxBuffer: 1 << 30 });
      if (run.status !== 0) throw new Error(`yara failed: ${run.stderr}`);
      output = run.stdout;
    });
    const theirs = new Set(
      parseYaraOutput(output).flatMap((report) =>
        report.strings.map((hit) => `${report.rule} ${hit.string} ${hit.offset}`),
      ),
    );
    const onlyOurs = [...ours].filter((key) => !theirs.has(key));
    const onlyTheirs = [...theirs].filter((key) => !ours.has(key));
    const ratio = yaraTime / pooled.best;
    console.log(`  yara -s             ${yaraTime.toFixed(3)} s ${rate(yaraTime)}`);
    console.log(
      `  vmscope ${THREADS} threads / yara: x${ratio.toFixed(2)} (1 thread: x${(yaraTime / single.best).toFixed(2)})`,
    );
    console.log(
      `  match sets: ${onlyOurs.length === 0 && onlyTheirs.length === 0 ? `agree (${theirs.size})` : `DIFFER: ${onlyOurs.length} only vmscope (${onlyOurs.slice(0, 3).join('; ')}), ${onlyTheirs.length} only yara (${onlyTheirs.slice(0, 3).join('; ')})`}`,
    );
    if (onlyOurs.length > 0 || onlyTheirs.length > 0) failures++;
    if (target === 'ratio') {
      const met = ratio >= TARGET_CORPUS_RATIO;
      console.log(`  target >= x${TARGET_CORPUS_RATIO} yara on ${THREADS} threads: ${met ? 'met' : 'NOT MET'}`);
      if (!met) failures++;
    }
  }
} finally {
  await pool.close();
  image.close();
  rmSync(work, { recursive: true, force: true });
}
process.exit(failures > 0 ? 1 : 0);
