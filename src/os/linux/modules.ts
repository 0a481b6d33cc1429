import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader, WalkProblem } from './kernelReader.js';
import { MODULES_END, MODULES_VADDR } from './layout.js';

/** More modules than any real kernel loads; bounds list, tree and symbol walks over forged pointers. */
const MAX_MODULES = 1 << 14;
const MAX_MODULE_SYMBOLS = 1 << 16;
const MAX_SYMBOL_NAME = 128;
/** The kernel counts one reference for the module itself (MODULE_REF_BASE); /proc/modules shows the rest. */
const MODULE_REF_BASE = 1;
/** list_del() poisons the links (LIST_POISON1/2 with x86-64's POISON_POINTER_DELTA): a sign of unlinking, not corruption. */
const LIST_POISONS = new Set([0xdead000000000100n, 0xdead000000000122n]);
const STT_FUNC = 2;
const ELF_SYMBOL_TYPES = new Set([1, STT_FUNC]); // STT_OBJECT, STT_FUNC
/** Module names are C identifiers as modprobe writes them (dashes become underscores, but insmod keeps them). */
/** What the kernel accepts as a module's name. */
const MODULE_NAME = /^[\w-]+$/;

export const isModuleName = (name: string) => MODULE_NAME.test(name);

/** One range of a module's memory (a core/init layout before 6.4, a `mem[]` entry since). */
export interface ModuleRegion {
  readonly base: bigint;
  readonly size: number;
}

export interface ModuleInfo {
  /** Virtual address of the struct module. */
  readonly address: bigint;
  readonly name: string;
  readonly state: number;
  /** The `module_state` enumerator, or undefined when the value is none of them. */
  readonly stateName: string | undefined;
  /** Start of the module's (core) text, as /proc/modules shows it. */
  readonly base: bigint;
  /** All its memory, as /proc/modules counts it. */
  readonly size: number;
  readonly regions: readonly ModuleRegion[];
  /** References held by others (what lsmod calls "Used by"), or null without CONFIG_MODULE_UNLOAD. */
  readonly refcount: number | null;
}

export interface ModuleListWalk {
  readonly modules: ModuleInfo[];
  readonly problems: WalkProblem[];
}

export type ModuleSource = 'scan' | 'mod_tree' | 'sysfs';
/** The order sources are named in `found_by`. */
const MODULE_SOURCES: readonly ModuleSource[] = ['scan', 'mod_tree', 'sysfs'];

export interface HiddenModule {
  readonly module: ModuleInfo;
  readonly foundBy: readonly ModuleSource[];
}

export interface HiddenModuleSearch {
  readonly hidden: HiddenModule[];
  /** Sources that could not be searched completely, and pointers that named no module. */
  readonly problems: string[];
}

function readRegion(reader: KernelReader, at: bigint, struct: 'module_layout' | 'module_memory'): ModuleRegion {
  return { base: reader.pointerField(at, struct, 'base'), size: reader.u32Field(at, struct, 'size') };
}

/**
 * The module's memory: 6.4+ keeps `mem[MOD_MEM_NUM_TYPES]` (text first: MOD_TEXT is 0), older
 * kernels a core and an init `module_layout`. The first region is the one /proc/modules' base is.
 */
function moduleRegions(reader: KernelReader, module: bigint): ModuleRegion[] {
  const { profile } = reader;
  if (profile.hasField('module', 'mem')) {
    const mem = profile.field('module', 'mem');
    const count = mem.type.kind === 'array' ? mem.type.count : 1;
    const stride = BigInt(profile.sizeOf('module_memory'));
    return Array.from({ length: count }, (_, index) =>
      readRegion(reader, module + BigInt(mem.offset) + BigInt(index) * stride, 'module_memory'),
    );
  }
  return ['core_layout', 'init_layout'].map((layout) =>
    readRegion(reader, module + reader.offset('module', layout), 'module_layout'),
  );
}

/** The enumerator of enum `type` whose value is `value`. */
function enumName(reader: KernelReader, type: string, value: number): string | undefined {
  const constants = reader.profile.types.enums[type]?.constants ?? {};
  return Object.keys(constants).find((name) => constants[name] === value);
}

