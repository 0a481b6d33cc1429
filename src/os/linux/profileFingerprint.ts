import { createHash } from 'node:crypto';
import type { KallsymsLocation } from '../../symbols/kallsyms.js';
import type { Profile } from '../../symbols/profile.js';
import type { ProfileFingerprint } from '../../symbols/profileCache.js';
import { VmscopeError } from '../../util/errors.js';
import type { LinuxKernel } from './discovery.js';

/** Far above any kernel's BTF (5-7 MiB in 2025) or kallsyms tables (a few MiB): past that, no fingerprint. */
const MAX_FINGERPRINT_BYTES = 64 << 20;
/** kallsyms_token_index: 256 u16 offsets into the token table. */
const TOKEN_INDEX_BYTES = 512;

/**
 * What a profile was derived from, read from this dump: the sha256 of the kernel's BTF (at
 * `__start_BTF`..`__stop_BTF`, placed by `symbols`) and of the kallsyms tables the symbols
 * were decoded from. Two dumps share a cached profile only when both agree, so a dump whose
 * BTF or kallsyms an intruder altered can never hand its profile to another. Undefined when
 * the dump cannot say (no BTF symbols, unreadable tables): such a profile is not cached.
 */
export function dumpFingerprint(
  kernel: LinuxKernel,
  kallsyms: KallsymsLocation,
  symbols: Pick<Profile, 'symbol'>,
): ProfileFingerprint | undefined {
  try {
    const start = symbols.symbol('__start_BTF');
    const stop = symbols.symbol('__stop_BTF');
    if (start === undefined || stop === undefined) return undefined;
    const btf = readBounded(kernel, start, stop);
    const kallsymsHash = createHash('sha256');
    const namesEnd = kallsyms.markers ?? kallsyms.tokenTable;
    kallsymsHash.update(readBounded(kernel, kallsyms.names, namesEnd));
    kallsymsHash.update(readBounded(kernel, kallsyms.tokenTable, kallsyms.tokenIndex + BigInt(TOKEN_INDEX_BYTES)));
    const count = new DataView(readBounded(kernel, kallsyms.numSyms, kallsyms.numSyms + 4n).buffer).getUint32(0, true);
    const table = kallsyms.offsets ?? kallsyms.addresses;
    if (table !== undefined)
      kallsymsHash.update(readBounded(kernel, table, table + BigInt(count * (kallsyms.offsets ? 4 : 8))));
    return { btfSha256: createHash('sha256').update(btf).digest('hex'), kallsymsSha256: kallsymsHash.digest('hex') };
  } catch (error) {
    if (error instanceof VmscopeError) return undefined;
    throw error;
  }
}

function readBounded(kernel: LinuxKernel, start: bigint, end: bigint): Uint8Array {
  const length = end - start;
  if (length < 0n || length > BigInt(MAX_FINGERPRINT_BYTES)) {
    throw new VmscopeError(
      'CORRUPT_STRUCTURE',
      `a fingerprinted region of ${length} bytes is implausible`,
      kernel.image.path,
    );
  }
  const bytes = new Uint8Array(Number(length));
  kernel.space.read(start, bytes);
  return bytes;
}
