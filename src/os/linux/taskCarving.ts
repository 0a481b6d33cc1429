import { imageWithout } from '../../image/rangeView.js';
import { AlignedWordSearcher } from '../../kernels/alignedWords.js';
import { pointerNeedle, type NeedleHit } from '../../kernels/multiNeedle.js';
import { VmscopeError } from '../../util/errors.js';
import type { LinuxKernel } from './discovery.js';
import type { KernelReader } from './kernelReader.js';
import { readTask, TASK_COMM_LEN, type TaskInfo } from './tasks.js';

/**
 * The scheduling classes a task can belong to (ext_sched_class only with sched_ext, 6.12+).
 * `task_struct.sched_class` always holds one of their addresses, from fork to free, and little
 * else in memory holds these exact 8 bytes: they are the needles that find every task_struct.
 */
const SCHED_CLASSES = [
  'stop_sched_class',
  'dl_sched_class',
  'rt_sched_class',
  'fair_sched_class',
  'ext_sched_class',
  'idle_sched_class',
];
/** PID_MAX_LIMIT on 64-bit kernels: no pid or tgid is larger. */
export const PID_MAX_LIMIT = 4194304;
/** task_struct.exit_state bits (include/linux/sched.h). */
const EXIT_DEAD = 0x10;
const EXIT_ZOMBIE = 0x20;
/** What list_del leaves in `prev` (LIST_POISON2 with x86-64's POISON_POINTER_DELTA): release_task unlinks this way. */
const LIST_POISON2 = 0xdead000000000122n;
const PAGE_MASK = 0xfffn;

/** Where a task is in its life: reaped tasks linger in memory until their slab slot is reused. */
export type TaskLife = 'alive' | 'zombie' | 'exited';

/**
 * The state of a task's own `tasks` links, which tells how it left the task list, if it did:
 * - `linked`: both neighbours point back to it (it is on a list);
 * - `unlinked`: both links point to itself (list_del_init: DKOM, or a list it never joined);
 * - `deleted`: `prev` is LIST_POISON2 (list_del, as release_task does at exit);
 * - `stale`: neither, e.g. the parent's links copied by fork into a task never linked (the
 *   per-CPU idle tasks), or a neighbour rewired around it.
 */
export type TaskListLink = 'linked' | 'unlinked' | 'deleted' | 'stale';

/** A task_struct as found in physical memory, with what its fields say about its state. */
export interface ExaminedTask {
  readonly info: TaskInfo;
  readonly physical: number;
  readonly life: TaskLife;
  readonly taskList: TaskListLink;
}

/**
 * Finds and judges task_structs without trusting any kernel list: `carve` scans physical memory
 * for sched_class pointers; `inspect` holds whatever a source names to the checks every carved
 * candidate passes; `examine` reads the fields that explain a task's state.
 */
export class TaskCarver {
  private constructor(
    private readonly kernel: LinuxKernel,
    private readonly reader: KernelReader,
    /** Addresses of the scheduling classes this kernel has. */
    private readonly schedClasses: ReadonlySet<bigint>,
    private readonly initTask: bigint,
    private readonly initTaskPhysical: number | undefined,
    /** The kernel's text and its read-only data in physical memory: no task_struct is ever there. */
    private readonly readOnlyImage: ReadonlyArray<{ readonly start: number; readonly end: number }>,
  ) {}

  static create(kernel: LinuxKernel, reader: KernelReader): TaskCarver {
    const { profile } = reader;
    const classes = SCHED_CLASSES.map((name) => profile.symbol(name)).filter((address) => address !== undefined);
    if (classes.length === 0)
      throw new VmscopeError(
        'NO_PROFILE',
        'the profile has none of the *_sched_class symbols that identify task_structs',
        profile.source,
      );
    const initTask = profile.requireSymbol('init_task');
    const readOnly = [
      physicalSpan(kernel, profile.symbol('_text'), profile.symbol('_etext')),
      physicalSpan(kernel, profile.symbol('__start_rodata'), profile.symbol('__end_rodata')),
    ].filter((span) => span !== undefined);
    return new TaskCarver(
      kernel,
      reader,
      new Set(classes),
      initTask,
      kernel.space.tryTranslate(initTask)?.physical,
      readOnly,
    );
  }

