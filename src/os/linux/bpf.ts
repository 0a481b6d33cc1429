import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { CodeOwners } from './codeOwners.js';
import { enumeratorName } from './kernelEnums.js';
import type { KernelReader } from './kernelReader.js';
import { openFiles } from './openFiles.js';
import { walkXarray } from './pidNamespace.js';
import type { TaskInfo } from './tasks.js';

/** More JIT images (programs, subprograms, trampolines, dispatchers) than a busy host keeps loaded. */
const MAX_BPF_SYMBOLS = 1 << 16;
const BPF_SYMBOL_NAME_BYTES = 512;
/** BPF_COMPLEXITY_LIMIT_INSNS: the verifier never accepts a longer program. */
export const MAX_BPF_INSNS = 1_000_000;
/** MAX_USED_MAPS: the verifier's limit of maps one program may use. */
const MAX_USED_MAPS = 64;
const PAGE_SIZE = 4096;
const INSN_SIZE = 8;
/** BPF_JMP | BPF_CALL: a call whose src_reg says what `imm` is. */
const BPF_CALL_OPCODE = 0x85;
/** src_reg of a call: 0 a helper, 1 a BPF-to-BPF call (BPF_PSEUDO_CALL), 2 a kernel function (BPF_PSEUDO_KFUNC_CALL). */
const CALL_HELPER = 0;
const CALL_KFUNC = 2;
const NAME_BYTES = 16;
const TAG_BYTES = 8;

/**
 * Helpers that let a program change what other code sees or does, beyond observing: write user
 * memory, change a function's return value, signal processes, or drive bpf() itself. Names as
 * the kernel's `enum bpf_func_id` spells them after BPF_FUNC_.
 */
export const DANGEROUS_BPF_HELPERS: ReadonlySet<string> = new Set([
  'probe_write_user',
  'override_return',
  'send_signal',
  'send_signal_thread',
  'sys_bpf',
]);

/** One call a program makes, resolved through the kernel (imm is `func - __bpf_call_base` after verification). */
export interface BpfCall {
  readonly kind: 'helper' | 'kfunc';
  readonly target: bigint;
  /** The kernel symbol it lands on (e.g. `bpf_probe_write_user`), with `+0x…` when not at a start. */
  readonly symbol: string | undefined;
  readonly owner: string;
  /** The helper's `enum bpf_func_id` name without BPF_FUNC_ (e.g. `probe_write_user`), or the symbol when none matches. */
  readonly name: string;
  /** The `enum bpf_func_id` value, when the symbol is a helper the enum names. */
  readonly helperId: number | undefined;
}

/** Who a program is: enough to name it where another object (a kprobe event, a link) refers to it. */
export interface BpfProgramIdentity {
  readonly address: bigint;
  readonly id: number;
  readonly name: string;
}

/** A process holding a bpf object open. */
export interface BpfHolder {
  readonly pid: number;
  readonly comm: string;
  readonly fd: number;
}

export interface BpfProgram extends BpfProgramIdentity {
  /** `enum bpf_prog_type` value and its name without BPF_PROG_TYPE_, lowercase (`kprobe`, `socket_filter`). */
  readonly type: number;
  readonly typeName: string | undefined;
  /** `prog->tag` as bpftool prints it (16 hex digits). */
  readonly tag: string;
  /** Boot-time nanoseconds when it was loaded. */
  readonly loadTime: bigint;
  /** The uid that loaded it, when the kernel records the loading user. */
  readonly uid: number | undefined;
  readonly jited: boolean;
  readonly jitedLength: number;
  /** The verified program's size in bytes (instructions × 8), as bpftool's xlated_len. */
  readonly xlatedLength: number;
  /** Where its JIT image starts (0 when interpreted). */
  readonly image: bigint;
  readonly calls: BpfCall[];
  /** Ids of the maps it uses. */
  readonly mapIds: number[];
  /**
   * Attach points recorded by the kernel: `kprobe:<function>` from kprobe events, `link:<type>`
   * from bpf links, `socket:[inode]` for a socket filter on a socket some process holds open.
   */
  readonly attachPoints: string[];
  /** The processes holding it open (empty when no processes were given). */
  readonly holders: BpfHolder[];
  /** It calls a helper that writes user memory, overrides return values, sends signals or calls bpf(). */
  readonly suspicious: boolean;
  readonly evidence: string;
}

