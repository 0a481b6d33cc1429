import type { BtfTypes } from './btfParse.js';
import { codeUseEvidence } from './codeUseTypes.js';
import { describeType, type IsfTypeDescriptor, type IsfTypes } from './isf.js';
import type { ProfileSymbol } from './profile.js';
import { symbolsByName } from './symbolTable.js';

/**
 * Types of the kernel's global variables, which a Volatility ISF gives each data symbol
 * (`object_from_symbol` refuses a symbol without one). BTF describes every type but, of the
 * variables, usually only the per-CPU ones (its `.data..percpu` DATASEC); so:
 *  - a variable in a BTF DATASEC takes its type from BTF, when kallsyms puts the symbol where
 *    the DATASEC does;
 *  - a variable whose address the kernel's code passes to functions takes the type their BTF
 *    prototypes give that parameter (codeUseTypes.ts), when it fits the symbol's extent tightly;
 *  - any other variable Volatility's Linux plugins read takes the type the kernel source
 *    declares it with (KERNEL_DECLARATIONS), resolved against this kernel's BTF; a declaration
 *    of unknown length (`[]`) takes its length from the symbol's extent (up to the next kallsyms
 *    symbol), and every declaration must fit that extent or it is refused: a kernel that changed
 *    the variable's type is caught rather than described wrongly, as is one the code uses as
 *    another type.
 */

/** Where a symbol's type came from (named in the ISF metadata). */
export type SymbolTypeSource =
  /** A BTF DATASEC variable (per-CPU ones on every kernel; all globals where pahole's global_var is on), placed where kallsyms says. */
  | 'btf-datasec'
  /** Kernel code passes the symbol's address to a function whose BTF prototype types that parameter; the type fits the symbol's extent tightly. */
  | 'code-use'
  /** vmscope's table of kernel declarations, resolved against BTF, fitting the symbol's extent (and agreeing with the code's use, where it has one). */
  | 'declared'
  /** As 'declared', with the array's length measured from the symbol's extent. */
  | 'declared-extent'
  /** Read from a user's ISF. */
  | 'isf';

export interface SymbolTypeEntry {
  readonly type: IsfTypeDescriptor;
  readonly source: SymbolTypeSource;
}

interface KernelDeclaration {
  /** C spelling: `struct x`, `union x`, `enum x`, a base type or typedef name, or `function`; then `*`s; then `[N]` or `[]`. */
  readonly type: string;
  /** The kernel source file that defines the variable (why this type). */
  readonly file: string;
  /** Every element of the array is non-zero (syscall slots hold at least sys_ni_syscall): trailing zero elements are alignment padding. */
  readonly nonZeroElements?: boolean;
}

/**
 * How the kernel declares the variables Volatility 3 reads (src/symbols/volatilitySymbols.json
 * lists those reads). Only what BTF cannot give: no kernel records a global's type in memory.
 */