  /**
   * What `carve` searches physical memory for, as needles for a search on other threads: the
   * sched_class pointers every task_struct holds, wanted at 8-aligned offsets (needleSearcher's `wordAligned`).
   */
  get needles(): Uint8Array[] {
    return [...this.schedClasses].map(pointerNeedle);
  }

  /**
   * Every plausible task_struct in physical memory, in physical order: one pass of the aligned-word
   * kernel over the dump finds the sched_class pointers (the classes sit together in .rodata: one
   * range of values), and each hit is read as the task_struct around it (`tasksAt`).
   */
  carve(onProgress?: (doneBytes: number, totalBytes: number) => void): ExaminedTask[] {
    // The kernel's text and read-only data (14 and 9 MiB of the 6.1 guest) are not read: tasksAt drops their hits.
    const searched = this.readOnlyImage.reduce(
      (image, { start, end }) => imageWithout(image, start, end),
      this.kernel.image,
    );
    return this.tasksAt(
      AlignedWordSearcher.create([...this.schedClasses]).searchImage(searched, onProgress ? { onProgress } : {}),
    );
  }

  /**
   * The plausible task_structs around physical hits of `needles` (sorted by offset, as a search on
   * this thread or on others returns them). Slab objects are reported at their direct-map address;
   * init_task, the one task in the kernel image, at its symbol.
   */
  tasksAt(hits: Iterable<NeedleHit>): ExaminedTask[] {
    const schedClassOffset = this.reader.profile.offsetOf('task_struct', 'sched_class');
    const tasks: ExaminedTask[] = [];
    for (const hit of hits) {
      const physical = hit.offset - schedClassOffset;
      // Pointers in a task_struct are 8-byte aligned; an unaligned hit is other data, and so is one in
      // the kernel's text or read-only data (a search on other threads reads those too).
      if (hit.offset % 8 !== 0 || physical < 0) continue;
      if (this.readOnlyImage.some(({ start, end }) => hit.offset >= start && hit.offset < end)) continue;
      const virtual =
        physical === this.initTaskPhysical ? this.initTask : this.kernel.pageOffsetBase + BigInt(physical);
      if (this.kernel.space.tryTranslate(virtual)?.physical !== physical) continue;
      const task = this.inspect(virtual);
      if (typeof task !== 'string') tasks.push(task);
    }
    return tasks;
  }

  /**
   * What `carve` would find again of an earlier carve's tasks, without scanning memory: each one
   * still holding a sched_class pointer where carve found it, inspected anew (a task that exited
   * and whose memory was reused drops out). Tasks carved nowhere before are not found: a
   * monitor runs `carve` again at a lower cadence for those.
   */
  recarve(earlier: readonly ExaminedTask[]): ExaminedTask[] {
    const tasks: ExaminedTask[] = [];
    for (const { info } of earlier) {
      let schedClass: bigint;
      try {
        schedClass = this.reader.pointerField(info.task, 'task_struct', 'sched_class');
      } catch (error) {
        if (error instanceof VmscopeError) continue;
        throw error;
      }
      if (!this.schedClasses.has(schedClass)) continue;
      const task = this.inspect(info.task);
      if (typeof task !== 'string') tasks.push(task);
    }
    return tasks;
  }

  /** The task_struct at `address` with what its fields say, or why it cannot be one. */
  inspect(address: bigint): ExaminedTask | string {
    try {
      const info = readTask(this.reader, address);
      return this.implausibility(info) ?? this.examine(info);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      return `unreadable: ${error.message}`;
    }
  }

