import type { Profile } from '../../symbols/profile.js';

/** Per profile, the constants found for each prefix asked: a profile's enums never change, and a live monitor asks every check. */
const constantsByProfile = new WeakMap<Profile, Map<string, ReadonlyMap<string, bigint>>>();

/**
 * Constants the kernel declares in enums, looked up by name across every enum of the BTF (flag
 * sets such as FTRACE_OPS_FL_* and NFPROTO_* live in anonymous enums, which BTF names
 * `unnamed_btf_N`, so the enum's own name cannot be used). Only constants starting with `prefix`.
 */
export function enumConstants(profile: Profile, prefix: string): ReadonlyMap<string, bigint> {
  let byPrefix = constantsByProfile.get(profile);
  if (!byPrefix) constantsByProfile.set(profile, (byPrefix = new Map()));
  let found = byPrefix.get(prefix);
  if (found) return found;
  const constants = new Map<string, bigint>();
  for (const { constants: declared } of Object.values(profile.types.enums)) {
    for (const [name, value] of Object.entries(declared))
      if (name.startsWith(prefix)) constants.set(name, BigInt(value));
  }
  byPrefix.set(prefix, (found = constants));
  return found;
}

/** A flag set's single-bit constants, lowest bit first (ftrace names the flags of each of its ~40 000 records). */
const singleBitsByFlags = new WeakMap<ReadonlyMap<string, bigint>, ReadonlyArray<readonly [string, bigint]>>();

/** The names (prefix removed) of the single-bit constants set in `value`, lowest bit first. */
export function flagNames(flags: ReadonlyMap<string, bigint>, prefix: string, value: bigint): string[] {
  let singleBits = singleBitsByFlags.get(flags);
  if (!singleBits) {
    singleBits = [...flags]
      .filter(([, bit]) => bit !== 0n && (bit & (bit - 1n)) === 0n)
      .sort(([, a], [, b]) => (a < b ? -1 : a > b ? 1 : 0));
    singleBitsByFlags.set(flags, singleBits);
  }
  return singleBits.filter(([, bit]) => (value & bit) !== 0n).map(([name]) => name.slice(prefix.length));
}

/** The enumerator of the named enum `type` whose value is `value`. */
export function enumeratorName(profile: Profile, type: string, value: number | bigint): string | undefined {
  const constants = profile.types.enums[type]?.constants ?? {};
  return Object.keys(constants).find((name) => BigInt(constants[name]!) === BigInt(value));
}
