/**
 * Live introspection (issue 19): one light check (task list, module list, hidden modules,
 * syscall tables, kernel hooks) of a running 512 MiB guest read in place from its shared RAM
 * file, against the same check on the QMP `dump-guest-memory` route (QEMU writes the dump, the
 * dump is opened and the kernel found again, the profile from the warm cache), in one run on
 * one guest; the guest's pause per check with --consistent; the monitor's peak RSS.
 * Targets: live check >= 20x faster than the dump route, pause <= 50 ms, RSS < 256 MiB.
 * Usage: node dist/bench/live.js   (boots the fixtures' guest under QEMU TCG, kills it at the end)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DumpContext, type CarriedKernel } from '../src/analyses/context.js';
import { hiddenModulesProvider, moduleListProvider, syscallReportProvider } from '../src/analyses/providers/modules.js';
import { taskListProvider } from '../src/analyses/providers/processes.js';
import { kernelHookFindingsProvider } from '../src/analyses/providers/tampering.js';
import { openQemuSharedMemory } from '../src/image/qemuSharedMemory.js';
import type { MemoryImage } from '../src/image/types.js';
import { readGuestRamLayout } from '../src/monitor/qemuLayout.js';
import { QmpClient } from '../src/monitor/qmp.js';
import { bootGuest } from '../test/support/liveGuest.js';

const LIVE_CHECKS = 7;
const DUMP_CHECKS = 3;

const work = mkdtempSync(join(tmpdir(), 'vmlive-'));
const cacheDir = join(work, 'profiles');
const ramPath = `/dev/shm/vmscope-bench-${process.pid}`;
let peakRss = 0;
const sampleRss = () => (peakRss = Math.max(peakRss, process.memoryUsage().rss));
const rssTimer = setInterval(sampleRss, 20);

/** The light check: what a watch must re-read every interval to see DKOM, module hiding and hooks. */
async function lightCheck(context: DumpContext): Promise<string> {
  const tasks = await context.get(taskListProvider);
  const modules = await context.get(moduleListProvider);
  const hidden = await context.get(hiddenModulesProvider);
  const syscalls = await context.get(syscallReportProvider);
  const hooks = await context.get(kernelHookFindingsProvider);
  sampleRss();
  return `${tasks.tasks.length} tasks, ${modules.modules.length} modules, ${hidden.hidden.length} hidden, ${syscalls.checks.filter((check) => check.hooked).length} hooked syscalls, ${hooks.findings.length} hook findings`;
}

async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function liveCheck(image: MemoryImage, carried: CarriedKernel | undefined): Promise<string> {
  const context = DumpContext.overLiveImage(image, { cacheDir }, carried);
  try {
    return await lightCheck(context);
  } finally {
    context.close();
  }
}

async function main(): Promise<void> {
  const guest = await bootGuest({
    mode: 'rootkit',
    tmpDir: work,
    extraArgs: [
      '-object',
      `memory-backend-file,id=ram0,size=512M,mem-path=${ramPath},share=on`,
      '-machine',
      'memory-backend=ram0',
    ],
  });
  const client = await QmpClient.connect(guest.qmpSocket);
  try {
    console.log(`guest ready after ${guest.bootMs} ms`);
    const image = openQemuSharedMemory(ramPath, await readGuestRamLayout(client, ramPath));
    // Warm-up: the profile derived once and cached (both routes then load it from the cache).
    const warm = DumpContext.overLiveImage(image, { cacheDir });
    const carried = await warm.carriedKernel();
    console.log(`warm-up: ${await lightCheck(warm)}`);
    warm.close();

    const live: number[] = [];
    let liveSeen = '';
    for (let index = 0; index < LIVE_CHECKS; index++) {
      const run = await timed(() => liveCheck(image, carried));
      live.push(run.ms);
      liveSeen = run.value;
    }

    const pauses: number[] = [];
    for (let index = 0; index < LIVE_CHECKS; index++) {
      await client.stop();
      const stoppedAt = performance.now();
      await liveCheck(image, carried);
      await client.cont();
      pauses.push(performance.now() - stoppedAt);
    }

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
    image.close();

    const liveMs = median(live);
    const dumpMs = median(dumps);
    const pauseMs = median(pauses);
    const rssMiB = peakRss / 2 ** 20;
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
      `--consistent pause per check: median ${pauseMs.toFixed(1)} ms of ${pauses.map((ms) => ms.toFixed(0)).join(', ')} (target <= 50 ms: ${verdict(pauseMs <= 50)})`,
    );
    console.log(`monitor peak RSS ${rssMiB.toFixed(0)} MiB (target < 256 MiB: ${verdict(rssMiB < 256)})`);
  } finally {
    clearInterval(rssTimer);
    await client.close();
    await guest.kill();
    rmSync(ramPath, { force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
