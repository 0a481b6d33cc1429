import type { Expr, IntegerRead, Iterable, Quantifier, TextOperator } from './ast.js';
import { MODULES } from './modules/index.js';
import type { ModuleData, ModuleType, Value } from './modules/types.js';
import { PikeVm, compileProgram } from './pikeVm.js';
import type { MatchList } from './matchList.js';
import type { ScannedUnit } from './unit.js';

export interface ConditionContext {
  /** Each string's matches in the rule's string order, sorted by offset. */
  readonly matches: readonly MatchList[];
  readonly filesize: bigint;
  /** Results of the rules before this one, by index in the file. */
  readonly ruleResults: readonly boolean[];
  /** The scanned bytes `uint32(…)` and the modules read; undefined reads as yara's undefined. */
  readonly unit: ScannedUnit | undefined;
  /** Each module's data for this unit, loaded on first use. */
  readonly modules: Map<string, ModuleData>;
}

/**
 * YARA values: 64-bit integers, floats, booleans, strings and undefined (an `@a[5]` past the
 * last match, a division by zero, `uint32` past the unit's end). As in YARA, undefined
 * propagates through arithmetic, comparisons and `not`, and counts as false in `and`, `or`,
 * loops and the final verdict.
 */
const toInt64 = (value: bigint) => BigInt.asIntN(64, value);
const isTrue = (value: Value) => value !== undefined && value !== false && value !== 0n && value !== 0 && value !== '';

export function evaluateCondition(condition: Expr, context: ConditionContext): boolean {
  return isTrue(new Evaluator(context).evaluate(condition));
}

/** Reused per `matches` regex: a Pike VM holds thread lists sized to its program. */
const regexMachines = new WeakMap<object, PikeVm>();

class Evaluator {
  /** Loop variables by slot; `anonymous` is the string a `for … of` body's `$` stands for. */
  private readonly variables: bigint[] = [];
  private anonymous: number | undefined;

  constructor(private readonly context: ConditionContext) {}

  evaluate(expression: Expr): Value {
    const context = this.context;
    switch (expression.kind) {
      case 'boolean':
      case 'integer':
      case 'float':
      case 'text':
        return expression.value;
      case 'filesize':
        return context.filesize;
      case 'not': {
        const operand = this.evaluate(expression.operand);
        return operand === undefined ? undefined : !isTrue(operand);
      }
      case 'defined':
        return this.evaluate(expression.operand) !== undefined;
      case 'and':
        return isTrue(this.evaluate(expression.left)) && isTrue(this.evaluate(expression.right));
      case 'or':
        return isTrue(this.evaluate(expression.left)) || isTrue(this.evaluate(expression.right));
      case 'compare': {
        const [left, right] = [this.evaluate(expression.left), this.evaluate(expression.right)];
        return left === undefined || right === undefined
          ? undefined
          : compare(expression.operator, left as number | bigint | string, right as number | bigint | string);
      }
      case 'arithmetic': {
        const [left, right] = [this.evaluate(expression.left), this.evaluate(expression.right)];
        if (left === undefined || right === undefined) return undefined;
        if (typeof left === 'number' || typeof right === 'number')
          return floatArithmetic(expression.operator, Number(left), Number(right));
        return arithmetic(expression.operator, left as bigint, right as bigint);
      }
      case 'negate':
      case 'bitwiseNot': {
        const operand = this.evaluate(expression.operand);
        if (operand === undefined) return undefined;
        if (typeof operand === 'number') return -operand;
        return toInt64(expression.kind === 'negate' ? -(operand as bigint) : ~(operand as bigint));
      }
      case 'textOperator': {
        const [left, right] = [this.evaluate(expression.left), this.evaluate(expression.right)];
        return left === undefined || right === undefined
          ? undefined
          : textOperator(expression.operator, left as string, right as string);
      }
      case 'matches': {
        const left = this.evaluate(expression.left);
        if (left === undefined) return undefined;
        let vm = regexMachines.get(expression.regex);
        if (!vm) regexMachines.set(expression.regex, (vm = new PikeVm(compileProgram(expression.regex))));
        return vm.matchEnds(Buffer.from(left as string, 'latin1')).includes(1);
      }
      case 'stringMatches':
        return this.matchesOf(expression.string).count > 0;
      case 'stringAt': {
        const offset = this.integer(expression.offset);
        return offset !== undefined && countIn(this.matchesOf(expression.string), offset, offset, 1) > 0;
      }
      case 'stringIn': {
        const [from, to] = [this.integer(expression.from), this.integer(expression.to)];
        if (from === undefined || to === undefined) return undefined;
        return countIn(this.matchesOf(expression.string), from, to, 1) > 0;
      }
      case 'stringCount':
        return BigInt(this.matchesOf(expression.string).count);
      case 'stringCountIn': {
        const [from, to] = [this.integer(expression.from), this.integer(expression.to)];
        if (from === undefined || to === undefined) return undefined;
        return BigInt(countIn(this.matchesOf(expression.string), from, to, Infinity));
      }
      case 'stringOffset':
      case 'stringLength': {
        const index = this.integer(expression.index);
        const matches = this.matchesOf(expression.string);
        if (index === undefined || index < 1n || index > BigInt(matches.count)) return undefined;
        const at = Number(index) - 1;
        return BigInt(expression.kind === 'stringOffset' ? matches.offsetAt(at) : matches.lengthAt(at));
      }
      case 'of':
        return this.quantify(
          expression.quantifier,
          expression.strings.length,
          expression.strings.filter((string) => context.matches[string]!.count > 0).length,
        );
      case 'ofRules':
        return this.quantify(
          expression.quantifier,
          expression.rules.length,
          expression.rules.filter((rule) => context.ruleResults[rule]).length,
        );
      case 'forOf': {
        const outer = this.anonymous;
        let satisfied = 0;
        for (const string of expression.strings) {
          this.anonymous = string;
          if (isTrue(this.evaluate(expression.body))) satisfied++;
        }
        this.anonymous = outer;
        return this.quantify(expression.quantifier, expression.strings.length, satisfied);
      }
      case 'forIn':
        return this.forIn(expression.quantifier, expression.slot, expression.iterable, expression.body);
      case 'variable':
        return this.variables[expression.slot];
      case 'ruleReference':
        return context.ruleResults[expression.rule] ?? false;
      case 'readInteger': {
        const offset = this.integer(expression.offset);
        return offset === undefined ? undefined : readInteger(context.unit, offset, expression.read);
      }
      case 'module':
        return this.module(expression);
    }
  }