/** Read one struct module; throws a VmscopeError when it is unreadable. */
function readModule(reader: KernelReader, address: bigint): ModuleInfo {
  const { profile } = reader;
  const name = profile.field('module', 'name');
  const state = reader.u32Field(address, 'module', 'state');
  const regions = moduleRegions(reader, address);
  const refcount = profile.hasField('module', 'refcnt')
    ? reader.i32(address + reader.offset('module', 'refcnt') + reader.offset('atomic_t', 'counter')) - MODULE_REF_BASE
    : null;
  return {
    address,
    name: reader.cString(address + BigInt(name.offset), name.type.kind === 'array' ? name.type.count : 1),
    state,
    stateName: enumName(reader, 'module_state', state),
    base: regions[0]!.base,
    size: regions.reduce((total, region) => total + region.size, 0),
    regions: regions.filter((region) => region.size > 0),
    refcount,
  };
}

/**
 * A list walk that, when the forward walk is cut short, also walks backward from the head, so
 * one broken link loses as little as possible.
 */

/** The modules on the kernel's `modules` list, as lsmod and /proc/modules see them. */
export function walkModuleList(reader: KernelReader): ModuleListWalk {
  const walk = reader.walkListBothWays(
    reader.profile.requireSymbol('modules'),
    reader.offset('module', 'list'),
    MAX_MODULES,
  );
  const modules: ModuleInfo[] = [];
  const problems = [...walk.problems];
  for (const address of walk.entries) {
    try {
      modules.push(readModule(reader, address));
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push({
        kind: 'unreadable',
        at: address,
        detail: `struct module at ${hex(address)} is unreadable: ${error.message}`,
      });
    }
  }
  return { modules, problems };
}

const inModuleArea = (address: bigint) => address >= MODULES_VADDR && address < MODULES_END;
const isLink = (reader: KernelReader, pointer: bigint) =>
  reader.space.isKernelAddress(pointer) || LIST_POISONS.has(pointer);

/**
 * The struct module at `address` if it is a real one by structure: its sysfs kobject points back
 * to it (`mkobj.mod`, the strong check), its list links are kernel pointers (or list_del's
 * poison) and its memory lies inside the module area.
 */
function plausibleModule(reader: KernelReader, address: bigint): ModuleInfo | undefined {
  try {
    if (reader.u64(address + reader.offset('module', 'mkobj.mod')) !== address) return undefined;
    const listNext = reader.pointerField(address, 'module', 'list');
    const listPrev = reader.u64(address + reader.offset('module', 'list') + reader.offset('list_head', 'prev'));
    if (!isLink(reader, listNext) || !isLink(reader, listPrev)) return undefined;
    const module = readModule(reader, address);
    const regionsInArea = module.regions.every(
      (region) => inModuleArea(region.base) && region.base + BigInt(region.size) <= MODULES_END,
    );
    // Name and state are the module's own to scribble on (a zeroed name, a bogus state): a
    // struct that is a module by its self-pointer, links and memory stays one, and is only
    // more suspicious for them.
    return module.regions.length > 0 && regionsInArea ? module : undefined;
  } catch (error) {
    if (error instanceof VmscopeError) return undefined;
    throw error;
  }
}

/**
 * Candidates from every mapped page of the module area: a struct module's `mkobj.mod` holds the
 * struct's own address, so a qword equal to its own address minus that field's offset marks one.
 * Pages are read physically, run by run; the qword never straddles a page.
 */
function scanModuleArea(reader: KernelReader, problems: string[]): bigint[] {
  const fieldOffset = Number(reader.offset('module', 'mkobj.mod'));
  const { space } = reader;
  const candidates: bigint[] = [];
  const chunk = new Uint8Array(1 << 20);
  const words = new Uint32Array(chunk.buffer);
  try {
    for (const run of space.mappings(MODULES_VADDR, MODULES_END)) {
      for (let done = 0; done < run.length; done += chunk.length) {
        const filled = space.image.readPresent(
          run.physical + done,
          chunk.subarray(0, Math.min(chunk.length, run.length - done)),
        );
        const virtual = run.virtual + BigInt(done);
        // Module-area addresses have 0xffffffff as their high half: compare 32-bit halves as numbers.
        const low = Number(virtual & 0xffffffffn);
        for (let word = 0; word + 1 < filled / 4; word += 2) {
          if (words[word + 1] === 0xffffffff && words[word] === (low + word * 4 - fieldOffset) >>> 0) {
            candidates.push(virtual + BigInt(word * 4 - fieldOffset));
          }
        }
      }
    }
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`module area scan stopped: ${error.message}`);
  }
  return candidates;
}

