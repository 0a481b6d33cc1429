import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import { bpfProgramIdentity, type BpfAttachPoints, type BpfProgramIdentity } from './bpf.js';
import type { CodeLocation, CodeOwners } from './codeOwners.js';
import type { KernelReader } from './kernelReader.js';
import { walkHlist } from './pidNamespace.js';

/** KPROBE_TABLE_SIZE is 64; the table's extent bounds it, and this bounds a forged extent. */
const MAX_TABLE_SIZE = 1 << 12;
/** More kprobes than any tracing setup registers; bounds forged chains. */
const MAX_KPROBES = 1 << 16;
/** Programs attached to one trace event (BPF_TRACE_MAX_PROGS). */
const MAX_EVENT_PROGRAMS = 64;
const MAX_EVENT_NAME = 256;

/**
 * `kprobe.flags` bits: #defines in include/linux/kprobes.h (not in BTF), unchanged since 4.x.
 * The names are the ones debugfs `kprobes/list` prints.
 */
const GONE = 1;
const DISABLED = 2;
const OPTIMIZED = 4;
const FTRACE = 8;
const KPROBE_FLAGS = [
  [GONE, 'GONE'],
  [DISABLED, 'DISABLED'],
  [OPTIMIZED, 'OPTIMIZED'],
  [FTRACE, 'FTRACE'],
] as const;

/** A handler pointer and where it leads. */
export interface KprobeHandler extends CodeLocation {
  readonly address: bigint;
}

/** The kernel tracing user of a kprobe: a kprobe event (tracefs or perf) and the BPF programs it runs. */
export interface KprobeEvent {
  readonly traceKprobe: bigint;
  /** `system/name` of the trace event. */
  readonly event: string;
  readonly programs: BpfProgramIdentity[];
}

export interface Kprobe {
  /** The struct kprobe (for a kretprobe: its embedded kprobe). */
  readonly address: bigint;
  /** The probed instruction. */
  readonly probed: bigint;
  /** The function it is in and the offset, as kprobes/list prints `sym+0xoff`. */
  readonly function: string | undefined;
  readonly offset: bigint;
  readonly probedOwner: string;
  /** `k` for a kprobe, `r` for a kretprobe (the kernel's letters). */
  readonly kind: 'k' | 'r';
  readonly preHandler: KprobeHandler | undefined;
  readonly postHandler: KprobeHandler | undefined;
  /** A kretprobe's return (and entry) handlers: what its user registered. */
  readonly returnHandler: KprobeHandler | undefined;
  readonly entryHandler: KprobeHandler | undefined;
  /** Own flags, and those of the aggregate probe it hangs under (GONE, OPTIMIZED and FTRACE are the aggregate's). */
  readonly flags: number;
  readonly flagNames: string[];
  readonly ftrace: boolean;
  /** The aggregate kprobe in kprobe_table that holds this one (several probes on one address), else undefined. */
  readonly aggregate: bigint | undefined;
  /** The kernel's own kprobe event behind it (handler kprobe_dispatcher/kretprobe_dispatcher). */
  readonly traceEvent: KprobeEvent | undefined;
  /** A handler runs outside kernel text. */
  readonly suspicious: boolean;
  /** The line debugfs `kprobes/list` shows for it: `addr  k  sym+0xoff  [mod] [FLAGS]`. */
  readonly listing: string;
  /** The listing and who handles the probe. */
  readonly evidence: string;
}

export interface KprobeReport {
  readonly kprobes: Kprobe[];
  readonly problems: string[];
}

const unreadable = (error: unknown): error is VmscopeError => error instanceof VmscopeError;

/** The number of hlist heads in `kprobe_table`: its extent (to the next symbol), a power of two as KPROBE_HASH_BITS makes it. */
function tableSize(reader: KernelReader, table: bigint): number {
  const next = reader.profile.symbolAfter(table);
  const heads = next === undefined ? 0 : Number((next.address - table) / BigInt(reader.profile.sizeOf('hlist_head')));
  let size = 1;
  while (size * 2 <= Math.min(heads, MAX_TABLE_SIZE)) size *= 2;
  return size;
}

function handler(owners: CodeOwners, address: bigint): KprobeHandler | undefined {
  return address === 0n ? undefined : { address, ...owners.resolve(address) };
}

/** `name+0xoff` split into the function and the offset (kprobes/list always prints the offset). */
function splitSymbol(symbol: string | undefined): { name: string | undefined; offset: bigint } {
  const match = symbol === undefined ? undefined : /^(.*?)(?:\+(0x[0-9a-f]+))?$/.exec(symbol);
  return { name: match?.[1], offset: match?.[2] === undefined ? 0n : BigInt(match[2]) };
}