  private integer(operand: Expr): bigint | undefined {
    const value = this.evaluate(operand);
    return typeof value === 'bigint' ? value : undefined;
  }

  private matchesOf(string: number | undefined): MatchList {
    return this.context.matches[string ?? this.anonymous!]!;
  }

  /**
   * yara's `for` over integers: the body once per value (a range whose bounds are undefined, or
   * whose start is past its end, has none), then the quantifier over how many held.
   */
  private forIn(quantifier: Quantifier, slot: number, iterable: Iterable, body: Expr): Value {
    let values: Array<bigint | undefined>;
    if (iterable.kind === 'range') {
      const [from, to] = [this.integer(iterable.from), this.integer(iterable.to)];
      if (from === undefined || to === undefined) return false;
      if (to - from > MAX_LOOP_VALUES) throw new RangeError(`a 'for' loop over ${to - from + 1n} values`);
      values = [];
      for (let value = from; value <= to; value++) values.push(value);
    } else values = iterable.items.map((item) => this.integer(item));
    let satisfied = 0;
    for (const value of values) {
      if (value === undefined) continue;
      this.variables[slot] = value;
      if (isTrue(this.evaluate(body))) satisfied++;
    }
    return this.quantify(quantifier, values.length, satisfied);
  }

  private quantify(quantifier: Quantifier, total: number, satisfied: number): boolean {
    switch (quantifier.kind) {
      case 'all':
        return satisfied === total;
      case 'any':
        return satisfied > 0;
      case 'none':
        return satisfied === 0;
      case 'count': {
        const wanted = this.integer(quantifier.count);
        return wanted !== undefined && BigInt(satisfied) >= wanted;
      }
      case 'percent': {
        const percent = this.integer(quantifier.percent);
        return percent !== undefined && satisfied * 100 >= Number(percent) * total;
      }
    }
  }

