import type {
  ArithmeticOperator,
  ComparisonOperator,
  Expr,
  MetaValue,
  Quantifier,
  RuleAst,
  RuleFile,
  StringAst,
  TextModifiers,
} from './ast.js';
import { ruleError, type SourcePosition } from './errors.js';
import { parseHexString, type BodyFailure } from './hexString.js';
import { positionInBody, tokenize, type Token, type TokenKind } from './lexer.js';
import { MAX_NESTING } from './pattern.js';
import { parseRegex } from './regex.js';

/** Binary operators by precedence level, loosest first, as in YARA's grammar (`not` sits above `==`). */
const BINARY_LEVELS: ReadonlyArray<readonly string[]> = [
  ['==', '!='],
  ['<', '<=', '>', '>='],
  ['|'],
  ['^'],
  ['&'],
  ['<<', '>>'],
  ['+', '-'],
  ['*', '\\', '%'],
];
const COMPARISONS = new Set(['==', '!=', '<', '<=', '>', '>=']);
const KEYWORDS = new Set([
  'all',
  'and',
  'any',
  'ascii',
  'at',
  'condition',
  'false',
  'filesize',
  'for',
  'fullword',
  'global',
  'import',
  'in',
  'include',
  'meta',
  'nocase',
  'not',
  'of',
  'or',
  'private',
  'rule',
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

/** Words that end a string's modifier list. */
const SECTION_KEYWORDS = new Set(['meta', 'strings', 'condition']);

type ExprType = 'boolean' | 'integer';

/**
 * Parses a YARA rule file (recursive descent over `tokenize`'s tokens) into checked rules:
 * string references resolve to the rule's strings, rule references to earlier rules, integer
 * operators get integers, and every string is used (YARA refuses unreferenced strings).
 * Anything outside the supported subset is an error naming file, line, column and rule.
 */
export function parseRules(source: string, file = '<rules>'): RuleFile {
  const tokens = tokenize(source, file);
  let index = 0;
  const rules: RuleAst[] = [];
  const ruleIndex = new Map<string, number>();
  let currentRule: string | undefined;

  const peek = (ahead = 0): Token => tokens[Math.min(index + ahead, tokens.length - 1)]!;
  const fail = (at: SourcePosition, message: string): never => {
    throw ruleError(file, at, currentRule, message);
  };
  const describe = (token: Token) =>
    token.kind === 'eof' ? 'end of file' : `'${token.kind === 'text' ? '"…"' : token.text}'`;
  const isPunct = (text: string, token = peek()) => token.kind === 'punct' && token.text === text;
  const isWord = (text: string, token = peek()) => token.kind === 'identifier' && token.text === text;
  const next = () => tokens[index++]!;
  const expectPunct = (text: string): Token =>
    isPunct(text) ? next() : fail(peek(), `expected '${text}', found ${describe(peek())}`);
  const expectWord = (text: string): Token =>
    isWord(text) ? next() : fail(peek(), `expected '${text}', found ${describe(peek())}`);
  const expectKind = (kind: TokenKind, what: string): Token =>
    peek().kind === kind ? next() : fail(peek(), `expected ${what}, found ${describe(peek())}`);

  // The condition parser class must be initialised before any rule is parsed.
  function parseFile(): RuleFile {
    while (peek().kind !== 'eof') {
      currentRule = undefined;
      if (isWord('import')) {
        next();
        const module = expectKind('text', 'a module name');
        fail(module, `unsupported module import '${new TextDecoder().decode(module.bytes)}'`);
      }
      if (isWord('include')) fail(peek(), "unsupported construct 'include'");
      rules.push(parseRule());
    }
    return { file, rules };
  }

  function parseRule(): RuleAst {
    let isPrivate = false;
    let isGlobal = false;
    while (isWord('private') || isWord('global')) {
      if (next().text === 'private') isPrivate = true;
      else isGlobal = true;
    }
    expectWord('rule');
    const nameToken = expectKind('identifier', 'a rule name');
    const name = nameToken.text;
    currentRule = name;
    if (KEYWORDS.has(name)) fail(nameToken, `'${name}' is a keyword`);
    if (ruleIndex.has(name)) fail(nameToken, 'duplicate rule name');
    const tags: string[] = [];
    if (isPunct(':')) {
      next();
      while (peek().kind === 'identifier') tags.push(next().text);
      if (tags.length === 0) fail(peek(), "expected a tag after ':'");
    }
    expectPunct('{');
    const meta = isWord('meta') ? parseMeta() : [];
    const strings = isWord('strings') ? parseStrings() : [];
    expectWord('condition');
    expectPunct(':');
    const conditionParser = new ConditionParser(strings);
    const condition = conditionParser.parseCondition();
    if (!isPunct('}')) fail(peek(), `unexpected ${describe(peek())} in condition`);
    const tooDeep = nodeBeyondDepth(condition, MAX_CONDITION_DEPTH);
    if (tooDeep)
      fail(tooDeep, `condition more than ${MAX_CONDITION_DEPTH} operators deep (combine strings with 'any of (…)')`);
    next();
    strings.forEach((string, i) => {
      if (string.id !== '$' && !string.id.startsWith('$_') && !conditionParser.searchedAt.has(i))
        fail(string.position, `unreferenced string "${string.id}"`);
    });
    const checkedStrings = strings.map((string, i) => ({ ...string, fixedOffset: conditionParser.searchedAt.get(i) }));
    ruleIndex.set(name, rules.length);
    return { name, position: nameToken, isPrivate, isGlobal, tags, meta, strings: checkedStrings, condition };
  }

  function parseMeta(): Array<readonly [string, MetaValue]> {
    next();
    expectPunct(':');
    const entries: Array<readonly [string, MetaValue]> = [];
    while (peek().kind === 'identifier' && isPunct('=', peek(1))) {
      const key = next().text;
      next();
      const negative = isPunct('-');
      if (negative) next();
      const value = peek();
      if (value.kind === 'text' && !negative) entries.push([key, new TextDecoder().decode(next().bytes)]);
      else if (value.kind === 'number') entries.push([key, negative ? -next().value! : next().value!]);
      else if ((isWord('true') || isWord('false')) && !negative) entries.push([key, next().text === 'true']);
      else fail(value, `invalid meta value ${describe(value)}`);
    }
    return entries;
  }

  function parseStrings(): StringAst[] {
    next();
    expectPunct(':');
    const strings: StringAst[] = [];
    while (peek().kind === 'stringId') {
      const idToken = next();
      if (idToken.text.endsWith('*')) fail(idToken, `invalid string name '$${idToken.text}'`);
      const id = '$' + idToken.text;
      if (id !== '$' && strings.some((string) => string.id === id)) fail(idToken, `duplicate string "${id}"`);
      expectPunct('=');
      strings.push(parseString(id, idToken));
    }
    if (strings.length === 0) fail(peek(), "expected at least one string after 'strings:'");
    return strings;
  }

  function parseString(id: string, position: SourcePosition): StringAst {
    const value = next();
    const allowed =
      value.kind === 'text'
        ? ['nocase', 'wide', 'ascii', 'fullword', 'private', 'xor']
        : value.kind === 'regex'
          ? ['nocase', 'wide', 'ascii', 'fullword', 'private']
          : ['private'];
    if (value.kind !== 'text' && value.kind !== 'hex' && value.kind !== 'regex')
      fail(value, `expected a string value, found ${describe(value)}`);
    const seen = new Set<string>();
    let xor: TextModifiers['xor'];
    while (peek().kind === 'identifier' && !SECTION_KEYWORDS.has(peek().text)) {
      const modifier = next();
      if (!allowed.includes(modifier.text))
        fail(modifier, `unsupported modifier '${modifier.text}' for ${value.kind} string "${id}"`);
      if (seen.has(modifier.text)) fail(modifier, `duplicate modifier '${modifier.text}'`);
      seen.add(modifier.text);
      if (modifier.text === 'xor') xor = parseXorRange();
    }
    if (xor && seen.has('nocase')) fail(value, `'xor' and 'nocase' cannot be combined in "${id}"`);
    const isPrivate = seen.has('private');
    const bodyFailure: BodyFailure = (offset, message) =>
      fail(positionInBody(value, value.text, offset), `${message} in "${id}"`);
    const modifiers = {
      wide: seen.has('wide'),
      ascii: seen.has('ascii') || !seen.has('wide'),
      nocase: seen.has('nocase'),
      fullword: seen.has('fullword'),
    };
    if (value.kind === 'hex')
      return { kind: 'hex', id, position, isPrivate, pattern: parseHexString(value.text, bodyFailure) };
    if (value.kind === 'text') {
      if (value.bytes!.length === 0) fail(value, `empty string "${id}"`);
      return { kind: 'text', id, position, isPrivate, bytes: value.bytes!, modifiers: { ...modifiers, xor } };
    }
    const unknownFlag = [...value.flags!].find((flag) => flag !== 'i' && flag !== 's');
    if (unknownFlag) fail(value, `unsupported regular expression modifier '${unknownFlag}'`);
    const flags = {
      caseInsensitive: value.flags!.includes('i') || modifiers.nocase,
      dotAll: value.flags!.includes('s'),
    };
    return { kind: 'regex', id, position, isPrivate, pattern: parseRegex(value.text, flags, bodyFailure), modifiers };
  }

  function parseXorRange(): { min: number; max: number } {
    if (!isPunct('(')) return { min: 0, max: 255 };
    next();
    const keyByte = () => {
      const token = expectKind('number', 'an xor key');
      if (token.value! > 255n) fail(token, 'xor key above 255');
      return Number(token.value!);
    };
    const min = keyByte();
    const max = isPunct('-') ? (next(), keyByte()) : min;
    if (min > max) fail(peek(), 'xor range has its lower bound above its upper bound');
    expectPunct(')');
    return { min, max };
  }

  /** One rule's condition, resolved against that rule's strings. */
  class ConditionParser {
    /**
     * Each referenced string, with the one offset it is looked for at when every reference is
     * `$s at <integer literal>` with the same literal — YARA then records only matches there
     * (`#s`, `@s` never see the others) — or undefined when any offset counts.
     */
    readonly searchedAt = new Map<number, bigint | undefined>();
    private forOfDepth = 0;
    private depth = 0;
    constructor(private readonly strings: readonly StringAst[]) {}

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
      while (isWord(operator)) {
        const at = next();
        left = { kind: operator, left, right: parseOperand(), line: at.line, column: at.column };
      }
      return left;
    }

    /** Parses one level deeper; the limit keeps hostile nesting from exhausting the stack. */
    private nested(at: SourcePosition, parse: () => Expr): Expr {
      if (++this.depth > MAX_NESTING) fail(at, `condition nested more than ${MAX_NESTING} deep`);
      const result = parse();
      this.depth--;
      return result;
    }

    private parseNot(): Expr {
      if (!isWord('not')) return this.parseBinary(0);
      const at = next();
      return { kind: 'not', operand: this.nested(at, () => this.parseNot()), line: at.line, column: at.column };
    }

    private parseBinary(level: number): Expr {
      const operators = BINARY_LEVELS[level];
      if (!operators) return this.parseUnary();
      let left = this.parseBinary(level + 1);
      while (peek().kind === 'punct' && operators.includes(peek().text)) {
        const at = next();
        const right = this.parseBinary(level + 1);
        this.expectType(left, 'integer');
        this.expectType(right, 'integer');
        if ((at.text === '\\' || at.text === '%') && right.kind === 'integer' && right.value === 0n)
          fail(right, 'division by zero');
        const position = { line: at.line, column: at.column };
        left = COMPARISONS.has(at.text)
          ? { kind: 'compare', operator: at.text as ComparisonOperator, left, right, ...position }
          : { kind: 'arithmetic', operator: at.text as ArithmeticOperator, left, right, ...position };
      }
      return left;
    }

    private parseUnary(): Expr {
      if (!isPunct('-') && !isPunct('~')) return this.parsePrimary();
      const at = next();
      const operand = this.nested(at, () => this.parseUnary());
      this.expectType(operand, 'integer');
      return { kind: at.text === '-' ? 'negate' : 'bitwiseNot', operand, line: at.line, column: at.column };
    }

    private parsePrimary(): Expr {
      const token = peek();
      const position = { line: token.line, column: token.column };
      switch (token.kind) {
        case 'number': {
          next();
          const literal: Expr = { kind: 'integer', value: token.value!, ...position };
          return isWord('of') ? this.parseOf({ kind: 'count', count: literal }, position) : literal;
        }
        case 'stringId': {
          next();
          const string = this.resolveString(
            token,
            isWord('at') && peek(1).kind === 'number' && !isBinaryOperator(peek(2)) ? peek(1).value : undefined,
          );
          if (isWord('at')) {
            next();
            return { kind: 'stringAt', string, offset: this.integerExpression(), ...position };
          }
          if (isWord('in')) {
            next();
            const [from, to] = this.parseRange();
            return { kind: 'stringIn', string, from, to, ...position };
          }
          return { kind: 'stringMatches', string, ...position };
        }
        case 'stringCount':
          next();
          if (isWord('in')) fail(peek(), "unsupported construct '#s in (…)'");
          return { kind: 'stringCount', string: this.resolveString(token), ...position };
        case 'stringOffset':
        case 'stringLength': {
          next();
          const string = this.resolveString(token);
          const index: Expr = isPunct('[') ? (next(), this.bracketed()) : { kind: 'integer', value: 1n, ...position };
          return { kind: token.kind, string, index, ...position };
        }
        case 'punct':
          if (token.text === '(') {
            next();
            const inner = this.nested(token, () => this.parseCondition());
            expectPunct(')');
            return inner;
          }
          break;
        case 'identifier':
          return this.parseWord(token, position);
        default:
          break;
      }
      return fail(token, `unexpected ${describe(token)} in condition`);
    }

    private parseWord(token: Token, position: SourcePosition): Expr {
      switch (token.text) {
        case 'true':
        case 'false':
          next();
          return { kind: 'boolean', value: token.text === 'true', ...position };
        case 'filesize':
          next();
          return { kind: 'filesize', ...position };
        case 'any':
        case 'all':
          next();
          return this.parseOf({ kind: token.text }, position);
        case 'for':
          return this.parseForOf(position);
      }
      next();
      if (isPunct('.') || isPunct('(')) {
        const rest = isPunct('.') && peek(1).kind === 'identifier' ? `.${peek(1).text}` : isPunct('(') ? '(…)' : '';
        fail(token, `unsupported construct '${token.text}${rest}'`);
      }
      const rule = ruleIndex.get(token.text);
      if (rule === undefined) fail(token, `unknown identifier '${token.text}'`);
      return { kind: 'ruleReference', rule: rule!, ...position };
    }

    private parseOf(quantifier: Quantifier, position: SourcePosition): Expr {
      expectWord('of');
      return { kind: 'of', quantifier, strings: this.parseStringSet(), ...position };
    }

    private parseForOf(position: SourcePosition): Expr {
      next(); // for
      const quantifierToken = peek();
      const unsupported = () =>
        fail(position, "unsupported construct 'for' over integers or identifiers (only 'for any/all/N of … : (…)')");
      let quantifier: Quantifier;
      if (isWord('any') || isWord('all')) quantifier = { kind: next().text as 'any' | 'all' };
      else if (quantifierToken.kind === 'number')
        quantifier = {
          kind: 'count',
          count: { kind: 'integer', value: next().value!, line: quantifierToken.line, column: quantifierToken.column },
        };
      else return unsupported();
      if (!isWord('of')) unsupported();
      next();
      const strings = this.parseStringSet();
      expectPunct(':');
      expectPunct('(');
      this.forOfDepth++;
      const body = this.parseCondition();
      this.forOfDepth--;
      expectPunct(')');
      return { kind: 'forOf', quantifier, strings, body, ...position };
    }

    /** `them` or `( $a, $b*, … )`: indexes of the rule's strings, each once, in rule order. */
    private parseStringSet(): number[] {
      if (isWord('them')) {
        const them = next();
        if (this.strings.length === 0) fail(them, "'them' in a rule without strings");
        this.strings.forEach((_, i) => this.searchedAt.set(i, undefined));
        return this.strings.map((_, i) => i);
      }
      expectPunct('(');
      const chosen = new Set<number>();
      do {
        const token = peek();
        if (token.kind !== 'stringId' || token.text === '')
          fail(token, `expected a string name in the set, found ${describe(token)}`);
        next();
        const prefix = '$' + token.text.replace(/\*$/, '');
        const matches = this.strings.flatMap((string, i) =>
          (token.text.endsWith('*') ? string.id.startsWith(prefix) : string.id === prefix) ? [i] : [],
        );
        if (matches.length === 0) fail(token, `undefined string "$${token.text}"`);
        for (const i of matches) {
          chosen.add(i);
          this.searchedAt.set(i, undefined);
        }
      } while (isPunct(',') && next());
      expectPunct(')');
      return [...chosen].sort((a, b) => a - b);
    }

    private parseRange(): [Expr, Expr] {
      expectPunct('(');
      const from = this.integerExpression();
      expectPunct('..');
      const to = this.integerExpression();
      expectPunct(')');
      return [from, to];
    }

    private bracketed(): Expr {
      const inner = this.integerExpression();
      expectPunct(']');
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
      if (token.text.endsWith('*')) fail(token, `wildcard "${sigil}${token.text}" outside a string set`);
      if (token.text === '') {
        if (this.forOfDepth === 0) fail(token, `anonymous "${sigil}" outside a 'for … of' body`);
        return undefined;
      }
      const found = this.strings.findIndex((string) => string.id === '$' + token.text);
      if (found < 0) fail(token, `undefined string "$${token.text}"`);
      const previous = this.searchedAt.has(found) ? this.searchedAt.get(found) : atLiteral;
      this.searchedAt.set(found, previous === atLiteral ? atLiteral : undefined);
      return found;
    }

    private expectType(expression: Expr, type: ExprType): void {
      if (typeOf(expression) !== type)
        fail(expression, `expected ${type === 'integer' ? 'an integer' : 'a boolean'} expression`);
    }
  }

  return parseFile();
}

/** Conditions are evaluated recursively: a chain of thousands of `or`s would exhaust the stack. */
const MAX_CONDITION_DEPTH = 1000;

function operands(expression: Expr): Expr[] {
  switch (expression.kind) {
    case 'not':
    case 'negate':
    case 'bitwiseNot':
      return [expression.operand];
    case 'and':
    case 'or':
    case 'compare':
    case 'arithmetic':
      return [expression.left, expression.right];
    case 'stringAt':
      return [expression.offset];
    case 'stringIn':
      return [expression.from, expression.to];
    case 'stringOffset':
    case 'stringLength':
      return [expression.index];
    case 'of':
      return expression.quantifier.kind === 'count' ? [expression.quantifier.count] : [];
    case 'forOf':
      return expression.quantifier.kind === 'count'
        ? [expression.body, expression.quantifier.count]
        : [expression.body];
    default:
      return [];
  }
}

/** The first node found more than `limit` levels down, walked without recursion. */
function nodeBeyondDepth(root: Expr, limit: number): Expr | undefined {
  const pending: Array<[Expr, number]> = [[root, 1]];
  while (pending.length > 0) {
    const [expression, depth] = pending.pop()!;
    if (depth > limit) return expression;
    for (const operand of operands(expression)) pending.push([operand, depth + 1]);
  }
  return undefined;
}

function typeOf(expression: Expr): ExprType {
  switch (expression.kind) {
    case 'integer':
    case 'filesize':
    case 'arithmetic':
    case 'negate':
    case 'bitwiseNot':
    case 'stringCount':
    case 'stringOffset':
    case 'stringLength':
      return 'integer';
    default:
      return 'boolean';
  }
}
