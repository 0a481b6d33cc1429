import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { CodeLocation, CodeOwners } from './codeOwners.js';
import type { KernelReader } from './kernelReader.js';

const IDT_ENTRIES = 256;
/** Exceptions are vectors 0–31 (NUM_EXCEPTION_VECTORS); the boot code has one early handler for each. */
const EXCEPTION_VECTORS = 32;

/**
 * The entry points the kernel installs for the architectural exceptions and `int 0x80`
 * (DECLARE_IDTENTRY* in arch/x86/include/asm/idtentry.h, vectors from asm/trapnr.h and
 * IA32_SYSCALL_VECTOR), newest name first. The tables that install them (`def_idts`, …) are
 * __initconst: freed and poisoned after boot, so the names are what is left to compare with.
 * A vector whose names the kernel does not have (a feature not built in) has no expectation.
 */
const ENTRY_POINTS: Readonly<Record<number, readonly string[]>> = {
  0: ['asm_exc_divide_error'],
  1: ['asm_exc_debug'],
  2: ['asm_exc_nmi'],
  3: ['asm_exc_int3'],
  4: ['asm_exc_overflow'],
  5: ['asm_exc_bounds'],
  6: ['asm_exc_invalid_op'],
  7: ['asm_exc_device_not_available'],
  8: ['asm_exc_double_fault'],
  9: ['asm_exc_coproc_segment_overrun'],
  10: ['asm_exc_invalid_tss'],
  11: ['asm_exc_segment_not_present'],
  12: ['asm_exc_stack_segment'],
  13: ['asm_exc_general_protection'],
  14: ['asm_exc_page_fault'],
  15: ['asm_exc_spurious_interrupt_bug'],
  16: ['asm_exc_coprocessor_error'],
  17: ['asm_exc_alignment_check'],
  18: ['asm_exc_machine_check'],
  19: ['asm_exc_simd_coprocessor_error'],
  20: ['asm_exc_virtualization_exception'],
  21: ['asm_exc_control_protection'],
  29: ['asm_exc_vmm_communication'],
  128: ['asm_int80_emulation', 'entry_INT80_compat'],
};

/**
 * Gates user space may raise with `int n` (DPL 3: SYSG in the kernel's tables): the breakpoint,
 * `into` and the 32-bit syscall gate. Any other DPL-3 gate is a door into the kernel.
 */
const USER_GATES: ReadonlySet<number> = new Set([3, 4, 128]);
const USER_DPL = 3;

/** One gate of `idt_table`, decoded, with the judgement of its handler. */
export interface IdtGate {
  readonly vector: number;
  /** Address of the gate_struct. */
  readonly gate: bigint;
  readonly handler: bigint;
  readonly segment: number;
  /** Gate type (14 interrupt, 15 trap), privilege level, IST index and present bit, from idt_bits. */
  readonly type: number;
  readonly dpl: number;
  readonly ist: number;
  readonly present: boolean;
  readonly symbol: string | undefined;
  readonly owner: string;
  /** The handler the kernel's own setup installs for this vector, where that is known. */
  readonly expected: bigint | undefined;
  readonly expectedSymbol: string | undefined;
  readonly suspicious: boolean;
  readonly evidence: string;
}

export interface IdtReport {
  /** The address of the table read. */
  readonly table: bigint;
  readonly gates: IdtGate[];
  readonly problems: string[];
}

/**
 * All 256 gates of `idt_table`. A present gate's handler must be the kernel's: the entry point it
 * installs for that vector where that is known, else any entry point in the entry text (where all
 * of them live), or, for an exception vector the kernel leaves unset, its own early boot handler.
 * A handler in module or unowned memory, or anywhere else in the kernel, is a finding; one that
 * does not even map is a problem too.
 */
export function readIdt(reader: KernelReader, owners: CodeOwners): IdtReport {
  const { profile } = reader;
  const table = profile.requireSymbol('idt_table');
  const gateSize = profile.sizeOf('gate_struct');
  const layout = {
    low: profile.offsetOf('gate_struct', 'offset_low'),
    segment: profile.offsetOf('gate_struct', 'segment'),
    bits: profile.offsetOf('gate_struct', 'bits'),
    middle: profile.offsetOf('gate_struct', 'offset_middle'),
    high: profile.offsetOf('gate_struct', 'offset_high'),
  };
  const bits = idtBitsLayout(reader);
  const setup: KernelIdtSetup = {
    owners,
    entryText: { start: profile.symbol('__entry_text_start'), end: profile.symbol('__entry_text_end') },
    early: earlyHandlers(reader),
  };
  const gates: IdtGate[] = [];
  const problems: string[] = [];
  for (let vector = 0; vector < IDT_ENTRIES; vector++) {
    const gate = table + BigInt(vector * gateSize);
    let bytes: Uint8Array;
    try {
      bytes = reader.bytes(gate, gateSize);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`IDT gate ${vector} at ${hex(gate)} is unreadable: ${error.message}`);
      continue;
    }
    const view = new DataView(bytes.buffer);
    const handler =
      (BigInt(view.getUint32(layout.high, true)) << 32n) |
      (BigInt(view.getUint16(layout.middle, true)) << 16n) |
      BigInt(view.getUint16(layout.low, true));
    const word = view.getUint16(layout.bits, true);
    const field = (name: keyof typeof bits) => (word >> bits[name].position) & ((1 << bits[name].length) - 1);
    const present = field('p') === 1;
    const location = owners.resolve(handler);
    const expected = expectedEntry(reader, vector);
    const judgement = judgeGate({ vector, handler, present, dpl: field('dpl'), location, expected }, setup);
    // The early handlers are the kernel image's own (freed) init text, which CodeOwners, judging kernel text, calls unknown.
    const owner = judgement.earlyHandler ? 'kernel' : location.owner;
    if (judgement.suspicious && present && reader.space.tryTranslate(handler) === undefined) {
      problems.push(`IDT gate ${vector}: handler ${hex(handler)} is not mapped`);
    }
    gates.push({
      vector,
      gate,
      handler,
      segment: view.getUint16(layout.segment, true),
      type: field('type'),
      dpl: field('dpl'),
      ist: field('ist'),
      present,
      symbol: location.symbol,
      owner,
      expected,
      expectedSymbol: expected === undefined ? undefined : owners.resolve(expected).symbol,
      suspicious: judgement.suspicious,
      evidence: judgement.evidence,
    });
  }
  return { table, gates, problems };
}

