import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';

/**
 * The kernel's names of the taint bits (TAINT_* in include/linux/panic.h, documented in
 * Documentation/admin-guide/tainted-kernels.rst). Kernels since 6.10 also keep them in
 * `taint_flags[].desc`, which is preferred when present.
 */
const TAINT_NAMES: readonly string[] = [
  'PROPRIETARY_MODULE',
  'FORCED_MODULE',
  'CPU_OUT_OF_SPEC',
  'FORCED_RMMOD',
  'MACHINE_CHECK',
  'BAD_PAGE',
  'USER',
  'DIE',
  'OVERRIDDEN_ACPI_TABLE',
  'WARN',
  'CRAP',
  'FIRMWARE_WORKAROUND',
  'OOT_MODULE',
  'UNSIGNED_MODULE',
  'SOFTLOCKUP',
  'LIVEPATCH',
  'AUX',
  'RANDSTRUCT',
  'TEST',
  'FWCTL',
];
/**
 * Taints that say code the kernel's vendor did not build or sign entered the kernel (or a module
 * was forced out of it): what a rootkit module leaves behind. By bit, as the kernel numbers them.
 */
const FOREIGN_CODE_TAINTS: ReadonlyMap<number, string> = new Map([
  [0, 'a module with a non-GPL licence was loaded'],
  [1, 'a module was force-loaded past its version checks'],
  [3, 'a module was force-unloaded'],
  [12, 'an out-of-tree module was loaded'],
  [13, 'a module without a valid signature was loaded'],
]);
const MASK_BITS = 64;
const MAX_NAME = 64;
/** Taint letters are upper-case ASCII letters (the table ends where they stop). */
const TAINT_LETTER = /^[A-Z]$/;

export interface TaintFlag {
  readonly bit: number;
  /** The letter /proc/sys/kernel/tainted's decoders and oops headers show (`O`, `E`, …). */
  readonly letter: string;
  /** The flag's name (`OOT_MODULE`, …), or undefined for a bit the kernel's table does not name. */
  readonly name: string | undefined;
  /** Set for the taints that foreign or forced module code leaves (P, F, R, O, E). */
  readonly suspicious: boolean;
  readonly evidence: string;
}

export interface KernelTaint {
  /** `tainted_mask`, as /proc/sys/kernel/tainted prints it. */
  readonly mask: bigint;
  /** The set flags, lowest bit first. */
  readonly flags: TaintFlag[];
  /** As the kernel's print_tainted() writes it: `Not tainted`, or `Tainted: ` and a letter or blank per flag. */
  readonly summary: string;
  readonly problems: string[];
}

/**
 * `tainted_mask` decoded with the kernel's own `taint_flags` table (letter when set, letter or
 * blank when not, in bit order), so a new kernel's new flags decode without a change here.
 */
export function readTaint(reader: KernelReader): KernelTaint {
  const { profile } = reader;
  const problems: string[] = [];
  let mask: bigint;
  try {
    mask = reader.u64(profile.requireSymbol('tainted_mask'));
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { mask: 0n, flags: [], summary: '', problems: [`tainted_mask is unreadable: ${error.message}`] };
  }
  const table = readTaintTable(reader, problems);
  const flags: TaintFlag[] = [];
  for (let bit = 0; bit < MASK_BITS; bit++) {
    if (((mask >> BigInt(bit)) & 1n) === 0n) continue;
    const entry = table[bit];
    if (!entry)
      problems.push(`tainted_mask ${hex(mask)} has bit ${bit}, which the kernel's taint_flags table does not describe`);
    const foreign = FOREIGN_CODE_TAINTS.get(bit);
    flags.push({
      bit,
      letter: entry?.letter ?? '?',
      name: entry?.name,
      suspicious: foreign !== undefined,
      evidence: foreign ?? `taint ${entry?.name ?? `bit ${bit}`}`,
    });
  }
  const summary =
    mask === 0n
      ? 'Not tainted'
      : `Tainted: ${table.map((entry, bit) => (((mask >> BigInt(bit)) & 1n) === 1n ? entry.letter : entry.unset)).join('')}`;
  return { mask, flags, summary, problems };
}

function readTaintTable(
  reader: KernelReader,
  problems: string[],
): Array<{ letter: string; unset: string; name: string | undefined }> {
  const { profile } = reader;
  const address = profile.symbol('taint_flags');
  if (address === undefined || profile.type('taint_flag') === undefined) {
    problems.push('the kernel has no taint_flags table to decode tainted_mask with');
    return [];
  }
  const size = profile.sizeOf('taint_flag');
  const next = profile.symbolAfter(address);
  const capacity = Math.min(
    MASK_BITS,
    next === undefined ? MASK_BITS : Math.floor(Number(next.address - address) / size),
  );
  const hasDescription = profile.hasField('taint_flag', 'desc');
  const entries: Array<{ letter: string; unset: string; name: string | undefined }> = [];
  try {
    const bytes = reader.bytes(address, capacity * size);
    const view = new DataView(bytes.buffer);
    for (let bit = 0; bit < capacity; bit++) {
      const at = bit * size;
      const letter = String.fromCharCode(view.getUint8(at + profile.offsetOf('taint_flag', 'c_true')));
      if (!TAINT_LETTER.test(letter)) break;
      const unset = String.fromCharCode(view.getUint8(at + profile.offsetOf('taint_flag', 'c_false')));
      const description = hasDescription
        ? readName(reader, view.getBigUint64(at + profile.offsetOf('taint_flag', 'desc'), true))
        : undefined;
      entries.push({ letter, unset, name: description ?? TAINT_NAMES[bit] });
    }
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`taint_flags at ${hex(address)} is unreadable: ${error.message}`);
  }
  return entries;
}

function readName(reader: KernelReader, pointer: bigint): string | undefined {
  if (pointer === 0n) return undefined;
  try {
    return reader.cString(pointer, MAX_NAME) || undefined;
  } catch (error) {
    if (error instanceof VmscopeError) return undefined;
    throw error;
  }
}
