import { VmscopeError } from '../../util/errors.js';
import type { KernelReader, WalkProblem } from './kernelReader.js';

/** task_struct.flags bit for kernel threads (include/linux/sched.h). */
export const PF_KTHREAD = 0x00200000;
/** task_struct.comm is a fixed 16-byte array, NUL-terminated when shorter. */
export const TASK_COMM_LEN = 16;

/** The facts every process analysis shows about one task_struct. */
export interface TaskInfo {
  /** Virtual address of the task_struct. */
  readonly task: bigint;
  readonly pid: number;
  readonly tgid: number;
  readonly comm: string;
  /** real_parent's tgid (what /proc and ps call the ppid). */
  readonly ppid: number;
  readonly realParent: bigint;
  readonly mm: bigint;
  readonly flags: number;
  readonly kernelThread: boolean;
  /** Real uid from real_cred, or null when it cannot be read. */
  readonly uid: number | null;
  /** Nanoseconds since boot (monotonic), as the kernel stores it. */
  readonly startTime: bigint;
  /** Threads in the thread group (signal->nr_threads), or null when unreadable. */
  readonly threads: number | null;
}

/** Read one task_struct; throws a VmscopeError when the task itself is unreadable. */
export function readTask(reader: KernelReader, task: bigint): TaskInfo {
  const flags = reader.u32Field(task, 'task_struct', 'flags');
  const realParent = reader.pointerField(task, 'task_struct', 'real_parent');
  return {
    task,
    pid: reader.i32Field(task, 'task_struct', 'pid'),
    tgid: reader.i32Field(task, 'task_struct', 'tgid'),
    comm: reader.cString(task + reader.offset('task_struct', 'comm'), TASK_COMM_LEN),
    ppid: optional(() => (realParent === task ? 0 : reader.i32Field(realParent, 'task_struct', 'tgid'))) ?? 0,
    realParent,
    mm: reader.pointerField(task, 'task_struct', 'mm'),
    flags,
    kernelThread: (flags & PF_KTHREAD) !== 0,
    uid:
      optional(() =>
        reader.u32(reader.pointerField(task, 'task_struct', 'real_cred') + reader.offset('cred', 'uid')),
      ) ?? null,
    startTime: reader.u64(task + reader.offset('task_struct', 'start_time')),
    threads:
      optional(() =>
        reader.i32Field(reader.pointerField(task, 'task_struct', 'signal'), 'signal_struct', 'nr_threads'),
      ) ?? null,
  };
}

/** A read that may fail on a damaged object without losing the rest of the row. */
export function optional<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (error) {
    if (error instanceof VmscopeError) return undefined;
    throw error;
  }
}

export interface TaskListWalk {
  readonly tasks: TaskInfo[];
  readonly problems: WalkProblem[];
}

/**
 * The processes on init_task.tasks (thread-group leaders), walked forward and, when the forward
 * walk is cut short, backward too, so one broken link loses as little as possible. init_task
 * (pid 0, the swapper) is the list head and is not listed, as ps does not.
 */
export function walkTaskList(reader: KernelReader, initTask: bigint, maxSteps?: number): TaskListWalk {
  const linkOffset = reader.offset('task_struct', 'tasks');
  const { entries: addresses, problems } = reader.walkListBothWays(initTask + linkOffset, linkOffset, maxSteps);
  const tasks: TaskInfo[] = [];
  for (const address of addresses) {
    try {
      tasks.push(readTask(reader, address));
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push({
        kind: 'unreadable',
        at: address,
        detail: `task_struct at 0x${address.toString(16)} is unreadable: ${error.message}`,
      });
    }
  }
  // A running kernel always has init and kthreadd on its list: an empty one was cut (init_task's
  // links pointed back at itself), not found empty.
  if (addresses.length === 0) {
    problems.push({
      kind: 'broken-link',
      at: initTask + linkOffset,
      detail:
        'the task list is empty (init_task.tasks points to itself), which no running kernel has: the list was cut',
    });
  }
  return { tasks, problems };
}
