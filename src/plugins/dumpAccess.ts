import type { MemoryImage } from '../image/types.js';
import type { LinuxKernel } from '../os/linux/discovery.js';
import type { KernelReader } from '../os/linux/kernelReader.js';
import { processAddressSpace, readUntilFault } from '../os/linux/processSpace.js';
import type { TaskInfo } from '../os/linux/tasks.js';
import type { X86AddressSpace } from '../space/x86.js';
import { VmscopeError } from '../util/errors.js';
import { READ_STATUS, type ReadRequest } from './bridge.js';
import type { PluginAccess } from './manifest.js';
import type { PluginLimits } from './limits.js';

/** What the reads may reach: each present only when the plugin declared the access. */
export interface DumpAccessSources {
  readonly image?: MemoryImage;
  readonly kernel?: LinuxKernel;
  readonly reader?: KernelReader;
  /** The processes a read_virtual pid may name (the task list's leaders). */
  readonly tasks?: readonly TaskInfo[];
}

/** A plugin asked for more than its budget allows: the run ends with this. */
export class ReadBudgetExceeded extends Error {}

/**
 * The host's end of a plugin's `vmscope` imports: reads served from the dump the analysis has
 * open, each counted against the plugin's budget. Reads stop at the first unreadable byte and
 * return the readable prefix, so a plugin tells a short read from a missing process.
 */
export class DumpAccess {
  private readonly spaces = new Map<number, X86AddressSpace | undefined>();
  private readonly tasksByPid: Map<number, TaskInfo>;
  calls = 0;
  bytes = 0;

  constructor(
    private readonly sources: DumpAccessSources,
    private readonly access: readonly PluginAccess[],
    private readonly limits: PluginLimits,
  ) {
    this.tasksByPid = new Map((sources.tasks ?? []).map((task) => [task.pid, task]));
  }

  private count(length: number): void {
    this.calls++;
    this.bytes += length;
    if (this.calls > this.limits.reads)
      throw new ReadBudgetExceeded(`memory-read budget exceeded: more than ${this.limits.reads} reads`);
    if (this.bytes > this.limits.readBytes)
      throw new ReadBudgetExceeded(`memory-read budget exceeded: more than ${this.limits.readBytes} bytes read`);
  }

  /** A read's byte count (or READ_STATUS) with its bytes in `into`; a symbol's address. Throws ReadBudgetExceeded. */
  serve(request: ReadRequest, into: Uint8Array): { result: number; symbol?: bigint } {
    switch (request.type) {
      case 'symbol': {
        this.count(0);
        return { result: 0, symbol: this.sources.reader?.profile.symbol(request.name) ?? 0n };
      }
      case 'read-physical': {
        this.count(request.length);
        return { result: this.readPhysical(request.address, into.subarray(0, request.length)) };
      }
      case 'read-virtual': {
        this.count(request.length);
        const space = this.processSpace(request.pid);
        if (!space) return { result: READ_STATUS.noSuchProcess };
        const { bytes } = readUntilFault(space, request.address, request.length);
        into.set(bytes);
        return { result: bytes.length };
      }
    }
  }

  private readPhysical(address: bigint, into: Uint8Array): number {
    const image = this.sources.image;
    if (!image || address > BigInt(Number.MAX_SAFE_INTEGER)) return 0;
    return image.readPresent(Number(address), into);
  }

  /** The address space of a listed user process, made once per pid. */
  private processSpace(pid: number): X86AddressSpace | undefined {
    if (this.spaces.has(pid)) return this.spaces.get(pid);
    const task = this.tasksByPid.get(pid);
    const { kernel, reader } = this.sources;
    let space: X86AddressSpace | undefined;
    if (task && kernel && reader && !task.kernelThread && task.mm !== 0n) {
      try {
        space = processAddressSpace(kernel, reader, task.mm);
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
      }
    }
    this.spaces.set(pid, space);
    return space;
  }

  /** Whether the plugin declared an access (the imports are checked at load; this guards the host's side too). */
  allows(request: ReadRequest): boolean {
    const needed: PluginAccess =
      request.type === 'symbol' ? 'symbols' : request.type === 'read-virtual' ? 'memory.virtual' : 'memory.physical';
    return this.access.includes(needed);
  }
}
