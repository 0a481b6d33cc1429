import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';
import { DEFAULT_MAPLE_LIMITS, walkMapleTree, type MapleTreeLimits } from './mapleTree.js';
import { filePath, inodeIdentity } from './paths.js';
import { StructBytes } from './structBytes.js';

/** vm_flags bits (include/linux/mm.h), part of the ABI /proc/PID/maps and smaps expose. */
export const VM_READ = 0x1n;
export const VM_WRITE = 0x2n;
export const VM_EXEC = 0x4n;
export const VM_MAYSHARE = 0x80n;
const PAGE_SHIFT = 12n;
/** Entries of a tree that are not this process's VMAs before the rest of the tree is judged forged and skipped. */
const MAX_REJECTED_VMAS = 16;
/** ANON_VMA_NAME_MAX_LEN: prctl refuses longer names. */
const ANON_NAME_MAX = 80;

/** One line of /proc/PID/maps. */
export interface MemoryRegion {
  /** Address of the vm_area_struct. */
  readonly vma: bigint;
  readonly start: bigint;
  readonly end: bigint;
  readonly flags: bigint;
  /** `rwxp` / `rwxs`, as /proc/PID/maps prints them (s: VM_MAYSHARE). */
  readonly perms: string;
  /** Byte offset into the file (vm_pgoff pages); 0 for memory without a file. */
  readonly offset: bigint;
  /** The mapped `struct file`, or 0n for anonymous memory. */
  readonly file: bigint;
  readonly inode: number;
  readonly dev: string;
  /** The file's path, `[heap]`, `[stack]`, `[vdso]`, `[vvar]`, or '' for plain anonymous memory. */
  readonly path: string;
  /** The kernel's own special mapping (vDSO, vvar): code the kernel put there, not the program. */
  readonly special: boolean;
}

export interface ProcessRegions {
  readonly regions: MemoryRegion[];
  /** Why the list may be incomplete or a name missing; empty when the walk was whole. */
  readonly problems: string[];
}

/**
 * The memory regions of one mm_struct, as /proc/PID/maps lists them: the maple tree (mm_mt)
 * where the kernel has one (6.1+), the vm_next list (mmap) before. The choice is by the
 * profile's fields, not the version. Regions are in address order, each named as
 * show_map_vma() names it.
 */
export function readMemoryRegions(
  reader: KernelReader,
  mm: bigint,
  limits: MapleTreeLimits = DEFAULT_MAPLE_LIMITS,
): ProcessRegions {
  const problems: string[] = [];
  let mmBytes: StructBytes;
  try {
    mmBytes = StructBytes.read(reader, 'mm_struct', mm);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { regions: [], problems: [`mm_struct ${hex(mm)} is unreadable: ${error.message}`] };
  }
  const walk = reader.profile.hasField('mm_struct', 'mm_mt')
    ? walkMapleTree(reader, mm + BigInt(mmBytes.offset('mm_mt')), limits)
    : walkVmaList(reader, mmBytes.u64('mmap'), limits.maxEntries);
  problems.push(...walk.problems);

  const names = new RegionNames(reader, mmBytes);
  const regions: MemoryRegion[] = [];
  const seen = new Set<bigint>();
  let rejected = 0;
  for (const vma of walk.entries) {
    if (rejected >= MAX_REJECTED_VMAS) {
      problems.push(
        `${rejected} entries are not this process's VMAs: the tree is forged or corrupt, the rest is skipped`,
      );
      break;
    }
    if (seen.has(vma)) {
      problems.push(`vm_area_struct ${hex(vma)} is in the tree twice: listed once`);
      continue;
    }
    seen.add(vma);
    const checked = ownVma(reader, mm, vma);
    if (typeof checked === 'string') {
      problems.push(checked);
      rejected++;
    } else regions.push(names.region(checked, problems));
  }
  regions.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const mapCount = mmBytes.u32('map_count');
  if (problems.length === 0 && regions.length !== mapCount)
    problems.push(`found ${regions.length} regions, but mm->map_count says ${mapCount}`);
  return { regions, problems };
}

/**
 * The vm_area_struct at `vma` when it is one of this mm's regions (every VMA points back to its
 * mm, and ends above its start), or why it is not.
 */
function ownVma(reader: KernelReader, mm: bigint, vma: bigint): StructBytes | string {
  let bytes: StructBytes;
  try {
    bytes = StructBytes.read(reader, 'vm_area_struct', vma);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return `vm_area_struct ${hex(vma)} is unreadable: ${error.message}`;
  }
  const owner = bytes.u64('vm_mm');
  if (owner !== mm) return `vm_area_struct ${hex(vma)} belongs to mm ${hex(owner)}, not ${hex(mm)}: skipped`;
  const start = bytes.u64('vm_start');
  const end = bytes.u64('vm_end');
  if (end <= start) return `vm_area_struct ${hex(vma)} ends at ${hex(end)}, not above its start ${hex(start)}: skipped`;
  return bytes;
}