  /**
   * Why the object at `info.task` cannot be a task_struct, or undefined when it can, judged by
   * what the kernel enforces and a task cannot change about itself: ids in range, a
   * NUL-terminated comm, a real_parent and group_leader that are tasks themselves, an mm that is
   * absent (kernel thread, exited task) or has page tables, a page-aligned stack.
   */
  private implausibility(info: TaskInfo): string | undefined {
    const { reader } = this;
    if (!(info.pid >= 0 && info.pid <= PID_MAX_LIMIT && info.tgid >= 0 && info.tgid <= PID_MAX_LIMIT))
      return `pid ${info.pid} / tgid ${info.tgid} out of range`;
    if (info.pid === 0 && !info.kernelThread) return 'pid 0 is only the per-CPU idle tasks, which are kernel threads';
    // The kernel keeps comm NUL-terminated (set_task_comm) but lets a task name itself with any
    // other byte (prctl PR_SET_NAME): its contents must never decide whether it is a task.
    const comm = reader.bytes(info.task + reader.offset('task_struct', 'comm'), TASK_COMM_LEN);
    if (comm.indexOf(0) < 0) return 'comm is not NUL-terminated';
    if (!this.kernel.space.isKernelAddress(info.realParent)) return 'real_parent is not a kernel address';
    if (info.realParent !== info.task && !this.isTask(info.realParent)) return 'real_parent is not a task_struct';
    const leader = reader.pointerField(info.task, 'task_struct', 'group_leader');
    if (leader !== info.task && !this.isTask(leader)) return 'group_leader is not a task_struct';
    if (info.mm !== 0n && !this.hasPageTables(info.mm)) return 'mm has no page tables';
    const stack = reader.pointerField(info.task, 'task_struct', 'stack');
    if (stack !== 0n && (!this.kernel.space.isKernelAddress(stack) || (stack & PAGE_MASK) !== 0n))
      return 'stack is not a page-aligned kernel address';
    return undefined;
  }

  /** The physical address, life state and task-list links of a task (read, not judged). */
  examine(info: TaskInfo): ExaminedTask {
    const { reader } = this;
    const exitState = reader.i32Field(info.task, 'task_struct', 'exit_state');
    const life: TaskLife =
      (exitState & EXIT_DEAD) !== 0 ? 'exited' : (exitState & EXIT_ZOMBIE) !== 0 ? 'zombie' : 'alive';
    return {
      info,
      physical: this.kernel.space.translate(info.task).physical,
      life,
      taskList: this.taskListLink(info.task),
    };
  }

  private taskListLink(task: bigint): TaskListLink {
    const { reader } = this;
    const node = task + reader.offset('task_struct', 'tasks');
    const next = reader.pointerField(node, 'list_head', 'next');
    const prev = reader.pointerField(node, 'list_head', 'prev');
    if (next === node && prev === node) return 'unlinked';
    if (prev === LIST_POISON2) return 'deleted';
    try {
      if (
        reader.pointerField(next, 'list_head', 'prev') === node &&
        reader.pointerField(prev, 'list_head', 'next') === node
      )
        return 'linked';
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
    }
    return 'stale';
  }

  private isTask(address: bigint): boolean {
    try {
      return this.schedClasses.has(this.reader.pointerField(address, 'task_struct', 'sched_class'));
    } catch (error) {
      if (error instanceof VmscopeError) return false;
      throw error;
    }
  }

  /** mm_struct and its pgd are slab/page allocations: direct-map addresses of memory in the dump. */
  private hasPageTables(mm: bigint): boolean {
    try {
      const pgd = this.reader.pointerField(mm, 'mm_struct', 'pgd');
      return (
        (pgd & PAGE_MASK) === 0n &&
        this.kernel.space.tryTranslate(pgd)?.physical === Number(pgd - this.kernel.pageOffsetBase)
      );
    } catch (error) {
      if (error instanceof VmscopeError) return false;
      throw error;
    }
  }
}

/**
 * Where the kernel image's [from, to) lies in physical memory, when both symbols exist and the
 * page tables map it as the one contiguous block the kernel loads; undefined otherwise. The
 * kernel never frees its text or read-only data (only the gaps around them), so no slab object
 * lives there.
 */
function physicalSpan(
  kernel: LinuxKernel,
  from: bigint | undefined,
  to: bigint | undefined,
): { start: number; end: number } | undefined {
  if (from === undefined || to === undefined || to <= from) return undefined;
  const start = kernel.space.tryTranslate(from)?.physical;
  const last = kernel.space.tryTranslate(to - 1n)?.physical;
  if (start === undefined || last === undefined || BigInt(last - start) !== to - 1n - from) return undefined;
  return { start, end: last + 1 };
}