export const KERNEL_DECLARATIONS: Readonly<Record<string, KernelDeclaration>> = {
  init_task: { type: 'struct task_struct', file: 'init/init_task.c' },
  init_pid_ns: { type: 'struct pid_namespace', file: 'kernel/pid.c' },
  init_files: { type: 'struct files_struct', file: 'fs/file.c' },
  modules: { type: 'struct list_head', file: 'kernel/module/main.c' },
  module_kset: { type: 'struct kset *', file: 'kernel/params.c' },
  mod_tree: { type: 'struct mod_tree_root', file: 'kernel/module/main.c' },
  module_addr_min: { type: 'long unsigned int', file: 'kernel/module.c (before 5.19)' },
  module_addr_max: { type: 'long unsigned int', file: 'kernel/module.c (before 5.19)' },
  idt_table: { type: 'gate_desc[]', file: 'arch/x86/kernel/idt.c' },
  sys_call_table: { type: 'function *[]', file: 'arch/x86/entry/syscall_64.c', nonZeroElements: true },
  ia32_sys_call_table: { type: 'function *[]', file: 'arch/x86/entry/syscall_32.c', nonZeroElements: true },
  x32_sys_call_table: { type: 'function *[]', file: 'arch/x86/entry/syscall_x32.c', nonZeroElements: true },
  prog_idr: { type: 'struct idr', file: 'kernel/bpf/syscall.c' },
  map_idr: { type: 'struct idr', file: 'kernel/bpf/syscall.c' },
  keyboard_notifier_list: { type: 'struct atomic_notifier_head', file: 'drivers/tty/vt/keyboard.c' },
  prb: { type: 'struct printk_ringbuffer *', file: 'kernel/printk/printk.c' },
  log_buf: { type: 'char *', file: 'kernel/printk/printk.c' },
  log_buf_len: { type: 'u32', file: 'kernel/printk/printk.c' },
  log_first_idx: { type: 'u32', file: 'kernel/printk/printk.c (before 5.10)' },
  log_next_idx: { type: 'u32', file: 'kernel/printk/printk.c (before 5.10)' },
  net_namespace_list: { type: 'struct list_head', file: 'net/core/net_namespace.c' },
  init_net: { type: 'struct net', file: 'net/core/net_namespace.c' },
  socket_file_ops: { type: 'struct file_operations', file: 'net/socket.c' },
  sockfs_dentry_operations: { type: 'struct dentry_operations', file: 'net/socket.c' },
  tty_drivers: { type: 'struct list_head', file: 'drivers/tty/tty_io.c' },
  cap_last_cap: { type: 'int', file: 'kernel/sysctl.c or kernel/capability.c: const int cap_last_cap = CAP_LAST_CAP' },
  vmemmap_base: { type: 'long unsigned int', file: 'arch/x86/kernel/head64.c' },
  page_offset_base: { type: 'long unsigned int', file: 'arch/x86/kernel/head64.c' },
  vmalloc_base: { type: 'long unsigned int', file: 'arch/x86/kernel/head64.c' },
  phys_base: { type: 'long unsigned int', file: 'arch/x86/include/asm/page_64.h: extern unsigned long phys_base' },
  mem_section: { type: 'struct mem_section **', file: 'mm/sparse.c (SPARSEMEM_EXTREME)' },
  mem_map: { type: 'struct page *', file: 'mm/memory.c (FLATMEM)' },
  init_top_pgt: {
    type: 'pgd_t[512]',
    file: 'arch/x86/include/asm/pgtable_64.h (extern pgd_t init_top_pgt[]; PTRS_PER_PGD is 512 at 4 and 5 levels)',
  },
  iomem_resource: { type: 'struct resource', file: 'kernel/resource.c' },
  tcp4_seq_afinfo: { type: 'struct tcp_seq_afinfo', file: 'net/ipv4/tcp_ipv4.c' },
  tcp6_seq_afinfo: { type: 'struct tcp_seq_afinfo', file: 'net/ipv6/tcp_ipv6.c' },
  udp4_seq_afinfo: { type: 'struct udp_seq_afinfo', file: 'net/ipv4/udp.c' },
  udplite4_seq_afinfo: { type: 'struct udp_seq_afinfo', file: 'net/ipv4/udplite.c' },
  udp6_seq_afinfo: { type: 'struct udp_seq_afinfo', file: 'net/ipv6/udp.c' },
  udplite6_seq_afinfo: { type: 'struct udp_seq_afinfo', file: 'net/ipv6/udplite.c' },
  idle_sched_class: { type: 'struct sched_class', file: 'kernel/sched/idle.c' },
  fair_sched_class: { type: 'struct sched_class', file: 'kernel/sched/fair.c' },
  rt_sched_class: { type: 'struct sched_class', file: 'kernel/sched/rt.c' },
  dl_sched_class: { type: 'struct sched_class', file: 'kernel/sched/deadline.c' },
  stop_sched_class: { type: 'struct sched_class', file: 'kernel/sched/stop_task.c' },
};

export interface SymbolTypeInputs {
  readonly btf: BtfTypes;
  readonly isf: IsfTypes;
  /** The ISF descriptor of a BTF type id (btfIsfConversion's `describe`). */
  readonly describe: (id: number) => IsfTypeDescriptor;
  readonly symbols: readonly ProfileSymbol[];
  /** This dump's bytes at a (KASLR-applied) kernel address, or undefined when unreadable: kernel text for the code's use of variables, and arrays' padding. */
  readonly read?: (address: bigint, length: number) => Uint8Array | undefined;
}

