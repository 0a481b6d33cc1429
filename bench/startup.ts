/**
 * The fixed cost of every command: each command runs as the installed CLI does (a new
 * `node bin/vmscope.js` process, not npx) on a 512 MiB dump with a warm profile cache and a
 * warm code cache of the CLI bundle (both filled by a first run in this bench's own folder), and
 * reports where its time went (VMSCOPE_PHASES=1, src/util/phases.ts). Usage:
 * node dist/bench/startup.js [dump] [runs] (default: the linux61-clean ELF fixture, 3 runs per
 * command; the run with the median wall time is shown). Phases are exclusive: the analysis
 * column is the analysis without the discovery, WASM compile and profile load it triggered.
 * The baseline is a bare `node` start measured in the same run. Exits 1 when a target of
 * issue 16 (info ≤ 0.3 s, pslist ≤ 0.5 s, check ≤ 0.8 s wall) is not met.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PHASES_KEY, type PhaseInterval } from '../src/util/phases.js';
import { fixturePath, repoRoot } from '../test/support/fixtures.js';

const dump = process.argv[2] ?? fixturePath('linux61-clean', 'elf');
const runs = Number(process.argv[3] ?? 3);
const work = mkdtempSync(join(tmpdir(), 'vmscope-startup-'));
const rules = join(work, 'one-string.yar');
writeFileSync(rules, 'rule one_string { strings: $a = "LABMARK-7f3a9c" condition: $a }\n');

const COMMANDS: Array<{ name: string; args: string[]; targetSeconds?: number }> = [
  { name: 'info', args: ['info', dump], targetSeconds: 0.3 },
  { name: 'pslist', args: ['pslist', dump], targetSeconds: 0.5 },
  { name: 'psscan', args: ['psscan', dump] },
  { name: 'check', args: ['check', dump], targetSeconds: 0.8 },
  { name: 'yarascan (one string)', args: ['yarascan', '--rules', rules, dump] },
];
const COLUMNS = ['start', 'wasm compile', 'image open', 'kernel discovery', 'profile', 'analysis', 'output', 'exit'];
/** Phases that run inside the analysis that first needs them. */
const NESTED = ['wasm compile', 'kernel discovery', 'profile'];

interface Run {
  wall: number;
  cpu: number;
  phases: Map<string, number>;
}

function runCommand(args: string[]): Run {
  const started = performance.now();
  const result = spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), ...args], {
    env: {
      ...process.env,
      VMSCOPE_PHASES: '1',
      VMSCOPE_CACHE_DIR: join(work, 'profiles'),
      XDG_CACHE_HOME: join(work, 'xdg'),
    },
    encoding: 'utf8',
    maxBuffer: 256 << 20,
  });
  const wall = performance.now() - started;
  if (result.status !== 0 && result.status !== 1)
    throw new Error(`vmscope ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  const line = result.stderr.split('\n').find((text) => text.startsWith(`{"${PHASES_KEY}"`));
  if (!line) throw new Error(`vmscope ${args.join(' ')} wrote no phases: ${result.stderr}`);
  const report = JSON.parse(line) as { [PHASES_KEY]: PhaseInterval[]; end: number; cpu: number };
  const intervals = report[PHASES_KEY];
  const phases = new Map<string, number>();
  for (const { phase, start, end } of intervals) phases.set(phase, (phases.get(phase) ?? 0) + end - start);
  const nested = intervals
    .filter(({ phase }) => NESTED.includes(phase))
    .reduce((sum, { start, end }) => sum + end - start, 0);
  if (phases.has('analysis')) phases.set('analysis', phases.get('analysis')! - nested);
  // What the process spends after the last phase (teardown, exit) and before the first (spawn) is the rest.
  phases.set('exit', wall - report.end);
  return { wall: wall / 1000, cpu: report.cpu / 1000, phases };
}

function bareNodeStart(): number {
  const started = performance.now();
  spawnSync(process.execPath, ['-e', '']);
  return (performance.now() - started) / 1000;
}

const median = <T>(items: T[], key: (item: T) => number) =>
  [...items].sort((a, b) => key(a) - key(b))[Math.floor(items.length / 2)]!;

try {
  console.log(`${dump}: ${runs} runs per command, warm profile cache, wall times of the median run (seconds)`);
  runCommand(['pslist', dump]); // fills the profile cache and the code cache
  const baseline = median(Array.from({ length: runs }, bareNodeStart), (value) => value);
  console.log(`baseline: a bare node start takes ${baseline.toFixed(3)} s`);
  console.log(
    `${'command'.padEnd(22)}${COLUMNS.map((column) => column.padStart(17)).join('')}${'total'.padStart(9)}${'cpu'.padStart(8)}${'/node'.padStart(7)}  target`,
  );
  let missed = 0;
  for (const command of COMMANDS) {
    const run = median(
      Array.from({ length: runs }, () => runCommand(command.args)),
      (item) => item.wall,
    );
    const cells = COLUMNS.map((column) => (run.phases.get(column) ?? 0) / 1000);
    const met = command.targetSeconds === undefined ? undefined : run.wall <= command.targetSeconds;
    if (met === false) missed++;
    console.log(
      `${command.name.padEnd(22)}${cells.map((cell) => cell.toFixed(3).padStart(17)).join('')}` +
        `${run.wall.toFixed(3).padStart(9)}${run.cpu.toFixed(3).padStart(8)}${(run.wall / baseline).toFixed(1).padStart(7)}` +
        `  ${command.targetSeconds === undefined ? '' : `≤ ${command.targetSeconds} s: ${met ? 'met' : 'NOT met'}`}`,
    );
  }
  if (missed > 0) process.exitCode = 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
