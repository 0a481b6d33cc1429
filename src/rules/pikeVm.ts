import { MAX_MATCH_LENGTH, isAsciiAlphanumeric, type ByteSet, type PatternNode } from './pattern.js';

/**
 * A Thompson-NFA program run as a Pike VM: every thread advances one input byte at a time and
 * threads that reach the same instruction merge, so a match attempt costs at most
 * (instructions x bytes) steps whatever the pattern — `(a+)+b` cannot backtrack exponentially.
 * Threads are kept in priority order, which gives the same match length a backtracking engine
 * would (greedy and lazy quantifiers, leftmost alternative first).
 */
export type Instruction =
  | { readonly op: 'byte'; readonly set: ByteSet }
  | { readonly op: 'split'; readonly preferred: number; readonly other: number }
  | { readonly op: 'jump'; readonly to: number }
  | { readonly op: 'assert'; readonly at: 'start' | 'end' | 'wordBoundary' | 'notWordBoundary' }
  | { readonly op: 'match' };

export interface Program {
  readonly instructions: readonly Instruction[];
  /** Bytes a match can start with; assertions at the start are looked through. */
  readonly firstBytes: ByteSet;
}

/** Expanded counted repeats are capped so that a rule file cannot exhaust memory. */
const MAX_PROGRAM_INSTRUCTIONS = 200_000;

export function compileProgram(pattern: PatternNode): Program {
  type Mutable = { op: 'split'; preferred: number; other: number } | { op: 'jump'; to: number } | Instruction;
  const code: Mutable[] = [];
  const emit = (instruction: Mutable) => {
    if (code.length >= MAX_PROGRAM_INSTRUCTIONS)
      throw new RangeError(`pattern needs more than ${MAX_PROGRAM_INSTRUCTIONS} instructions`);
    code.push(instruction);
    return code.length - 1;
  };
  const split = () => emit({ op: 'split', preferred: -1, other: -1 }); // patched once both targets are known
  const patchSplit = (at: number, body: number, exit: number, greedy: boolean) => {
    code[at] = greedy ? { op: 'split', preferred: body, other: exit } : { op: 'split', preferred: exit, other: body };
  };

  const generate = (node: PatternNode): void => {
    switch (node.kind) {
      case 'byte':
        emit({ op: 'byte', set: node.set });
        return;
      case 'assertion':
        emit({ op: 'assert', at: node.at });
        return;
      case 'concat':
        node.items.forEach(generate);
        return;
      case 'alternation': {
        const jumps: number[] = [];
        node.options.forEach((option, i) => {
          if (i === node.options.length - 1) return generate(option);
          const fork = split();
          generate(option);
          jumps.push(emit({ op: 'jump', to: -1 }));
          patchSplit(fork, fork + 1, code.length, true);
        });
        for (const jump of jumps) code[jump] = { op: 'jump', to: code.length };
        return;
      }
      case 'repeat': {
        for (let i = 0; i < node.min; i++) generate(node.item);
        if (node.max === Infinity) {
          const loop = split();
          generate(node.item);
          emit({ op: 'jump', to: loop });
          patchSplit(loop, loop + 1, code.length, node.greedy);
          return;
        }
        const optional: number[] = [];
        for (let i = node.min; i < node.max; i++) {
          optional.push(split());
          generate(node.item);
        }
        for (const fork of optional) patchSplit(fork, fork + 1, code.length, node.greedy);
        return;
      }
    }
  };
  generate(pattern);
  emit({ op: 'match' });
  const instructions = code as Instruction[];
  return { instructions, firstBytes: firstBytes(instructions) };
}

function firstBytes(instructions: readonly Instruction[]): ByteSet {
  const set = new Uint8Array(256);
  const seen = new Uint8Array(instructions.length);
  const pending = [0];
  while (pending.length > 0) {
    const pc = pending.pop()!;
    if (seen[pc]) continue;
    seen[pc] = 1;
    const instruction = instructions[pc]!;
    if (instruction.op === 'byte') instruction.set.forEach((bit, byte) => (set[byte] ||= bit));
    else if (instruction.op === 'split') pending.push(instruction.preferred, instruction.other);
    else if (instruction.op === 'jump') pending.push(instruction.to);
    else if (instruction.op === 'assert') pending.push(pc + 1);
    else set.fill(1); // an empty match can start before any byte
  }
  return set;
}

