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

/** An argument setup at `at`: `48 c7 c7+r imm32` (mov, sign-extended) or `48 8d 3d/35/15 disp32` (lea rip-relative). */
function argumentSetup(
  bytes: Uint8Array,
  view: DataView,
  at: number,
  address: bigint,
): { parameter: number; value: bigint } | undefined {
  if (bytes[at] !== 0x48) return undefined;
  const opcode = bytes[at + 1];
  const modrm = bytes[at + 2]!;
  if (opcode === 0xc7 && modrm >> 3 === 0x18) {
    const parameter = ARGUMENT_REGISTERS.get(modrm & 7);
    return parameter === undefined
      ? undefined
      : { parameter, value: BigInt.asUintN(64, BigInt(view.getInt32(at + 3, true))) };
  }
  if (opcode === 0x8d && (modrm & 0xc7) === 0x05) {
    const parameter = ARGUMENT_REGISTERS.get((modrm >> 3) & 7);
    return parameter === undefined
      ? undefined
      : { parameter, value: BigInt.asUintN(64, address + BigInt(SETUP_BYTES) + BigInt(view.getInt32(at + 3, true))) };
  }
  return undefined;
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
  const functionsAt = new Map<bigint, Array<number | undefined>>();
  const dataAt = new Map<bigint, string[]>();
  // A name stands for one object (as Profile and the ISF resolve it): a passed address counts for a name only if it is that object's.
  const byName = symbolsByName(inputs.symbols);
  for (const symbol of byName.values()) {
    if (symbol.absolute || symbol.type === undefined) continue;
    const letter = symbol.type.toUpperCase();
    if (letter === 'T') {
      const pointees = parameters.get(symbol.name);
      if (pointees) functionsAt.set(symbol.address, pointees);
    } else if (letter === 'D' || letter === 'B' || letter === 'R') {
      const names = dataAt.get(symbol.address) ?? [];
      names.push(symbol.name);
      dataAt.set(symbol.address, names);
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

  const overlap = SETUP_BYTES * MAX_SETUPS + CALL_BYTES;
  for (let start = inputs.text.start; start < inputs.text.end; start += BigInt(CHUNK)) {
    const length = Number(
      inputs.text.end - start < BigInt(CHUNK + overlap) ? inputs.text.end - start : BigInt(CHUNK + overlap),
    );
    const bytes = inputs.read(start, length);
    if (bytes === undefined) continue;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    const scanned = Math.min(CHUNK, length);
    for (let at = 0; at < scanned; at++) {
      if (bytes[at] !== 0x48) continue;
      const setups: Array<{ parameter: number; value: bigint }> = [];
      let next = at;
      while (setups.length < MAX_SETUPS && next + SETUP_BYTES + CALL_BYTES <= length) {
        const setup = argumentSetup(bytes, view, next, start + BigInt(next));
        if (!setup) break;
        setups.push(setup);
        next += SETUP_BYTES;
      }
      if (setups.length === 0 || bytes[next] !== CALL_OPCODE || next + CALL_BYTES > length) continue;
      const site = start + BigInt(next);
      const target = BigInt.asUintN(64, site + BigInt(CALL_BYTES) + BigInt(view.getInt32(next + 1, true)));
      const pointees = functionsAt.get(target);
      if (!pointees) continue;
      for (const { parameter, value } of setups) {
        const pointee = pointees[parameter];
        const names = dataAt.get(value);
        if (pointee !== undefined && names) for (const name of names) record(name, pointee);
      }
      at = next; // this call site is read: its later setups must not count again
    }
  }
  return evidence;
}
