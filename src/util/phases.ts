/**
 * Where a command's fixed cost goes (bench/startup.ts): with VMSCOPE_PHASES=1 in the environment
 * each timed phase is recorded as an interval of performance.now() (milliseconds since the
 * process started) and the CLI writes them, once, as one JSON line on stderr. Phases may nest
 * (kernel discovery runs inside the analysis that first needs it); the reader subtracts. Without
 * the variable a phase costs one boolean test.
 */
export interface PhaseInterval {
  readonly phase: string;
  readonly start: number;
  readonly end: number;
}

/** The key of the JSON line on stderr, so a reader tells it from warnings. */
export const PHASES_KEY = 'vmscope_phases';

const enabled = process.env.VMSCOPE_PHASES === '1';
const recorded: PhaseInterval[] = [];

export function recordPhase(phase: string, start: number, end: number): void {
  if (enabled) recorded.push({ phase, start, end });
}

export function timed<T>(phase: string, run: () => T): T {
  if (!enabled) return run();
  const start = performance.now();
  try {
    return run();
  } finally {
    recordPhase(phase, start, performance.now());
  }
}

export async function timedAsync<T>(phase: string, run: () => Promise<T>): Promise<T> {
  if (!enabled) return run();
  const start = performance.now();
  try {
    return await run();
  } finally {
    recordPhase(phase, start, performance.now());
  }
}

/**
 * Writes the recorded phases to stderr (when enabled), the moment of the call, and the CPU time
 * spent so far (on a busy machine the CPU time is steadier than the wall time).
 */
export function reportPhases(): void {
  if (!enabled) return;
  const { user, system } = process.cpuUsage();
  const report = { [PHASES_KEY]: recorded, end: performance.now(), cpu: (user + system) / 1000 };
  process.stderr.write(`${JSON.stringify(report)}\n`);
}
