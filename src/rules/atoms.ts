import { TYPICAL_BYTE_FREQUENCY } from '../kernels/byteFrequency.js';
import { MAX_MATCH_LENGTH, lengthBounds, onlyByte, otherCase, type ByteSet, type PatternNode } from './pattern.js';

/**
 * A short fixed substring every match of a pattern contains at a known distance from the
 * match's start: the prefilter looks for atoms, and only their hits get verified.
 */
export interface Atom {
  readonly bytes: Uint8Array;
  /** Where the atom sits inside the match: at least `offset` bytes in, at most `maxOffset`. */
  readonly offset: number;
  /** Equal to `offset` unless a jump or a variable repeat comes before the atom. */
  readonly maxOffset: number;
  /** ASCII letters in `bytes` (stored lower-case) match either case. */
  readonly caseInsensitive: boolean;
}

/** The longest atom considered: four bytes make a 32-bit compare in the kernel. */
const MAX_ATOM_LENGTH = 4;

/** One byte of a fixed run: a value, and whether its other case is accepted too. */
interface FixedByte {
  readonly value: number;
  readonly eitherCase: boolean;
}

/** log of how likely a byte is at a random position of guest memory; lower is rarer. */
function logLikelihood(byte: FixedByte): number {
  const frequency =
    TYPICAL_BYTE_FREQUENCY[byte.value]! +
    (byte.eitherCase && otherCase(byte.value) !== byte.value ? TYPICAL_BYTE_FREQUENCY[otherCase(byte.value)]! : 0);
  return Math.log(Math.max(frequency, 1) / 1e6);
}

/**
 * The cheapest window of up to MAX_ATOM_LENGTH fixed bytes among the runs: scored by the product
 * of the bytes' frequencies in memory (so a run of zeros, the commonest byte, loses to any rarer
 * window, prefix or not) times the number of match starts an occurrence leaves to try (so `ab*c`
 * is found from its `a`, not from a `c` that may sit up to 4 KiB after the start).
 */
function rarestWindow(
  runs: ReadonlyArray<{ start: number; maxStart: number; bytes: readonly FixedByte[] }>,
): Atom | undefined {
  let best: { run: (typeof runs)[number]; at: number; width: number; score: number } | undefined;
  for (const run of runs) {
    // Prefix sums of the bytes' log-likelihoods: each window's rarity in O(1), for rule files of 100k+ strings.
    const rarity = new Float64Array(run.bytes.length + 1);
    run.bytes.forEach((byte, index) => (rarity[index + 1] = rarity[index]! + logLikelihood(byte)));
    const startsPerOccurrence = Math.log(run.maxStart - run.start + 1);
    // Shorter windows never score better on rarity alone; they are there for when the longest ones start 00 00.
    for (let width = Math.min(MAX_ATOM_LENGTH, run.bytes.length); width >= 1; width--) {
      for (let at = 0; at + width <= run.bytes.length; at++) {
        // Expected verifications per scanned byte: how often the atom occurs times how many starts each occurrence implies.
        const score =
          rarity[at + width]! -
          rarity[at]! +
          startsPerOccurrence +
          (startsWithZeroPair(run.bytes, at, width) ? ZERO_PAIR_PENALTY : 0);
        if (!best || score < best.score) best = { run, at, width, score };
      }
    }
  }
  if (!best) return undefined;
  const { run, at, width } = best;
  const window = run.bytes.slice(at, at + width);
  const caseInsensitive = window.some((byte) => byte.eitherCase);
  const bytes = Uint8Array.from(window, (byte) =>
    caseInsensitive && byte.eitherCase ? byte.value | 0x20 : byte.value,
  );
  return { bytes, offset: run.start + at, maxOffset: run.maxStart + at, caseInsensitive };
}

/**
 * An atom starting 00 00 (or the single byte 00, which starts every 00 xx pair) costs the atom filter its zero-page skip for every atom it holds, the
 * scan then visiting each byte of the mostly-zero dump: such a window is taken only when nothing
 * else is left (a pattern of zeros).
 */
const ZERO_PAIR_PENALTY = 1000;

function startsWithZeroPair(bytes: readonly FixedByte[], at: number, width: number): boolean {
  return bytes[at]!.value === 0 && (width === 1 || bytes[at + 1]!.value === 0);
}

/**
 * Expected verifications per scanned byte an atom causes: how often it occurs in typical memory
 * times how many match starts each occurrence leaves to try.
 */
export function atomVerificationRate(atom: Atom): number {
  const likelihood = Array.from(atom.bytes, (value) =>
    logLikelihood({ value, eitherCase: atom.caseInsensitive && otherCase(value) !== value }),
  ).reduce((sum, log) => sum + log, 0);
  return Math.exp(likelihood) * (atom.maxOffset - atom.offset + 1);
}

/**
 * Above this rate an atom floods verification (a lone 00 byte, one letter that may sit anywhere
 * in 4 KiB): one pass of the pattern's unanchored DFA over the data costs less than verifying
 * from every hit, and the atom would also cost the prefilter its zero-page skip. Hyperscan and
 * YARA-X make the same trade: a literal factor too weak to filter leaves the pattern to the
 * automaton.
 */
export const WEAK_ATOM_RATE = 1 / 64;