export interface BpfMap {
  readonly address: bigint;
  readonly id: number;
  readonly type: number;
  readonly typeName: string | undefined;
  readonly name: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly holders: BpfHolder[];
  /** Maps hold data, not code: never suspicious by themselves. */
  readonly suspicious: false;
  readonly evidence: string;
}

export interface BpfReport {
  readonly programs: BpfProgram[];
  readonly maps: BpfMap[];
  readonly problems: string[];
}

/** Attach points another reader found for programs (e.g. kprobes whose trace event runs them), by program address. */
export type BpfAttachPoints = ReadonlyMap<bigint, readonly string[]>;

export interface BpfReadOptions {
  /** Attach points other readers found (see kprobeAttachPoints), by program address. */
  readonly attachPoints?: BpfAttachPoints;
  /** Processes whose open files name the holders of programs and maps, and the socket filters on their sockets. */
  readonly processes?: readonly TaskInfo[];
}

const unreadable = (error: unknown): error is VmscopeError => error instanceof VmscopeError;

/** `BPF_PROG_TYPE_SOCKET_FILTER` → `socket_filter`. */
const shortName = (name: string | undefined, prefix: string) => name?.slice(prefix.length).toLowerCase();

/** A bitfield flag (such as `bpf_prog.jited`) of the object at `base`. */
function bitField(reader: KernelReader, base: bigint, struct: string, field: string): boolean {
  const { offset, type } = reader.profile.field(struct, field);
  if (type.kind !== 'bitfield') return reader.bytes(base + BigInt(offset), 1)[0] !== 0;
  const byte = reader.bytes(base + BigInt(offset + (type.bit_position >> 3)), 1)[0]!;
  return ((byte >> (type.bit_position & 7)) & 1) === 1;
}

/** The id and name a program's aux records. */
export function bpfProgramIdentity(reader: KernelReader, program: bigint): BpfProgramIdentity {
  const aux = reader.pointerField(program, 'bpf_prog', 'aux');
  return {
    address: program,
    id: reader.u32Field(aux, 'bpf_prog_aux', 'id'),
    name: reader.cString(aux + reader.offset('bpf_prog_aux', 'name'), NAME_BYTES),
  };
}

/** Helper names by the kernel function implementing them: `bpf_probe_write_user` → BPF_FUNC_probe_write_user. */
function helperIds(reader: KernelReader): Map<string, { id: number; name: string }> {
  const ids = new Map<string, { id: number; name: string }>();
  for (const [constant, value] of reader.profile.enumConstants('BPF_FUNC_')) {
    const name = constant.slice('BPF_FUNC_'.length);
    ids.set(`bpf_${name}`, { id: Number(value), name });
  }
  return ids;
}

/**
 * The helper and kernel-function calls in a program's verified instructions. The verifier
 * rewrites a call's `imm` to the function's distance from `__bpf_call_base`, so each resolves
 * through the kernel's symbols to the function the program really calls.
 */
function decodeCalls(
  reader: KernelReader,
  owners: CodeOwners,
  instructions: Uint8Array,
  callBase: bigint,
  helpers: ReadonlyMap<string, { id: number; name: string }>,
): BpfCall[] {
  const view = new DataView(instructions.buffer, instructions.byteOffset, instructions.byteLength);
  const calls = new Map<bigint, BpfCall>();
  for (let at = 0; at + INSN_SIZE <= instructions.length; at += INSN_SIZE) {
    if (view.getUint8(at) !== BPF_CALL_OPCODE) continue;
    const source = view.getUint8(at + 1) >> 4;
    if (source !== CALL_HELPER && source !== CALL_KFUNC) continue;
    const target = BigInt.asUintN(64, callBase + BigInt(view.getInt32(at + 4, true)));
    if (calls.has(target)) continue;
    const location = owners.resolve(target);
    const helper = location.symbol === undefined ? undefined : helpers.get(location.symbol);
    calls.set(target, {
      kind: source === CALL_HELPER ? 'helper' : 'kfunc',
      target,
      symbol: location.symbol,
      owner: location.owner,
      name: helper?.name ?? location.symbol ?? hex(target),
      helperId: helper?.id,
    });
  }
  return [...calls.values()];
}

