import type { Profile } from '../../symbols/profile.js';

/** Every enum constant of a profile by name (a later enum's value wins): built once, asked for by many prefixes. */
const allConstants = new WeakMap<Profile, Map<string, bigint>>();

/**
 * Constants the kernel declares in enums, looked up by name across every enum of the BTF (flag
 * sets such as FTRACE_OPS_FL_* and NFPROTO_* live in anonymous enums, which BTF names
 * `unnamed_btf_N`, so the enum's own name cannot be used). Only constants starting with `prefix`.
 */
export function enumConstants(profile: Profile, prefix: string): Map<string, bigint> {
  let all = allConstants.get(profile);
  if (!all) {
    all = new Map();
    for (const { constants } of Object.values(profile.types.enums)) {
      for (const [name, value] of Object.entries(constants)) all.set(name, BigInt(value));
    }
    allConstants.set(profile, all);
  }
  return new Map([...all].filter(([name]) => name.startsWith(prefix)));
}

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
