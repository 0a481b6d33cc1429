import { VmscopeError } from '../util/errors.js';

/** Where a token or construct starts in a rule file: 1-based line and column. */
export interface SourcePosition {
  readonly line: number;
  readonly column: number;
}

/**
 * A rule file problem, as `file:line:column: rule "name": what is wrong`, so an analyst can open
 * the exact spot. The code is USAGE: the rules are part of the user's request.
 */
export function ruleError(file: string, at: SourcePosition, rule: string | undefined, message: string): VmscopeError {
  const ruleText = rule === undefined ? '' : `rule "${rule}": `;
  return new VmscopeError('USAGE', `${file}:${at.line}:${at.column}: ${ruleText}${message}`, file);
}