/** What the kernel's own setup says a gate may hold. */
interface KernelIdtSetup {
  readonly owners: CodeOwners;
  readonly entryText: { readonly start: bigint | undefined; readonly end: bigint | undefined };
  readonly early: { readonly array: bigint; readonly stride: number } | undefined;
}

function judgeGate(
  gate: {
    vector: number;
    handler: bigint;
    present: boolean;
    dpl: number;
    location: CodeLocation;
    expected: bigint | undefined;
  },
  setup: KernelIdtSetup,
): { suspicious: boolean; evidence: string; earlyHandler?: true } {
  const { vector, handler, location, expected } = gate;
  const { owners, entryText, early } = setup;
  if (!gate.present) return { suspicious: false, evidence: 'gate not present' };
  if (gate.dpl === USER_DPL && !USER_GATES.has(vector)) {
    return {
      suspicious: true,
      evidence: `gate is callable from user space (DPL 3), which the kernel allows only for vectors ${[...USER_GATES].join(', ')}`,
    };
  }
  if (vector < EXCEPTION_VECTORS && early && handler === early.array + BigInt(vector * early.stride)) {
    return {
      suspicious: false,
      evidence: "the kernel's early boot handler, left on an exception vector it installs nothing else for",
      earlyHandler: true,
    };
  }
  const where =
    location.owner === 'kernel'
      ? 'kernel text'
      : location.owner === 'unknown'
        ? 'memory no module owns'
        : `module ${location.owner}`;
  const name = location.symbol ?? hex(handler);
  if (expected !== undefined) {
    if (handler === expected) return { suspicious: false, evidence: `the kernel's entry point for vector ${vector}` };
    return {
      suspicious: true,
      evidence: `handler ${name} in ${where}, where the kernel installs ${owners.resolve(expected).symbol ?? hex(expected)}`,
    };
  }
  if (location.owner !== 'kernel')
    return { suspicious: true, evidence: `handler ${name} in ${where}, outside kernel text` };
  const inEntryText =
    entryText.start !== undefined &&
    entryText.end !== undefined &&
    handler >= entryText.start &&
    handler < entryText.end;
  if (!inEntryText)
    return {
      suspicious: true,
      evidence: `handler ${name} is kernel text outside the entry code, where every IDT entry point lives`,
    };
  return { suspicious: false, evidence: "an entry point in the kernel's entry text" };
}

/** Bit positions of idt_bits' fields (ist, type, dpl, p), from the profile. */
function idtBitsLayout(
  reader: KernelReader,
): Record<'ist' | 'type' | 'dpl' | 'p', { position: number; length: number }> {
  const read = (name: string) => {
    const type = reader.profile.field('idt_bits', name).type;
    if (type.kind !== 'bitfield')
      throw new VmscopeError('NO_PROFILE', `idt_bits.${name} is not a bitfield`, reader.profile.source);
    return { position: type.bit_position, length: type.bit_length };
  };
  return { ist: read('ist'), type: read('type'), dpl: read('dpl'), p: read('p') };
}

/** The kernel's entry point for `vector`, when it installs a fixed one there. */
function expectedEntry(reader: KernelReader, vector: number): bigint | undefined {
  for (const name of ENTRY_POINTS[vector] ?? []) {
    const address = reader.profile.symbol(name);
    if (address !== undefined) return address;
  }
  return undefined;
}

/**
 * `early_idt_handler_array`: one stub per exception vector, back to back up to the next symbol
 * (EARLY_IDT_HANDLER_SIZE differs with IBT), which the boot code points every exception gate at
 * and the later setup leaves on vectors it has nothing for.
 */
function earlyHandlers(reader: KernelReader): { array: bigint; stride: number } | undefined {
  const array = reader.profile.symbol('early_idt_handler_array');
  const next = array === undefined ? undefined : reader.profile.symbolAfter(array);
  if (array === undefined || next === undefined) return undefined;
  const span = Number(next.address - array);
  return span % EXCEPTION_VECTORS === 0 ? { array, stride: span / EXCEPTION_VECTORS } : undefined;
}
