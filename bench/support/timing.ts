/** Rounds after the first (cold) run of a measured step. */
export const ROUNDS = 3;

export function seconds(run: () => unknown): number {
  const started = process.hrtime.bigint();
  run();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/**
 * The first run's time (JIT not warm, buffers not yet touched), the best of ROUNDS more, and
 * the last result.
 */
export function coldAndBest<T>(run: () => T): { cold: number; best: number; result: T } {
  let result!: T;
  const cold = seconds(() => (result = run()));
  let best = Infinity;
  for (let round = 0; round < ROUNDS; round++) best = Math.min(best, seconds(() => (result = run())));
  return { cold, best, result };
}

export const milliseconds = (value: number) => `${(value * 1000).toFixed(1).padStart(7)} ms`;
