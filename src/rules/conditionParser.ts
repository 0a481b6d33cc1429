import type {
  ArithmeticOperator,
  ComparisonOperator,
  Expr,
  IntegerRead,
  Iterable,
  ModuleStep,
  Quantifier,
  StringAst,
  TextOperator,
  ValueType,
} from './ast.js';
import type { SourcePosition } from './errors.js';
import { positionInBody, type Token } from './lexer.js';
import { MAX_NESTING } from './pattern.js';
import { MODULES } from './modules/index.js';
import type { ModuleType } from './modules/types.js';
import { parseRegex } from './regex.js';
import type { TokenCursor } from './tokenCursor.js';

/*
 * A rule's condition: YARA's expression grammar (precedence levels, quantifiers, loops, module
 * fields, integer reads), type-checked as yara does, over the tokens the rule parser hands on.
 */

/** Binary operators by precedence level, loosest first, as in YARA's grammar (`not` sits above `==`). */
const TEXT_OPERATORS: ReadonlySet<string> = new Set<TextOperator>([
  'contains',
  'icontains',
  'startswith',
  'istartswith',
  'endswith',
  'iendswith',
  'iequals',
]);
const BINARY_LEVELS: ReadonlyArray<readonly string[]> = [
  ['==', '!=', 'matches', ...TEXT_OPERATORS],
  ['<', '<=', '>', '>='],
  ['|'],
  ['^'],
  ['&'],
  ['<<', '>>'],
  ['+', '-'],
  ['*', '\\', '%'],
];
const COMPARISONS = new Set(['==', '!=', '<', '<=', '>', '>=']);
/** Operators yara only applies to integers (the others take floats too). */
const INTEGER_ONLY = new Set(['%', '&', '|', '^', '<<', '>>']);
const TYPE_NAMES: Record<ValueType, string> = {
  boolean: 'a boolean',
  integer: 'an integer',
  float: 'a float',
  string: 'a string',
};

/** `uint8` … `int32be`: how many bytes, signed or not, which byte order. */
const INTEGER_READS: ReadonlyMap<string, IntegerRead> = new Map(
  ([1, 2, 4] as const).flatMap((bytes) =>
    [false, true].flatMap((signed) =>
      [false, true].map((bigEndian): [string, IntegerRead] => [
        `${signed ? '' : 'u'}int${bytes * 8}${bigEndian ? 'be' : ''}`,
        { bytes, signed, bigEndian },
      ]),
    ),
  ),
);
export const KEYWORDS = new Set([
  'all',
  'and',
  'any',
  'ascii',
  'at',
  'base64',
  'base64wide',
  'condition',
  'contains',
  'defined',
  'endswith',
  'entrypoint',
  'false',
  'filesize',
  'for',
  'fullword',
  'global',
  'icontains',
  'iendswith',
  'iequals',
  'import',
  'in',
  'include',
  'istartswith',
  'matches',
  'meta',
  'nocase',
  'none',
  'not',
  'of',
  'or',
  'private',
  'rule',
  'startswith',
  'strings',
  'them',
  'true',
  'wide',
  'xor',
]);

/** Whether `token` continues an integer expression (so `$s at 0 + 4` is not an `at` literal). */
function isBinaryOperator(token: Token): boolean {
  return token.kind === 'punct' && BINARY_LEVELS.some((operators) => operators.includes(token.text));
}

/** One rule's condition, resolved against that rule's strings. */
export class ConditionParser {
  /**
   * Each referenced string, with the one offset it is looked for at when every reference is
   * `$s at <integer literal>` with the same literal — YARA then records only matches there
   * (`#s`, `@s` never see the others) — or undefined when any offset counts.
   */
  readonly searchedAt = new Map<number, bigint | undefined>();
  /** The loop variables in scope, innermost last, each with its slot. */
  private readonly variables: Array<{ name: string; slot: number }> = [];
  /** Slots a rule's loops need (each loop variable has its own). */
  slotCount = 0;
  private forOfDepth = 0;
  private depth = 0;
  constructor(
    private readonly cursor: TokenCursor,
    private readonly strings: readonly StringAst[],
    /** The rules declared so far (by name, file order) and the modules imported: what a condition may name. */
    private readonly scope: { readonly ruleIndex: ReadonlyMap<string, number>; readonly imported: ReadonlySet<string> },
  ) {}

  parseCondition(): Expr {
    return this.parseOr();
  }

