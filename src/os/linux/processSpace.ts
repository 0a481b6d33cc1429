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
  const { strings, problems } = readUserStrings(
    kernel,
    reader,
    task.mm,
    { start: 'arg_start', end: 'arg_end', what: 'argv' },
    maxBytes,
  );
  return { argv: strings, problems };
}

/** Which NUL-separated string area of an mm_struct to read: argv or the environment. */
export interface UserStringArea {
  readonly start: 'arg_start' | 'env_start';
  readonly end: 'arg_end' | 'env_end';
  /** Named in problems. */
  readonly what: string;
}

/**
 * The NUL-separated strings between two mm_struct fields, read from the process's own pages:
 * at most `maxBytes` (the bounds are guest-controlled), keeping what was readable before the
 * first absent page.
 */
export function readUserStrings(
  kernel: LinuxKernel,
  reader: KernelReader,
  mm: bigint,
  area: UserStringArea,
  maxBytes: number,
): { strings: string[]; problems: string[] } {
  const problems: string[] = [];
  let start: bigint;
  let end: bigint;
  let space: X86AddressSpace;
  try {
    start = reader.pointerField(mm, 'mm_struct', area.start);
    end = reader.pointerField(mm, 'mm_struct', area.end);
    space = processAddressSpace(kernel, reader, mm);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { strings: [], problems: [`mm_struct ${hex(mm)} is unreadable: ${error.message}`] };
  }
  if (end < start) return { strings: [], problems: [`${area.end} ${hex(end)} is below ${area.start} ${hex(start)}`] };
  // argv and the environment live in the process's own (lower) half: a range reaching the
  // kernel's half would print kernel memory as a process's strings.
  if (end > 1n << BigInt(space.addressBits - 1)) {
    return { strings: [], problems: [`${area.what} ${hex(start)}..${hex(end)} is not in user memory`] };
  }
  let length = end - start;
  if (length > BigInt(maxBytes)) {
    problems.push(`${area.what} claims ${length} bytes (${hex(start)}..${hex(end)}); read only the first ${maxBytes}`);
    length = BigInt(maxBytes);
  }
  const { bytes, fault } = readUntilFault(space, start, Number(length));
  if (fault) problems.push(`${area.what} is readable only up to byte ${bytes.length} of ${length}: ${fault.message}`);
  return { strings: splitStrings(bytes), problems };
}

/** NUL-separated strings; the NUL ending the last one does not start another. */
function splitStrings(bytes: Uint8Array): string[] {
  if (bytes.length === 0) return [];
  const text = new TextDecoder().decode(bytes[bytes.length - 1] === 0 ? bytes.subarray(0, bytes.length - 1) : bytes);
  return text.split('\0');
}
