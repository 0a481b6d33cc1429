import type { Profile } from '../../symbols/profile.js';
import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import { readBpfSymbols, type BpfSymbol } from './bpf.js';
import { symbolText, type CodeLocation, type CodeOwners } from './codeOwners.js';
import { flagNamer } from './kernelEnums.js';
import type { KernelReader } from './kernelReader.js';
import { walkHlist } from './pidNamespace.js';

/** More ftrace_ops than tracers, kprobes, livepatches and BPF trampolines ever register at once. */
const MAX_FTRACE_OPS = 4096;
/** FTRACE_HASH_MAX_BITS is 12; a filter hash claiming more buckets is forged. */
const MAX_HASH_BITS = 12;
/** A filter naming more functions than the kernel has ftrace sites is forged (about 50,000 on a distribution kernel). */
const MAX_HASH_ENTRIES = 1 << 20;
const MAX_FTRACE_PAGES = 1 << 16;
/** ftrace_pages are allocated up to a few dozen pages each (order); more is a forged record count. */
const MAX_PAGE_ORDER = 10;
const PAGE_SIZE = 4096;

const OPS_FLAG = 'FTRACE_OPS_FL_';
const RECORD_FLAG = 'FTRACE_FL_';

/** A function an ftrace_ops is attached to. */
export interface FtraceTarget {
  readonly ip: bigint;
  /** The function's name (as %ps prints it: no offset), or undefined when no symbol covers it. */
  readonly function: string | undefined;
  readonly owner: string;
  /**
   * Where a direct-call ops (FTRACE_OPS_FL_DIRECT: BPF trampolines, or anyone using
   * register_ftrace_direct) makes this site jump instead of calling the ops' callback. Owner
   * `bpf` for a BPF JIT image or trampoline.
   */
  readonly direct: (CodeLocation & { readonly address: bigint }) | undefined;
}

/** One registered `struct ftrace_ops` (a tracer, the kprobes' ftrace ops, a livepatch, a rootkit's hook). */
export interface FtraceOps {
  readonly address: bigint;
  readonly callback: bigint;
  readonly callbackOwner: string;
  readonly callbackSymbol: string | undefined;
  readonly flags: bigint;
  /** FTRACE_OPS_FL_* names set in `flags` (IPMODIFY, SAVE_REGS, ...), from the kernel's BTF. */
  readonly flagNames: string[];
  /** The ops' own trampoline (0 when it has none). */
  readonly trampoline: bigint;
  /** Functions in its filter hash; empty with `tracesAll` when the filter is empty (every function). */
  readonly targets: FtraceTarget[];
  /** An empty filter hash: the ops traces every function not in its notrace hash. */
  readonly tracesAll: boolean;
  /** Functions in its notrace hash. */
  readonly excluded: bigint[];
  /** The callback, or a direct-call target, runs outside kernel text (and outside BPF's JIT images, for direct targets). */
  readonly suspicious: boolean;
  readonly evidence: string;
}

/** One `struct dyn_ftrace`: an ftrace call site the kernel accounts for (a function entry's 5-byte slot). */
export interface FtraceRecord {
  readonly ip: bigint;
  readonly flags: bigint;
  /** How many ftrace_ops trace this site. */
  readonly refCount: number;
  /** FTRACE_FL_* names set in `flags`. */
  readonly flagNames: string[];
  /** The site is patched to call out (FTRACE_FL_ENABLED). */
  readonly enabled: boolean;
  /** The site calls an ops' own trampoline rather than the shared ftrace_caller (FTRACE_FL_TRAMP_EN). */
  readonly hasTrampoline: boolean;
}

/** A trampoline an enabled site calls, and the ops behind it (the `tramp:` part of enabled_functions). */
export interface FtraceTrampolineUse {
  readonly trampoline: bigint;
  readonly ops: bigint;
  readonly callback: bigint;
  readonly callbackSymbol: string | undefined;
  readonly callbackOwner: string;
}

/** One line of tracefs `enabled_functions`, as the kernel would print it. */
export interface EnabledFunction {
  readonly ip: bigint;
  readonly function: string | undefined;
  readonly owner: string;
  readonly refCount: number;
  /** FTRACE_FL_REGS, FTRACE_FL_IPMODIFY, FTRACE_FL_DIRECT: the kernel's R, I and D columns. */
  readonly regs: boolean;
  readonly ipmodify: boolean;
  readonly direct: boolean;
  readonly trampolines: FtraceTrampolineUse[];
  /**
   * What the kernel makes this site call: the trampolines above, the direct-call target of a
   * direct site, else the shared ftrace_caller/ftrace_regs_caller. A call from the site to
   * anything else is not ftrace's doing.
   */
  readonly callTargets: bigint[];
  /** A trampoline here calls a callback outside kernel text. */
  readonly suspicious: boolean;
  /** The line in the kernel's own format, less symbol sizes. */
  readonly evidence: string;
}