  /** Walks a module reference over the module's declarations and its data for this unit. */
  private module(expression: Extract<Expr, { kind: 'module' }>): Value {
    const module = MODULES.get(expression.module)!;
    let data = this.context.modules.get(module.name);
    if (data === undefined && !this.context.modules.has(module.name)) {
      data = this.context.unit ? module.load(this.context.unit) : undefined;
      this.context.modules.set(module.name, data);
    }
    let type: ModuleType = module.type;
    for (const step of expression.steps) {
      if (step.kind === 'field') {
        type = (type as ModuleType & { kind: 'struct' }).fields[step.name]!;
        if (type.kind !== 'function') data = isRecord(data) ? data[step.name] : undefined;
      } else if (step.kind === 'index') {
        type = (type as ModuleType & { kind: 'array' }).of;
        const index = this.integer(step.index);
        data =
          Array.isArray(data) && index !== undefined && index >= 0n && index < BigInt(data.length)
            ? data[Number(index)]
            : undefined;
      } else {
        const overload = (type as ModuleType & { kind: 'function' }).overloads[step.overload]!;
        const args = step.args.map((arg) => this.evaluate(arg));
        if (args.some((arg) => arg === undefined) || !this.context.unit) return undefined;
        // Integers passed where yara's declarations say float are converted, as yara does.
        data = overload.run(
          args.map((arg, i) => (overload.args[i] === 'float' && typeof arg === 'bigint' ? Number(arg) : arg)),
          this.context.unit,
        );
        type = { kind: 'value', type: overload.returns as 'integer' };
      }
    }
    return typeof data === 'object' ? undefined : data;
  }
}

/** Loops over more values than this are refused rather than left to run for hours. */
const MAX_LOOP_VALUES = 10_000_000n;

/**
 * How many of the matches start in [from, to], counting no further than `enough`. Matches are in
 * offset order, so the first one at or after `from` is found by bisection: `$a at X` in a loop over
 * a million matches costs a few steps, not a million.
 */
function countIn(matches: MatchList, from: bigint, to: bigint, enough: number): number {
  const firstAtOrAfter = (bound: bigint) => {
    let [low, high] = [0, matches.count];
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (BigInt(matches.offsetAt(middle)) < bound) low = middle + 1;
      else high = middle;
    }
    return low;
  };
  if (to < from) return 0;
  const first = firstAtOrAfter(from);
  if (enough === 1) return first < matches.count && BigInt(matches.offsetAt(first)) <= to ? 1 : 0;
  return firstAtOrAfter(to + 1n) - first;
}

function isRecord(data: ModuleData): data is { readonly [field: string]: ModuleData } {
  return typeof data === 'object' && data !== null && !Array.isArray(data);
}

/** `uint16(offset)` and the like: undefined when any byte is outside the unit (or absent). */
function readInteger(unit: ScannedUnit | undefined, offset: bigint, read: IntegerRead): bigint | undefined {
  if (!unit || offset < 0n || offset + BigInt(read.bytes) > BigInt(unit.size)) return undefined;
  const bytes = new Uint8Array(read.bytes);
  if (!unit.read(Number(offset), bytes)) return undefined;
  let value = 0n;
  for (let i = 0; i < read.bytes; i++) value = (value << 8n) | BigInt(bytes[read.bigEndian ? i : read.bytes - 1 - i]!);
  return read.signed ? BigInt.asIntN(read.bytes * 8, value) : value;
}

function compare(
  operator: Extract<Expr, { kind: 'compare' }>['operator'],
  left: bigint | number | string,
  right: bigint | number | string,
): boolean {
  // Mixed integer and float compare as floats, as C does.
  if (typeof left !== typeof right) [left, right] = [Number(left), Number(right)];
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

function textOperator(operator: TextOperator, left: string, right: string): boolean {
  const fold = operator.startsWith('i');
  const [a, b] = fold ? [asciiLower(left), asciiLower(right)] : [left, right];
  switch (operator) {
    case 'contains':
    case 'icontains':
      return a.includes(b);
    case 'startswith':
    case 'istartswith':
      return a.startsWith(b);
    case 'endswith':
    case 'iendswith':
      return a.endsWith(b);
    case 'iequals':
      return a === b;
  }
}

/** yara folds only ASCII letters. */
const asciiLower = (text: string) => text.replace(/[A-Z]/g, (letter) => letter.toLowerCase());

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

function floatArithmetic(
  operator: Extract<Expr, { kind: 'arithmetic' }>['operator'],
  left: number,
  right: number,
): number | undefined {
  switch (operator) {
    case '+':
      return left + right;
    case '-':
      return left - right;
    case '*':
      return left * right;
    case '\\':
      return right === 0 ? undefined : left / right;
    default:
      return undefined;
  }
}
