import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';
import { PF_KTHREAD, TASK_COMM_LEN } from './tasks.js';

const ID_FIELDS = ['uid', 'euid', 'suid', 'fsuid', 'gid', 'egid', 'sgid', 'fsgid'] as const;
const CAPABILITY_FIELDS = ['cap_inheritable', 'cap_permitted', 'cap_effective', 'cap_bset', 'cap_ambient'] as const;

export type CredentialIds = Readonly<Record<(typeof ID_FIELDS)[number], number>>;
/** Capability sets as 64-bit masks (kernel_cap_struct: two u32 words before 6.3, one u64 since). */
export type CapabilitySets = Readonly<
  Record<'inheritable' | 'permitted' | 'effective' | 'bounding' | 'ambient', bigint>
>;

/** The credentials of one task. */
export interface TaskCredentials {
  readonly task: bigint;
  readonly pid: number;
  readonly tgid: number;
  readonly comm: string;
  readonly kernelThread: boolean;
  /** `cred` (subjective: what the task acts with) and `real_cred` (objective: what others see). */
  readonly cred: bigint;
  readonly realCred: bigint;
  /** Ids and capabilities of `real_cred`, as /proc/PID/status shows them; undefined when it is unreadable. */
  readonly ids: CredentialIds | undefined;
  readonly capabilities: CapabilitySets | undefined;
  readonly suspicious: boolean;
  readonly evidence: string;
}

export interface CredentialsReport {
  readonly tasks: TaskCredentials[];
  readonly problems: string[];
}

interface TaskIdentity {
  readonly task: bigint;
  readonly pid: number;
  readonly tgid: number;
  readonly comm: string;
  readonly kernelThread: boolean;
  readonly cred: bigint;
  readonly realCred: bigint;
}

/**
 * The tasks whose credentials are read, besides init_task: those of the task list and of the
 * initial pid namespace (threads and tasks unlinked from the list included), as the process
 * providers walk them, and why those walks stopped short.
 */
export interface CredentialTasks {
  readonly tasks: readonly bigint[];
  readonly problems: readonly string[];
}

/**
 * The credentials of init_task and every task of `found`. A user process whose `cred` or
 * `real_cred` is init_task's or a kernel thread's, or another thread group's, got them by
 * pointer, not by fork or exec (which always allocate a task its own): privilege theft.
 */
export function readCredentials(reader: KernelReader, found: CredentialTasks): CredentialsReport {
  const initTask = reader.profile.requireSymbol('init_task');
  const problems = [...found.problems];
  const addresses = new Set<bigint>([initTask, ...found.tasks]);

  const identities: TaskIdentity[] = [];
  for (const task of addresses) {
    try {
      identities.push(readIdentity(reader, task));
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`task_struct at ${hex(task)} is unreadable: ${error.message}`);
    }
  }
  identities.sort((a, b) => a.pid - b.pid || (a.task < b.task ? -1 : 1));

  // Who holds each cred: init_task and kernel threads are the kernel's own holders.
  const holders = new Map<bigint, TaskIdentity[]>();
  for (const identity of identities) {
    for (const cred of new Set([identity.cred, identity.realCred])) {
      const known = holders.get(cred);
      if (known) known.push(identity);
      else holders.set(cred, [identity]);
    }
  }
  const tasks = identities.map((identity): TaskCredentials => {
    const read = readCred(reader, identity.realCred);
    if (!read)
      problems.push(`pid ${identity.pid} (${identity.comm}): real_cred ${hex(identity.realCred)} is unreadable`);
    return { ...identity, ids: read?.ids, capabilities: read?.capabilities, ...judge(identity) };
  });
  return { tasks, problems };

  function judge(identity: TaskIdentity): { suspicious: boolean; evidence: string } {
    if (identity.kernelThread || identity.task === initTask) return { suspicious: false, evidence: 'kernel thread' };
    for (const cred of new Set([identity.cred, identity.realCred])) {
      const others = (holders.get(cred) ?? []).filter((other) => other.tgid !== identity.tgid);
      const kernel = others.find((other) => other.task === initTask || other.kernelThread);
      const field = cred === identity.cred ? (cred === identity.realCred ? 'cred and real_cred' : 'cred') : 'real_cred';
      if (kernel) {
        const whose = kernel.task === initTask ? 'init_task' : `kernel thread ${kernel.pid} (${kernel.comm})`;
        return {
          suspicious: true,
          evidence: `${field} ${hex(cred)} is ${whose}'s: a user process given the kernel's credentials`,
        };
      }
      if (others.length > 0) {
        const names = others.map((other) => `${other.pid} (${other.comm})`).join(', ');
        return {
          suspicious: true,
          evidence: `${field} ${hex(cred)} is shared with ${names}, outside its thread group`,
        };
      }
    }
    return { suspicious: false, evidence: 'its own credentials' };
  }
}

function readIdentity(reader: KernelReader, task: bigint): TaskIdentity {
  return {
    task,
    pid: reader.i32Field(task, 'task_struct', 'pid'),
    tgid: reader.i32Field(task, 'task_struct', 'tgid'),
    comm: reader.cString(task + reader.offset('task_struct', 'comm'), TASK_COMM_LEN),
    kernelThread: (reader.u32Field(task, 'task_struct', 'flags') & PF_KTHREAD) !== 0,
    cred: reader.pointerField(task, 'task_struct', 'cred'),
    realCred: reader.pointerField(task, 'task_struct', 'real_cred'),
  };
}

function readCred(
  reader: KernelReader,
  cred: bigint,
): { ids: CredentialIds; capabilities: CapabilitySets } | undefined {
  const { profile } = reader;
  let view: DataView;
  try {
    view = new DataView(reader.bytes(cred, profile.sizeOf('cred')).buffer);
  } catch (error) {
    if (error instanceof VmscopeError) return undefined;
    throw error;
  }
  const ids = Object.fromEntries(
    ID_FIELDS.map((field) => [field, view.getUint32(profile.offsetOf('cred', field), true)]),
  ) as CredentialIds;
  // Both layouts are 8 bytes, low word first: u32 cap[2] (before 6.3) or u64 val.
  const [inheritable, permitted, effective, bounding, ambient] = CAPABILITY_FIELDS.map((field) =>
    view.getBigUint64(profile.offsetOf('cred', field), true),
  ) as [bigint, bigint, bigint, bigint, bigint];
  return { ids, capabilities: { inheritable, permitted, effective, bounding, ambient } };
}