  private parseOr(): Expr {
    return this.parseLogical('or', () => this.parseAnd());
  }

  private parseAnd(): Expr {
    return this.parseLogical('and', () => this.parseNot());
  }

  private parseLogical(operator: 'and' | 'or', parseOperand: () => Expr): Expr {
    let left = parseOperand();
    while (this.cursor.isWord(operator)) {
      const at = this.cursor.next();
      left = { kind: operator, left, right: parseOperand(), line: at.line, column: at.column };
    }
    return left;
  }

  /** Parses one level deeper; the limit keeps hostile nesting from exhausting the stack. */
  private nested(at: SourcePosition, parse: () => Expr): Expr {
    if (++this.depth > MAX_NESTING) this.cursor.fail(at, `condition nested more than ${MAX_NESTING} deep`);
    const result = parse();
    this.depth--;
    return result;
  }

  private parseNot(): Expr {
    if (!this.cursor.isWord('not') && !this.cursor.isWord('defined')) return this.parseBinary(0);
    const at = this.cursor.next();
    const operand = this.nested(at, () => this.parseNot());
    return { kind: at.text === 'not' ? 'not' : 'defined', operand, line: at.line, column: at.column };
  }

  private parseBinary(level: number): Expr {
    const operators = BINARY_LEVELS[level];
    if (!operators) return this.parseUnary();
    let left = this.parseBinary(level + 1);
    while (
      (this.cursor.peek().kind === 'punct' || this.cursor.peek().kind === 'identifier') &&
      operators.includes(this.cursor.peek().text)
    ) {
      const at = this.cursor.next();
      const position = { line: at.line, column: at.column };
      if (at.text === 'matches') {
        this.expectType(left, 'string');
        const regex = this.cursor.expectKind('regex', "a regular expression after 'matches'");
        const unknownFlag = [...regex.flags!].find((flag) => flag !== 'i' && flag !== 's');
        if (unknownFlag) this.cursor.fail(regex, `unsupported regular expression modifier '${unknownFlag}'`);
        const flags = { caseInsensitive: regex.flags!.includes('i'), dotAll: regex.flags!.includes('s') };
        const pattern = parseRegex(regex.text, flags, (offset, message) =>
          this.cursor.fail(positionInBody(regex, regex.text, offset), message),
        );
        left = { kind: 'matches', left, regex: pattern, ...position };
        continue;
      }
      const right = this.parseBinary(level + 1);
      left = this.binary(at, left, right, position);
    }
    return left;
  }

  /** A binary operator applied, after checking its operands' types as yara does. */
  private binary(at: Token, left: Expr, right: Expr, position: SourcePosition): Expr {
    const operator = at.text;
    const [leftType, rightType] = [typeOf(left), typeOf(right)];
    if (TEXT_OPERATORS.has(operator)) {
      this.expectType(left, 'string');
      this.expectType(right, 'string');
      return { kind: 'textOperator', operator: operator as TextOperator, left, right, ...position };
    }
    if (COMPARISONS.has(operator)) {
      const bothText = leftType === 'string' && rightType === 'string';
      if (!bothText) {
        this.expectNumber(left);
        this.expectNumber(right);
      }
      return { kind: 'compare', operator: operator as ComparisonOperator, left, right, ...position };
    }
    if (INTEGER_ONLY.has(operator)) {
      this.expectType(left, 'integer');
      this.expectType(right, 'integer');
    } else {
      this.expectNumber(left);
      this.expectNumber(right);
    }
    if ((operator === '\\' || operator === '%') && right.kind === 'integer' && right.value === 0n)
      this.cursor.fail(right, 'division by zero');
    return { kind: 'arithmetic', operator: operator as ArithmeticOperator, left, right, ...position };
  }

  private parseUnary(): Expr {
    if (!this.cursor.isPunct('-') && !this.cursor.isPunct('~')) return this.parsePrimary();
    const at = this.cursor.next();
    const operand = this.nested(at, () => this.parseUnary());
    if (at.text === '-') this.expectNumber(operand);
    else this.expectType(operand, 'integer');
    return { kind: at.text === '-' ? 'negate' : 'bitwiseNot', operand, line: at.line, column: at.column };
  }

