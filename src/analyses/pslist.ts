import { z } from 'zod';
import { DEFAULT_MAX_LIST_STEPS, type KernelReader, type WalkProblem } from '../os/linux/kernelReader.js';
import { readTask, type TaskInfo } from '../os/linux/tasks.js';
import { VmscopeError } from '../util/errors.js';
import { hex } from '../util/hex.js';
import { readerProvider } from './providers/kernel.js';
import type { ResolvedPath } from '../os/linux/paths.js';
import { executablesProvider, type PerProcess } from './providers/processContext.js';
import { taskListProvider } from './providers/processes.js';
import { defineAnalysis, option, type Column, type Row } from './types.js';

export const processColumns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'ppid', kind: 'int', title: 'PPID' },
  { key: 'tgid', kind: 'int', title: 'TGID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'task', kind: 'address', title: 'task_struct' },
  { key: 'threads', kind: 'int', title: 'Threads' },
  { key: 'uid', kind: 'int', title: 'UID' },
  { key: 'start_time', kind: 'int', title: 'Start (ns after boot)' },
  { key: 'kernel_thread', kind: 'bool', title: 'Kernel thread' },
];

export function processRow(task: TaskInfo): Row {
  return {
    pid: task.pid,
    ppid: task.ppid,
    tgid: task.tgid,
    comm: task.comm,
    task: hex(task.task),
    threads: task.threads,
    uid: task.uid,
    start_time: Number(task.startTime),
    kernel_thread: task.kernelThread,
  };
}

/** /proc/PID/exe as a column: null for kernel threads and processes without an executable file. */
export const exeColumn: Column = { key: 'exe', kind: 'text', title: 'Executable' };
const pslistColumns: readonly Column[] = [...processColumns, exeColumn];

/**
 * The other threads of a thread group, leader excluded, in at most `maxSteps` list steps.
 * 6.7+ dropped `task_struct.thread_group`; the list every kernel since 3.14 keeps is
 * `signal->thread_head` linking `thread_node`, whose head sits in signal_struct (so it yields
 * the leader too).
 */
function otherThreads(
  reader: KernelReader,
  leader: TaskInfo,
  maxSteps: number,
): { addresses: bigint[]; problem: WalkProblem | undefined } {
  const walk =
    reader.profile.hasField('signal_struct', 'thread_head') && reader.profile.hasField('task_struct', 'thread_node')
      ? reader.walkList(
          reader.pointerField(leader.task, 'task_struct', 'signal') + reader.offset('signal_struct', 'thread_head'),
          reader.offset('task_struct', 'thread_node'),
          { maxSteps },
        )
      : reader.walkList(
          leader.task + reader.offset('task_struct', 'thread_group'),
          reader.offset('task_struct', 'thread_group'),
          { maxSteps },
        );
  return { addresses: walk.entries.filter((address) => address !== leader.task), problem: walk.problem };
}

/**
 * Every thread of every listed process, each leader followed by its other threads. One step
 * budget covers all groups: forged thread lists in every process must not multiply the bound.
 */
function withThreads(reader: KernelReader, leaders: readonly TaskInfo[], warnings: string[]): TaskInfo[] {
  const tasks: TaskInfo[] = [];
  for (const leader of leaders) {
    tasks.push(leader);
    let group: ReturnType<typeof otherThreads>;
    try {
      group = otherThreads(reader, leader, Math.max(1, DEFAULT_MAX_LIST_STEPS - tasks.length));
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      warnings.push(`threads of pid ${leader.pid}: signal_struct is unreadable: ${error.message}`);
      continue;
    }
    if (group.problem) warnings.push(`threads of pid ${leader.pid}: ${group.problem.detail}`);
    for (const address of group.addresses) {
      try {
        tasks.push(readTask(reader, address));
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        warnings.push(`threads of pid ${leader.pid}: task_struct ${hex(address)} is unreadable: ${error.message}`);
      }
    }
  }
  return tasks;
}

/** Each thread group's executable path, by tgid (threads share the leader's mm), its problems added to `warnings`. */
export async function executableByGroup(
  executables: Promise<PerProcess<ResolvedPath | undefined>>,
  warnings: string[],
): Promise<Map<number, string>> {
  const found = await executables;
  warnings.push(...found.warnings.filter((warning) => !warnings.includes(warning)));
  return new Map(found.entries.flatMap(({ task, value }) => (value ? [[task.tgid, value.path] as const] : [])));
}

/** The processes on the kernel's task list (thread-group leaders; every thread with `threads`). */
export const pslistAnalysis = defineAnalysis({
  name: 'pslist',
  description:
    "list the processes on the kernel's task list (pid, ppid, command, task_struct, threads, uid, start time)",
  columns: pslistColumns,
  uses: [readerProvider, taskListProvider, executablesProvider],
  options: z.object({
    threads: option(z.boolean().optional(), { description: 'list every thread, not one row per thread group' }),
  }),
  help: `Walks init_task.tasks forward, and backward as well when the forward walk breaks (a cycle,
an unreadable link), so one damaged pointer loses as few processes as possible; every
problem makes the result partial with a warning. A process unlinked from the list (DKOM)
does not appear here: compare with psscan/psxview. The swapper (pid 0) is the list head
and is not listed. ppid is the tgid of real_parent, as ps shows it. exe is the path of
mm->exe_file as /proc/PID/exe shows it ("/memfd:NAME (deleted)" for a memfd, " (deleted)" for
an unlinked file); threads share their leader's.`,
  async compute(inputs, options) {
    const list = await inputs.get(taskListProvider);
    const warnings = [...list.warnings];
    const listed = options.threads ? withThreads(await inputs.get(readerProvider), list.tasks, warnings) : list.tasks;
    const exe = await executableByGroup(inputs.get(executablesProvider), warnings);
    return {
      columns: pslistColumns,
      rows: listed.map((task) => ({ ...processRow(task), exe: exe.get(task.tgid) ?? null })),
      single: false,
      partial: warnings.length > 0,
      warnings,
    };
  },
});
