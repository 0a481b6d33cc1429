import type { CompiledRules } from './compile.js';
import { evaluateCondition } from './condition.js';
import type { MatchList } from './matchList.js';
import type { ModuleData } from './modules/types.js';
import type { ScannedUnit } from './unit.js';

/** One reported string match, as one `0xOFFSET:$id: data` line of `yara -s`. */
export interface RuleStringMatch {
  readonly rule: string;
  readonly string: string;
  readonly offset: number;
  readonly length: number;
}

/** A non-private string of a matching rule with its matches. */
export interface ReportedString {
  readonly id: string;
  readonly matches: MatchList;
}

export interface RuleMatch {
  readonly rule: string;
  readonly tags: readonly string[];
  /** The rule's non-private strings in rule order, each with its matches by offset: no object per match. */
  readonly reported: readonly ReportedString[];
  /** The same matches as objects, made on each access: for small results (tests, summaries), not for a million hits. */
  readonly strings: readonly RuleStringMatch[];
}

/**
 * The rules that match, given every string's matches (by rule, then string, each sorted by
 * offset): conditions in file order, so a rule may refer to the ones before it; private rules
 * and private strings are evaluated but not reported; a failing global rule reports nothing.
 */
export function evaluateRules(
  rules: CompiledRules,
  matches: ReadonlyArray<readonly MatchList[]>,
  filesize: number,
  unit?: ScannedUnit,
): RuleMatch[] {
  const ruleResults: boolean[] = [];
  const modules = new Map<string, ModuleData>();
  const reports: RuleMatch[] = [];
  rules.rules.forEach((rule, ruleIndex) => {
    const ruleMatches = matches[ruleIndex]!;
    const satisfied = evaluateCondition(rule.condition, {
      matches: ruleMatches,
      filesize: BigInt(filesize),
      ruleResults,
      unit,
      modules,
    });
    ruleResults.push(satisfied);
    if (!satisfied || rule.isPrivate) return;
    const reported = rule.strings.flatMap((string, i) =>
      string.isPrivate ? [] : [{ id: string.id, matches: ruleMatches[i]! }],
    );
    reports.push(ruleMatch(rule.name, rule.tags, reported));
  });
  const globalFailed = rules.rules.some((rule, i) => rule.isGlobal && !ruleResults[i]);
  return globalFailed ? [] : reports;
}

function ruleMatch(rule: string, tags: readonly string[], reported: readonly ReportedString[]): RuleMatch {
  return {
    rule,
    tags,
    reported,
    get strings(): RuleStringMatch[] {
      return reported.flatMap(({ id, matches }) =>
        Array.from({ length: matches.count }, (_, i) => ({
          rule,
          string: id,
          offset: matches.offsetAt(i),
          length: matches.lengthAt(i),
        })),
      );
    },
  };
}
