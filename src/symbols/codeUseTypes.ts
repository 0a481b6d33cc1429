import type { BtfTypes } from './btfParse.js';
import type { IsfTypeDescriptor } from './isf.js';
import type { ProfileSymbol } from './profile.js';
import { symbolsByName } from './symbolTable.js';

/**
 * Types of global variables read from how the kernel's own code uses them: where it passes a
 * variable's address straight to a function (`mov $var, %rdi` or `lea var(%rip), %rdi`, then
 * `call fn`), the variable is what `fn`'s BTF prototype says that parameter points to. Only the
 * exact shape "argument setups immediately followed by a direct call" is read, so a match never
 * starts inside another instruction's operands by chance (7 + 5 bytes that must also name a
 * symbol's exact address and a BTF function's entry).
 *
 * A variable whose first member is what gets passed (`&init_pid_ns` is also `&init_pid_ns.idr`)
 * collects both types; the one that holds the others at offset 0 is the variable's.
 */

export interface CodeUseInputs {
  readonly btf: BtfTypes;
  readonly describe: (id: number) => IsfTypeDescriptor;
  readonly symbols: readonly ProfileSymbol[];
  /** Kernel text, as this dump maps it ([start, end) KASLR-applied). */
  readonly text: { readonly start: bigint; readonly end: bigint };
  readonly read: (address: bigint, length: number) => Uint8Array | undefined;
}

/** The pointed-to types each data symbol's address was passed as, with how many call sites said so. */
export type CodeUseEvidence = Map<string, Map<string, { type: IsfTypeDescriptor; sites: number }>>;

/** The argument registers of the SysV calling convention this reads: %rdi, %rsi, %rdx (the ModRM reg field). */
const ARGUMENT_REGISTERS: ReadonlyMap<number, number> = new Map([
  [7, 0],
  [6, 1],
  [2, 2],
]);
const SETUP_BYTES = 7;
const CALL_BYTES = 5;
const CALL_OPCODE = 0xe8;
/** Argument setups read before one call: a call takes at most a handful of pointer arguments in registers. */
const MAX_SETUPS = 3;
/** Read kernel text in pieces of this size (an unreadable piece is skipped, not fatal). */
const CHUNK = 1 << 20;

/** One argument setup: the parameter it fills and the address it passes, as an offset from the text's start. */
interface ArgumentSetup {
  parameter: number;
  offset: number;
}

/**
 * Whether `at` holds an argument setup, `48 c7 c7+r imm32` (mov, sign-extended) or
 * `48 8d 3d/35/15 disp32` (lea rip-relative); if so it is written into `setup`. Addresses are
 * offsets from the kernel text's start (`textStart`, as a signed 64-bit value; `siteOffset` is
 * where `at` is): plain numbers, exact for anything a 32-bit immediate or displacement reaches,
 * so the scan of every byte of kernel text allocates nothing.
 */
function readArgumentSetup(
  bytes: Uint8Array,
  view: DataView,
  at: number,
  siteOffset: number,
  textStart: number,
  setup: ArgumentSetup,
): boolean {
  if (bytes[at] !== 0x48) return false;
  const opcode = bytes[at + 1];
  const modrm = bytes[at + 2]!;
  let parameter: number | undefined;
  if (opcode === 0xc7 && modrm >> 3 === 0x18) {
    parameter = ARGUMENT_REGISTERS.get(modrm & 7);
    setup.offset = view.getInt32(at + 3, true) - textStart;
  } else if (opcode === 0x8d && (modrm & 0xc7) === 0x05) {
    parameter = ARGUMENT_REGISTERS.get((modrm >> 3) & 7);
    setup.offset = siteOffset + SETUP_BYTES + view.getInt32(at + 3, true);
  }
  if (parameter === undefined) return false;
  setup.parameter = parameter;
  return true;
}