  private parsePrimary(): Expr {
    const token = this.cursor.peek();
    const position = { line: token.line, column: token.column };
    switch (token.kind) {
      case 'number': {
        this.cursor.next();
        const literal: Expr = { kind: 'integer', value: token.value!, ...position };
        if (this.cursor.isPunct('%') && this.cursor.isWord('of', this.cursor.peek(1))) {
          this.cursor.next();
          return this.parseOf({ kind: 'percent', percent: literal }, position);
        }
        return this.cursor.isWord('of') ? this.parseOf({ kind: 'count', count: literal }, position) : literal;
      }
      case 'float':
        this.cursor.next();
        return { kind: 'float', value: token.float!, ...position };
      case 'text':
        this.cursor.next();
        return { kind: 'text', value: Buffer.from(token.bytes!).toString('latin1'), ...position };
      case 'stringId': {
        this.cursor.next();
        const string = this.resolveString(
          token,
          this.cursor.isWord('at') && this.cursor.peek(1).kind === 'number' && !isBinaryOperator(this.cursor.peek(2))
            ? this.cursor.peek(1).value
            : undefined,
        );
        if (this.cursor.isWord('at')) {
          this.cursor.next();
          return { kind: 'stringAt', string, offset: this.integerExpression(), ...position };
        }
        if (this.cursor.isWord('in')) {
          this.cursor.next();
          const [from, to] = this.parseRange();
          return { kind: 'stringIn', string, from, to, ...position };
        }
        return { kind: 'stringMatches', string, ...position };
      }
      case 'stringCount': {
        this.cursor.next();
        const string = this.resolveString(token);
        if (this.cursor.isWord('in')) {
          this.cursor.next();
          const [from, to] = this.parseRange();
          return { kind: 'stringCountIn', string, from, to, ...position };
        }
        return { kind: 'stringCount', string, ...position };
      }
      case 'stringOffset':
      case 'stringLength': {
        this.cursor.next();
        const string = this.resolveString(token);
        const index: Expr = this.cursor.isPunct('[')
          ? (this.cursor.next(), this.bracketed())
          : { kind: 'integer', value: 1n, ...position };
        return { kind: token.kind, string, index, ...position };
      }
      case 'punct':
        if (token.text === '(') {
          this.cursor.next();
          const inner = this.nested(token, () => this.parseCondition());
          this.cursor.expectPunct(')');
          return inner;
        }
        break;
      case 'identifier':
        return this.parseWord(token, position);
      default:
        break;
    }
    return this.cursor.fail(token, `unexpected ${this.cursor.describe(token)} in condition`);
  }

  private parseWord(token: Token, position: SourcePosition): Expr {
    switch (token.text) {
      case 'true':
      case 'false':
        this.cursor.next();
        return { kind: 'boolean', value: token.text === 'true', ...position };
      case 'filesize':
        this.cursor.next();
        return { kind: 'filesize', ...position };
      case 'any':
      case 'all':
      case 'none':
        this.cursor.next();
        return this.parseOf({ kind: token.text }, position);
      case 'for':
        return this.parseFor(position);
      case 'entrypoint':
        return this.cursor.fail(
          token,
          "unsupported construct 'entrypoint' (deprecated by yara: use the module's entry point, such as elf.entry_point)",
        );
    }
    const read = INTEGER_READS.get(token.text);
    if (read && this.cursor.isPunct('(', this.cursor.peek(1))) {
      this.cursor.next();
      this.cursor.next();
      const offset = this.integerExpression();
      this.cursor.expectPunct(')');
      return { kind: 'readInteger', read, offset, ...position };
    }
    const variable = [...this.variables].reverse().find((candidate) => candidate.name === token.text);
    if (variable) {
      this.cursor.next();
      return { kind: 'variable', slot: variable.slot, ...position };
    }
    if (this.scope.imported.has(token.text)) return this.parseModule(token, position);
    this.cursor.next();
    if (MODULES.has(token.text) && (this.cursor.isPunct('.') || this.cursor.isPunct('(')))
      this.cursor.fail(token, `module '${token.text}' used without 'import "${token.text}"'`);
    if (this.cursor.isPunct('.') || this.cursor.isPunct('(')) {
      const rest =
        this.cursor.isPunct('.') && this.cursor.peek(1).kind === 'identifier'
          ? `.${this.cursor.peek(1).text}`
          : this.cursor.isPunct('(')
            ? '(…)'
            : '';
      this.cursor.fail(token, `unsupported construct '${token.text}${rest}'`);
    }
    const rule = this.scope.ruleIndex.get(token.text);
    if (rule === undefined) this.cursor.fail(token, `unknown identifier '${token.text}'`);
    return { kind: 'ruleReference', rule: rule!, ...position };
  }