const isWord = (data: Uint8Array, index: number) =>
  index >= 0 && index < data.length && (isAsciiAlphanumeric(data[index]!) || data[index] === 0x5f);

function assertionHolds(at: Extract<Instruction, { op: 'assert' }>['at'], data: Uint8Array, position: number): boolean {
  switch (at) {
    case 'start':
      return position === 0;
    case 'end':
      return position === data.length;
    case 'wordBoundary':
      return isWord(data, position - 1) !== isWord(data, position);
    case 'notWordBoundary':
      return isWord(data, position - 1) === isWord(data, position);
  }
}

/** Ordered thread lists with O(1) membership per step, reused across calls on one program (the lazy DFA builds its states with one too). */
export class ThreadList {
  readonly pcs: Int32Array;
  length = 0;
  private readonly mark: Uint32Array;
  private readonly stack: Int32Array;
  private generation = 1;
  constructor(size: number) {
    this.pcs = new Int32Array(size);
    this.mark = new Uint32Array(size);
    this.stack = new Int32Array(2 * size + 1);
  }
  clear(): void {
    this.length = 0;
    if (++this.generation > 0xffffffff) {
      this.mark.fill(0); // the marks are 32-bit: start over before the counter wraps
      this.generation = 1;
    }
  }
  /**
   * Follows jumps, splits and assertions from `pc`, adding the consuming instructions reached in
   * priority order (depth first, preferred branch first; an explicit stack, as long chains of
   * optional repeats would overflow the call stack).
   */
  add(instructions: readonly Instruction[], pc: number, data: Uint8Array, position: number): void {
    const { stack, mark, generation } = this;
    let top = 0;
    stack[top++] = pc;
    while (top > 0) {
      const at = stack[--top]!;
      if (mark[at] === generation) continue;
      mark[at] = generation;
      const instruction = instructions[at]!;
      if (instruction.op === 'jump') stack[top++] = instruction.to;
      else if (instruction.op === 'split') {
        stack[top++] = instruction.other;
        stack[top++] = instruction.preferred;
      } else if (instruction.op === 'assert') {
        if (assertionHolds(instruction.at, data, position)) stack[top++] = at + 1;
      } else this.pcs[this.length++] = at;
    }
  }
}

export class PikeVm {
  private current: ThreadList;
  private next: ThreadList;
  constructor(readonly program: Program) {
    const size = program.instructions.length;
    this.current = new ThreadList(size);
    this.next = new ThreadList(size);
  }

  /**
   * Length of the preferred match starting at `start` (consuming at most MAX_MATCH_LENGTH
   * bytes), or -1. A zero-length match counts as none: YARA never reports empty matches.
   */
  matchAt(data: Uint8Array, start: number): number {
    const { instructions } = this.program;
    const end = Math.min(data.length, start + MAX_MATCH_LENGTH);
    let current = this.current;
    let next = this.next;
    current.clear();
    current.add(instructions, 0, data, start);
    let matched = -1;
    for (let position = start; current.length > 0; position++) {
      next.clear();
      for (let i = 0; i < current.length; i++) {
        const pc = current.pcs[i]!;
        const instruction = instructions[pc]!;
        if (instruction.op === 'match') {
          matched = position - start;
          break; // lower-priority threads can only give a less preferred match
        }
        if (position < end && instruction.op === 'byte' && instruction.set[data[position]!])
          next.add(instructions, pc + 1, data, position + 1);
      }
      [current, next] = [next, current];
    }
    return matched > 0 ? matched : -1;
  }

  /**
   * Marks every position where some match (of any length, from any start) ends, in one
   * unanchored pass: O(instructions x bytes). Starts with no end within reach need no attempt,
   * which keeps patterns that never match — the exponential-backtracking kind — linear.
   */
  matchEnds(data: Uint8Array): Uint8Array {
    const { instructions } = this.program;
    const ends = new Uint8Array(data.length + 1);
    let current = this.current;
    let next = this.next;
    current.clear();
    for (let position = 0; position <= data.length; position++) {
      current.add(instructions, 0, data, position);
      next.clear();
      for (let i = 0; i < current.length; i++) {
        const pc = current.pcs[i]!;
        const instruction = instructions[pc]!;
        if (instruction.op === 'match') ends[position] = 1;
        else if (position < data.length && instruction.op === 'byte' && instruction.set[data[position]!])
          next.add(instructions, pc + 1, data, position + 1);
      }
      [current, next] = [next, current];
    }
    return ends;
  }
}