export interface FtraceOpsReport {
  readonly ops: FtraceOps[];
  readonly problems: string[];
}

export interface FtraceRecordReport {
  readonly records: FtraceRecord[];
  readonly problems: string[];
}

export interface EnabledFunctionsReport {
  readonly functions: EnabledFunction[];
  readonly problems: string[];
}

const unreadable = (error: unknown): error is VmscopeError => error instanceof VmscopeError;

/** `name` of `name+0x…`: %ps prints functions without their offset. */
const functionName = (location: CodeLocation): string | undefined => location.symbol?.replace(/\+0x[0-9a-f]+$/, '');

/**
 * The ips in an ftrace_hash: `1 << size_bits` hlist buckets of `ftrace_func_entry`. A NULL hash
 * is empty (the kernel's EMPTY_HASH is a real, empty hash).
 */
function hashEntries(reader: KernelReader, hash: bigint, what: string, problems: string[]): HashEntry[] {
  if (hash === 0n) return [];
  const sizeBits = reader.pointerField(hash, 'ftrace_hash', 'size_bits');
  const count = reader.pointerField(hash, 'ftrace_hash', 'count');
  if (count === 0n) return [];
  if (sizeBits > BigInt(MAX_HASH_BITS) || count > BigInt(MAX_HASH_ENTRIES)) {
    problems.push(`${what} ${hex(hash)} claims ${count} entries in ${1n << (sizeBits & 63n)} buckets: not read`);
    return [];
  }
  const buckets = reader.bytes(reader.pointerField(hash, 'ftrace_hash', 'buckets'), 8 << Number(sizeBits));
  const view = new DataView(buckets.buffer);
  const linkOffset = reader.offset('ftrace_func_entry', 'hlist');
  const hasDirect = reader.profile.hasField('ftrace_func_entry', 'direct');
  const entries: HashEntry[] = [];
  for (let bucket = 0; bucket < 1 << Number(sizeBits); bucket++) {
    const walk = walkHlist(reader, view.getBigUint64(bucket * 8, true), linkOffset, MAX_HASH_ENTRIES - entries.length);
    if (walk.problem) problems.push(`${what} ${hex(hash)} bucket ${bucket}: ${walk.problem.detail}`);
    for (const entry of walk.entries) {
      entries.push({
        ip: reader.pointerField(entry, 'ftrace_func_entry', 'ip'),
        direct: hasDirect ? reader.pointerField(entry, 'ftrace_func_entry', 'direct') : 0n,
      });
    }
  }
  if (BigInt(entries.length) !== count)
    problems.push(`${what} ${hex(hash)} says it holds ${count} functions, its buckets hold ${entries.length}`);
  return entries.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

/** One `ftrace_func_entry`: a function, and for direct-call ops the address its site jumps to. */
interface HashEntry {
  readonly ip: bigint;
  readonly direct: bigint;
}

/** Owners of direct-call targets: CodeOwners, and BPF's JIT images for what no module owns. */
class DirectTargets {
  private symbols: BpfSymbol[] | undefined;

  constructor(
    private readonly reader: KernelReader,
    private readonly owners: CodeOwners,
    private readonly problems: string[],
  ) {}

  resolve(address: bigint): CodeLocation & { address: bigint } {
    const location = this.owners.resolve(address);
    if (location.owner !== 'unknown') return { address, ...location };
    if (!this.symbols) {
      const found = readBpfSymbols(this.reader);
      this.problems.push(...found.problems);
      this.symbols = found.symbols;
    }
    const image = this.symbols.find((symbol) => address >= symbol.start && address < symbol.end);
    return image
      ? { address, owner: 'bpf', symbol: symbolText(image.name, address - image.start) }
      : { address, ...location };
  }
}

function target(owners: CodeOwners, directTargets: DirectTargets, { ip, direct }: HashEntry): FtraceTarget {
  const location = owners.resolve(ip);
  return {
    ip,
    function: functionName(location),
    owner: location.owner,
    direct: direct === 0n ? undefined : directTargets.resolve(direct),
  };
}

function readOps(
  reader: KernelReader,
  owners: CodeOwners,
  directTargets: DirectTargets,
  address: bigint,
  opsFlagNames: (flags: bigint) => string[],
  problems: string[],
): FtraceOps {
  const callback = reader.pointerField(address, 'ftrace_ops', 'func');
  const flags = reader.pointerField(address, 'ftrace_ops', 'flags');
  const funcHash = reader.pointerField(address, 'ftrace_ops', 'func_hash');
  const what = `ftrace_ops ${hex(address)}`;
  let filter: HashEntry[] = [];
  let excluded: HashEntry[] = [];
  // A damaged hash loses the ops' targets, not the ops: its callback is the finding.
  try {
    if (funcHash !== 0n) {
      filter = hashEntries(
        reader,
        reader.pointerField(funcHash, 'ftrace_ops_hash', 'filter_hash'),
        `${what} filter hash`,
        problems,
      );
      excluded = hashEntries(
        reader,
        reader.pointerField(funcHash, 'ftrace_ops_hash', 'notrace_hash'),
        `${what} notrace hash`,
        problems,
      );
    }
  } catch (error) {
    if (!unreadable(error)) throw error;
    problems.push(`${what}: its hashes are unreadable: ${error.message}`);
  }
  const location = owners.resolve(callback);
  const targets = filter.map((entry) => target(owners, directTargets, entry));
  const foreignDirect = targets.filter(
    (found) => found.direct !== undefined && found.direct.owner !== 'kernel' && found.direct.owner !== 'bpf',
  );
  const suspicious = location.owner !== 'kernel' || foreignDirect.length > 0;
  const attached =
    filter.length === 0
      ? 'every function'
      : targets
          .map(
            (found) =>
              `${found.function ?? hex(found.ip)}${found.direct ? ` (jumps to ${found.direct.symbol ?? hex(found.direct.address)}, ${found.direct.owner})` : ''}`,
          )
          .join(', ');
  const names = opsFlagNames(flags);
  return {
    address,
    callback,
    callbackOwner: location.owner,
    callbackSymbol: location.symbol,
    flags,
    flagNames: names,
    trampoline: reader.pointerField(address, 'ftrace_ops', 'trampoline'),
    targets,
    tracesAll: filter.length === 0,
    excluded: excluded.map((entry) => entry.ip),
    suspicious,
    evidence: `${what} calls ${location.symbol ?? hex(callback)} (${location.owner}${location.owner !== 'kernel' ? ', outside kernel text' : ''}) on ${attached}${names.length > 0 ? ` [${names.join(',')}]` : ''}`,
  };
}

/**
 * Every ftrace_ops on `ftrace_ops_list`, which ends at the kernel's `ftrace_list_end` (never at
 * NULL): its callback with owner, flags and the functions its filter hash attaches it to (with
 * the direct-call target of each, for direct ops). A callback outside kernel text is suspicious:
 * the kernel's own ops (function tracer, kprobes, BPF trampolines, livepatch) all call into
 * kernel text; so is a direct-call target that is neither kernel text nor a BPF JIT image.
 */
export function readFtraceOps(reader: KernelReader, owners: CodeOwners): FtraceOpsReport {
  const { profile } = reader;
  const head = profile.symbol('ftrace_ops_list');
  const end = profile.symbol('ftrace_list_end');
  if (head === undefined || end === undefined) return { ops: [], problems: [] }; // a kernel without CONFIG_FUNCTION_TRACER
  const opsFlagNames = flagNamer(profile.enumConstants(OPS_FLAG), OPS_FLAG);
  const ops: FtraceOps[] = [];
  const problems: string[] = [];
  const directTargets = new DirectTargets(reader, owners, problems);
  const seen = new Set<bigint>();
  let node: bigint;
  try {
    node = reader.u64(head);
  } catch (error) {
    if (!unreadable(error)) throw error;
    return { ops, problems: [`ftrace_ops_list is unreadable: ${error.message}`] };
  }
  while (node !== end) {
    if (node === 0n) {
      problems.push(`ftrace_ops_list: ${hex(ops.at(-1)?.address ?? head)} links to NULL instead of ftrace_list_end`);
      break;
    }
    if (seen.has(node)) {
      problems.push(`ftrace_ops_list: loops back to ${hex(node)} without reaching ftrace_list_end`);
      break;
    }
    if (seen.size >= MAX_FTRACE_OPS) {
      problems.push(`ftrace_ops_list: stopped after ${MAX_FTRACE_OPS} ftrace_ops`);
      break;
    }
    seen.add(node);
    try {
      ops.push(readOps(reader, owners, directTargets, node, opsFlagNames, problems));
      node = reader.pointerField(node, 'ftrace_ops', 'next');
    } catch (error) {
      if (!unreadable(error)) throw error;
      problems.push(`ftrace_ops_list: ftrace_ops ${hex(node)} is unreadable: ${error.message}`);
      break;
    }
  }
  return { ops, problems };
}

/** The FTRACE_FL_* flags of dyn_ftrace records, and the reference count below the lowest of them. */
function recordFlags(reader: KernelReader): {
  names: (value: bigint) => string[];
  refMask: bigint;
  bit: (name: string) => bigint;
} {
  const flags = reader.profile.enumConstants(RECORD_FLAG);
  const singleBits = [...flags.values()].filter((bit) => bit !== 0n && (bit & (bit - 1n)) === 0n);
  // The count lives in the bits below FTRACE_REF_MAX_SHIFT, where the lowest flag starts.
  const lowest = singleBits.reduce((low, bit) => (bit < low ? bit : low), 1n << 63n);
  return {
    names: flagNamer(flags, RECORD_FLAG),
    refMask: lowest - 1n,
    bit: (name) => flags.get(RECORD_FLAG + name) ?? 0n,
  };
}

/**
 * Every dyn_ftrace record (the ftrace call sites the kernel patched at boot or module load), from
 * `ftrace_pages_start`'s chain of ftrace_page blocks: each site's ip, flags, how many ops trace
 * it and whether it calls a dedicated trampoline. An inline-hook check uses this to tell the
 * kernel's own patched sites from foreign ones.
 */
export function readFtraceRecords(reader: KernelReader): FtraceRecordReport {
  const { profile } = reader;
  const start = profile.symbol('ftrace_pages_start');
  if (start === undefined) return { records: [], problems: [] };
  const recordSize = profile.sizeOf('dyn_ftrace');
  const decodedBefore = decodedBlocksByProfile.get(profile);
  // Only the blocks still on the chain are kept for the next read.
  const decoded = new Map<bigint, DecodedBlock>();
  decodedBlocksByProfile.set(profile, decoded);
  const records: FtraceRecord[] = [];
  const problems: string[] = [];
  const seen = new Set<bigint>();
  try {
    for (let page = reader.u64(start); page !== 0n; page = reader.pointerField(page, 'ftrace_page', 'next')) {
      if (seen.has(page)) {
        problems.push(`ftrace_pages: loops back to ${hex(page)}`);
        break;
      }
      if (seen.size >= MAX_FTRACE_PAGES) {
        problems.push(`ftrace_pages: stopped after ${MAX_FTRACE_PAGES} pages`);
        break;
      }
      seen.add(page);
      const count = reader.i32Field(page, 'ftrace_page', 'index');
      const order = reader.i32Field(page, 'ftrace_page', 'order');
      if (order < 0 || order > MAX_PAGE_ORDER || count < 0 || count * recordSize > PAGE_SIZE << order) {
        problems.push(`ftrace_page ${hex(page)} claims ${count} records in order-${order} pages: skipped`);
        continue;
      }
      const at = reader.pointerField(page, 'ftrace_page', 'records');
      const bytes = reader.bytes(at, count * recordSize);
      const last = decodedBefore?.get(at);
      const block =
        last && Buffer.from(last.bytes.buffer, last.bytes.byteOffset, last.bytes.length).equals(bytes)
          ? last.records
          : decodeRecords(reader, bytes);
      decoded.set(at, { bytes, records: block });
      for (const record of block) records.push(record);
    }
  } catch (error) {
    if (!unreadable(error)) throw error;
    problems.push(`ftrace_pages: ${error.message}`);
  }
  return { records, problems };
}

/**
 * The records last decoded from each block of dyn_ftrace records, per profile, by the block's
 * address: a live monitor reads the same tens of thousands of records every check, and the same
 * bytes decode to the same records.
 */
interface DecodedBlock {
  readonly bytes: Uint8Array;
  readonly records: readonly FtraceRecord[];
}
const decodedBlocksByProfile = new WeakMap<Profile, ReadonlyMap<bigint, DecodedBlock>>();

/** One block of dyn_ftrace records, as read. */
function decodeRecords(reader: KernelReader, bytes: Uint8Array): FtraceRecord[] {
  const { profile } = reader;
  const { names: namesOfValue, refMask, bit } = recordFlags(reader);
  const recordSize = profile.sizeOf('dyn_ftrace');
  const [ipOffset, flagsOffset] = [profile.offsetOf('dyn_ftrace', 'ip'), profile.offsetOf('dyn_ftrace', 'flags')];
  const enabledBit = bit('ENABLED');
  const trampolineBit = bit('TRAMP_EN');
  // Tens of thousands of records share a handful of flag values: what a value says is worked out once per value.
  const decodedFlags = new Map<bigint, Omit<FtraceRecord, 'ip'>>();
  const flagsOf = (value: bigint) => {
    let found = decodedFlags.get(value);
    if (!found)
      decodedFlags.set(
        value,
        (found = {
          flags: value,
          refCount: Number(value & refMask),
          flagNames: namesOfValue(value),
          enabled: (value & enabledBit) !== 0n,
          hasTrampoline: (value & trampolineBit) !== 0n,
        }),
      );
    return found;
  };
  const records: FtraceRecord[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let at = 0; at + recordSize <= bytes.length; at += recordSize) {
    const { flags, refCount, flagNames, enabled, hasTrampoline } = flagsOf(view.getBigUint64(at + flagsOffset, true));
    // Written out, not spread: a spread per record costs more than the record.
    records.push({ ip: view.getBigUint64(at + ipOffset, true), flags, refCount, flagNames, enabled, hasTrampoline });
  }
  return records;
}

/** Does `ops` trace `ip` (the kernel's hash_contains_ip: in the filter or no filter, and not excluded)? */
const opsTraces = (ops: FtraceOps, ip: bigint) =>
  (ops.tracesAll || ops.targets.some((found) => found.ip === ip)) && !ops.excluded.includes(ip);

/**
 * The kernel's tracefs `enabled_functions`: every enabled ftrace site with its reference count,
 * its R/I/D columns and, for a site calling a dedicated trampoline, every ops with a trampoline
 * that traces it (ftrace_find_tramp_ops_any/next) and the callback behind it.
 */
export function enabledFunctions(
  reader: KernelReader,
  owners: CodeOwners,
  ops: readonly FtraceOps[],
  records: readonly FtraceRecord[],
): EnabledFunctionsReport {
  const { bit } = recordFlags(reader);
  const [regs, ipmodify, direct, directEnabled] = [bit('REGS'), bit('IPMODIFY'), bit('DIRECT'), bit('DIRECT_EN')];
  const sharedCallers = ['ftrace_caller', 'ftrace_regs_caller']
    .map((name) => reader.profile.symbol(name))
    .filter((found) => found !== undefined);
  const functions: EnabledFunction[] = [];
  const problems: string[] = [];
  for (const record of records) {
    if (!record.enabled) continue;
    const location = owners.resolve(record.ip);
    const trampolines: FtraceTrampolineUse[] = record.hasTrampoline
      ? ops
          .filter((candidate) => candidate.trampoline !== 0n && opsTraces(candidate, record.ip))
          .map((found) => ({
            trampoline: found.trampoline,
            ops: found.address,
            callback: found.callback,
            callbackSymbol: found.callbackSymbol,
            callbackOwner: found.callbackOwner,
          }))
      : [];
    const name = functionName(location);
    if (record.hasTrampoline && trampolines.length === 0)
      problems.push(
        `enabled_functions: ${name ?? hex(record.ip)} calls a trampoline no ftrace_ops on the list accounts for`,
      );
    const columns = [
      [regs, ' R'],
      [ipmodify, ' I'],
      [direct, ' D'],
    ]
      .map(([flag, text]) => ((record.flags & (flag as bigint)) !== 0n ? text : '  '))
      .join('');
    const directTargets = ops.flatMap((candidate) =>
      candidate.targets
        .filter((found) => found.ip === record.ip && found.direct !== undefined)
        .map((found) => found.direct!.address),
    );
    const callTargets = record.hasTrampoline
      ? trampolines.map((use) => use.trampoline)
      : (record.flags & directEnabled) !== 0n
        ? directTargets
        : sharedCallers;
    const tramp = trampolines
      .map(
        (use) =>
          `\ttramp: ${hex(use.trampoline)} (${use.callbackSymbol ?? hex(use.callback)}) ->${use.callbackSymbol ?? hex(use.callback)}`,
      )
      .join('');
    functions.push({
      ip: record.ip,
      function: name,
      owner: location.owner,
      refCount: record.refCount,
      regs: (record.flags & regs) !== 0n,
      ipmodify: (record.flags & ipmodify) !== 0n,
      direct: (record.flags & direct) !== 0n,
      trampolines,
      callTargets,
      suspicious: trampolines.some((use) => use.callbackOwner !== 'kernel'),
      evidence: `${name ?? hex(record.ip)} (${record.refCount})${columns}${record.hasTrampoline && trampolines.length === 0 ? '\ttramp: ERROR!' : tramp}`,
    });
  }
  return { functions, problems };
}