  /** `math.entropy(0, filesize)`, `elf.sections[0].name`: checked against the module's declarations. */
  private parseModule(token: Token, position: SourcePosition): Expr {
    this.cursor.next();
    const module = MODULES.get(token.text)!;
    let type: ModuleType = module.type;
    let path = token.text;
    const steps: ModuleStep[] = [];
    while (this.cursor.isPunct('.') || this.cursor.isPunct('[') || this.cursor.isPunct('(')) {
      const step = this.cursor.next();
      if (step.text === '.') {
        const field = this.cursor.expectKind('identifier', 'a field name');
        const found = type.kind === 'struct' ? type.fields[field.text] : undefined;
        if (!found) this.cursor.fail(field, `unknown field '${field.text}' of '${path}'`);
        type = found!;
        path += `.${field.text}`;
        steps.push({ kind: 'field', name: field.text });
      } else if (step.text === '[') {
        if (type.kind !== 'array') this.cursor.fail(step, `'${path}' is not an array`);
        const index = this.bracketed();
        type = (type as ModuleType & { kind: 'array' }).of;
        path += '[…]';
        steps.push({ kind: 'index', index });
      } else {
        if (type.kind !== 'function') this.cursor.fail(step, `'${path}' is not a function`);
        const args: Expr[] = [];
        if (!this.cursor.isPunct(')')) {
          do args.push(this.parseCondition());
          while (this.cursor.isPunct(',') && this.cursor.next());
        }
        this.cursor.expectPunct(')');
        const types = args.map(typeOf);
        const overloads = (type as ModuleType & { kind: 'function' }).overloads;
        const overload = overloads.findIndex(
          (candidate) =>
            candidate.args.length === types.length && candidate.args.every((wanted, i) => wanted === types[i]),
        );
        if (overload < 0)
          this.cursor.fail(
            step,
            `no '${path}' takes (${types.join(', ')}); it takes ${overloads.map((candidate) => `(${candidate.args.join(', ')})`).join(' or ')}`,
          );
        type = { kind: 'value', type: overloads[overload]!.returns as 'integer' };
        path += '(…)';
        steps.push({ kind: 'call', args, overload });
      }
    }
    if (type.kind !== 'value')
      this.cursor.fail(
        token,
        `'${path}' is ${type.kind === 'function' ? 'a function: call it' : `a ${type.kind}, not a value`}`,
      );
    return {
      kind: 'module',
      module: module.name,
      steps,
      type: (type as ModuleType & { kind: 'value' }).type,
      ...position,
    };
  }

  private parseOf(quantifier: Quantifier, position: SourcePosition): Expr {
    this.cursor.expectWord('of');
    if (this.cursor.isPunct('(') && this.cursor.peek(1).kind === 'identifier')
      return { kind: 'ofRules', quantifier, rules: this.parseRuleSet(), ...position };
    return { kind: 'of', quantifier, strings: this.parseStringSet(), ...position };
  }

  /** `for <quantifier> of <strings> : ( … )` or `for <quantifier> <variable> in <range or list> : ( … )`. */
  private parseFor(position: SourcePosition): Expr {
    this.cursor.next(); // for
    const quantifier = this.parseQuantifier();
    if (this.cursor.isWord('of')) {
      this.cursor.next();
      const strings = this.parseStringSet();
      this.cursor.expectPunct(':');
      this.cursor.expectPunct('(');
      this.forOfDepth++;
      const body = this.parseCondition();
      this.forOfDepth--;
      this.cursor.expectPunct(')');
      return { kind: 'forOf', quantifier, strings, body, ...position };
    }
    const name = this.cursor.expectKind('identifier', "'of' or a loop variable");
    if (KEYWORDS.has(name.text)) this.cursor.fail(name, `'${name.text}' is a keyword`);
    if (this.cursor.isPunct(','))
      this.cursor.fail(this.cursor.peek(), "unsupported construct 'for' with several variables (module dictionaries)");
    this.cursor.expectWord('in');
    const iterable = this.parseIterable();
    this.cursor.expectPunct(':');
    this.cursor.expectPunct('(');
    const slot = this.slotCount++;
    this.variables.push({ name: name.text, slot });
    const body = this.parseCondition();
    this.variables.pop();
    this.cursor.expectPunct(')');
    return { kind: 'forIn', quantifier, slot, iterable, body, ...position };
  }