/** Atom of a literal string; `caseInsensitive` for `nocase`. */
export function literalAtom(bytes: Uint8Array, caseInsensitive: boolean): Atom {
  const fixed = Array.from(bytes, (value) => ({ value, eitherCase: caseInsensitive && otherCase(value) !== value }));
  return rarestWindow([{ start: 0, maxStart: 0, bytes: fixed }])!;
}

/** A byte set as a fixed byte: one value, or one ASCII letter in either case. */
function asFixedByte(set: ByteSet): FixedByte | undefined {
  const value = onlyByte(set);
  if (value !== undefined) return { value, eitherCase: false };
  const first = set.indexOf(1);
  if (first < 0 || otherCase(first) === first || !set[otherCase(first)]) return undefined;
  const members = set.reduce((count, bit) => count + bit, 0);
  return members === 2 ? { value: first, eitherCase: true } : undefined;
}

/** Copies of a repeated item spelled out by flatten: enough for a full atom from `x{4}` or `\x00{2,}`. */
const UNROLLED_REPEATS = MAX_ATOM_LENGTH;

/**
 * The top-level sequence of a pattern. A repeat's mandatory copies are spelled out (up to
 * UNROLLED_REPEATS, the rest staying a repeat) so `z{4}` offers the atom "zzzz" instead of
 * leaving the pattern without one.
 */
function flatten(node: PatternNode): PatternNode[] {
  if (node.kind === 'concat') return node.items.flatMap(flatten);
  if (node.kind !== 'repeat' || node.min === 0) return [node];
  const unrolled = Math.min(node.min, UNROLLED_REPEATS);
  const copies = Array.from({ length: unrolled }, () => flatten(node.item)).flat();
  const rest = node.max - unrolled;
  return rest === 0 ? copies : [...copies, { ...node, min: node.min - unrolled, max: rest }];
}

/**
 * The atom of a hex or regex pattern, from the fixed runs of its top-level sequence: a wildcard,
 * class, alternation or jump ends a run, and a jump or variable repeat widens the range of
 * distances at which later runs sit from the match start (a match is at most MAX_MATCH_LENGTH
 * bytes, which bounds unbounded jumps); see rarestWindow for the choice among runs. Undefined
 * when no byte is fixed: such a pattern must be tried at every offset.
 */
export function patternAtom(pattern: PatternNode): Atom | undefined {
  const runs: Array<{ start: number; maxStart: number; bytes: FixedByte[] }> = [];
  let offset = { min: 0, max: 0 };
  let run: (typeof runs)[number] | undefined;
  for (const element of flatten(pattern)) {
    const fixed = element.kind === 'byte' ? asFixedByte(element.set) : undefined;
    if (fixed) {
      if (!run) runs.push((run = { start: offset.min, maxStart: offset.max, bytes: [] }));
      run.bytes.push(fixed);
    } else run = undefined;
    const bounds = lengthBounds(element);
    offset = { min: offset.min + bounds.min, max: Math.min(MAX_MATCH_LENGTH, offset.max + bounds.max) };
    if (offset.min >= MAX_MATCH_LENGTH) break;
  }
  return rarestWindow(runs);
}

/** Options of an alternation whose atoms are searched together; past this many the pattern is left to the automaton. */
const MAX_ALTERNATION_ATOMS = 64;

/**
 * Atoms of a pattern without a single useful one: one per option of a top-level alternation,
 * each at its distance from the match start, so every match holds one of them (as YARA's atom
 * tree and YARA-X choose a literal per branch). Among several alternations the one whose atoms
 * cost the fewest verifications together is taken; undefined when some option has no useful atom
 * (say, one that may match nothing) or together they would flood verification.
 */
export function alternationAtoms(pattern: PatternNode): Atom[] | undefined {
  let best: { atoms: Atom[]; rate: number } | undefined;
  let offset = { min: 0, max: 0 };
  for (const element of flatten(pattern)) {
    if (element.kind === 'alternation') {
      const atoms = optionAtoms(element.options, offset);
      const rate = atoms?.reduce((sum, atom) => sum + atomVerificationRate(atom), 0) ?? Infinity;
      if (atoms && rate <= WEAK_ATOM_RATE && (!best || rate < best.rate)) best = { atoms, rate };
    }
    const bounds = lengthBounds(element);
    offset = { min: offset.min + bounds.min, max: Math.min(MAX_MATCH_LENGTH, offset.max + bounds.max) };
    if (offset.min >= MAX_MATCH_LENGTH) break;
  }
  return best?.atoms;
}

/** An atom for each option (its own, or its own alternation's), shifted by where the alternation sits. */
function optionAtoms(options: readonly PatternNode[], at: { min: number; max: number }): Atom[] | undefined {
  const atoms: Atom[] = [];
  for (const option of options) {
    const single = patternAtom(option);
    const found = single && atomVerificationRate(single) <= WEAK_ATOM_RATE ? [single] : alternationAtoms(option);
    if (!found || atoms.length + found.length > MAX_ALTERNATION_ATOMS) return undefined;
    for (const atom of found)
      atoms.push({
        ...atom,
        offset: at.min + atom.offset,
        maxOffset: Math.min(MAX_MATCH_LENGTH, at.max + atom.maxOffset),
      });
  }
  return atoms;
}
