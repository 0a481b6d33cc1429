/**
 * The core integrity analyses end to end, each run in a fresh (cold) Node process as a user
 * runs the CLI: pslist + psscan + psxview + syscalls + hidden-modules on one dump, with the profile
 * derived from the dump (no cache) and then loaded from the profile cache. Prints wall time,
 * peak RSS, and, as the baseline measured in the same run, the time to read the whole dump once.
 * Then the process-state analyses (sockstat, maps of all processes, malfind, lsof), each alone in
 * a cold process with the profile cached: its own time (kernel located and profile loaded
 * first, timed apart), the whole process's, and peak RSS.
 * Usage: node dist/bench/analyses.js [dump] (default: the linux61-rootkit LiME fixture).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DumpContext } from '../src/analyses/context.js';
import { findAnalysis } from '../src/analyses/registry.js';
import { openImage } from '../src/image/open.js';
import { fixturePath } from '../test/support/fixtures.js';
import { seconds } from './support/timing.js';

const ANALYSES = ['pslist', 'psscan', 'psxview', 'syscalls', 'hidden-modules'];
const PROCESS_STATE_ANALYSES = ['sockstat', 'maps', 'malfind', 'lsof'];

interface ChildReport {
  seconds: number;
  maxRssMiB: number;
  rows: Record<string, number>;
}

async function runInThisProcess(path: string, cacheDir: string | false): Promise<ChildReport> {
  const started = process.hrtime.bigint();
  const context = new DumpContext(path, { cacheDir });
  const rows: Record<string, number> = {};
  for (const name of ANALYSES) {
    const analysis = findAnalysis(name);
    if (!analysis) throw new Error(`no analysis ${name}`);
    rows[name] = (await analysis.run(context, {})).rows.length;
  }
  context.close();
  return {
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    rows,
  };
}

interface SingleReport extends ChildReport {
  /** The analysis alone, the kernel and profile already found. */
  analysisSeconds: number;
}

async function runOneInThisProcess(name: string, path: string, cacheDir: string): Promise<SingleReport> {
  const started = process.hrtime.bigint();
  const context = new DumpContext(path, { cacheDir });
  await context.profile();
  const ready = process.hrtime.bigint();
  const analysis = findAnalysis(name);
  if (!analysis) throw new Error(`no analysis ${name}`);
  const rows = (await analysis.run(context, {})).rows.length;
  const done = process.hrtime.bigint();
  context.close();
  return {
    seconds: Number(done - started) / 1e9,
    analysisSeconds: Number(done - ready) / 1e9,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    rows: { [name]: rows },
  };
}

function runCold<Report = ChildReport>(path: string, cacheDir: string | false, only?: string): Report {
  const args = only ? ['--one', only, path, cacheDir || ''] : ['--child', path, cacheDir || ''];
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...args], { encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`child failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as Report;
}

function readWholeDump(path: string): number {
  const image = openImage(path);
  const chunk = new Uint8Array(4 << 20);
  const elapsed = seconds(() => {
    for (const range of image.ranges)
      for (let at = range.start; at < range.end; at += chunk.length)
        image.readPresent(at, chunk.subarray(0, Math.min(chunk.length, range.end - at)));
  });
  image.close();
  return elapsed;
}

if (process.argv[2] === '--child') {
  const report = await runInThisProcess(process.argv[3]!, process.argv[4] || false);
  process.stdout.write(JSON.stringify(report));
} else if (process.argv[2] === '--one') {
  const report = await runOneInThisProcess(process.argv[3]!, process.argv[4]!, process.argv[5]!);
  process.stdout.write(JSON.stringify(report));
} else {
  const path = process.argv[2] ?? fixturePath('linux61-rootkit', 'lime');
  const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-bench-profiles-'));
  readWholeDump(path); // into the page cache
  const baseline = readWholeDump(path);
  const derived = runCold(path, false);
  runCold(path, cacheDir); // fills the cache
  const cached = runCold(path, cacheDir);
  const processState = PROCESS_STATE_ANALYSES.map((name) => runCold<SingleReport>(path, cacheDir, name));
  rmSync(cacheDir, { recursive: true, force: true });
  console.log(`${path}: ${ANALYSES.join(' + ')} in a cold process`);
  console.log(`  baseline: read the whole dump once       ${baseline.toFixed(3)} s`);
  for (const [label, report] of [
    ['profile derived from the dump', derived],
    ['profile from the cache       ', cached],
  ] as const) {
    console.log(
      `  ${label}  ${report.seconds.toFixed(3)} s  (×${(report.seconds / baseline).toFixed(1)} the read)  peak RSS ${report.maxRssMiB.toFixed(0)} MiB  rows ${JSON.stringify(report.rows)}`,
    );
  }
  console.log(`process-state analyses, each alone in a cold process (profile from the cache):`);
  for (const report of processState) {
    const [name, rows] = Object.entries(report.rows)[0]!;
    console.log(
      `  ${name.padEnd(9)} ${report.analysisSeconds.toFixed(3)} s  (whole process ${report.seconds.toFixed(3)} s)  peak RSS ${report.maxRssMiB.toFixed(0)} MiB  rows ${rows}`,
    );
  }
}