/** The ids of the maps a program uses (`aux->used_maps`). */
function usedMaps(reader: KernelReader, aux: bigint, what: string, problems: string[]): number[] {
  const count = reader.u32Field(aux, 'bpf_prog_aux', 'used_map_cnt');
  if (count === 0) return [];
  if (count > MAX_USED_MAPS) {
    problems.push(`${what} claims ${count} used maps (the verifier allows ${MAX_USED_MAPS}): not read`);
    return [];
  }
  const table = reader.bytes(reader.pointerField(aux, 'bpf_prog_aux', 'used_maps'), count * 8);
  const view = new DataView(table.buffer);
  return Array.from({ length: count }, (_, index) =>
    reader.u32Field(view.getBigUint64(index * 8, true), 'bpf_map', 'id'),
  );
}

function readProgram(
  reader: KernelReader,
  owners: CodeOwners,
  address: bigint,
  context: ProgramContext,
  problems: string[],
): BpfProgram {
  const identity = bpfProgramIdentity(reader, address);
  const what = `bpf program ${hex(address)} (id ${identity.id})`;
  const aux = reader.pointerField(address, 'bpf_prog', 'aux');
  const type = reader.u32Field(address, 'bpf_prog', 'type');
  const typeName = shortName(enumeratorName(reader.profile, 'bpf_prog_type', type), 'BPF_PROG_TYPE_');
  const length = reader.u32Field(address, 'bpf_prog', 'len');
  const pages = reader.bytes(address + reader.offset('bpf_prog', 'pages'), 2);
  const allocated = (pages[0]! | (pages[1]! << 8)) * PAGE_SIZE;
  const instructionsAt = address + reader.offset('bpf_prog', 'insnsi');
  let calls: BpfCall[] = [];
  // The instructions live in the program's own allocation (`pages` pages), and no verified program is longer than the verifier's limit.
  if (length > MAX_BPF_INSNS || Number(reader.offset('bpf_prog', 'insnsi')) + length * INSN_SIZE > allocated) {
    problems.push(
      `${what} claims ${length} instructions in ${allocated / PAGE_SIZE} pages: its instructions are not read`,
    );
  } else {
    calls = decodeCalls(
      reader,
      owners,
      reader.bytes(instructionsAt, length * INSN_SIZE),
      context.callBase,
      context.helpers,
    );
  }
  const user = reader.pointerField(aux, 'bpf_prog_aux', 'user');
  const dangerous = calls.filter(
    (call) =>
      (call.kind === 'helper' && DANGEROUS_BPF_HELPERS.has(call.name)) ||
      (call.kind === 'helper' && call.owner !== 'kernel'),
  );
  const attachPoints = [...(context.files.attachPoints.get(address) ?? [])];
  const label = `${typeName ?? `type ${type}`} program ${identity.name || '(unnamed)'} (id ${identity.id})`;
  return {
    ...identity,
    type,
    typeName,
    tag: Buffer.from(reader.bytes(address + reader.offset('bpf_prog', 'tag'), TAG_BYTES)).toString('hex'),
    loadTime: reader.u64(aux + reader.offset('bpf_prog_aux', 'load_time')),
    uid: user === 0n ? undefined : reader.u32(user + reader.offset('user_struct', 'uid')),
    jited: bitField(reader, address, 'bpf_prog', 'jited'),
    jitedLength: reader.u32Field(address, 'bpf_prog', 'jited_len'),
    xlatedLength: length * INSN_SIZE,
    image: reader.pointerField(address, 'bpf_prog', 'bpf_func'),
    calls,
    mapIds: usedMaps(reader, aux, what, problems),
    attachPoints,
    holders: context.files.holders.get(address) ?? [],
    suspicious: dangerous.length > 0,
    evidence:
      dangerous.length > 0
        ? `${label} calls ${dangerous.map((call) => `${call.symbol ?? hex(call.target)} (${call.owner})`).join(', ')}${attachPoints.length > 0 ? ` from ${attachPoints.join(', ')}` : ''}`
        : `${label} calls ${calls.length > 0 ? calls.map((call) => call.name).join(', ') : 'no helper'}`,
  };
}

interface ProgramContext {
  readonly callBase: bigint;
  readonly helpers: ReadonlyMap<string, { id: number; name: string }>;
  readonly files: FileFindings;
}