/**
 * The trace event a kernel kprobe event's kprobe belongs to (its `trace_kprobe` embeds the
 * kprobe as rp.kp) and the BPF programs attached to that event (`prog_array`, NULL-terminated).
 */
function traceEventOf(reader: KernelReader, traceKprobe: bigint, problems: string[]): KprobeEvent {
  const event = reader.pointerField(traceKprobe, 'trace_kprobe', 'tp.event');
  const call = event + reader.offset('trace_probe_event', 'call');
  const name = reader.cString(reader.pointerField(call, 'trace_event_call', 'name'), MAX_EVENT_NAME);
  const system = reader.cString(
    reader.pointerField(event + reader.offset('trace_probe_event', 'class'), 'trace_event_class', 'system'),
    MAX_EVENT_NAME,
  );
  const programs: BpfProgramIdentity[] = [];
  const array = reader.pointerField(call, 'trace_event_call', 'prog_array');
  if (array !== 0n) {
    const itemSize = BigInt(reader.profile.sizeOf('bpf_prog_array_item'));
    const items = array + reader.offset('bpf_prog_array', 'items');
    for (let index = 0n; ; index++) {
      if (index >= MAX_EVENT_PROGRAMS) {
        problems.push(`trace event ${system}/${name}: more than ${MAX_EVENT_PROGRAMS} programs attached`);
        break;
      }
      const program = reader.pointerField(items + index * itemSize, 'bpf_prog_array_item', 'prog');
      if (program === 0n) break;
      programs.push(bpfProgramIdentity(reader, program));
    }
  }
  return { traceKprobe, event: `${system}/${name}`, programs };
}

interface KernelHandlers {
  readonly aggregate: bigint | undefined;
  readonly dispatcher: bigint | undefined;
  readonly kretprobe: bigint | undefined;
  readonly kretprobeDispatcher: bigint | undefined;
}

function readKprobe(
  reader: KernelReader,
  owners: CodeOwners,
  kernel: KernelHandlers,
  address: bigint,
  aggregate: { address: bigint; flags: number } | undefined,
  problems: string[],
): Kprobe {
  const probed = reader.pointerField(address, 'kprobe', 'addr');
  const preHandler = reader.pointerField(address, 'kprobe', 'pre_handler');
  const own = reader.u32Field(address, 'kprobe', 'flags');
  // kprobes/list: GONE, OPTIMIZED and FTRACE of the probe that is in the table, DISABLED of the probe itself.
  const placed = aggregate?.flags ?? own;
  const flags = (placed & (GONE | OPTIMIZED | FTRACE)) | (own & DISABLED);
  const isReturn = kernel.kretprobe !== undefined && preHandler === kernel.kretprobe;
  const kretprobe = address - reader.offset('kretprobe', 'kp');
  const returnHandler = isReturn ? handler(owners, reader.pointerField(kretprobe, 'kretprobe', 'handler')) : undefined;
  const entryHandler = isReturn
    ? handler(owners, reader.pointerField(kretprobe, 'kretprobe', 'entry_handler'))
    : undefined;
  let traceEvent: KprobeEvent | undefined;
  if (
    (kernel.dispatcher !== undefined && preHandler === kernel.dispatcher) ||
    (kernel.kretprobeDispatcher !== undefined && returnHandler?.address === kernel.kretprobeDispatcher)
  ) {
    try {
      traceEvent = traceEventOf(reader, address - reader.offset('trace_kprobe', 'rp.kp'), problems);
    } catch (error) {
      if (!unreadable(error)) throw error;
      problems.push(`kprobe ${hex(address)}: its trace event is unreadable: ${error.message}`);
    }
  }
  const location = owners.resolve(probed);
  const { name, offset } = splitSymbol(location.symbol);
  const pre = handler(owners, preHandler);
  const post = handler(owners, reader.pointerField(address, 'kprobe', 'post_handler'));
  const handlers = isReturn ? [returnHandler, entryHandler] : [pre, post];
  const foreign = handlers.filter((found): found is KprobeHandler => found !== undefined && found.owner !== 'kernel');
  const flagNames = KPROBE_FLAGS.filter(([bit]) => (flags & bit) !== 0).map(([, flag]) => flag);
  const kind = isReturn ? 'r' : 'k';
  const listing = `${hex(probed).slice(2)}  ${kind}  ${name ?? '??'}+${hex(offset)}  ${location.owner === 'kernel' || location.owner === 'unknown' ? ' ' : `[${location.owner}]`} ${flagNames.map((flag) => `[${flag}]`).join('')}`;
  const handledBy = traceEvent
    ? `trace event ${traceEvent.event}${traceEvent.programs.length > 0 ? ` running ${traceEvent.programs.map((program) => `bpf program ${program.name} (id ${program.id})`).join(', ')}` : ''}`
    : handlers
        .filter((found) => found !== undefined)
        .map((found) => `${found.symbol ?? hex(found.address)} (${found.owner})`)
        .join(', ');
  return {
    address,
    probed,
    function: name,
    offset,
    probedOwner: location.owner,
    kind,
    preHandler: pre,
    postHandler: post,
    returnHandler,
    entryHandler,
    flags,
    flagNames,
    ftrace: (flags & FTRACE) !== 0,
    aggregate: aggregate?.address,
    traceEvent,
    suspicious: foreign.length > 0,
    listing,
    evidence: `${listing}: ${foreign.length > 0 ? `handled outside kernel text by ${foreign.map((found) => `${found.symbol ?? hex(found.address)} (${found.owner})`).join(', ')}` : `handled by ${handledBy}`}`,
  };
}