/**
 * Modules in `mod_tree`, the latch tree of module memory ranges the kernel uses to map an address
 * to its module (present with CONFIG_MODULES_TREE_LOOKUP). Both latch copies are walked, each
 * bounded and cycle-checked.
 */
function modTreeModules(reader: KernelReader, problems: string[]): bigint[] {
  const { profile } = reader;
  const root = profile.symbol('mod_tree');
  if (root === undefined || !profile.hasField('mod_tree_root', 'root')) return [];
  const trees = root + reader.offset('mod_tree_root', 'root') + reader.offset('latch_tree_root', 'tree');
  const rbNodeSize = BigInt(profile.sizeOf('rb_node'));
  const nodeOffset = reader.offset('mod_tree_node', 'node') + reader.offset('latch_tree_node', 'node');
  const modules = new Set<bigint>();
  for (const latch of [0n, 1n]) {
    const pending = [reader.u64(trees + latch * BigInt(profile.sizeOf('rb_root')))];
    const seen = new Set<bigint>();
    while (pending.length > 0) {
      const node = pending.pop()!;
      if (node === 0n || seen.has(node)) continue;
      if (seen.size >= MAX_MODULES) {
        problems.push(`mod_tree: stopped after ${MAX_MODULES} nodes`);
        break;
      }
      seen.add(node);
      try {
        // Copy `latch` of the tree links node[latch] of each module's latch_tree_node.
        modules.add(reader.pointerField(node - latch * rbNodeSize - nodeOffset, 'mod_tree_node', 'mod'));
        pending.push(reader.pointerField(node, 'rb_node', 'rb_left'), reader.pointerField(node, 'rb_node', 'rb_right'));
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        problems.push(`mod_tree: node ${hex(node)} is unreadable: ${error.message}`);
      }
    }
  }
  return [...modules];
}

/** Modules in sysfs (/sys/module): `module_kset`'s kobjects; built-in modules' have no struct module. */
function sysfsModules(reader: KernelReader, problems: string[]): bigint[] {
  const ksetPointer = reader.profile.symbol('module_kset');
  if (ksetPointer === undefined) return [];
  const linkOffset = reader.offset('module_kobject', 'kobj') + reader.offset('kobject', 'entry');
  const walk = reader.walkList(reader.u64(ksetPointer) + reader.offset('kset', 'list'), linkOffset, {
    maxSteps: MAX_MODULES,
  });
  if (walk.problem) problems.push(`sysfs module_kset: ${walk.problem.detail}`);
  const modules: bigint[] = [];
  for (const kobject of walk.entries) {
    try {
      const module = reader.pointerField(kobject, 'module_kobject', 'mod');
      if (module !== 0n) modules.push(module);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`sysfs module_kset: kobject ${hex(kobject)} is unreadable: ${error.message}`);
    }
  }
  return modules;
}

/**
 * Struct modules the `modules` list does not hold, found by a scan of the module area and in the
 * two other places a loaded module stays: the address→module tree and sysfs. A rootkit that
 * unlinks itself from the list (what lsmod reads) is usually still in all three.
 */
export function findHiddenModules(reader: KernelReader, listed: readonly ModuleInfo[]): HiddenModuleSearch {
  const problems: string[] = [];
  const found = new Map<bigint, Set<ModuleSource>>();
  const sources: Record<ModuleSource, () => bigint[]> = {
    scan: () => scanModuleArea(reader, problems),
    mod_tree: () => modTreeModules(reader, problems),
    sysfs: () => sysfsModules(reader, problems),
  };
  for (const source of MODULE_SOURCES) {
    try {
      for (const address of sources[source]()) found.set(address, (found.get(address) ?? new Set()).add(source));
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`${source}: ${error.message}`);
    }
  }
  const onList = new Set(listed.map((module) => module.address));
  const hidden: HiddenModule[] = [];
  for (const [address, foundBy] of [...found].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (onList.has(address)) continue;
    const module = plausibleModule(reader, address);
    const names = MODULE_SOURCES.filter((source) => foundBy.has(source));
    // The scan's candidates are any qword that happens to fit; the kernel's own structures should not point at garbage.
    const pointers = names.filter((source) => source !== 'scan');
    if (module) hidden.push({ module, foundBy: names });
    else if (pointers.length > 0) problems.push(`${pointers.join(', ')}: ${hex(address)} is not a valid struct module`);
  }
  return { hidden, problems };
}

