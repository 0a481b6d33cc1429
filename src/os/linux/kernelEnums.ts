import type { Profile } from '../../symbols/profile.js';

/**
 * Constants the kernel declares in enums, looked up by name across every enum of the BTF (flag
 * sets such as FTRACE_OPS_FL_* and NFPROTO_* live in anonymous enums, which BTF names
 * `unnamed_btf_N`, so the enum's own name cannot be used). Only constants starting with `prefix`.
 */
export function enumConstants(profile: Profile, prefix: string): Map<string, bigint> {
  const found = new Map<string, bigint>();
  for (const { constants } of Object.values(profile.types.enums)) {
    for (const [name, value] of Object.entries(constants)) if (name.startsWith(prefix)) found.set(name, BigInt(value));
  }
  return found;
}

/** The names (prefix removed) of the single-bit constants set in `value`, lowest bit first. */
export function flagNames(flags: ReadonlyMap<string, bigint>, prefix: string, value: bigint): string[] {
  return [...flags]
    .filter(([, bit]) => bit !== 0n && (bit & (bit - 1n)) === 0n && (value & bit) !== 0n)
    .sort(([, a], [, b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name]) => name.slice(prefix.length));
}

/** The enumerator of the named enum `type` whose value is `value`. */
export function enumeratorName(profile: Profile, type: string, value: number | bigint): string | undefined {
  const constants = profile.types.enums[type]?.constants ?? {};
  return Object.keys(constants).find((name) => BigInt(constants[name]!) === BigInt(value));
}
