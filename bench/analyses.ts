/**
 * The core integrity analyses end to end, each run in a fresh (cold) Node process as a user
 * runs the CLI: pslist + psscan + psxview + syscalls + hidden-modules on one dump, with the profile
 * derived from the dump (no cache) and then loaded from the profile cache. Prints wall time,
 * peak RSS, and, as the baseline measured in the same run, the time to read the whole dump once.
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

function runCold(path: string, cacheDir: string | false): ChildReport {
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', path, cacheDir || ''], {
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new Error(`child failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as ChildReport;
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
} else {
  const path = process.argv[2] ?? fixturePath('linux61-rootkit', 'lime');
  const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-bench-profiles-'));
  readWholeDump(path); // into the page cache
  const baseline = readWholeDump(path);
  const derived = runCold(path, false);
  runCold(path, cacheDir); // fills the cache
  const cached = runCold(path, cacheDir);
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
}
