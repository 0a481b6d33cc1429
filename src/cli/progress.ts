import type CliProgress from 'cli-progress';
import { lazyRequire } from '../util/lazyRequire.js';

/** Drawn on a terminal only: loaded then, not at every start-up. */
export const progressBars = lazyRequire<typeof CliProgress>('cli-progress');

export type ProgressReporter = (phase: string, done: number, total: number) => void;

/** A bar on stderr when a person is watching (TTY); nothing when piped or when asked to be quiet. */
export function createProgress(enabled: boolean): { report: ProgressReporter; stop: () => void } {
  if (!enabled || !process.stderr.isTTY) return { report: () => {}, stop: () => {} };
  const cliProgress = progressBars();
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: '{phase} [{bar}] {percentage}% {doneMiB}/{totalMiB} MiB {rate} MiB/s',
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let currentPhase = '';
  let startTime = 0;
  return {
    report(phase, done, total) {
      if (!started) {
        bar.start(total, done, { phase, doneMiB: 0, totalMiB: (total / 2 ** 20).toFixed(0), rate: '-' });
        started = true;
      }
      // Each phase has its own rate: time spent before it is not its throughput.
      if (phase !== currentPhase) {
        currentPhase = phase;
        startTime = performance.now();
      }
      const seconds = (performance.now() - startTime) / 1000;
      bar.setTotal(total);
      bar.update(done, {
        phase,
        doneMiB: (done / 2 ** 20).toFixed(0),
        totalMiB: (total / 2 ** 20).toFixed(0),
        rate: seconds > 0 ? (done / 2 ** 20 / seconds).toFixed(0) : '-',
      });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
