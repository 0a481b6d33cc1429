import type { CompiledRules, CompiledString, LiteralVariant, ProgramVariant } from './compile.js';
import { matchListOf, type StringMatch } from './matchList.js';
import { evaluateRules, type RuleMatch } from './evaluate.js';
import { bufferUnit } from './unit.js';
import { acceptMatch, chainMatches, literalMatchesAt, programMatchesIn, type VariantMatch } from './verify.js';

export type { RuleMatch, RuleStringMatch } from './evaluate.js';

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
  const matches = rules.rules.map((rule) =>
    rule.strings.map((string) => matchListOf(stringMatches(string, data, base))),
  );
  const filesize = options.filesize ?? data.length;
  return evaluateRules(rules, matches, filesize, bufferUnit(data, base, filesize));
}

/** Every match of one string, sorted by offset, one per start offset. */
export function stringMatches(string: CompiledString, data: Uint8Array, base = 0): StringMatch[] {
  if (string.chainGaps) {
    const parts = string.variants.map((part) =>
      [...programMatchesIn(part as ProgramVariant, data)].map(([start, length]) => ({ offset: base + start, length })),
    );
    return chainMatches(string, parts, string.chainGaps);
  }
  const matchedAt = new Map<number, VariantMatch[]>();
  string.variants.forEach((variant, index) => {
    for (const [start, length] of variant.kind === 'literal'
      ? literalMatches(variant, data)
      : programMatchesIn(variant, data)) {
      const matched = matchedAt.get(start);
      if (matched) matched.push({ variant: index, length });
      else matchedAt.set(start, [{ variant: index, length }]);
    }
  });
  const matches: StringMatch[] = [];
  for (const [start, matched] of [...matchedAt].sort((a, b) => a[0] - b[0])) {
    const length = acceptMatch(string, data, base, start, matched);
    if (length !== undefined) matches.push({ offset: base + start, length });
  }
  return matches;
}

function* literalMatches(variant: LiteralVariant, data: Uint8Array): Generator<[number, number]> {
  for (let start = 0; start + variant.bytes.length <= data.length; start++) {
    if (literalMatchesAt(variant, data, start)) yield [start, variant.bytes.length];
  }
}
