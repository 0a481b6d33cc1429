/**
 * Live introspection (issue 19): one light check (task list, module list, hidden modules,
 * syscall tables, kernel hooks) of a running 512 MiB guest read in place from its shared RAM
 * file through the watch's QemuSharedMemorySource (kernel and profile carried, the last carve
 * re-read instead of a new one), against the same check on the QMP `dump-guest-memory` route
 * (QEMU writes the dump, the dump is opened and the kernel found again, the profile from the
 * warm cache), in one run on one guest; the guest's pause per check with --consistent; the
 * monitor's peak RSS. Each live run is a monitor process of its own (this file, run with
 * --monitor), as a deployed monitor is: its RSS is not that of the other run's leftovers, nor
 * of the dump route's checks.
 * Targets: live check >= 20x faster than the dump route, pause <= 50 ms, RSS < 256 MiB.
 * Usage: node dist/bench/live.js   (boots the fixtures' guest under QEMU TCG, kills it at the end)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DumpContext } from '../src/analyses/context.js';
import { hiddenModulesProvider, moduleListProvider, syscallReportProvider } from '../src/analyses/providers/modules.js';
import { taskListProvider } from '../src/analyses/providers/processes.js';
import { kernelHookFindingsProvider } from '../src/analyses/providers/tampering.js';
import { QmpClient } from '../src/monitor/qmp.js';
import { QemuSharedMemorySource } from '../src/monitor/sources/qemuSharedMemorySource.js';
import { bootGuest, sharedRamArgs } from '../test/support/liveGuest.js';

const LIVE_CHECKS = 7;
const DUMP_CHECKS = 3;

/** The light check: what a watch must re-read every interval to see DKOM, module hiding and hooks. */
async function lightCheck(context: DumpContext): Promise<string> {
  const tasks = await context.get(taskListProvider);
  const modules = await context.get(moduleListProvider);
  const hidden = await context.get(hiddenModulesProvider);
  const syscalls = await context.get(syscallReportProvider);
  const hooks = await context.get(kernelHookFindingsProvider);
  return `${tasks.tasks.length} tasks, ${modules.modules.length} modules, ${hidden.hidden.length} hidden, ${syscalls.checks.filter((check) => check.hooked).length} hooked syscalls, ${hooks.findings.length} hook findings`;
}

async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

/**
 * The process's peak RSS as the kernel counts it (getrusage's ru_maxrss, KiB): it includes the
 * peaks inside synchronous work (the profile's derivation), which no timer sampling
 * process.memoryUsage() can see.
 */
const peakRssMiB = () => process.resourceUsage().maxRSS / 1024;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** What one monitor process measured. */
interface LiveRun {
  readonly ms: number[];
  readonly pausedMs: number[];
  readonly seen: string;
  /** Consistent checks that read a page their copy lacked (the watch would have read them again). */
  readonly smeared: number;
  readonly peakRssMiB: number;
}

/** `checks` light checks through the watch's own live source (carried kernel, carve reused); the pause of each when consistent. */
async function liveChecks(
  { ramPath, qmpSocket, cacheDir }: { ramPath: string; qmpSocket: string; cacheDir: string },
  consistent: boolean,
  checks: number,
): Promise<LiveRun> {
  const source = new QemuSharedMemorySource({
    ramPath,
    qmpSocket,
    consistent,
    intervalMs: 0,
    // This file runs as dist/bench/live.js: the thread is bundled beside the CLI, one folder up.
    profileThread: new URL('../profileThread.js', import.meta.url),
  });
  const ms: number[] = [];
  const pausedMs: number[] = [];
  let seen = '';
  let smeared = 0;
  try {
    // The first snapshot carves all of memory (and warms the profile cache): not a light check.
    for await (const snapshot of source) {
      const run = await timed(async () => {
        const context = await snapshot.openContext!({ cacheDir });
        try {
          return await lightCheck(context);
        } finally {
          context.close();
        }
      });
      await snapshot.release();
      if (snapshot.pausedMs !== undefined) pausedMs.push(snapshot.pausedMs);
      if (consistent && ms.length > 0 && snapshot.smeared) smeared++;
      ms.push(run.ms);
      seen = run.value;
      if (ms.length > checks) break;
    }
  } finally {
    await source.close();
  }
  return { ms: ms.slice(1), pausedMs: pausedMs.slice(1), seen, smeared, peakRssMiB: peakRssMiB() };
}