function readMap(reader: KernelReader, address: bigint, holders: ReadonlyMap<bigint, BpfHolder[]>): BpfMap {
  const type = reader.u32Field(address, 'bpf_map', 'map_type');
  const typeName = shortName(enumeratorName(reader.profile, 'bpf_map_type', type), 'BPF_MAP_TYPE_');
  const id = reader.u32Field(address, 'bpf_map', 'id');
  const name = reader.cString(address + reader.offset('bpf_map', 'name'), NAME_BYTES);
  const [keySize, valueSize, maxEntries] = ['key_size', 'value_size', 'max_entries'].map((field) =>
    reader.u32Field(address, 'bpf_map', field),
  ) as [number, number, number];
  return {
    address,
    id,
    type,
    typeName,
    name,
    keySize,
    valueSize,
    maxEntries,
    flags: reader.u32Field(address, 'bpf_map', 'map_flags'),
    holders: holders.get(address) ?? [],
    suspicious: false,
    evidence: `${typeName ?? `type ${type}`} map ${name || '(unnamed)'} (id ${id}): ${maxEntries} entries of ${keySize}-byte keys and ${valueSize}-byte values`,
  };
}

/**
 * Objects filed in one of bpf's IDRs (`prog_idr`, `map_idr`, `link_idr`), each read by `read`;
 * an object whose id is not the number it is filed under, or that does not read, is a problem.
 */
function walkIdr<T extends { id: number }>(
  reader: KernelReader,
  symbol: string,
  read: (address: bigint) => T,
  problems: string[],
): T[] {
  const idr = reader.profile.symbol(symbol);
  if (idr === undefined) return [];
  const base = BigInt(reader.u32Field(idr, 'idr', 'idr_base'));
  const walk = walkXarray(reader, idr + reader.offset('idr', 'idr_rt'));
  problems.push(...walk.problems.map((problem) => `${symbol}: ${problem.detail}`));
  const found: T[] = [];
  for (const { index, entry } of walk.found) {
    try {
      const object = read(entry);
      if (BigInt(object.id) !== index + base)
        problems.push(`${symbol}: ${hex(entry)} filed under id ${index + base} says it is id ${object.id}`);
      found.push(object);
    } catch (error) {
      if (!unreadable(error)) throw error;
      problems.push(`${symbol}: object ${hex(entry)} (id ${index + base}) is unreadable: ${error.message}`);
    }
  }
  return found;
}

/** `link:<type>` for every bpf link, by the program it runs (links record attachments made through BPF_LINK_CREATE). */
function linkAttachPoints(reader: KernelReader, problems: string[]): Map<bigint, string[]> {
  const points = new Map<bigint, string[]>();
  const links = walkIdr(
    reader,
    'link_idr',
    (address) => ({
      id: reader.u32Field(address, 'bpf_link', 'id'),
      program: reader.pointerField(address, 'bpf_link', 'prog'),
      type: shortName(
        enumeratorName(reader.profile, 'bpf_link_type', reader.u32Field(address, 'bpf_link', 'type')),
        'BPF_LINK_TYPE_',
      ),
    }),
    problems,
  );
  for (const link of links)
    points.set(link.program, [...(points.get(link.program) ?? []), `link:${link.type ?? 'unknown'}`]);
  return points;
}

/**
 * Every loaded eBPF program (`prog_idr`) and map (`map_idr`): identity, type, tag, load time and
 * user, sizes, the helpers and kernel functions each program calls (decoded from its verified
 * instructions, bounded by its allocation and the verifier's limit), and the attach points the
 * kernel records (bpf links, socket filters on the given processes' sockets, plus
 * `attachPoints` found by other readers, such as kprobe events), and the processes holding each
 * open (when `processes` are given). A program calling a helper in DANGEROUS_BPF_HELPERS is suspicious.
 */
export function readBpf(reader: KernelReader, owners: CodeOwners, options: BpfReadOptions = {}): BpfReport {
  const problems: string[] = [];
  const callBase = reader.profile.symbol('__bpf_call_base');
  if (callBase === undefined || reader.profile.symbol('prog_idr') === undefined)
    return { programs: [], maps: [], problems }; // no CONFIG_BPF_SYSCALL
  const files = scanOpenFiles(reader, options.processes ?? [], problems);
  const add = (points: BpfAttachPoints) => {
    for (const [program, found] of points)
      files.attachPoints.set(program, [...(files.attachPoints.get(program) ?? []), ...found]);
  };
  add(options.attachPoints ?? new Map());
  add(linkAttachPoints(reader, problems));
  const context: ProgramContext = { callBase, helpers: helperIds(reader), files };
  const programs = walkIdr(
    reader,
    'prog_idr',
    (address) => readProgram(reader, owners, address, context, problems),
    problems,
  );
  const maps = walkIdr(reader, 'map_idr', (address) => readMap(reader, address, files.holders), problems);
  return { programs, maps, problems };
}

