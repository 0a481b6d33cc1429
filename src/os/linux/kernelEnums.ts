import type { Profile } from '../../symbols/profile.js';

/**
 * The names (prefix removed) of the single-bit constants of `flags` set in a value, lowest bit
 * first: the bits are sorted once, for the tens of thousands of ftrace records named with them.
 */
export function flagNamer(flags: ReadonlyMap<string, bigint>, prefix: string): (value: bigint) => string[] {
  const bits = [...flags]
    .filter(([, bit]) => bit !== 0n && (bit & (bit - 1n)) === 0n)
    .sort(([, a], [, b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, bit]) => ({ name: name.slice(prefix.length), bit }));
  return (value) => bits.filter(({ bit }) => (value & bit) !== 0n).map(({ name }) => name);
}

/** The enumerator of the named enum `type` whose value is `value`. */
export function enumeratorName(profile: Profile, type: string, value: number | bigint): string | undefined {
  const constants = profile.types.enums[type]?.constants ?? {};
  return Object.keys(constants).find((name) => BigInt(constants[name]!) === BigInt(value));
}
