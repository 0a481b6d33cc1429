import { MAX_MATCH_LENGTH } from './pattern.js';
import { ThreadList, type Instruction, type Program } from './pikeVm.js';

const NO_INPUT = new Uint8Array(0);

/** States kept per program before the cache starts over: bounds memory at ~1 KiB per state. */
const MAX_STATES = 4096;

/**
 * States kept by every anchored DFA together (~1 KiB each): a rule set has thousands of programs,
 * and 4,096 states each would take gigabytes. A DFA that needs a state past the budget starts
 * its own cache over (answers stay exact; only speed depends on the cache).
 */
const GLOBAL_STATE_BUDGET = 16_384;
let liveStates = 0;

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
  private readonly threads: ThreadList;
  private resets = 0;

  constructor(
    private readonly program: Program,
    private readonly maxStates = MAX_STATES,
  ) {
    this.threads = new ThreadList(program.instructions.length);
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
    if ((this.states.length >= this.maxStates || liveStates >= GLOBAL_STATE_BUDGET) && !this.index.has(closure.key))
      this.reset();
    return this.intern(closure);
  }

  /** Forgets every state but keeps answering: a pattern with more states than the cap just computes more. */
  private reset(): void {
    const start = this.states[this.startState]!;
    this.resets++;
    liveStates -= this.states.length;
    this.states = [];
    this.index = new Map();
    this.startState = this.intern({
      pcs: start.pcs,
      hasMatch: start.hasMatch,
      key: stateKey(start.pcs, start.hasMatch),
    });
  }

  /**
   * The VM's own epsilon closure (ThreadList.add, in priority order) from each of `entries`, cut
   * after the first `match`: the threads below it are the ones the VM drops when it matches.
   */
  private closure(entries: readonly number[]): { pcs: Int32Array; hasMatch: boolean; key: string } {
    const { instructions } = this.program;
    const threads = this.threads;
    threads.clear();
    // No assertion is reached (supports() refuses them), so the input the closure sees is irrelevant.
    for (const entry of entries) threads.add(instructions, entry, NO_INPUT, 0);
    const all = threads.pcs.subarray(0, threads.length);
    const matchAt = all.findIndex((pc) => instructions[pc]!.op === 'match');
    const pcs = matchAt < 0 ? Int32Array.from(all) : all.slice(0, matchAt);
    const hasMatch = matchAt >= 0;
    return { pcs, hasMatch, key: stateKey(pcs, hasMatch) };
  }

  private intern(state: { pcs: Int32Array; hasMatch: boolean; key: string }): number {
    let id = this.index.get(state.key);
    if (id === undefined) {
      id = this.states.length;
      liveStates++;
      this.states.push({ pcs: state.pcs, hasMatch: state.hasMatch, next: new Int32Array(256).fill(-1) });
      this.index.set(state.key, id);
    }
    return id;
  }
}

function stateKey(pcs: Int32Array, hasMatch: boolean): string {
  return `${hasMatch ? 'm' : ''}${pcs.join(',')}`;
}

/**
 * Where matches end, from any start, for several programs in one pass (Hyperscan's idea: one
 * automaton for every pattern that has no literal to search for): the Pike VM's unanchored
 * matchEnds as a lazily built DFA over the programs' instructions side by side, a fresh thread
 * of each program entering at every position. A state is the set of live instructions, so each
 * input byte costs one lookup in a flat table for all the programs together. Programs with
 * assertions need the input around each position and stay on the VM (LazyDfa.supports).
 */
export class UnanchoredEndsDfa {
  /** Every program's instructions, renumbered side by side. */
  private readonly instructions: Instruction[] = [];
  /** Where each program starts in `instructions`. */
  private readonly starts: number[] = [];
  /** Which program a `match` instruction ends, by pc (-1 elsewhere). */
  private readonly owner: Int32Array;
  /** Live byte instructions of each state. */
  private pcs: Int32Array[] = [];
  /** transitions[state * 256 + byte]: the next state, -1 until computed (one flat table: one lookup per byte). */
  private transitions = new Int32Array(256 * 4).fill(-1);
  /** The programs a state ends a match of, or undefined for none. */
  private accepting: Array<readonly number[] | undefined> = [];
  private index = new Map<string, number>();
  private readonly threads: ThreadList;

  constructor(
    programs: readonly Program[],
    private readonly maxStates = MAX_STATES,
  ) {
    for (const program of programs) {
      const base = this.instructions.length;
      this.starts.push(base);
      for (const instruction of program.instructions) {
        if (instruction.op === 'split')
          this.instructions.push({
            op: 'split',
            preferred: instruction.preferred + base,
            other: instruction.other + base,
          });
        else if (instruction.op === 'jump') this.instructions.push({ op: 'jump', to: instruction.to + base });
        else this.instructions.push(instruction);
      }
    }
    this.owner = new Int32Array(this.instructions.length).fill(-1);
    programs.forEach((program, which) =>
      program.instructions.forEach(
        (instruction, pc) => instruction.op === 'match' && (this.owner[this.starts[which]! + pc] = which),
      ),
    );
    this.threads = new ThreadList(this.instructions.length);
    this.intern([]);
  }