export interface SymbolTyping {
  readonly types: Map<string, SymbolTypeEntry>;
  /** Declarations this kernel contradicts (why each was not used). */
  readonly refused: string[];
}

const POINTER_BYTES = 8;
/** Nesting followed when looking for a type at offset 0 (real kernels nest a few levels). */
const MAX_HOLD_DEPTH = 16;
/** Alignment padding after a variable stays below a cache line; more room than that means the type seen is only the start of the object. */
const TIGHT_FIT_SLACK = 64n;
/** Far beyond any kernel table the declarations size from their extent (IDT: 256, syscalls: about 460). */
const MAX_EXTENT_ELEMENTS = 1 << 16;

export function typeDataSymbols(inputs: SymbolTypeInputs): SymbolTyping {
  const types = new Map<string, SymbolTypeEntry>();
  const refused: string[] = [];
  // As Profile resolves names: a global definition wins over a file-local one of the same name.
  const byName = symbolsByName(inputs.symbols);

  for (const [name, type] of btfVariableTypes(inputs, byName)) types.set(name, { type, source: 'btf-datasec' });

  const codeUse = usedTypes(inputs, byName);
  const extents = new Extents(inputs.symbols);
  for (const [name, declaration] of Object.entries(KERNEL_DECLARATIONS)) {
    const symbol = byName.get(name);
    if (symbol === undefined || types.has(name) || symbol.type?.toUpperCase() === 'T') continue;
    const typed = declaredType(declaration, symbol, extents, inputs);
    const used = codeUse.get(name);
    if (typeof typed === 'string') refused.push(`${name}: ${typed}`);
    else if (used && !holdsAtStart(typed.type, used, inputs.isf) && !holdsAtStart(used, typed.type, inputs.isf)) {
      refused.push(`${name}: declared ${declaration.type}, but the kernel's code passes it as ${describeType(used)}`);
    } else types.set(name, typed);
  }
  for (const [name, type] of codeUse) {
    const symbol = byName.get(name)!;
    if (types.has(name) || name in KERNEL_DECLARATIONS) continue;
    const size = sizeOf(type, inputs.isf);
    const extent = extents.of(symbol.address);
    // A variable passed only through its first member (a lock heading a bigger struct) would be typed as that member: a tight fit rules it out.
    if (size !== undefined && extent !== undefined && BigInt(size) <= extent && extent - BigInt(size) < TIGHT_FIT_SLACK)
      types.set(name, { type, source: 'code-use' });
  }
  return { types, refused };
}

/**
 * For each data symbol whose address kernel code passes to BTF-typed functions: the one type
 * that holds every type it is passed as at its start (`__cpu_online_mask` is passed as a
 * `struct cpumask *` and as the `unsigned long *` of its bits: it is a cpumask); none when the
 * uses disagree.
 */
function usedTypes(
  inputs: SymbolTypeInputs,
  byName: ReadonlyMap<string, ProfileSymbol>,
): Map<string, IsfTypeDescriptor> {
  const used = new Map<string, IsfTypeDescriptor>();
  const start = byName.get('_stext')?.address;
  const end = byName.get('_etext')?.address;
  if (!inputs.read || start === undefined || end === undefined || end <= start) return used;
  const evidence = codeUseEvidence({
    btf: inputs.btf,
    describe: inputs.describe,
    symbols: inputs.symbols,
    text: { start, end },
    read: inputs.read,
  });
  for (const [name, byType] of evidence) {
    // Zero-sized types (lock_class_key without lockdep) share their address with the next object: they say nothing.
    const candidates = [...byType.values()]
      .map(({ type }) => type)
      .filter((type) => (sizeOf(type, inputs.isf) ?? 0) > 0);
    const holder = candidates.find((type) => candidates.every((other) => holdsAtStart(type, other, inputs.isf)));
    if (holder) used.set(name, holder);
  }
  return used;
}

