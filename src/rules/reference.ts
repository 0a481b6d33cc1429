import type { CompiledRules, CompiledString, LiteralVariant, ProgramVariant } from './compile.js';
import { evaluateCondition, type StringMatch } from './condition.js';
import { MAX_MATCH_LENGTH, isAsciiAlphanumeric, isAsciiLetter } from './pattern.js';
import { PikeVm } from './pikeVm.js';

/** One reported string match, as one `0xOFFSET:$id: data` line of `yara -s`. */
export interface RuleStringMatch {
  readonly rule: string;
  readonly string: string;
  readonly offset: number;
  readonly length: number;
}

export interface RuleMatch {
  readonly rule: string;
  readonly tags: readonly string[];
  /** Matches of the rule's non-private strings, string by string (rule order), each by offset. */
  readonly strings: readonly RuleStringMatch[];
}

export interface MatchOptions {
  /** Added to every reported offset, and to the offsets conditions see (default 0). */
  base?: number;
  /** What `filesize` evaluates to (default: the data's length). */
  filesize?: number;
}

/**
 * The pure-TypeScript oracle: every rule of `rules` against `data`, with `yara -s` semantics.
 * Each string reports every start offset where it matches, once (the first variant's match —
 * ascii before wide, lower xor key first — with the length its quantifiers prefer); the matching
 * rules are those whose condition holds, unless a global rule fails (then none); private rules
 * and private strings are evaluated but not reported. Straightforward rather than fast: each
 * candidate offset is verified on its own.
 *
 * Where yara's answer depends on the atoms it picked, this follows the pattern instead. The
 * corpus in test/rules stays clear of these cases; differential runs against yara 4.2 over
 * random rules and data found no other difference (text and hex strings with every modifier,
 * regexes without alternation, lengths included):
 * - Alternatives that can match at one start (`/(ab|a)/`, `{ ( 00 41 62 | 00 ) }`): yara
 *   verifies each alternative from its own atom and keeps the first verified, so the length
 *   it prints (and, with `fullword`, whether the offset is kept) can differ; here the
 *   alternative order decides, as in a backtracking engine.
 * - `fullword` on a regex with a variable-length part before yara's atom (`/\w*a/`): yara tries
 *   the matches ending at each atom occurrence in turn and keeps the first that passes (`b0A`
 *   in `b0A_a0Ab`); here only the preferred match (`b0A_a0A`) is checked.
 * - `ascii wide` regexes whose atom is not at their start: yara picks the form at the atom, so
 *   it misses wide matches whose ascii form matches from the atom on (`/\wa/` on "0\0a\0").
 */
export function matchReference(rules: CompiledRules, data: Uint8Array, options: MatchOptions = {}): RuleMatch[] {
  const base = options.base ?? 0;
  const filesize = BigInt(options.filesize ?? data.length);
  const ruleResults: boolean[] = [];
  const reports: RuleMatch[] = [];
  for (const rule of rules.rules) {
    const matches = rule.strings.map((string) => stringMatches(string, data, base));
    const satisfied = evaluateCondition(rule.condition, { matches, filesize, ruleResults });
    ruleResults.push(satisfied);
    if (!satisfied || rule.isPrivate) continue;
    const strings = rule.strings.flatMap((string, i) => (string.isPrivate ? [] : matches[i]!.map((match) => ({ rule: rule.name, string: string.id, ...match }))));
    reports.push({ rule: rule.name, tags: rule.tags, strings });
  }
  const globalFailed = rules.rules.some((rule, i) => rule.isGlobal && !ruleResults[i]);
  return globalFailed ? [] : reports;
}

/** Every match of one string, sorted by offset, one per start offset. */
export function stringMatches(string: CompiledString, data: Uint8Array, base = 0): StringMatch[] {
  const lengths = new Map<number, number>();
  const tried = new Set<number>();
  for (const variant of string.variants) {
    const found = variant.kind === 'literal' ? literalMatches(variant, data) : programMatches(variant, data);
    for (const [index, length] of found) {
      if (lengths.has(index) || (string.firstFormOnly && tried.has(index))) continue;
      tried.add(index);
      if (string.fixedOffset !== undefined && base + index !== string.fixedOffset) continue;
      if (string.fullword && !isFullWord(data, index, length, variant.wide)) continue;
      lengths.set(index, length);
    }
  }
  return [...lengths].sort((a, b) => a[0] - b[0]).map(([index, length]) => ({ offset: base + index, length }));
}

function* literalMatches(variant: LiteralVariant, data: Uint8Array): Generator<[number, number]> {
  const { bytes, caseInsensitive } = variant;
  const fold = (byte: number) => (caseInsensitive && isAsciiLetter(byte) ? byte | 0x20 : byte);
  const pattern = bytes.map(fold);
  for (let start = 0; start + bytes.length <= data.length; start++) {
    let i = 0;
    while (i < bytes.length && fold(data[start + i]!) === pattern[i]) i++;
    if (i === bytes.length) yield [start, bytes.length];
  }
}

function* programMatches(variant: ProgramVariant, data: Uint8Array): Generator<[number, number]> {
  const vm = new PikeVm(variant.program);
  const { firstBytes } = variant.program;
  // endsBefore[i]: how many positions < i end some match; a start needs one in (start, start + limit].
  const ends = vm.matchEnds(data);
  const endsBefore = new Uint32Array(ends.length + 1);
  for (let i = 0; i < ends.length; i++) endsBefore[i + 1] = endsBefore[i]! + ends[i]!;
  for (let start = 0; start < data.length; start++) {
    if (!firstBytes[data[start]!]) continue;
    const reach = Math.min(data.length, start + MAX_MATCH_LENGTH);
    if (endsBefore[reach + 1] === endsBefore[start + 1]) continue;
    const length = vm.matchAt(data, start);
    if (length > 0) yield [start, length];
  }
}

/**
 * YARA's `fullword`: no ASCII letter or digit right before or after the match (for wide
 * strings, no letter-or-digit followed by a zero byte before, nor one after).
 */
function isFullWord(data: Uint8Array, start: number, length: number, wide: boolean): boolean {
  const alphanumericAt = (index: number) => index >= 0 && index < data.length && isAsciiAlphanumeric(data[index]!);
  const end = start + length;
  if (wide) return !(start >= 2 && data[start - 1] === 0 && alphanumericAt(start - 2)) && !(end + 1 < data.length && data[end + 1] === 0 && alphanumericAt(end));
  return !alphanumericAt(start - 1) && !alphanumericAt(end);
}
