/**
 * Since the 2024 BHI fix the kernel dispatches syscalls through `x64_sys_call(regs, nr)` (and
 * `ia32_sys_call`, `x32_sys_call`): one `switch (nr)` that a retpoline build (no jump tables)
 * compiles into a binary decision tree of `cmp $imm, %esi` and conditional jumps, each leaf a
 * tail `jmp` to the handler (a `call` for the noreturn ones). Following that tree for ranges of
 * `nr`, as the CPU would, decodes only instructions that execute: no target is ever read out of
 * the middle of another instruction (what a byte scan for E8/E9 would do), and the result is
 * the kernel's own number → handler map. Only the handful of instruction forms such a tree is
 * made of are understood; anything else stops that path and says where.
 */

/** A direct transfer out of the function, taken for every nr in [first, last]. */
export interface SwitchExit {
  readonly first: number;
  readonly last: number;
  /** Address of the jmp/jcc/call instruction. */
  readonly site: bigint;
  readonly target: bigint;
}

/** A path the decoder could not follow to its end: the nrs on it have no known handler. */
export interface SwitchStop {
  readonly first: number;
  readonly last: number;
  readonly at: bigint;
  readonly reason: string;
}

export interface SwitchMap {
  readonly exits: SwitchExit[];
  readonly stops: SwitchStop[];
}

export interface FollowOptions {
  /** Instructions decoded over all paths before giving up (a real dispatcher needs a few thousand). */
  readonly maxSteps?: number;
}

const U32_MAX = 0xffffffff;
/** The switch value, `nr`, is the dispatchers' second argument: %esi. */
const SELECTOR = 6;
const DEFAULT_MAX_STEPS = 1 << 16;
/** Operand-size (nop padding), segment/branch-hint and rep (endbr64) prefixes. */
const OPERAND_SIZE = 0x66;
const REP = 0xf3;
const IGNORED_PREFIXES = new Set([OPERAND_SIZE, REP, 0x2e, 0x3e]);
const MAX_PREFIXES = 4;
/** The longest x86 instruction: the zero padding that lets the decoder read operands unchecked. */
const MAX_INSTRUCTION_BYTES = 15;

type Instruction =
  | { readonly op: 'nop' | 'end'; readonly length: number }
  /** `cmp $value, %reg` (and `test %reg, %reg`, which sets the same flags as `cmp $0, %reg`). */
  | { readonly op: 'compare'; readonly length: number; readonly register: number; readonly value: number }
  | { readonly op: 'branch'; readonly length: number; readonly condition: number; readonly displacement: number }
  | { readonly op: 'jmp' | 'call'; readonly length: number; readonly displacement: number };

type Range = readonly [first: number, last: number];

/** Length of a ModRM operand (ModRM byte, SIB and displacement) starting at `at`. */
function modrmLength(code: Uint8Array, at: number): number {
  const modrm = code[at]!;
  const mod = modrm >> 6;
  const rm = modrm & 7;
  if (mod === 3) return 1;
  const sib = rm === 4 ? 1 : 0;
  if (mod === 0) return 1 + sib + (rm === 5 || (sib && (code[at + 1]! & 7) === 5) ? 4 : 0);
  return 1 + sib + (mod === 1 ? 1 : 4);
}

/** `mod == 3` with the given reg field: the instruction works on the register in rm. */
function registerOperand(modrm: number, reg: number): number | undefined {
  return modrm >> 6 === 3 && ((modrm >> 3) & 7) === reg ? modrm & 7 : undefined;
}

/**
 * The instruction at `at`, or undefined when it is none of the forms a compiled switch uses.
 * `code` (`view` over the same bytes) carries MAX_INSTRUCTION_BYTES of zero padding, so operands are
 * read without bounds checks; the caller rejects an instruction that ends past the real code.
 */
