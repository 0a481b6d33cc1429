import type { Expr, Quantifier } from './ast.js';

export interface StringMatch {
  /** Where the match starts: the scan's base offset plus the index in the data. */
  readonly offset: number;
  readonly length: number;
}

export interface ConditionContext {
  /** Each string's matches in the rule's string order, sorted by offset. */
  readonly matches: ReadonlyArray<readonly StringMatch[]>;
  readonly filesize: bigint;
  /** Results of the rules before this one, by index in the file. */
  readonly ruleResults: readonly boolean[];
}

/**
 * YARA values: 64-bit integers, booleans, and undefined (an `@a[5]` past the last match, a
 * division by zero). As in YARA, undefined propagates through arithmetic, comparisons and `not`,
 * and counts as false in `and`, `or` and the final verdict.
 */
type Value = bigint | boolean | undefined;

const toInt64 = (value: bigint) => BigInt.asIntN(64, value);
const isTrue = (value: Value) => value !== undefined && value !== false && value !== 0n;

export function evaluateCondition(condition: Expr, context: ConditionContext): boolean {
  return isTrue(evaluate(condition, context, undefined));
}

function evaluate(expression: Expr, context: ConditionContext, anonymous: number | undefined): Value {
  const integer = (operand: Expr): bigint | undefined => {
    const value = evaluate(operand, context, anonymous);
    return typeof value === 'bigint' ? value : undefined;
  };
  const matchesOf = (string: number | undefined) => context.matches[string ?? anonymous!]!;
  switch (expression.kind) {
    case 'boolean':
    case 'integer':
      return expression.value;
    case 'filesize':
      return context.filesize;
    case 'not': {
      const operand = evaluate(expression.operand, context, anonymous);
      return operand === undefined ? undefined : !isTrue(operand);
    }
    case 'and':
      return (
        isTrue(evaluate(expression.left, context, anonymous)) && isTrue(evaluate(expression.right, context, anonymous))
      );
    case 'or':
      return (
        isTrue(evaluate(expression.left, context, anonymous)) || isTrue(evaluate(expression.right, context, anonymous))
      );
    case 'compare': {
      const [left, right] = [integer(expression.left), integer(expression.right)];
      return left === undefined || right === undefined ? undefined : compare(expression.operator, left, right);
    }
    case 'arithmetic': {
      const [left, right] = [integer(expression.left), integer(expression.right)];
      return left === undefined || right === undefined ? undefined : arithmetic(expression.operator, left, right);
    }
    case 'negate':
    case 'bitwiseNot': {
      const operand = integer(expression.operand);
      if (operand === undefined) return undefined;
      return toInt64(expression.kind === 'negate' ? -operand : ~operand);
    }
    case 'stringMatches':
      return matchesOf(expression.string).length > 0;
    case 'stringAt': {
      const offset = integer(expression.offset);
      return offset !== undefined && matchesOf(expression.string).some((match) => BigInt(match.offset) === offset);
    }
    case 'stringIn': {
      const [from, to] = [integer(expression.from), integer(expression.to)];
      if (from === undefined || to === undefined) return undefined;
      return matchesOf(expression.string).some((match) => BigInt(match.offset) >= from && BigInt(match.offset) <= to);
    }
    case 'stringCount':
      return BigInt(matchesOf(expression.string).length);
    case 'stringOffset':
    case 'stringLength': {
      const index = integer(expression.index);
      const match = index === undefined || index < 1n ? undefined : matchesOf(expression.string)[Number(index) - 1];
      if (!match) return undefined;
      return BigInt(expression.kind === 'stringOffset' ? match.offset : match.length);
    }
    case 'of':
      return quantify(
        expression.quantifier,
        expression.strings.length,
        expression.strings.filter((string) => context.matches[string]!.length > 0).length,
        integer,
      );
    case 'forOf': {
      const satisfied = expression.strings.filter((string) =>
        isTrue(evaluate(expression.body, context, string)),
      ).length;
      return quantify(expression.quantifier, expression.strings.length, satisfied, integer);
    }
    case 'ruleReference':
      return context.ruleResults[expression.rule] ?? false;
  }
}

function quantify(
  quantifier: Quantifier,
  total: number,
  satisfied: number,
  integer: (operand: Expr) => bigint | undefined,
): boolean {
  switch (quantifier.kind) {
    case 'all':
      return satisfied === total;
    case 'any':
      return satisfied > 0;
    case 'count': {
      const wanted = integer(quantifier.count);
      return wanted !== undefined && BigInt(satisfied) >= wanted;
    }
  }
}

function compare(operator: Extract<Expr, { kind: 'compare' }>['operator'], left: bigint, right: bigint): boolean {
  switch (operator) {
    case '==':
      return left === right;
    case '!=':
      return left !== right;
    case '<':
      return left < right;
    case '<=':
      return left <= right;
    case '>':
      return left > right;
    case '>=':
      return left >= right;
  }
}

/** C semantics on int64, as YARA computes: `\` and `%` truncate toward zero, shifts of 64 or more give 0. */
function arithmetic(
  operator: Extract<Expr, { kind: 'arithmetic' }>['operator'],
  left: bigint,
  right: bigint,
): bigint | undefined {
  switch (operator) {
    case '+':
      return toInt64(left + right);
    case '-':
      return toInt64(left - right);
    case '*':
      return toInt64(left * right);
    case '\\':
      return right === 0n ? undefined : toInt64(left / right);
    case '%':
      return right === 0n ? undefined : left % right;
    case '&':
      return left & right;
    case '|':
      return left | right;
    case '^':
      return left ^ right;
    case '<<':
      return right < 0n ? undefined : right >= 64n ? 0n : toInt64(left << right);
    case '>>':
      return right < 0n ? undefined : right >= 64n ? 0n : left >> right;
  }
}