/** For each function BTF describes unambiguously: the pointee type id of each pointer parameter. */
function pointerParameters(btf: BtfTypes): Map<string, Array<number | undefined>> {
  const byName = new Map<string, Array<number | undefined> | null>();
  for (const type of btf.types) {
    if (type.kind !== 'func') continue;
    const proto = btf.type(btf.resolve(type.type));
    if (proto.kind !== 'func_proto') continue;
    const pointees = proto.params.map(({ type: parameter }) => {
      if (parameter === 0) return undefined;
      const pointer = btf.type(btf.resolve(parameter));
      if (pointer.kind !== 'ptr') return undefined;
      const pointee = btf.resolve(pointer.type);
      const kind = btf.type(pointee).kind;
      return kind === 'struct' || kind === 'union' || kind === 'int' || kind === 'enum' || kind === 'enum64'
        ? pointee
        : undefined;
    });
    const known = byName.get(type.name);
    // Static functions of one name in several files: usable only if their pointer parameters agree.
    if (known === undefined) byName.set(type.name, pointees);
    else if (known !== null && JSON.stringify(known) !== JSON.stringify(pointees)) byName.set(type.name, null);
  }
  const usable = new Map<string, Array<number | undefined>>();
  for (const [name, pointees] of byName) if (pointees !== null) usable.set(name, pointees);
  return usable;
}

export function codeUseEvidence(inputs: CodeUseInputs): CodeUseEvidence {
  const parameters = pointerParameters(inputs.btf);
  // Keyed by offset from the text's start: what the scan computes, in plain numbers.
  const textStart = inputs.text.start;
  const offsetOf = (address: bigint) => Number(BigInt.asIntN(64, address - textStart));
  const functionsAt = new Map<number, Array<number | undefined>>();
  const dataAt = new Map<number, string[]>();
  // A name stands for one object (as Profile and the ISF resolve it): a passed address counts for a name only if it is that object's.
  const byName = symbolsByName(inputs.symbols);
  for (const symbol of byName.values()) {
    if (symbol.absolute || symbol.type === undefined) continue;
    const letter = symbol.type.toUpperCase();
    const offset = offsetOf(symbol.address);
    // Beyond 2^53 an offset is inexact, and it is far out of reach of any 32-bit displacement anyway.
    if (!Number.isSafeInteger(offset)) continue;
    if (letter === 'T') {
      const pointees = parameters.get(symbol.name);
      if (pointees) functionsAt.set(offset, pointees);
    } else if (letter === 'D' || letter === 'B' || letter === 'R') {
      const names = dataAt.get(offset) ?? [];
      names.push(symbol.name);
      dataAt.set(offset, names);
    }
  }

  const evidence: CodeUseEvidence = new Map();
  const record = (name: string, pointee: number) => {
    const type = inputs.describe(pointee);
    const key = JSON.stringify(type);
    const byType = evidence.get(name) ?? new Map<string, { type: IsfTypeDescriptor; sites: number }>();
    evidence.set(name, byType);
    const known = byType.get(key);
    if (known) known.sites++;
    else byType.set(key, { type, sites: 1 });
  };

  const signedTextStart = Number(BigInt.asIntN(64, textStart));
  const setups: ArgumentSetup[] = Array.from({ length: MAX_SETUPS }, () => ({ parameter: 0, offset: 0 }));
  const overlap = SETUP_BYTES * MAX_SETUPS + CALL_BYTES;
  const textBytes = inputs.text.end - textStart;
  for (let chunk = 0n; chunk < textBytes; chunk += BigInt(CHUNK)) {
    const length = Number(textBytes - chunk < BigInt(CHUNK + overlap) ? textBytes - chunk : BigInt(CHUNK + overlap));
    const bytes = inputs.read(textStart + chunk, length);
    if (bytes === undefined) continue;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    const chunkOffset = Number(chunk);
    const scanned = Math.min(CHUNK, length);
    for (let at = 0; at < scanned; at++) {
      if (bytes[at] !== 0x48) continue;
      let count = 0;
      let next = at;
      while (
        count < MAX_SETUPS &&
        next + SETUP_BYTES + CALL_BYTES <= length &&
        readArgumentSetup(bytes, view, next, chunkOffset + next, signedTextStart, setups[count]!)
      ) {
        count++;
        next += SETUP_BYTES;
      }
      if (count === 0 || bytes[next] !== CALL_OPCODE || next + CALL_BYTES > length) continue;
      const pointees = functionsAt.get(chunkOffset + next + CALL_BYTES + view.getInt32(next + 1, true));
      if (!pointees) continue;
      for (const { parameter, offset } of setups.slice(0, count)) {
        const pointee = pointees[parameter];
        const names = dataAt.get(offset);
        if (pointee !== undefined && names) for (const name of names) record(name, pointee);
      }
      at = next; // this call site is read: its later setups must not count again
    }
  }
  return evidence;
}