function decode(code: Uint8Array, view: DataView, at: number): Instruction | undefined {
  const prefixes: number[] = [];
  let i = at;
  while (prefixes.length < MAX_PREFIXES && IGNORED_PREFIXES.has(code[i]!)) prefixes.push(code[i++]!);
  const opcode = code[i]!;
  /** The ModRM byte of a one-byte opcode, or the second byte of a two-byte (0f) opcode. */
  const next = code[i + 1]!;
  /** Length of the instruction whose opcode and operands take `bytes` after the prefixes. */
  const size = (bytes: number) => i + bytes - at;
  const cmpRegister = registerOperand(next, 7); // 81 /7 and 83 /7 are cmp
  let instruction: Instruction | undefined;
  if (opcode === 0x90) instruction = { op: 'nop', length: size(1) };
  else if (opcode === 0xc3 || opcode === 0xcc)
    instruction = { op: 'end', length: size(1) }; // ret, int3
  else if (opcode === 0xeb) instruction = { op: 'jmp', length: size(2), displacement: view.getInt8(i + 1) };
  else if (opcode === 0xe9 || opcode === 0xe8)
    instruction = { op: opcode === 0xe9 ? 'jmp' : 'call', length: size(5), displacement: view.getInt32(i + 1, true) };
  else if (opcode >= 0x70 && opcode <= 0x7f)
    instruction = { op: 'branch', length: size(2), condition: opcode & 0xf, displacement: view.getInt8(i + 1) };
  else if (opcode === 0x3d)
    instruction = { op: 'compare', length: size(5), register: 0, value: view.getUint32(i + 1, true) }; // cmp $imm32, %eax
  else if (opcode === 0x81 && cmpRegister !== undefined)
    instruction = { op: 'compare', length: size(6), register: cmpRegister, value: view.getUint32(i + 2, true) };
  else if (opcode === 0x83 && cmpRegister !== undefined)
    instruction = { op: 'compare', length: size(3), register: cmpRegister, value: view.getInt8(i + 2) >>> 0 };
  else if (opcode === 0x85 && registerOperand(next, next & 7) !== undefined) {
    instruction = { op: 'compare', length: size(2), register: next & 7, value: 0 }; // test %reg, %reg (the same register twice)
  } else if (opcode === 0x0f) {
    if (next === 0x1f) instruction = { op: 'nop', length: size(2 + modrmLength(code, i + 2)) };
    else if (next === 0x1e && prefixes.includes(REP) && code[i + 2] === 0xfa)
      instruction = { op: 'nop', length: size(3) }; // endbr64
    else if (next === 0x0b)
      instruction = { op: 'end', length: size(2) }; // ud2
    else if (next >= 0x80 && next <= 0x8f)
      instruction = { op: 'branch', length: size(6), condition: next & 0xf, displacement: view.getInt32(i + 2, true) };
  }
  // A 16-bit operand size would change what a compare or a jump reads; only nop padding carries it.
  if (instruction && instruction.op !== 'nop' && prefixes.includes(OPERAND_SIZE)) return undefined;
  return instruction;
}

/**
 * The values of the selector for which a conditional jump with x86 condition code `condition`
 * is taken after `cmp $value, selector`: the unsigned and equality conditions a switch on an
 * unsigned value compiles to. The negated condition is `condition ^ 1` (x86 encodes it so).
 */
function conditionRanges(condition: number, value: number): Range[] | undefined {
  let ranges: Range[];
  switch (condition) {
    case 0x2: // b
      ranges = [[0, value - 1]];
      break;
    case 0x3: // ae
      ranges = [[value, U32_MAX]];
      break;
    case 0x4: // e
      ranges = [[value, value]];
      break;
    case 0x5: // ne
      ranges = [
        [0, value - 1],
        [value + 1, U32_MAX],
      ];
      break;
    case 0x6: // be
      ranges = [[0, value]];
      break;
    case 0x7: // a
      ranges = [[value + 1, U32_MAX]];
      break;
    default:
      return undefined;
  }
  return ranges.filter(([first, last]) => first <= last);
}

function intersect(range: Range, ranges: readonly Range[]): Range[] {
  return ranges
    .map(([first, last]): Range => [Math.max(first, range[0]), Math.min(last, range[1])])
    .filter(([first, last]) => first <= last);
}

interface PathState {
  readonly offset: number;
  readonly range: Range;
  /** The value the selector was last compared with, if the flags come from such a compare. */
  readonly compared: number | undefined;
}

/**
 * Follow the decision tree of the function whose bytes are `code` (at virtual `start`) for every
 * 32-bit selector value, and return where each range of values leaves the function.
 */
