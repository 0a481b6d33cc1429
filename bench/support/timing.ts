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
  for (let round = 0; round < ROUNDS; round++)
    best = Math.min(
      best,
      seconds(() => (result = run())),
    );
  return { cold, best, result };
}

export const milliseconds = (value: number) => `${(value * 1000).toFixed(1).padStart(7)} ms`;

/** coldAndBest for a search that runs on other threads. */
export async function coldAndBestAsync<T>(run: () => Promise<T>): Promise<{ cold: number; best: number; result: T }> {
  const timed = async () => {
    const started = process.hrtime.bigint();
    const result = await run();
    return { seconds: Number(process.hrtime.bigint() - started) / 1e9, result };
  };
  const first = await timed();
  let best = Infinity;
  let result = first.result;
  for (let round = 0; round < ROUNDS; round++) {
    const next = await timed();
    best = Math.min(best, next.seconds);
    result = next.result;
  }
  return { cold: first.seconds, best, result };
}
