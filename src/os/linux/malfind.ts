import type { X86AddressSpace } from '../../space/x86.js';
import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import { icedX86 } from './icedX86.js';
import type { LinuxKernel } from './discovery.js';
import type { KernelReader } from './kernelReader.js';
import { processAddressSpace, readUntilFault } from './processSpace.js';
import type { TaskInfo } from './tasks.js';
import { VM_EXEC, VM_WRITE, type MemoryRegion } from './vmas.js';

/** Bytes shown from the start of each suspicious region. */
export const MALFIND_BYTES = 64;
/** Instructions disassembled from those bytes at most (64 bytes of x86-64 hold about this many). */
const MAX_INSTRUCTIONS = 24;
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];

const ANONYMOUS_EXECUTABLE =
  'executable memory backed by no file: code injected into the process, or the output of a JIT compiler (JavaScript engines, the JVM, .NET and LuaJIT allocate such regions)';
const WRITABLE_EXECUTABLE =
  'writable and executable memory: code that can be rewritten in place, as shellcode staging does (some JIT compilers keep their code cache rwx too)';

/** One region malfind reports: what is suspicious about it and what it starts with. */
export interface SuspiciousRegion {
  readonly pid: number;
  readonly comm: string;
  readonly start: bigint;
  readonly end: bigint;
  readonly perms: string;
  readonly region: MemoryRegion;
  /** Why the region is reported, with the benign explanation that also fits (JIT compilers). */
  readonly reason: string;
  /** The first MALFIND_BYTES bytes, fewer when pages are absent from the dump. */
  readonly bytes: Uint8Array;
  /** `0x…: instruction` lines decoded from those bytes (x86-64, Intel syntax). */
  readonly disassembly: string[];
  /** The region starts with an ELF header: a whole executable loaded by hand (reflective loading). */
  readonly elfHeader: boolean;
  /** Why the bytes are missing or short. */
  readonly problems: string[];
}

export interface ProcessSuspiciousRegions {
  readonly regions: SuspiciousRegion[];
  /** Why the process's memory could not be read at all (its page tables are unreadable). */
  readonly problems: string[];
}

/**
 * The regions of one process (from readMemoryRegions) that hold code no file accounts for
 * (executable and anonymous) or code that can be rewritten (writable and executable), with
 * their first bytes read through the process's own page tables. The kernel's own special
 * mappings (vDSO) are executable and anonymous by design and are not reported.
 */
export function findSuspiciousRegions(
  kernel: LinuxKernel,
  reader: KernelReader,
  task: TaskInfo,
  regions: readonly MemoryRegion[],
): ProcessSuspiciousRegions {
  if (!regions.some((region) => suspicion(region).length > 0)) return { regions: [], problems: [] };
  let space: X86AddressSpace;
  try {
    space = processAddressSpace(kernel, reader, task.mm);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { regions: [], problems: [`address space of pid ${task.pid} is unreadable: ${error.message}`] };
  }
  return { regions: suspiciousRegions(space, task, regions), problems: [] };
}

function suspiciousRegions(
  space: X86AddressSpace,
  task: TaskInfo,
  regions: readonly MemoryRegion[],
): SuspiciousRegion[] {
  const found: SuspiciousRegion[] = [];
  for (const region of regions) {
    const reasons = suspicion(region);
    if (reasons.length === 0) continue;
    const length = Number(
      region.end - region.start < BigInt(MALFIND_BYTES) ? region.end - region.start : BigInt(MALFIND_BYTES),
    );
    const { bytes, fault } = readUntilFault(space, region.start, length);
    found.push({
      pid: task.pid,
      comm: task.comm,
      start: region.start,
      end: region.end,
      perms: region.perms,
      region,
      reason: reasons.join('; '),
      bytes,
      disassembly: disassemble(bytes, region.start),
      elfHeader: ELF_MAGIC.every((byte, index) => bytes[index] === byte),
      problems: fault
        ? [
            `only ${bytes.length} of the first ${length} bytes at ${hex(region.start)} are in the dump: ${fault.message}`,
          ]
        : [],
    });
  }
  return found;
}

function suspicion(region: MemoryRegion): string[] {
  if ((region.flags & VM_EXEC) === 0n || region.special) return [];
  const reasons: string[] = [];
  if (region.file === 0n) reasons.push(ANONYMOUS_EXECUTABLE);
  if ((region.flags & VM_WRITE) !== 0n) reasons.push(WRITABLE_EXECUTABLE);
  return reasons;
}

/** A short listing of the instructions at the start of `bytes`, ending at the first undecodable one. */
export function disassemble(bytes: Uint8Array, address: bigint, maxInstructions = MAX_INSTRUCTIONS): string[] {
  if (bytes.length === 0) return [];
  const { Code, Decoder, DecoderOptions, Formatter, FormatterSyntax } = icedX86();
  const decoder = new Decoder(64, bytes, DecoderOptions.None);
  const formatter = new Formatter(FormatterSyntax.Intel);
  const lines: string[] = [];
  try {
    decoder.ip = address;
    let stopped = false;
    // Every decoded instruction lives in the decoder's WASM memory and is freed, listed or not.
    for (const instruction of decoder.decodeInstructions(maxInstructions)) {
      if (!stopped) {
        stopped = instruction.code === Code.INVALID;
        lines.push(`${hex(instruction.ip)}: ${stopped ? '(bad)' : formatter.format(instruction)}`);
      }
      instruction.free();
    }
  } finally {
    decoder.free();
    formatter.free();
  }
  return lines;
}
