import type { MappingRun, X86AddressSpace } from '../../space/x86.js';
import type { Profile } from '../../symbols/profile.js';
import { VmscopeError } from '../../util/errors.js';
import type { LinuxKernel } from './discovery.js';
import type { KernelReader } from './kernelReader.js';
import { MODULES_END, MODULES_VADDR } from './layout.js';
import { processAddressSpace } from './processSpace.js';
import type { TaskInfo } from './tasks.js';

/** One process mapping of a physical byte: the byte's own virtual address in that process. */
export interface ProcessMapping {
  readonly pid: number;
  readonly comm: string;
  readonly virtual: bigint;
}

/**
 * Who holds a physical byte. A byte mapped by processes belongs to each of them; otherwise it is
 * `kernel` when it lies in the kernel image's sections or in memory the module window maps (a
 * module's code and data), and `unowned` when only the direct map reaches it (page cache, slab,
 * free pages).
 */
export type Attribution = ({ readonly owner: 'process' } & ProcessMapping) | { readonly owner: 'kernel' | 'unowned' };

export type AttributedHit<T> = { readonly physical: number; readonly hit: T } & Attribution;

/** A user process and its own address space, as the reverse map reads it. */
export interface ProcessSpace {
  readonly pid: number;
  readonly comm: string;
  readonly space: X86AddressSpace;
}

/** A run of one process's mappings: `[physical, end)` seen at `virtual` by `processes[process]`. */
export interface OwnedRun {
  readonly physical: number;
  readonly end: number;
  readonly virtual: bigint;
  readonly process: number;
}

/** A physical range `[physical, end)`. */
export interface PhysicalSpan {
  readonly physical: number;
  readonly end: number;
}

/**
 * Physical address → every (pid, virtual address) mapping it. Runs are kept as the page walk
 * merged them (one entry per physically and virtually contiguous run, whatever its page sizes),
 * sorted by physical start, so a 1 GiB page costs one entry and a lookup is a binary search.
 * Runs of different processes overlap (shared libraries, page cache, the vDSO): `reach[i]`, the
 * furthest end among runs 0..i, tells the backward scan from the search point when to stop.
 */
export class ReverseMap {
  private readonly runs: OwnedRun[];
  private readonly reach: Float64Array;

  constructor(
    private readonly processes: readonly { pid: number; comm: string }[],
    runs: OwnedRun[],
    private readonly kernelSpans: readonly PhysicalSpan[],
    /** What could not be walked (a process whose page tables are unreadable); its pages then look unowned. */
    readonly problems: readonly string[],
  ) {
    this.runs = runs.sort((a, b) => a.physical - b.physical);
    this.reach = new Float64Array(this.runs.length);
    let furthest = 0;
    this.runs.forEach((run, index) => {
      furthest = Math.max(furthest, run.end);
      this.reach[index] = furthest;
    });
  }

  /** Mapping runs held, for sizing and timing reports. */
  get runCount(): number {
    return this.runs.length;
  }

  /** Every process mapping of `physical`, by pid then virtual address; empty when no process maps it. */
  lookup(physical: number): ProcessMapping[] {
    const found: ProcessMapping[] = [];
    this.visitRunsCovering(physical, (run) => {
      const { pid, comm } = this.processes[run.process]!;
      found.push({ pid, comm, virtual: run.virtual + BigInt(physical - run.physical) });
    });
    return found.sort((a, b) => a.pid - b.pid || (a.virtual < b.virtual ? -1 : a.virtual > b.virtual ? 1 : 0));
  }

  /** How many attributions `attribute(physical)` gives, without making them (a count over a million hits allocates nothing). */
  attributionCount(physical: number): number {
    let count = 0;
    this.visitRunsCovering(physical, () => count++);
    return Math.max(1, count);
  }

  private visitRunsCovering(physical: number, visit: (run: OwnedRun) => void): void {
    for (
      let index = lastStartingAtOrBefore(this.runs, physical);
      index >= 0 && this.reach[index]! > physical;
      index--
    ) {
      const run = this.runs[index]!;
      if (run.end > physical) visit(run);
    }
  }

  /** One attribution per process mapping of `physical`, or a single kernel/unowned one. */
  attribute(physical: number): Attribution[] {
    const mappings = this.lookup(physical);
    if (mappings.length > 0) return mappings.map((mapping) => ({ owner: 'process', ...mapping }));
    const kernelSpan = this.kernelSpans[lastStartingAtOrBefore(this.kernelSpans, physical)];
    return [{ owner: kernelSpan !== undefined && physical < kernelSpan.end ? 'kernel' : 'unowned' }];
  }
}

/** Index of the last element whose `physical` is ≤ `physical` (elements sorted by it), or -1. */
function lastStartingAtOrBefore(sorted: readonly { readonly physical: number }[], physical: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle]!.physical <= physical) low = middle + 1;
    else high = middle;
  }
  return low - 1;
}

/** The user half of a space: below the first kernel-half address (2^47 with 4 levels, 2^56 with 5). */
export function userHalfEnd(space: X86AddressSpace): bigint {
  return 1n << BigInt(space.addressBits - 1);
}