/** Before 6.1: mm->mmap, a NULL-terminated list through vm_next. */
function walkVmaList(
  reader: KernelReader,
  first: bigint,
  maxEntries: number,
): { entries: bigint[]; problems: string[] } {
  const entries: bigint[] = [];
  const seen = new Set<bigint>();
  for (let vma = first; vma !== 0n;) {
    if (seen.has(vma)) return { entries, problems: [`VMA list loops back to ${hex(vma)}`] };
    if (entries.length >= maxEntries)
      return { entries, problems: [`VMA list longer than ${maxEntries}: walk stopped`] };
    let next: bigint;
    try {
      next = reader.pointerField(vma, 'vm_area_struct', 'vm_next');
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      return { entries, problems: [`vm_area_struct ${hex(vma)} is unreadable: ${error.message}`] };
    }
    seen.add(vma);
    entries.push(vma);
    vma = next;
  }
  return { entries, problems: [] };
}

/** show_map_vma()'s naming, with the file paths of one process rebuilt once per file. */
class RegionNames {
  private readonly paths = new Map<bigint, { path: string; inode: number; dev: string }>();
  private readonly startBrk: bigint;
  private readonly brk: bigint;
  private readonly startStack: bigint;

  constructor(
    private readonly reader: KernelReader,
    mm: StructBytes,
  ) {
    this.startBrk = mm.u64('start_brk');
    this.brk = mm.u64('brk');
    this.startStack = mm.u64('start_stack');
  }

  region(vma: StructBytes, problems: string[]): MemoryRegion {
    const start = vma.u64('vm_start');
    const end = vma.u64('vm_end');
    const flags = vma.u64('vm_flags');
    const file = vma.u64('vm_file');
    const perms = `${flags & VM_READ ? 'r' : '-'}${flags & VM_WRITE ? 'w' : '-'}${flags & VM_EXEC ? 'x' : '-'}${flags & VM_MAYSHARE ? 's' : 'p'}`;
    const base = { vma: vma.address, start, end, flags, perms };
    if (file !== 0n) {
      return {
        ...base,
        offset: vma.u64('vm_pgoff') << PAGE_SHIFT,
        file,
        ...this.fileName(file, problems),
        special: false,
      };
    }
    const anonymous = { ...base, offset: 0n, file, inode: 0, dev: '00:00' };
    const special = this.specialName(vma, problems);
    if (special !== undefined) return { ...anonymous, path: special, special: true };
    if (start <= this.brk && end >= this.startBrk) return { ...anonymous, path: '[heap]', special: false };
    if (start <= this.startStack && end >= this.startStack) return { ...anonymous, path: '[stack]', special: false };
    return { ...anonymous, path: this.anonymousName(vma, problems), special: false };
  }

  private fileName(file: bigint, problems: string[]): { path: string; inode: number; dev: string } {
    let known = this.paths.get(file);
    if (!known) {
      const resolved = filePath(this.reader, file);
      problems.push(...resolved.problems);
      let identity = { inode: 0, dev: '00:00' };
      try {
        identity = inodeIdentity(this.reader, this.reader.pointerField(file, 'file', 'f_inode'));
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        problems.push(`inode of file ${hex(file)} is unreadable: ${error.message}`);
      }
      known = { path: resolved.path, ...identity };
      this.paths.set(file, known);
    }
    return known;
  }

  /** `[anon:NAME]` for anonymous memory named with prctl(PR_SET_VMA_ANON_NAME), on kernels built with it. */
  private anonymousName(vma: StructBytes, problems: string[]): string {
    if (!this.reader.profile.hasField('vm_area_struct', 'anon_name')) return '';
    const name = vma.u64('anon_name');
    if (name === 0n) return '';
    try {
      return `[anon:${this.reader.cString(name + this.reader.offset('anon_vma_name', 'name'), ANON_NAME_MAX)}]`;
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`anon_name of vm_area_struct ${hex(vma.address)} is unreadable: ${error.message}`);
      return '';
    }
  }

  /**
   * The name of a kernel special mapping: vm_ops->name is special_mapping_name(), which
   * returns the vm_special_mapping's name ("[vdso]", "[vvar]") held in vm_private_data.
   */
  private specialName(vma: StructBytes, problems: string[]): string | undefined {
    const operations = vma.u64('vm_ops');
    if (operations === 0n) return undefined;
    try {
      const nameCallback = this.reader.pointerField(operations, 'vm_operations_struct', 'name');
      if (
        nameCallback === 0n ||
        this.reader.profile.symbolsAt(nameCallback).every((symbol) => symbol.name !== 'special_mapping_name')
      )
        return undefined;
      const mapping = vma.u64('vm_private_data');
      return this.reader.cString(this.reader.pointerField(mapping, 'vm_special_mapping', 'name'), 64);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`vm_ops of vm_area_struct ${hex(vma.address)} are unreadable: ${error.message}`);
      return undefined;
    }
  }
}