/** Whether a value of type `outer` has `inner` at offset 0: itself, its first element, or a member at offset 0, recursively. */
function holdsAtStart(outer: IsfTypeDescriptor, inner: IsfTypeDescriptor, isf: IsfTypes, depth = 0): boolean {
  if (sameType(outer, inner)) return true;
  if (depth >= MAX_HOLD_DEPTH) return false;
  if (outer.kind === 'array') return holdsAtStart(outer.subtype, inner, isf, depth + 1);
  if (outer.kind !== 'struct' && outer.kind !== 'union') return false;
  const fields = isf.user_types[outer.name]?.fields ?? {};
  return Object.values(fields).some(
    (field) => field.offset === 0 && field.type.kind !== 'bitfield' && holdsAtStart(field.type, inner, isf, depth + 1),
  );
}

function sameType(a: IsfTypeDescriptor, b: IsfTypeDescriptor): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Variables BTF places in a DATASEC, where kallsyms confirms the place. Per-CPU variables
 * (`.data..percpu`, in every vmlinux BTF): kallsyms gives their offset in the per-CPU area,
 * which must be the DATASEC offset. Other sections (`.data`, `.bss`, `.rodata`, described when
 * pahole's global_var feature is on): their DATASEC offsets are section-relative, so the section's
 * base is the one address that most of its variables' kallsyms addresses agree on, and only the
 * variables that lie exactly there are typed.
 */
function btfVariableTypes(
  inputs: SymbolTypeInputs,
  byName: ReadonlyMap<string, ProfileSymbol>,
): Map<string, IsfTypeDescriptor> {
  const found = new Map<string, IsfTypeDescriptor>();
  for (const section of inputs.btf.types) {
    if (section.kind !== 'datasec') continue;
    const perCpu = section.name === '.data..percpu';
    const placed: Array<{ name: string; type: number; offset: bigint; symbol: ProfileSymbol }> = [];
    for (const entry of section.vars) {
      const variable = inputs.btf.type(entry.type);
      const symbol = variable.kind === 'var' ? byName.get(variable.name) : undefined;
      if (variable.kind === 'var' && symbol !== undefined && symbol.absolute === perCpu)
        placed.push({ name: variable.name, type: variable.type, offset: BigInt(entry.offset), symbol });
    }
    const base = perCpu ? 0n : agreedBase(placed.map(({ symbol, offset }) => symbol.address - offset));
    if (base === undefined) continue;
    for (const { name, type, offset, symbol } of placed)
      if (symbol.address === base + offset) found.set(name, inputs.describe(type));
  }
  return found;
}

/** The section base most variables agree on, when at least two do and they outnumber the rest. */
function agreedBase(candidates: readonly bigint[]): bigint | undefined {
  const votes = new Map<bigint, number>();
  for (const candidate of candidates) votes.set(candidate, (votes.get(candidate) ?? 0) + 1);
  let best: [bigint, number] | undefined;
  for (const vote of votes) if (best === undefined || vote[1] > best[1]) best = vote;
  return best !== undefined && best[1] >= 2 && best[1] * 2 > candidates.length ? best[0] : undefined;
}

/** Where each relocatable symbol's object can end at the latest: the next symbol's address. */
class Extents {
  private readonly addresses: bigint[];

  constructor(symbols: readonly ProfileSymbol[]) {
    this.addresses = [...new Set(symbols.filter((symbol) => !symbol.absolute).map((symbol) => symbol.address))].sort(
      (a, b) => (a < b ? -1 : a > b ? 1 : 0),
    );
  }

  of(address: bigint): bigint | undefined {
    let low = 0;
    let high = this.addresses.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.addresses[middle]! <= address) low = middle + 1;
      else high = middle;
    }
    const next = this.addresses[low];
    return next === undefined ? undefined : next - address;
  }
}

interface ParsedDeclaration {
  readonly base: string;
  readonly pointers: number;
  /** undefined: not an array; null: an array of unknown length. */
  readonly count: number | null | undefined;
}