  /**
   * For each program, the positions (ascending) where one of its matches ends, as PikeVm.matchEnds
   * marks them, for the matches starting in data[from, to) and ending by `to`.
   */
  matchEnds(data: Uint8Array, from = 0, to = data.length): Int32Array[] {
    const ends = this.starts.map(() => new GrowingPositions());
    let state = 0;
    let transitions = this.transitions;
    const zeroRuns = new ZeroRuns(data);
    for (let position = from; ; position++) {
      const ended = this.accepting[state];
      if (ended !== undefined) for (const which of ended) ends[which]!.push(position);
      if (position >= to) break;
      const byte = data[position]!;
      let next = transitions[state * 256 + byte]!;
      if (byte === 0 && next === state && ended === undefined) {
        // Zeros keep this state and end nothing: jump the run (dumps are mostly zero pages); the loop resumes on its last zero.
        position = Math.min(zeroRuns.nextNonZero(position + 1), to) - 1;
        continue;
      }
      if (next < 0) {
        if (this.pcs.length >= this.maxStates) state = this.reset(state);
        next = this.step(state, byte);
        transitions = this.transitions;
        transitions[state * 256 + byte] = next;
      }
      state = next;
    }
    return ends.map((positions) => positions.toArray());
  }

  private step(state: number, byte: number): number {
    const targets: number[] = [];
    for (const pc of this.pcs[state]!) {
      const instruction = this.instructions[pc]!;
      if (instruction.op === 'byte' && instruction.set[byte]) targets.push(pc + 1);
    }
    return this.intern(targets);
  }

  /** Forgets every state but the start and `state` (renumbered 0 and 1): bounded memory whatever the patterns. */
  private reset(state: number): number {
    const kept = this.pcs[state]!;
    this.pcs = [];
    this.accepting = [];
    this.index = new Map();
    this.transitions.fill(-1);
    this.intern([]);
    return this.intern(Array.from(kept));
  }

  /** The state for threads at `entries` plus a new thread at each program's start. */
  private intern(entries: readonly number[]): number {
    const { instructions, threads } = this;
    threads.clear();
    for (const entry of entries) threads.add(instructions, entry, NO_INPUT, 0);
    // Only threads that consumed input end a match here: an empty match (`/a|/` at every position) is never one.
    const afterInput = Array.from(threads.pcs.subarray(0, threads.length));
    for (const start of this.starts) threads.add(instructions, start, NO_INPUT, 0);
    const all = Array.from(threads.pcs.subarray(0, threads.length));
    const ended = [
      ...new Set(afterInput.filter((pc) => instructions[pc]!.op === 'match').map((pc) => this.owner[pc]!)),
    ].sort((a, b) => a - b);
    const pcs = Int32Array.from(all.filter((pc) => instructions[pc]!.op === 'byte').sort((a, b) => a - b));
    const key = `${ended.join(',')}|${pcs.join(',')}`;
    let id = this.index.get(key);
    if (id !== undefined) return id;
    id = this.pcs.length;
    this.pcs.push(pcs);
    this.accepting.push(ended.length > 0 ? ended : undefined);
    this.index.set(key, id);
    if ((id + 1) * 256 > this.transitions.length) {
      const transitions = new Int32Array(this.transitions.length * 2).fill(-1);
      transitions.set(this.transitions);
      this.transitions = transitions;
    }
    return id;
  }
}

/** An append-only list of positions without a JS array's per-element cost. */
class GrowingPositions {
  private values = new Int32Array(16);
  private length = 0;

  push(value: number): void {
    if (this.length === this.values.length) {
      const grown = new Int32Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = value;
  }

  /** The positions pushed, as a view (not a copy: a pattern ending at every byte fills one the size of the window). */
  toArray(): Int32Array {
    return this.values.subarray(0, this.length);
  }
}

/** Finds the end of a run of zero bytes four bytes at a time. */
class ZeroRuns {
  private readonly words: Int32Array | undefined;

  constructor(private readonly data: Uint8Array) {
    const aligned = data.byteOffset % 4 === 0;
    this.words = aligned ? new Int32Array(data.buffer, data.byteOffset, data.length >> 2) : undefined;
  }

  /** The first position at or after `from` holding a non-zero byte, or the data's length. */
  nextNonZero(from: number): number {
    const { data, words } = this;
    let at = from;
    if (words) {
      while (at < data.length && at % 4 !== 0 && data[at] === 0) at++;
      if (at % 4 === 0) {
        let word = at >> 2;
        while (word < words.length && words[word] === 0) word++;
        at = word << 2;
      }
    }
    while (at < data.length && data[at] === 0) at++;
    return at;
  }
}