/**
 * Every kprobe in `kprobe_table` (the hash of hlists of registered probes; an aggregate probe,
 * whose pre_handler is aggr_pre_handler, stands for several on one address and is expanded to
 * them): address, function+offset, handlers with owners, flags. Handlers outside kernel text are
 * suspicious; the kernel's own kprobe events (perf, tracefs, BPF) name their trace event and the
 * BPF programs it runs.
 */
export function readKprobes(reader: KernelReader, owners: CodeOwners): KprobeReport {
  const { profile } = reader;
  const table = profile.symbol('kprobe_table');
  if (table === undefined) return { kprobes: [], problems: [] }; // no CONFIG_KPROBES
  const kernel: KernelHandlers = {
    aggregate: profile.symbol('aggr_pre_handler'),
    dispatcher: profile.symbol('kprobe_dispatcher'),
    kretprobe: profile.symbol('pre_handler_kretprobe'),
    kretprobeDispatcher: profile.symbol('kretprobe_dispatcher'),
  };
  const problems: string[] = [];
  const kprobes: Kprobe[] = [];
  const linkOffset = reader.offset('kprobe', 'hlist');
  const headSize = BigInt(profile.sizeOf('hlist_head'));
  const size = tableSize(reader, table);
  const seen = new Set<bigint>();
  const add = (address: bigint, aggregate: { address: bigint; flags: number } | undefined, where: string) => {
    if (seen.has(address)) {
      problems.push(`${where}: kprobe ${hex(address)} is reached twice`);
      return;
    }
    seen.add(address);
    kprobes.push(readKprobe(reader, owners, kernel, address, aggregate, problems));
  };
  for (let bucket = 0; bucket < size && seen.size < MAX_KPROBES; bucket++) {
    const where = `kprobe_table[${bucket}]`;
    try {
      const walk = walkHlist(
        reader,
        reader.u64(table + BigInt(bucket) * headSize),
        linkOffset,
        MAX_KPROBES - seen.size,
      );
      if (walk.problem) problems.push(`${where}: ${walk.problem.detail}`);
      for (const probe of walk.entries) {
        try {
          if (
            kernel.aggregate === undefined ||
            reader.pointerField(probe, 'kprobe', 'pre_handler') !== kernel.aggregate
          ) {
            add(probe, undefined, where);
            continue;
          }
          const aggregate = { address: probe, flags: reader.u32Field(probe, 'kprobe', 'flags') };
          const children = reader.walkList(probe + reader.offset('kprobe', 'list'), reader.offset('kprobe', 'list'), {
            maxSteps: MAX_KPROBES - seen.size,
          });
          if (children.problem) problems.push(`${where}: aggregate kprobe ${hex(probe)}: ${children.problem.detail}`);
          for (const child of children.entries) add(child, aggregate, where);
        } catch (error) {
          if (!unreadable(error)) throw error;
          problems.push(`${where}: kprobe ${hex(probe)} is unreadable: ${error.message}`);
        }
      }
    } catch (error) {
      if (!unreadable(error)) throw error;
      problems.push(`${where} is unreadable: ${error.message}`);
    }
  }
  if (seen.size >= MAX_KPROBES) problems.push(`kprobe_table: stopped after ${MAX_KPROBES} kprobes`);
  return { kprobes, problems };
}

/** `kprobe:<function>` for every BPF program a kprobe event runs: attach points for readBpf. */
export function kprobeAttachPoints(kprobes: readonly Kprobe[]): BpfAttachPoints {
  const points = new Map<bigint, string[]>();
  for (const probe of kprobes) {
    for (const program of probe.traceEvent?.programs ?? []) {
      const point = `${probe.kind === 'r' ? 'kretprobe' : 'kprobe'}:${probe.function ?? hex(probe.probed)}${probe.offset === 0n ? '' : `+${hex(probe.offset)}`}`;
      points.set(program.address, [...(points.get(program.address) ?? []), point]);
    }
  }
  return points;
}