function parseDeclaration(text: string): ParsedDeclaration {
  const match = /^([A-Za-z_][A-Za-z0-9_ ]*?)\s*(\**)\s*(?:\[(\d*)\])?$/.exec(text);
  if (!match) throw new Error(`malformed kernel declaration "${text}"`);
  const [, base, stars, count] = match;
  return {
    base: base!,
    pointers: stars!.length,
    count: count === undefined ? undefined : count === '' ? null : Number(count),
  };
}

function declaredType(
  declaration: KernelDeclaration,
  symbol: ProfileSymbol,
  extents: Extents,
  inputs: SymbolTypeInputs,
): SymbolTypeEntry | string {
  const parsed = parseDeclaration(declaration.type);
  let element = resolveBase(parsed.base, inputs);
  if (element === undefined)
    return `this kernel's BTF has no type "${parsed.base}" (declared ${declaration.type} in ${declaration.file})`;
  for (let i = 0; i < parsed.pointers; i++) element = { kind: 'pointer', subtype: element };
  const extent = symbol.absolute ? undefined : extents.of(symbol.address);
  const elementSize = sizeOf(element, inputs.isf);
  if (elementSize === undefined || elementSize === 0) return `declared ${declaration.type}, whose size is unknown`;

  if (parsed.count === undefined || parsed.count !== null) {
    const type: IsfTypeDescriptor =
      parsed.count === undefined ? element : { kind: 'array', count: parsed.count, subtype: element };
    const size = sizeOf(type, inputs.isf)!;
    if (extent !== undefined && BigInt(size) > extent)
      return `declared ${declaration.type} (${size} bytes), but the next symbol is ${extent} bytes after it`;
    return { type, source: 'declared' };
  }
  if (extent === undefined) return `declared ${declaration.type}: its length needs the next symbol, and there is none`;
  let count = Math.min(MAX_EXTENT_ELEMENTS, Number(extent / BigInt(elementSize)));
  if (declaration.nonZeroElements && inputs.read)
    count = withoutZeroTail(symbol.address, count, elementSize, inputs.read);
  if (count === 0) return `declared ${declaration.type}, but no element fits before the next symbol`;
  return { type: { kind: 'array', count, subtype: element }, source: 'declared-extent' };
}

/** The element count less trailing all-zero elements (alignment padding before the next symbol). */
function withoutZeroTail(
  address: bigint,
  count: number,
  elementSize: number,
  read: NonNullable<SymbolTypeInputs['read']>,
): number {
  const bytes = read(address, count * elementSize);
  if (bytes === undefined) return count;
  let kept = count;
  while (kept > 0 && bytes.subarray((kept - 1) * elementSize, kept * elementSize).every((byte) => byte === 0)) kept--;
  return kept;
}

function resolveBase(base: string, inputs: SymbolTypeInputs): IsfTypeDescriptor | undefined {
  const { isf, btf } = inputs;
  const tagged = /^(struct|union|enum) (\w+)$/.exec(base);
  if (tagged) {
    const [, kind, tag] = tagged as unknown as [string, 'struct' | 'union' | 'enum', string];
    if (kind === 'enum') return tag in isf.enums ? { kind: 'enum', name: tag } : undefined;
    return isf.user_types[tag]?.kind === kind ? { kind, name: tag } : undefined;
  }
  if (base === 'function') return { kind: 'function' };
  if (base in isf.base_types) return { kind: 'base', name: base };
  const typedef = btf.find('typedef', base);
  return typedef === undefined ? undefined : inputs.describe(typedef);
}

/** Bytes a value of this type occupies (undefined for a function, which has no data size). */
export function sizeOf(type: IsfTypeDescriptor, isf: IsfTypes): number | undefined {
  switch (type.kind) {
    case 'base':
      return isf.base_types[type.name]?.size;
    case 'pointer':
      return POINTER_BYTES;
    case 'array': {
      const element = sizeOf(type.subtype, isf);
      return element === undefined ? undefined : element * type.count;
    }
    case 'struct':
    case 'union':
    case 'class':
      return isf.user_types[type.name]?.size;
    case 'enum':
      return isf.enums[type.name]?.size;
    case 'bitfield':
    case 'function':
      return undefined;
  }
}
