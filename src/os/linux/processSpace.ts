import { X86AddressSpace } from '../../space/x86.js';
import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { LinuxKernel } from './discovery.js';
import type { KernelReader } from './kernelReader.js';
import type { TaskInfo } from './tasks.js';

/** The most argv bytes read per process: Linux caps argv+envp at a quarter of the stack limit, far below this for any real ps line, while a forged arg_end can claim gigabytes. */
export const MAX_ARGV_BYTES = 128 * 1024;
const PAGE_SIZE = 4096n;

/**
 * A process's own address space: the page tables its mm_struct points to. `mm->pgd` is a
 * direct-map address, so its physical address is the distance from page_offset_base; user
 * memory is then read through the process's tables over the same physical image.
 */
export function processAddressSpace(kernel: LinuxKernel, reader: KernelReader, mm: bigint): X86AddressSpace {
  const pgd = reader.pointerField(mm, 'mm_struct', 'pgd');
  const physical = pgd - kernel.pageOffsetBase;
  if (physical < 0n || physical >= BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VmscopeError(
      'CORRUPT_STRUCTURE',
      `mm_struct ${hex(mm)}: pgd ${hex(pgd)} is not a direct-map address`,
      kernel.image.path,
      mm,
    );
  }
  return new X86AddressSpace(kernel.image, Number(physical), kernel.pagingLevels);
}

export interface PartialRead {
  /** The bytes read, up to the first one that could not be. */
  readonly bytes: Uint8Array;
  /** Why the read stopped early (a page not present, not in the dump), or undefined when complete. */
  readonly fault: VmscopeError | undefined;
}

/**
 * Read `length` bytes from `start`, page by page, keeping what was readable before the first
 * fault: user pages may be swapped out or missing from the dump, and a prefix still helps.
 */
export function readUntilFault(space: X86AddressSpace, start: bigint, length: number): PartialRead {
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const at = start + BigInt(done);
    const chunk = Math.min(length - done, Number(PAGE_SIZE - (at % PAGE_SIZE)));
    try {
      space.read(at, bytes.subarray(done, done + chunk));
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      return { bytes: bytes.subarray(0, done), fault: error };
    }
    done += chunk;
  }
  return { bytes, fault: undefined };
}

export interface ProcessArguments {
  readonly argv: string[];
  /** What kept argv from being read whole (too long, pages absent, a damaged mm); empty when complete. */
  readonly problems: string[];
}

/**
 * A process's argv as /proc/PID/cmdline shows it: `mm->arg_start..arg_end` of its own address
 * space, split at NULs. Kernel threads have no user memory; they show as `[comm]`, as ps does.
 */
export function readArguments(
  kernel: LinuxKernel,
  reader: KernelReader,
  task: TaskInfo,
  maxBytes = MAX_ARGV_BYTES,
): ProcessArguments {
  if (task.kernelThread || task.mm === 0n) return { argv: [`[${task.comm}]`], problems: [] };
  const problems: string[] = [];
  let start: bigint;
  let end: bigint;
  let space: X86AddressSpace;
  try {
    start = reader.pointerField(task.mm, 'mm_struct', 'arg_start');
    end = reader.pointerField(task.mm, 'mm_struct', 'arg_end');
    space = processAddressSpace(kernel, reader, task.mm);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { argv: [], problems: [`mm_struct ${hex(task.mm)} is unreadable: ${error.message}`] };
  }
  if (end < start) return { argv: [], problems: [`arg_end ${hex(end)} is below arg_start ${hex(start)}`] };
  // argv lives in the process's own (lower) half: a range reaching the kernel's half would print
  // kernel memory as a process's arguments.
  if (end > 1n << BigInt(space.addressBits - 1)) {
    return { argv: [], problems: [`argv ${hex(start)}..${hex(end)} is not in user memory`] };
  }
  let length = end - start;
  if (length > BigInt(maxBytes)) {
    problems.push(`argv claims ${length} bytes (${hex(start)}..${hex(end)}); read only the first ${maxBytes}`);
    length = BigInt(maxBytes);
  }
  const { bytes, fault } = readUntilFault(space, start, Number(length));
  if (fault) problems.push(`argv is readable only up to byte ${bytes.length} of ${length}: ${fault.message}`);
  return { argv: splitArguments(bytes), problems };
}

/** NUL-separated arguments; the NUL ending the last one does not start another. */
function splitArguments(bytes: Uint8Array): string[] {
  if (bytes.length === 0) return [];
  const text = new TextDecoder().decode(bytes[bytes.length - 1] === 0 ? bytes.subarray(0, bytes.length - 1) : bytes);
  return text.split('\0');
}
