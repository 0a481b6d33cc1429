import { resolveChain } from './chains.js';
import type { CompiledString, JumpRange, LiteralVariant, ProgramVariant } from './compile.js';
import type { StringMatch } from './matchList.js';
import { isAsciiAlphanumeric, isAsciiLetter } from './pattern.js';
import { LazyDfa, UnanchoredEndsDfa } from './lazyDfa.js';
import { PikeVm } from './pikeVm.js';

/**
 * The per-offset rules of `yara -s`, shared by the reference matcher (which tries every offset)
 * and the scanner (which tries the offsets its atoms point at), so the two cannot drift apart.
 */

/** One variant of a string that matched at some start, with the length it matched. */
export interface VariantMatch {
  readonly variant: number;
  readonly length: number;
}

/** Whether a literal variant's bytes are at `start` of `data` (ASCII case folded for `nocase`). */
export function literalMatchesAt(variant: LiteralVariant, data: Uint8Array, start: number): boolean {
  const { bytes, caseInsensitive } = variant;
  if (start < 0 || start + bytes.length > data.length) return false;
  if (!caseInsensitive) {
    for (let i = 0; i < bytes.length; i++) if (data[start + i] !== bytes[i]) return false;
    return true;
  }
  for (let i = 0; i < bytes.length; i++) {
    const byte = data[start + i]!;
    if ((isAsciiLetter(byte) ? byte | 0x20 : byte) !== (isAsciiLetter(bytes[i]!) ? bytes[i]! | 0x20 : bytes[i]))
      return false;
  }
  return true;
}

/** Reused per program: a Pike VM holds thread lists sized to its program, a lazy DFA the states it has built. */
const machines = new WeakMap<ProgramVariant, PikeVm>();
const anchoredMatchers = new WeakMap<ProgramVariant, { matchAt(data: Uint8Array, start: number): number }>();

function pikeVmFor(variant: ProgramVariant): PikeVm {
  let vm = machines.get(variant);
  if (!vm) machines.set(variant, (vm = new PikeVm(variant.program)));
  return vm;
}

const endsFinders = new WeakMap<ProgramVariant, UnanchoredEndsDfa>();

/** Positions (ascending) where some match of the program ends: the unanchored DFA where the program allows it, the Pike VM otherwise. */
export function matchEndPositions(variant: ProgramVariant, data: Uint8Array): Int32Array {
  if (!LazyDfa.supports(variant.program)) {
    const marks = pikeVmFor(variant).matchEnds(data);
    return Int32Array.from(marks.keys()).filter((position) => marks[position] === 1);
  }
  let finder = endsFinders.get(variant);
  if (!finder) endsFinders.set(variant, (finder = new UnanchoredEndsDfa([variant.program])));
  return finder.matchEnds(data)[0]!;
}

/** Length of the program's preferred match at `start`, or -1: the lazy DFA where the program allows it, the Pike VM otherwise. */
export function programMatchAt(variant: ProgramVariant, data: Uint8Array, start: number): number {
  let matcher = anchoredMatchers.get(variant);
  if (!matcher)
    anchoredMatchers.set(
      variant,
      (matcher = LazyDfa.supports(variant.program) ? new LazyDfa(variant.program) : pikeVmFor(variant)),
    );
  return matcher.matchAt(data, start);
}

/**
 * Every start in `[from, to)` where a program variant matches, with its length: the search for
 * patterns without an atom, which must try every offset. One unanchored pass marks where matches
 * end, so a start with no end within reach costs nothing (this keeps regexes that would
 * backtrack exponentially linear).
 */
export function* programMatchesIn(
  variant: ProgramVariant,
  data: Uint8Array,
  from = 0,
  to = data.length,
): Generator<[number, number]> {
  yield* programMatchesBeforeEnds(variant, data, matchEndPositions(variant, data), from, to);
}

/**
 * programMatchesIn given where the program's matches end (`ends`, ascending, as
 * matchEndPositions gives them): only starts with an end within reach are tried, and the
 * stretches with none are skipped at once.
 */
export function* programMatchesBeforeEnds(
  variant: ProgramVariant,
  data: Uint8Array,
  ends: Int32Array,
  from = 0,
  to = data.length,
): Generator<[number, number]> {
  const { firstBytes } = variant.program;
  let next = 0; // index in ends of the first end after `start`
  for (let start = from; start < to; start++) {
    while (next < ends.length && ends[next]! <= start) next++;
    if (next === ends.length) return;
    const end = ends[next]!;
    // A match is at most maxLength bytes: starts further from the next end than that cannot match.
    if (end > start + variant.maxLength) {
      start = end - variant.maxLength - 1; // the next start with this end in reach
      continue;
    }
    if (!firstBytes[data[start]!]) continue;
    const length = programMatchAt(variant, data, start);
    if (length > 0) yield [start, length];
  }
}

/**
 * The length `yara -s` reports for the string at data index `start`, given the variants that
 * matched there in variant order (ascii before wide, lower xor key first), or undefined when the
 * offset is not reported. The first variant whose match passes `fullword` and the fixed offset
 * wins; a regex (`firstFormOnly`) only ever tries its first matching form.
 */
export function acceptMatch(
  string: CompiledString,
  data: Uint8Array,
  base: number,
  start: number,
  matched: readonly VariantMatch[],
): number | undefined {
  if (string.fixedOffset !== undefined && base + start !== string.fixedOffset) return undefined;
  for (const { variant, length } of matched) {
    if (!string.fullword || isFullWord(data, start, length, string.variants[variant]!.wide)) return length;
    if (string.firstFormOnly) return undefined;
  }
  return undefined;
}

/** A chained string's matches from its parts' matches (chains.ts), kept only at its fixed offset if it has one. */
export function chainMatches(
  string: CompiledString,
  parts: ReadonlyArray<readonly StringMatch[]>,
  gaps: readonly JumpRange[],
): StringMatch[] {
  const matches = resolveChain(parts, gaps);
  return string.fixedOffset === undefined ? matches : matches.filter((match) => match.offset === string.fixedOffset);
}

/**
 * YARA's `fullword`: no ASCII letter or digit right before or after the match (for wide
 * strings, no letter-or-digit followed by a zero byte before, nor one after).
 */
function isFullWord(data: Uint8Array, start: number, length: number, wide: boolean): boolean {
  const alphanumericAt = (index: number) => index >= 0 && index < data.length && isAsciiAlphanumeric(data[index]!);
  const end = start + length;
  if (wide)
    return (
      !(start >= 2 && data[start - 1] === 0 && alphanumericAt(start - 2)) &&
      !(end + 1 < data.length && data[end + 1] === 0 && alphanumericAt(end))
    );
  return !alphanumericAt(start - 1) && !alphanumericAt(end);
}