/** The module whose memory holds `address`, if any. */
export function moduleAt(modules: readonly ModuleInfo[], address: bigint): ModuleInfo | undefined {
  return modules.find((module) =>
    module.regions.some((region) => address >= region.base && address < region.base + BigInt(region.size)),
  );
}

/** A module's kallsyms symbol table (`module.kallsyms`: the symbols it keeps after load), read once. */
interface ModuleSymtab {
  readonly strtab: bigint;
  readonly symbols: Array<{ nameOffset: number; value: bigint; type: number }>;
}

function readModuleSymtab(reader: KernelReader, module: ModuleInfo): ModuleSymtab | undefined {
  const kallsyms = reader.pointerField(module.address, 'module', 'kallsyms');
  const count = reader.u32Field(kallsyms, 'mod_kallsyms', 'num_symtab');
  if (count > MAX_MODULE_SYMBOLS) return undefined;
  const { profile } = reader;
  const symbolSize = profile.sizeOf('elf64_sym');
  const [nameField, infoField, valueField] = ['st_name', 'st_info', 'st_value'].map((name) =>
    profile.offsetOf('elf64_sym', name),
  ) as [number, number, number];
  const table = reader.bytes(reader.pointerField(kallsyms, 'mod_kallsyms', 'symtab'), count * symbolSize);
  const view = new DataView(table.buffer);
  const symbols: ModuleSymtab['symbols'] = [];
  for (let at = 0; at < table.length; at += symbolSize) {
    symbols.push({
      nameOffset: view.getUint32(at + nameField, true),
      value: view.getBigUint64(at + valueField, true),
      type: view.getUint8(at + infoField) & 0xf,
    });
  }
  return { strtab: reader.pointerField(kallsyms, 'mod_kallsyms', 'strtab'), symbols };
}

/**
 * The module's own symbol at or below `address` (from its kallsyms), and the offset past it;
 * undefined when it has none there.
 */
export function moduleSymbolAt(
  reader: KernelReader,
  module: ModuleInfo,
  address: bigint,
): { name: string; offset: bigint } | undefined {
  try {
    const symtab = readModuleSymtab(reader, module);
    if (!symtab) return undefined;
    let best: { nameOffset: number; value: bigint } | undefined;
    for (const symbol of symtab.symbols) {
      if (
        ELF_SYMBOL_TYPES.has(symbol.type) &&
        symbol.value <= address &&
        moduleAt([module], symbol.value) &&
        (!best || symbol.value > best.value)
      )
        best = symbol;
    }
    if (!best) return undefined;
    const name = reader.cString(symtab.strtab + BigInt(best.nameOffset), MAX_SYMBOL_NAME);
    return { name, offset: address - best.value };
  } catch (error) {
    if (error instanceof VmscopeError) return undefined;
    throw error;
  }
}

/**
 * The module's functions (STT_FUNC symbols of its kallsyms inside its memory), in address order.
 * Throws a VmscopeError when its symbol table is unreadable or larger than any real module's.
 */
export function moduleFunctions(reader: KernelReader, module: ModuleInfo): Array<{ name: string; address: bigint }> {
  const symtab = readModuleSymtab(reader, module);
  if (!symtab)
    throw new VmscopeError(
      'CORRUPT_STRUCTURE',
      `module ${module.name} claims more than ${MAX_MODULE_SYMBOLS} symbols`,
      reader.profile.source,
      module.address,
    );
  return symtab.symbols
    .filter((symbol) => symbol.type === STT_FUNC && moduleAt([module], symbol.value))
    .sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
    .map((symbol) => ({
      name: reader.cString(symtab.strtab + BigInt(symbol.nameOffset), MAX_SYMBOL_NAME),
      address: symbol.value,
    }));
}
