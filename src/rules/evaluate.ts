import type { CompiledRules } from './compile.js';
import { evaluateCondition, type StringMatch } from './condition.js';
import type { ModuleData } from './modules/types.js';
import type { ScannedUnit } from './unit.js';

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

/**
 * The rules that match, given every string's matches (by rule, then string, each sorted by
 * offset): conditions in file order, so a rule may refer to the ones before it; private rules
 * and private strings are evaluated but not reported; a failing global rule reports nothing.
 */
export function evaluateRules(
  rules: CompiledRules,
  matches: ReadonlyArray<ReadonlyArray<readonly StringMatch[]>>,
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
    const strings = rule.strings.flatMap((string, i) =>
      string.isPrivate
        ? []
        : ruleMatches[i]!.map(({ offset, length }) => ({ rule: rule.name, string: string.id, offset, length })),
    );
    reports.push({ rule: rule.name, tags: rule.tags, strings });
  });
  const globalFailed = rules.rules.some((rule, i) => rule.isGlobal && !ruleResults[i]);
  return globalFailed ? [] : reports;
}