/** One live run in a monitor process of its own: this file with --monitor, which prints its LiveRun as JSON. */
function liveRunInProcess(
  target: { ramPath: string; qmpSocket: string; cacheDir: string },
  consistent: boolean,
): LiveRun {
  const run = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), '--monitor', JSON.stringify({ ...target, consistent })],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  if (run.status !== 0) throw new Error(`the monitor process failed (${run.status ?? run.signal})`);
  return JSON.parse(run.stdout) as LiveRun;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'vmlive-'));
  const cacheDir = join(work, 'profiles');
  const ramPath = `/dev/shm/vmscope-bench-${process.pid}`;
  const guest = await bootGuest({
    mode: 'rootkit',
    tmpDir: work,
    extraArgs: sharedRamArgs(ramPath),
  });
  try {
    console.log(`guest ready after ${guest.bootMs} ms`);
    const target = { ramPath, qmpSocket: guest.qmpSocket, cacheDir };
    const smeared = liveRunInProcess(target, false);
    const consistent = liveRunInProcess(target, true);
    const live = smeared.ms;
    const liveSeen = smeared.seen;
    const pauses = consistent.pausedMs;

    const client = await QmpClient.connect(guest.qmpSocket);
    const dumps: number[] = [];
    let dumpSeen = '';
    for (let index = 0; index < DUMP_CHECKS; index++) {
      const dump = join(work, `dump-${index}.elf`);
      const run = await timed(async () => {
        await client.dumpGuestMemory(dump);
        const context = new DumpContext(dump, { cacheDir });
        try {
          return await lightCheck(context);
        } finally {
          context.close();
        }
      });
      rmSync(dump, { force: true });
      dumps.push(run.ms);
      dumpSeen = run.value;
    }
    await client.close();

    const liveMs = median(live);
    const dumpMs = median(dumps);
    const pauseMs = median(pauses);
    const rssMiB = Math.max(smeared.peakRssMiB, consistent.peakRssMiB);
    const verdict = (met: boolean) => (met ? 'met' : 'NOT met');
    console.log(`live source:  ${liveSeen}`);
    console.log(`dump route:   ${dumpSeen}`);
    console.log(
      `light check, live shared memory:  median ${liveMs.toFixed(1)} ms of ${live.map((ms) => ms.toFixed(0)).join(', ')}`,
    );
    console.log(
      `light check, QMP dump-guest-memory: median ${dumpMs.toFixed(1)} ms of ${dumps.map((ms) => ms.toFixed(0)).join(', ')}`,
    );
    console.log(`speed-up ${(dumpMs / liveMs).toFixed(1)}x (target >= 20x: ${verdict(dumpMs / liveMs >= 20)})`);
    console.log(
      `--consistent pause per check: median ${pauseMs.toFixed(1)} ms of ${pauses.map((ms) => ms.toFixed(0)).join(', ')} (target <= 50 ms: ${verdict(pauseMs <= 50)}); ${consistent.smeared} of ${pauses.length} checks read a page their copy lacked`,
    );
    console.log(
      `monitor peak RSS ${rssMiB.toFixed(0)} MiB (smeared run, which derives the profile into the empty cache: ${smeared.peakRssMiB.toFixed(0)}; consistent run, profile from the cache: ${consistent.peakRssMiB.toFixed(0)}; target < 256 MiB: ${verdict(rssMiB < 256)})`,
    );
  } finally {
    await guest.kill();
    rmSync(ramPath, { force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

const monitorArgument = process.argv.indexOf('--monitor');
if (monitorArgument >= 0) {
  const { consistent, ...target } = JSON.parse(process.argv[monitorArgument + 1]!) as {
    ramPath: string;
    qmpSocket: string;
    cacheDir: string;
    consistent: boolean;
  };
  process.stdout.write(JSON.stringify(await liveChecks(target, consistent, LIVE_CHECKS)));
} else {
  await main();
}