/** The kernel image's sections, as /proc/iomem names them (Kernel code, rodata, data, bss). */
const KERNEL_SECTIONS = [
  ['_text', '_etext'],
  ['__start_rodata', '__end_rodata'],
  ['_sdata', '_edata'],
  ['__bss_start', '__bss_stop'],
] as const;

/**
 * The physical spans of the kernel image's sections, in order. Not the whole high mapping: the
 * kernel frees its init memory and the gaps between sections after boot, and without PTI their
 * high-mapping alias stays, so pages later reused for page cache or slab still appear there.
 */
export function kernelImageSections(kernel: LinuxKernel, profile: Profile): PhysicalSpan[] {
  const spans: PhysicalSpan[] = [];
  for (const [first, last] of KERNEL_SECTIONS) {
    const start = profile.symbol(first);
    const end = profile.symbol(last);
    if (start === undefined || end === undefined || end < start) continue;
    // The image is physically contiguous, so one translation places a whole section.
    const physical = kernel.space.tryTranslate(start)?.physical;
    if (physical !== undefined) spans.push({ physical, end: physical + Number(end - start) });
  }
  return spans;
}

/** What the kernel owns outright: its image sections and whatever its module window maps, merged and sorted. */
function kernelOwnedSpans(kernel: LinuxKernel, profile: Profile): PhysicalSpan[] {
  const moduleMemory = [...kernel.space.mappings(MODULES_VADDR, MODULES_END)].map((run) => ({
    physical: run.physical,
    end: run.physical + run.length,
  }));
  const spans = [...kernelImageSections(kernel, profile), ...moduleMemory].sort((a, b) => a.physical - b.physical);
  const merged: PhysicalSpan[] = [];
  for (const span of spans) {
    const last = merged[merged.length - 1];
    if (last && span.physical <= last.end)
      merged[merged.length - 1] = { physical: last.physical, end: Math.max(last.end, span.end) };
    else merged.push(span);
  }
  return merged;
}

/**
 * The reverse map from already-opened process spaces (pure: page tables in, map out), with the
 * kernel's spans sorted and disjoint. Only the
 * user half is walked: the kernel half of every process is the kernel's own mapping, and would
 * make every kernel page look owned by every process.
 */
export function reverseMapFromSpaces(
  processes: readonly ProcessSpace[],
  kernelSpans: readonly PhysicalSpan[] = [],
  problems: string[] = [],
): ReverseMap {
  const runs: OwnedRun[] = [];
  processes.forEach(({ pid, space }, process) => {
    try {
      const aliasedBefore = space.aliasedTables;
      for (const run of space.mappings(0n, userHalfEnd(space))) runs.push(ownedRun(run, process));
      const aliased = space.aliasedTables - aliasedBefore;
      if (aliased > 0)
        problems.push(
          `pid ${pid}: page tables reach ${aliased} tables a second time (a crafted loop or alias): each was walked once`,
        );
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`pid ${pid}: page tables unreadable: ${error.message}`);
    }
  });
  return new ReverseMap(processes, runs, kernelSpans, problems);
}

function ownedRun(run: MappingRun, process: number): OwnedRun {
  return { physical: run.physical, end: run.physical + run.length, virtual: run.virtual, process };
}

/**
 * The reverse map of a running kernel: every user process's page tables (`mm->pgd`; kernel
 * threads have no mm), the kernel image's sections and the module window's mappings. Pass thread-group leaders:
 * threads share their leader's mm.
 */
export function buildReverseMap(kernel: LinuxKernel, reader: KernelReader, tasks: readonly TaskInfo[]): ReverseMap {
  const problems: string[] = [];
  const processes: ProcessSpace[] = [];
  // One walk per address space: tasks sharing an mm (vfork children, or thousands of task_structs
  // sprayed into free memory that all name one mm) would repeat the same runs again and again.
  const walked = new Map<bigint, number>();
  let sharing = 0;
  for (const task of tasks) {
    if (task.kernelThread || task.mm === 0n) continue;
    if (walked.has(task.mm)) {
      sharing++;
      continue;
    }
    walked.set(task.mm, task.pid);
    try {
      processes.push({ pid: task.pid, comm: task.comm, space: processAddressSpace(kernel, reader, task.mm) });
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`pid ${task.pid} ${task.comm}: no address space: ${error.message}`);
    }
  }
  if (sharing > MAX_SHARED_ADDRESS_SPACES) {
    problems.push(
      `${sharing} tasks name an mm another task has (far more than vfork explains): each address space is attributed to its first task only`,
    );
  }
  return reverseMapFromSpaces(processes, kernelOwnedSpans(kernel, reader.profile), problems);
}

/** Processes sharing an address space without being threads: vfork children, briefly; more than this is no workload. */
const MAX_SHARED_ADDRESS_SPACES = 64;

/** Each physical hit with who holds it: one row per process mapping (shared pages give several), or one kernel/unowned row. */
export function attributeHits<T extends { readonly offset: number }>(
  reverseMap: ReverseMap,
  hits: readonly T[],
): AttributedHit<T>[] {
  return hits.flatMap((hit) =>
    reverseMap.attribute(hit.offset).map((attribution) => ({ physical: hit.offset, hit, ...attribution })),
  );
}