/** What processes' open files say about bpf objects: who holds each, and the programs filtering their sockets. */
interface FileFindings {
  readonly holders: Map<bigint, BpfHolder[]>;
  readonly attachPoints: Map<bigint, string[]>;
}

/**
 * Every open file of `processes` that is a bpf program or map (its `f_op` is the kernel's
 * bpf_prog_fops or bpf_map_fops, `private_data` the object), and every socket whose `sk_filter`
 * runs a program (SO_ATTACH_BPF), named `socket:[inode]` as /proc/PID/fd shows it. A file table
 * shared by several tasks (threads) is read once.
 */
function scanOpenFiles(reader: KernelReader, processes: readonly TaskInfo[], problems: string[]): FileFindings {
  const { profile } = reader;
  const findings: FileFindings = { holders: new Map(), attachPoints: new Map() };
  const objects = new Set(
    [profile.symbol('bpf_prog_fops'), profile.symbol('bpf_map_fops')].filter((found) => found !== undefined),
  );
  const sockets = profile.symbol('socket_file_ops');
  const tables = new Set<bigint>();
  for (const process of processes) {
    const { table, files, problem } = openFiles(reader, process.task);
    if (problem) problems.push(`pid ${process.pid}: ${problem}`);
    if (tables.has(table)) continue;
    tables.add(table);
    for (const { fd, file } of files) {
      try {
        const operations = reader.pointerField(file, 'file', 'f_op');
        const data = reader.pointerField(file, 'file', 'private_data');
        if (objects.has(operations)) {
          findings.holders.set(data, [
            ...(findings.holders.get(data) ?? []),
            { pid: process.pid, comm: process.comm, fd },
          ]);
        } else if (operations === sockets && sockets !== undefined) {
          const filter = reader.pointerField(reader.pointerField(data, 'socket', 'sk'), 'sock', 'sk_filter');
          if (filter === 0n) continue;
          const program = reader.pointerField(filter, 'sk_filter', 'prog');
          const inode = reader.pointerField(reader.pointerField(file, 'file', 'f_inode'), 'inode', 'i_ino');
          findings.attachPoints.set(program, [...(findings.attachPoints.get(program) ?? []), `socket:[${inode}]`]);
        }
      } catch (error) {
        if (!unreadable(error)) throw error;
        problems.push(`pid ${process.pid} fd ${fd}: file ${hex(file)} is unreadable: ${error.message}`);
      }
    }
  }
  return findings;
}

/** A BPF JIT image the kernel lists in /proc/kallsyms (`bpf_prog_<tag>_<name>`, `bpf_trampoline_<key>`, dispatchers). */
export interface BpfSymbol {
  readonly start: bigint;
  readonly end: bigint;
  readonly name: string;
}

/**
 * The kernel's BPF symbols (`bpf_kallsyms`, the list behind the [bpf] lines of /proc/kallsyms):
 * where JITed programs and BPF trampolines live, so code found there can be named as BPF's.
 */
export function readBpfSymbols(reader: KernelReader): { symbols: BpfSymbol[]; problems: string[] } {
  const head = reader.profile.symbol('bpf_kallsyms');
  if (head === undefined) return { symbols: [], problems: [] };
  const walk = reader.walkList(head, reader.offset('bpf_ksym', 'lnode'), { maxSteps: MAX_BPF_SYMBOLS });
  const problems = walk.problem ? [`bpf_kallsyms: ${walk.problem.detail}`] : [];
  const symbols: BpfSymbol[] = [];
  for (const symbol of walk.entries) {
    try {
      symbols.push({
        start: reader.pointerField(symbol, 'bpf_ksym', 'start'),
        end: reader.pointerField(symbol, 'bpf_ksym', 'end'),
        name: reader.cString(symbol + reader.offset('bpf_ksym', 'name'), BPF_SYMBOL_NAME_BYTES),
      });
    } catch (error) {
      if (!unreadable(error)) throw error;
      problems.push(`bpf_kallsyms: bpf_ksym ${hex(symbol)} is unreadable: ${error.message}`);
    }
  }
  return { symbols, problems };
}
