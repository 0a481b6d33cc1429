import { MAX_MATCH_LENGTH } from './pattern.js';
import type { Program } from './pikeVm.js';

/** States kept per program before the cache starts over: bounds memory at ~1 KiB per state. */
const MAX_STATES = 4096;

interface DfaState {
  /** Byte-consuming instructions in priority order, those below a reachable `match` cut off. */
  readonly pcs: Int32Array;
  /** A `match` is reachable here: a match ends at this position (unless a higher-priority thread goes on to a longer preferred one). */
  readonly hasMatch: boolean;
  /** Next state per input byte, -1 until computed. */
  readonly next: Int32Array;
}

/**
 * The Pike VM's anchored matchAt as a lazily built DFA (RE2's idea): a state is the Pike VM's
 * ordered thread list, cut after the first thread that reaches `match` exactly where the VM
 * stops looking, so each input byte costs one table lookup once its transition is known,
 * instead of a walk over every live thread. The answer (length of the preferred match) is the
 * VM's by construction. Programs with assertions (`^`, `$`, `\b`) need the input around each
 * position and stay on the VM (see `supports`).
 */
export class LazyDfa {
  private states: DfaState[] = [];
  private index = new Map<string, number>();
  private startState: number;
  private readonly marks: Uint32Array;
  private readonly stack: Int32Array;
  private generation = 0;
  private resets = 0;

  constructor(
    private readonly program: Program,
    private readonly maxStates = MAX_STATES,
  ) {
    this.marks = new Uint32Array(program.instructions.length);
    this.stack = new Int32Array(2 * program.instructions.length + 1);
    this.startState = this.intern(this.closure([0]));
  }

  static supports(program: Program): boolean {
    return program.instructions.every((instruction) => instruction.op !== 'assert');
  }

  /** Length of the preferred match starting at `start` (at most MAX_MATCH_LENGTH bytes), or -1; as PikeVm.matchAt. */
  matchAt(data: Uint8Array, start: number): number {
    const end = Math.min(data.length, start + MAX_MATCH_LENGTH);
    let state = this.startState;
    let matched = -1;
    for (let position = start; ; position++) {
      const current = this.states[state]!;
      if (current.hasMatch) matched = position - start;
      if (current.pcs.length === 0 || position >= end) break;
      const byte = data[position]!;
      let next = current.next[byte]!;
      if (next < 0) {
        const resets = this.resets;
        next = this.step(current, byte);
        if (this.resets === resets) current.next[byte] = next; // after a reset `next` numbers the new cache's states
      }
      state = next;
    }
    return matched > 0 ? matched : -1;
  }

  /** The state after `current` consumes `byte`. */
  private step(current: DfaState, byte: number): number {
    const { instructions } = this.program;
    const targets: number[] = [];
    for (const pc of current.pcs) {
      const instruction = instructions[pc]!;
      if (instruction.op === 'byte' && instruction.set[byte]) targets.push(pc + 1);
    }
    const closure = this.closure(targets);
    if (this.states.length >= this.maxStates && !this.index.has(closure.key)) this.reset();
    return this.intern(closure);
  }

  /** Forgets every state but keeps answering: a pattern with more states than the cap just computes more. */
  private reset(): void {
    const start = this.states[this.startState]!;
    this.resets++;
    this.states = [];
    this.index = new Map();
    this.startState = this.intern({ pcs: start.pcs, hasMatch: start.hasMatch, key: stateKey(start.pcs, start.hasMatch) });
  }

  /**
   * Follows jumps and splits from each of `entries` in order (depth first, preferred branch
   * first, as the VM's ThreadList.add), keeping consuming instructions until a `match` is reached.
   */
  private closure(entries: readonly number[]): { pcs: Int32Array; hasMatch: boolean; key: string } {
    const { instructions } = this.program;
    const { marks, stack } = this;
    if (++this.generation > 0xffffffff) {
      marks.fill(0);
      this.generation = 1;
    }
    const generation = this.generation;
    const pcs: number[] = [];
    let hasMatch = false;
    for (const entry of entries) {
      let top = 0;
      stack[top++] = entry;
      while (top > 0 && !hasMatch) {
        const pc = stack[--top]!;
        if (marks[pc] === generation) continue;
        marks[pc] = generation;
        const instruction = instructions[pc]!;
        if (instruction.op === 'jump') stack[top++] = instruction.to;
        else if (instruction.op === 'split') {
          stack[top++] = instruction.other;
          stack[top++] = instruction.preferred;
        } else if (instruction.op === 'match') hasMatch = true;
        else pcs.push(pc);
      }
      if (hasMatch) break;
    }
    const packed = Int32Array.from(pcs);
    return { pcs: packed, hasMatch, key: stateKey(packed, hasMatch) };
  }

  private intern(state: { pcs: Int32Array; hasMatch: boolean; key: string }): number {
    let id = this.index.get(state.key);
    if (id === undefined) {
      id = this.states.length;
      this.states.push({ pcs: state.pcs, hasMatch: state.hasMatch, next: new Int32Array(256).fill(-1) });
      this.index.set(state.key, id);
    }
    return id;
  }
}

function stateKey(pcs: Int32Array, hasMatch: boolean): string {
  return `${hasMatch ? 'm' : ''}${pcs.join(',')}`;
}