  private parseQuantifier(): Quantifier {
    const token = this.cursor.peek();
    if (this.cursor.isWord('any') || this.cursor.isWord('all') || this.cursor.isWord('none'))
      return { kind: this.cursor.next().text as 'any' | 'all' | 'none' };
    // A literal is taken as is: parsing it as an expression would read `2 of` as a whole `of` expression.
    const count: Expr =
      token.kind === 'number'
        ? (this.cursor.next(), { kind: 'integer', value: token.value!, line: token.line, column: token.column })
        : this.parseUnary();
    this.expectType(count, 'integer');
    if (this.cursor.isPunct('%')) {
      this.cursor.next();
      return { kind: 'percent', percent: count };
    }
    if (!this.cursor.isWord('of') && this.cursor.peek().kind !== 'identifier')
      this.cursor.fail(token, "expected 'any', 'all', 'none' or a count after 'for'");
    return { kind: 'count', count };
  }

  /** `(a..b)` or `(a, b, …)` of integers. */
  private parseIterable(): Iterable {
    if (!this.cursor.isPunct('('))
      this.cursor.fail(
        this.cursor.peek(),
        "unsupported construct 'for … in' over a module array or dictionary (only '(a..b)' and '(a, b, …)')",
      );
    this.cursor.next();
    const first = this.integerExpression();
    if (this.cursor.isPunct('..')) {
      this.cursor.next();
      const to = this.integerExpression();
      this.cursor.expectPunct(')');
      return { kind: 'range', from: first, to };
    }
    const items = [first];
    while (this.cursor.isPunct(',')) {
      this.cursor.next();
      items.push(this.integerExpression());
    }
    this.cursor.expectPunct(')');
    return { kind: 'list', items };
  }

  /** `( rule_a, rule_b* )`: rules declared before this one, in file order. */
  private parseRuleSet(): number[] {
    this.cursor.expectPunct('(');
    const chosen = new Set<number>();
    do {
      const token = this.cursor.expectKind('identifier', 'a rule name');
      const wildcard =
        this.cursor.isPunct('*') &&
        this.cursor.peek().line === token.line &&
        this.cursor.peek().column === token.column + token.text.length;
      if (wildcard) this.cursor.next();
      const found = wildcard
        ? [...this.scope.ruleIndex].filter(([name]) => name.startsWith(token.text)).map(([, index]) => index)
        : this.scope.ruleIndex.has(token.text)
          ? [this.scope.ruleIndex.get(token.text)!]
          : [];
      if (found.length === 0) this.cursor.fail(token, `unknown rule '${token.text}${wildcard ? '*' : ''}'`);
      for (const index of found) chosen.add(index);
    } while (this.cursor.isPunct(',') && this.cursor.next());
    this.cursor.expectPunct(')');
    return [...chosen].sort((a, b) => a - b);
  }

  /** `them` or `( $a, $b*, … )`: indexes of the rule's strings, each once, in rule order. */
  private parseStringSet(): number[] {
    if (this.cursor.isWord('them')) {
      const them = this.cursor.next();
      if (this.strings.length === 0) this.cursor.fail(them, "'them' in a rule without strings");
      this.strings.forEach((_, i) => this.searchedAt.set(i, undefined));
      return this.strings.map((_, i) => i);
    }
    this.cursor.expectPunct('(');
    const chosen = new Set<number>();
    do {
      const token = this.cursor.peek();
      if (token.kind !== 'stringId' || token.text === '')
        this.cursor.fail(token, `expected a string name in the set, found ${this.cursor.describe(token)}`);
      this.cursor.next();
      const prefix = '$' + token.text.replace(/\*$/, '');
      const matches = this.strings.flatMap((string, i) =>
        (token.text.endsWith('*') ? string.id.startsWith(prefix) : string.id === prefix) ? [i] : [],
      );
      if (matches.length === 0) this.cursor.fail(token, `undefined string "$${token.text}"`);
      for (const i of matches) {
        chosen.add(i);
        this.searchedAt.set(i, undefined);
      }
    } while (this.cursor.isPunct(',') && this.cursor.next());
    this.cursor.expectPunct(')');
    return [...chosen].sort((a, b) => a - b);
  }

  private parseRange(): [Expr, Expr] {
    this.cursor.expectPunct('(');
    const from = this.integerExpression();
    this.cursor.expectPunct('..');
    const to = this.integerExpression();
    this.cursor.expectPunct(')');
    return [from, to];
  }

