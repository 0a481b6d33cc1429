import type { Profile } from '../../symbols/profile.js';
import type { KernelReader } from './kernelReader.js';
import { optional } from './tasks.js';

/**
 * Before 2000 a guest clock was never set (no RTC: it counts from 1970 at boot), and a value past
 * 2200 is no clock at all: either way the file's mtime says more about when the dump was taken.
 */
const EARLIEST_PLAUSIBLE_CLOCK = Date.UTC(2000, 0, 1) / 1000;
const LATEST_PLAUSIBLE_CLOCK = Date.UTC(2200, 0, 1) / 1000;

/**
 * Where the core timekeeper's `struct tk_data` (or its unnamed predecessor) lives: `tk_core`
 * until 6.15; from 6.16 on `timekeeper_data[TIMEKEEPER_CORE]`, element 0 of an array of tk_data.
 */
const CORE_TIMEKEEPER_SYMBOLS = ['tk_core', 'timekeeper_data'] as const;

/**
 * The guest's wall clock when it stopped: the core timekeeper's `xtime_sec`, the CLOCK_REALTIME
 * seconds the kernel advances on every tick. Undefined when the kernel's symbols or types do not
 * describe it, or when it holds no plausible date.
 */
export function readGuestClock(reader: KernelReader): Date | undefined {
  const { profile } = reader;
  const base = CORE_TIMEKEEPER_SYMBOLS.map((name) => profile.symbol(name)).find((address) => address !== undefined);
  const timekeeperOffset = timekeeperInTkData(profile);
  if (base === undefined || timekeeperOffset === undefined || !profile.hasField('timekeeper', 'xtime_sec'))
    return undefined;
  const seconds = optional(() =>
    reader.u64(base + BigInt(timekeeperOffset) + reader.offset('timekeeper', 'xtime_sec')),
  );
  if (seconds === undefined || seconds < EARLIEST_PLAUSIBLE_CLOCK || seconds > LATEST_PLAUSIBLE_CLOCK) return undefined;
  return new Date(Number(seconds) * 1000);
}

/**
 * Where struct timekeeper sits in the core timekeeper. Since 6.13 it is a `struct tk_data`;
 * before, tk_core is declared with an anonymous `struct { seqcount_raw_spinlock_t seq; struct
 * timekeeper timekeeper; }`, which BTF keeps unnamed: it is found by those two members. The
 * offset comes from the profile either way (the sequence counter's size depends on the kernel's
 * lockdep configuration), and is undefined when the candidates disagree.
 */
function timekeeperInTkData(profile: Profile): number | undefined {
  const named = profile.type('tk_data')?.fields.timekeeper;
  if (named) return named.offset;
  const offsets = new Set<number>();
  for (const type of Object.values(profile.types.user_types)) {
    const { seq, timekeeper } = type.fields;
    if (seq && timekeeper?.type.kind === 'struct' && timekeeper.type.name === 'timekeeper')
      offsets.add(timekeeper.offset);
  }
  return offsets.size === 1 ? [...offsets][0] : undefined;
}
