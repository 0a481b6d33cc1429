/**
 * `vmscope batch` throughput: 8 copies of one dump (hard links under other names, so each is
 * a dump of its own to the batch) through check,pslist,yarascan with --jobs 1 and --jobs 2,
 * each run a fresh `node dist/cli.js batch` process so its peak RSS (getrusage, worker threads
 * included, reported in summary.json) is the batch's alone. The profile cache is warmed first
 * and the dump is in the page cache for both runs: what is compared is the analysis work.
 * Also prints the peak of a batch over no dump (the process's own baseline), so that
 * peak(jobs 1) - baseline is the measured cost of one dump job (ESTIMATED_JOB_BYTES).
 * Usage: node dist/bench/batch.js [dump] (default: the linux61-rootkit LiME fixture).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESTIMATED_JOB_BYTES, type BatchSummary } from '../src/batch/batch.js';
import { fixturePath, truth } from '../test/support/fixtures.js';

const COPIES = 8;
const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../cli.js');
const MiB = 2 ** 20;

const dump = process.argv[2] ?? fixturePath('linux61-rootkit', 'lime');
const work = mkdtempSync(join(tmpdir(), 'vmscope-bench-batch-'));
const dumpsDir = join(work, 'dumps');
const cacheDir = join(work, 'profiles');
const rulesFile = join(work, 'markers.yar');

function linkOrCopy(source: string, target: string): void {
  try {
    linkSync(source, target);
  } catch {
    copyFileSync(source, target); // another file system: a copy reads the same
  }
}

/** One `vmscope batch` process over `inputs`; its summary and wall time. */
function batch(
  inputs: readonly string[],
  outDir: string,
  jobs: number,
): { summary: BatchSummary; wallSeconds: number } {
  const started = performance.now();
  const child = spawnSync(
    process.execPath,
    [
      CLI,
      'batch',
      ...inputs,
      '--run',
      'check,pslist,yarascan',
      '--rules',
      rulesFile,
      '--out',
      outDir,
      '--jobs',
      String(jobs),
      '--cache-dir',
      cacheDir,
      '--json',
      '--no-progress',
    ],
    { encoding: 'utf8', maxBuffer: 64 * MiB },
  );
  const wallSeconds = (performance.now() - started) / 1000;
  if (child.status !== 0 && child.status !== 1)
    throw new Error(`batch --jobs ${jobs} exited ${child.status}: ${child.stderr}`);
  const summary = JSON.parse(child.stdout) as BatchSummary;
  if (summary.totals.failed > 0) throw new Error(`batch --jobs ${jobs}: ${summary.totals.failed} dumps failed`);
  return { summary, wallSeconds };
}

try {
  mkdirSync(dumpsDir);
  const markers = truth('linux61-rootkit').markers as Array<{ kind: string; value: string }>;
  writeFileSync(
    rulesFile,
    markers
      .map(
        ({ kind, value }) =>
          `rule ${kind} { strings: $s = "${value.replace(/[\\"]/g, (char) => `\\${char}`)}" condition: $s }`,
      )
      .join('\n'),
  );
  for (let i = 0; i < COPIES; i++) linkOrCopy(dump, join(dumpsDir, `guest-${i}${extname(dump) || '.raw'}`));

  const emptyDir = join(work, 'empty');
  mkdirSync(emptyDir);
  const baseline = batch([emptyDir], join(work, 'out-empty'), 1).summary.peakRssBytes;
  batch([join(dumpsDir, `guest-0${extname(dump) || '.raw'}`)], join(work, 'out-warm'), 1); // derives the profile into the cache

  console.log(`${COPIES} copies of ${dump}, check,pslist,yarascan, profile cache warm`);
  const runs = [1, 2].map((jobs) => {
    const { summary, wallSeconds } = batch([dumpsDir], join(work, `out-${jobs}`), jobs);
    const perMinute = (summary.totals.analysed / wallSeconds) * 60;
    console.log(
      `--jobs ${jobs}: ${summary.totals.analysed} dumps in ${wallSeconds.toFixed(1)} s = ${perMinute.toFixed(1)} dumps/min, ` +
        `${(summary.totals.bytes / MiB / wallSeconds).toFixed(0)} MiB/s, peak RSS ${(summary.peakRssBytes / MiB).toFixed(0)} MiB`,
    );
    return { jobs, perMinute, peak: summary.peakRssBytes };
  });
  const [one, two] = runs as [(typeof runs)[0], (typeof runs)[0]];
  console.log(
    `speedup --jobs 2 / --jobs 1: ${(two.perMinute / one.perMinute).toFixed(2)}x; peak RSS ratio ${(two.peak / one.peak).toFixed(2)}x`,
  );
  console.log(
    `peak RSS of an empty batch ${(baseline / MiB).toFixed(0)} MiB; per dump job measured ${((one.peak - baseline) / MiB).toFixed(0)} MiB (jobs 1), ` +
      `${((two.peak - baseline) / 2 / MiB).toFixed(0)} MiB each (jobs 2); budget estimate ESTIMATED_JOB_BYTES ${(ESTIMATED_JOB_BYTES / MiB).toFixed(0)} MiB`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