export function followSwitch(code: Uint8Array, start: bigint, options: FollowOptions = {}): SwitchMap {
  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  const exits: SwitchExit[] = [];
  const stops: SwitchStop[] = [];
  // States are written out field by field, not spread: a dispatcher takes thousands of steps on every check.
  const pending: PathState[] = [{ offset: 0, range: [0, U32_MAX], compared: undefined }];
  const seen = new Set<string>();
  const padded = new Uint8Array(code.length + MAX_INSTRUCTION_BYTES);
  padded.set(code);
  const paddedView = new DataView(padded.buffer);
  let steps = 0;
  const at = (offset: number) => start + BigInt(offset);
  const stop = (state: PathState, offset: number, reason: string) =>
    stops.push({ first: state.range[0], last: state.range[1], at: at(offset), reason });
  /** Continue at `target` inside the function, or record the exit when it leaves. */
  const transfer = (state: PathState, site: number, target: number) => {
    if (target >= 0 && target < code.length)
      pending.push({ offset: target, range: state.range, compared: state.compared });
    else exits.push({ first: state.range[0], last: state.range[1], site: at(site), target: at(target) });
  };

  while (pending.length > 0) {
    const state = pending.pop()!;
    const key = `${state.offset}:${state.range[0]}:${state.range[1]}:${state.compared}`;
    if (seen.has(key)) continue; // a loop in the code: this path was already followed
    seen.add(key);
    if (++steps > maxSteps) {
      // One stop for everything unfinished: a hostile function must not turn into thousands of warnings.
      const unfinished = [state, ...pending];
      const first = unfinished.reduce((lowest, path) => Math.min(lowest, path.range[0]), U32_MAX);
      const last = unfinished.reduce((highest, path) => Math.max(highest, path.range[1]), 0);
      stops.push({
        first,
        last,
        at: at(state.offset),
        reason: `gave up after ${maxSteps} instructions with ${unfinished.length} paths unfinished`,
      });
      break;
    }
    const decoded = state.offset < code.length ? decode(padded, paddedView, state.offset) : undefined;
    const instruction = decoded && state.offset + decoded.length <= code.length ? decoded : undefined;
    if (!instruction) {
      const bytes = Buffer.from(code.subarray(state.offset, state.offset + 8)).toString('hex');
      stop(
        state,
        state.offset,
        state.offset < code.length ? `cannot decode instruction bytes ${bytes}` : 'runs past the end of the function',
      );
      continue;
    }
    const next = state.offset + instruction.length;
    switch (instruction.op) {
      case 'nop':
        pending.push({ offset: next, range: state.range, compared: state.compared });
        break;
      case 'end':
        break;
      case 'compare':
        if (instruction.register === SELECTOR)
          pending.push({ offset: next, range: state.range, compared: instruction.value });
        else stop(state, state.offset, `compares register ${instruction.register}, not the switch value`);
        break;
      case 'call':
        // A handler that does not return (exit, exit_group), or one called before a ret: either way nr's handler.
        exits.push({
          first: state.range[0],
          last: state.range[1],
          site: at(state.offset),
          target: at(next + instruction.displacement),
        });
        break;
      case 'jmp':
        transfer(state, state.offset, next + instruction.displacement);
        break;
      case 'branch': {
        const taken = state.compared === undefined ? undefined : conditionRanges(instruction.condition, state.compared);
        const notTaken =
          state.compared === undefined ? undefined : conditionRanges(instruction.condition ^ 1, state.compared);
        if (!taken || !notTaken) {
          stop(
            state,
            state.offset,
            state.compared === undefined
              ? 'branches on flags no compare of the switch value set'
              : `branch condition ${instruction.condition} is not an unsigned compare`,
          );
          break;
        }
        for (const range of intersect(state.range, taken))
          transfer(
            { offset: state.offset, range, compared: state.compared },
            state.offset,
            next + instruction.displacement,
          );
        for (const range of intersect(state.range, notTaken))
          pending.push({ offset: next, range, compared: state.compared });
        break;
      }
    }
  }
  exits.sort((a, b) => a.first - b.first);
  return { exits, stops };
}