  private bracketed(): Expr {
    const inner = this.integerExpression();
    this.cursor.expectPunct(']');
    return inner;
  }

  private integerExpression(): Expr {
    const expression = this.parseBinary(2);
    this.expectType(expression, 'integer');
    return expression;
  }

  /** The string `token` names; `atLiteral` when the reference is `$s at <literal>`. */
  private resolveString(token: Token, atLiteral?: bigint): number | undefined {
    const sigil = { stringId: '$', stringCount: '#', stringOffset: '@', stringLength: '!' }[token.kind as 'stringId'];
    if (token.text.endsWith('*')) this.cursor.fail(token, `wildcard "${sigil}${token.text}" outside a string set`);
    if (token.text === '') {
      if (this.forOfDepth === 0) this.cursor.fail(token, `anonymous "${sigil}" outside a 'for … of' body`);
      return undefined;
    }
    const found = this.strings.findIndex((string) => string.id === '$' + token.text);
    if (found < 0) this.cursor.fail(token, `undefined string "$${token.text}"`);
    const previous = this.searchedAt.has(found) ? this.searchedAt.get(found) : atLiteral;
    this.searchedAt.set(found, previous === atLiteral ? atLiteral : undefined);
    return found;
  }

  private expectType(expression: Expr, type: ValueType): void {
    if (typeOf(expression) !== type)
      this.cursor.fail(expression, `expected ${TYPE_NAMES[type]} expression, found ${TYPE_NAMES[typeOf(expression)]}`);
  }

  private expectNumber(expression: Expr): void {
    const type = typeOf(expression);
    if (type !== 'integer' && type !== 'float')
      this.cursor.fail(expression, `expected a number, found ${TYPE_NAMES[type]} expression`);
  }
}

/** Conditions are evaluated recursively: a chain of thousands of `or`s would exhaust the stack. */
export const MAX_CONDITION_DEPTH = 1000;

function operands(expression: Expr): Expr[] {
  switch (expression.kind) {
    case 'not':
    case 'negate':
    case 'bitwiseNot':
    case 'defined':
      return [expression.operand];
    case 'and':
    case 'or':
    case 'compare':
    case 'arithmetic':
    case 'textOperator':
      return [expression.left, expression.right];
    case 'matches':
      return [expression.left];
    case 'stringAt':
      return [expression.offset];
    case 'stringIn':
    case 'stringCountIn':
      return [expression.from, expression.to];
    case 'stringOffset':
    case 'stringLength':
      return [expression.index];
    case 'readInteger':
      return [expression.offset];
    case 'of':
    case 'ofRules':
      return quantifierOperands(expression.quantifier);
    case 'forOf':
      return [expression.body, ...quantifierOperands(expression.quantifier)];
    case 'forIn':
      return [
        expression.body,
        ...quantifierOperands(expression.quantifier),
        ...(expression.iterable.kind === 'range'
          ? [expression.iterable.from, expression.iterable.to]
          : expression.iterable.items),
      ];
    case 'module':
      return expression.steps.flatMap((step) =>
        step.kind === 'index' ? [step.index] : step.kind === 'call' ? step.args : [],
      );
    default:
      return [];
  }
}

function quantifierOperands(quantifier: Quantifier): Expr[] {
  return quantifier.kind === 'count' ? [quantifier.count] : quantifier.kind === 'percent' ? [quantifier.percent] : [];
}

/** The first node found more than `limit` levels down, walked without recursion. */
export function nodeBeyondDepth(root: Expr, limit: number): Expr | undefined {
  const pending: Array<[Expr, number]> = [[root, 1]];
  while (pending.length > 0) {
    const [expression, depth] = pending.pop()!;
    if (depth > limit) return expression;
    for (const operand of operands(expression)) pending.push([operand, depth + 1]);
  }
  return undefined;
}

export function typeOf(expression: Expr): ValueType {
  switch (expression.kind) {
    case 'integer':
    case 'filesize':
    case 'bitwiseNot':
    case 'stringCount':
    case 'stringCountIn':
    case 'stringOffset':
    case 'stringLength':
    case 'readInteger':
    case 'variable':
      return 'integer';
    case 'float':
      return 'float';
    case 'text':
      return 'string';
    case 'module':
      return expression.type;
    case 'negate':
      return typeOf(expression.operand);
    case 'arithmetic':
      return typeOf(expression.left) === 'float' || typeOf(expression.right) === 'float' ? 'float' : 'integer';
    default:
      return 'boolean';
  }
}
