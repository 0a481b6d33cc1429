import type {
  ArithmeticOperator,
  ComparisonOperator,
  Expr,
  IntegerRead,
  Iterable,
  MetaValue,
  ModuleStep,
  Quantifier,
  RuleAst,
  RuleFile,
  StringAst,
  TextModifiers,
  TextOperator,
  ValueType,
} from './ast.js';
import { ruleError, type SourcePosition } from './errors.js';
import { parseHexString, type BodyFailure } from './hexString.js';
import { positionInBody, tokenize, type Token, type TokenKind } from './lexer.js';
import { MAX_NESTING } from './pattern.js';
import { MODULES } from './modules/index.js';
import type { ModuleType } from './modules/types.js';
import { parseRegex } from './regex.js';

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
const KEYWORDS = new Set([
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

const STANDARD_BASE64 = new TextEncoder().encode('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/');

/** Words that end a string's modifier list. */
const SECTION_KEYWORDS = new Set(['meta', 'strings', 'condition']);

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
  const imported = new Set<string>();

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
        const token = expectKind('text', 'a module name');
        const module = new TextDecoder().decode(token.bytes);
        if (!MODULES.has(module))
          fail(token, `unsupported module '${module}' (supported: ${[...MODULES.keys()].join(', ')})`);
        imported.add(module);
        continue;
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
        ? ['nocase', 'wide', 'ascii', 'fullword', 'private', 'xor', 'base64', 'base64wide']
        : value.kind === 'regex'
          ? ['nocase', 'wide', 'ascii', 'fullword', 'private']
          : ['private'];
    if (value.kind !== 'text' && value.kind !== 'hex' && value.kind !== 'regex')
      fail(value, `expected a string value, found ${describe(value)}`);
    const seen = new Set<string>();
    let xor: TextModifiers['xor'];
    let base64: Uint8Array | undefined;
    let base64wide: Uint8Array | undefined;
    while (peek().kind === 'identifier' && !SECTION_KEYWORDS.has(peek().text)) {
      const modifier = next();
      if (!allowed.includes(modifier.text))
        fail(modifier, `unsupported modifier '${modifier.text}' for ${value.kind} string "${id}"`);
      if (seen.has(modifier.text)) fail(modifier, `duplicate modifier '${modifier.text}'`);
      seen.add(modifier.text);
      if (modifier.text === 'xor') xor = parseXorRange();
      if (modifier.text === 'base64') base64 = parseAlphabet();
      if (modifier.text === 'base64wide') base64wide = parseAlphabet();
    }
    if (xor && seen.has('nocase')) fail(value, `'xor' and 'nocase' cannot be combined in "${id}"`);
    const conflict = ['nocase', 'xor', 'fullword'].find((other) => seen.has(other));
    if ((base64 || base64wide) && conflict) fail(value, `'base64' and '${conflict}' cannot be combined in "${id}"`);
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
      return {
        kind: 'text',
        id,
        position,
        isPrivate,
        bytes: value.bytes!,
        modifiers: { ...modifiers, xor, base64, base64wide },
      };
    }
    const unknownFlag = [...value.flags!].find((flag) => flag !== 'i' && flag !== 's');
    if (unknownFlag) fail(value, `unsupported regular expression modifier '${unknownFlag}'`);
    const flags = {
      caseInsensitive: value.flags!.includes('i') || modifiers.nocase,
      dotAll: value.flags!.includes('s'),
    };
    return { kind: 'regex', id, position, isPrivate, pattern: parseRegex(value.text, flags, bodyFailure), modifiers };
  }

  /** A `base64` modifier's alphabet: 64 characters in parentheses, or the standard one. */
  function parseAlphabet(): Uint8Array {
    if (!isPunct('(')) return STANDARD_BASE64;
    next();
    const token = expectKind('text', 'a base64 alphabet');
    if (token.bytes!.length !== 64) fail(token, `a base64 alphabet has 64 characters, not ${token.bytes!.length}`);
    expectPunct(')');
    return token.bytes!;
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
    /** The loop variables in scope, innermost last, each with its slot. */
    private readonly variables: Array<{ name: string; slot: number }> = [];
    /** Slots a rule's loops need (each loop variable has its own). */
    slotCount = 0;
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
      if (!isWord('not') && !isWord('defined')) return this.parseBinary(0);
      const at = next();
      const operand = this.nested(at, () => this.parseNot());
      return { kind: at.text === 'not' ? 'not' : 'defined', operand, line: at.line, column: at.column };
    }

    private parseBinary(level: number): Expr {
      const operators = BINARY_LEVELS[level];
      if (!operators) return this.parseUnary();
      let left = this.parseBinary(level + 1);
      while ((peek().kind === 'punct' || peek().kind === 'identifier') && operators.includes(peek().text)) {
        const at = next();
        const position = { line: at.line, column: at.column };
        if (at.text === 'matches') {
          this.expectType(left, 'string');
          const regex = expectKind('regex', "a regular expression after 'matches'");
          const unknownFlag = [...regex.flags!].find((flag) => flag !== 'i' && flag !== 's');
          if (unknownFlag) fail(regex, `unsupported regular expression modifier '${unknownFlag}'`);
          const flags = { caseInsensitive: regex.flags!.includes('i'), dotAll: regex.flags!.includes('s') };
          const pattern = parseRegex(regex.text, flags, (offset, message) =>
            fail(positionInBody(regex, regex.text, offset), message),
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
        fail(right, 'division by zero');
      return { kind: 'arithmetic', operator: operator as ArithmeticOperator, left, right, ...position };
    }

    private parseUnary(): Expr {
      if (!isPunct('-') && !isPunct('~')) return this.parsePrimary();
      const at = next();
      const operand = this.nested(at, () => this.parseUnary());
      if (at.text === '-') this.expectNumber(operand);
      else this.expectType(operand, 'integer');
      return { kind: at.text === '-' ? 'negate' : 'bitwiseNot', operand, line: at.line, column: at.column };
    }

    private parsePrimary(): Expr {
      const token = peek();
      const position = { line: token.line, column: token.column };
      switch (token.kind) {
        case 'number': {
          next();
          const literal: Expr = { kind: 'integer', value: token.value!, ...position };
          if (isPunct('%') && isWord('of', peek(1))) {
            next();
            return this.parseOf({ kind: 'percent', percent: literal }, position);
          }
          return isWord('of') ? this.parseOf({ kind: 'count', count: literal }, position) : literal;
        }
        case 'float':
          next();
          return { kind: 'float', value: token.float!, ...position };
        case 'text':
          next();
          return { kind: 'text', value: Buffer.from(token.bytes!).toString('latin1'), ...position };
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
        case 'stringCount': {
          next();
          const string = this.resolveString(token);
          if (isWord('in')) {
            next();
            const [from, to] = this.parseRange();
            return { kind: 'stringCountIn', string, from, to, ...position };
          }
          return { kind: 'stringCount', string, ...position };
        }
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
        case 'none':
          next();
          return this.parseOf({ kind: token.text }, position);
        case 'for':
          return this.parseFor(position);
        case 'entrypoint':
          return fail(
            token,
            "unsupported construct 'entrypoint' (deprecated by yara: use the module's entry point, such as elf.entry_point)",
          );
      }
      const read = INTEGER_READS.get(token.text);
      if (read && isPunct('(', peek(1))) {
        next();
        next();
        const offset = this.integerExpression();
        expectPunct(')');
        return { kind: 'readInteger', read, offset, ...position };
      }
      const variable = [...this.variables].reverse().find((candidate) => candidate.name === token.text);
      if (variable) {
        next();
        return { kind: 'variable', slot: variable.slot, ...position };
      }
      if (imported.has(token.text)) return this.parseModule(token, position);
      next();
      if (MODULES.has(token.text) && (isPunct('.') || isPunct('(')))
        fail(token, `module '${token.text}' used without 'import "${token.text}"'`);
      if (isPunct('.') || isPunct('(')) {
        const rest = isPunct('.') && peek(1).kind === 'identifier' ? `.${peek(1).text}` : isPunct('(') ? '(…)' : '';
        fail(token, `unsupported construct '${token.text}${rest}'`);
      }
      const rule = ruleIndex.get(token.text);
      if (rule === undefined) fail(token, `unknown identifier '${token.text}'`);
      return { kind: 'ruleReference', rule: rule!, ...position };
    }

    /** `math.entropy(0, filesize)`, `elf.sections[0].name`: checked against the module's declarations. */
    private parseModule(token: Token, position: SourcePosition): Expr {
      next();
      const module = MODULES.get(token.text)!;
      let type: ModuleType = module.type;
      let path = token.text;
      const steps: ModuleStep[] = [];
      while (isPunct('.') || isPunct('[') || isPunct('(')) {
        const step = next();
        if (step.text === '.') {
          const field = expectKind('identifier', 'a field name');
          const found = type.kind === 'struct' ? type.fields[field.text] : undefined;
          if (!found) fail(field, `unknown field '${field.text}' of '${path}'`);
          type = found!;
          path += `.${field.text}`;
          steps.push({ kind: 'field', name: field.text });
        } else if (step.text === '[') {
          if (type.kind !== 'array') fail(step, `'${path}' is not an array`);
          const index = this.bracketed();
          type = (type as ModuleType & { kind: 'array' }).of;
          path += '[…]';
          steps.push({ kind: 'index', index });
        } else {
          if (type.kind !== 'function') fail(step, `'${path}' is not a function`);
          const args: Expr[] = [];
          if (!isPunct(')')) {
            do args.push(this.parseCondition());
            while (isPunct(',') && next());
          }
          expectPunct(')');
          const types = args.map(typeOf);
          const overloads = (type as ModuleType & { kind: 'function' }).overloads;
          const overload = overloads.findIndex(
            (candidate) =>
              candidate.args.length === types.length && candidate.args.every((wanted, i) => wanted === types[i]),
          );
          if (overload < 0)
            fail(
              step,
              `no '${path}' takes (${types.join(', ')}); it takes ${overloads.map((candidate) => `(${candidate.args.join(', ')})`).join(' or ')}`,
            );
          type = { kind: 'value', type: overloads[overload]!.returns as 'integer' };
          path += '(…)';
          steps.push({ kind: 'call', args, overload });
        }
      }
      if (type.kind !== 'value')
        fail(token, `'${path}' is ${type.kind === 'function' ? 'a function: call it' : `a ${type.kind}, not a value`}`);
      return {
        kind: 'module',
        module: module.name,
        steps,
        type: (type as ModuleType & { kind: 'value' }).type,
        ...position,
      };
    }

    private parseOf(quantifier: Quantifier, position: SourcePosition): Expr {
      expectWord('of');
      if (isPunct('(') && peek(1).kind === 'identifier')
        return { kind: 'ofRules', quantifier, rules: this.parseRuleSet(), ...position };
      return { kind: 'of', quantifier, strings: this.parseStringSet(), ...position };
    }

    /** `for <quantifier> of <strings> : ( … )` or `for <quantifier> <variable> in <range or list> : ( … )`. */
    private parseFor(position: SourcePosition): Expr {
      next(); // for
      const quantifier = this.parseQuantifier();
      if (isWord('of')) {
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
      const name = expectKind('identifier', "'of' or a loop variable");
      if (KEYWORDS.has(name.text)) fail(name, `'${name.text}' is a keyword`);
      if (isPunct(',')) fail(peek(), "unsupported construct 'for' with several variables (module dictionaries)");
      expectWord('in');
      const iterable = this.parseIterable();
      expectPunct(':');
      expectPunct('(');
      const slot = this.slotCount++;
      this.variables.push({ name: name.text, slot });
      const body = this.parseCondition();
      this.variables.pop();
      expectPunct(')');
      return { kind: 'forIn', quantifier, slot, iterable, body, ...position };
    }

    private parseQuantifier(): Quantifier {
      const token = peek();
      if (isWord('any') || isWord('all') || isWord('none')) return { kind: next().text as 'any' | 'all' | 'none' };
      // A literal is taken as is: parsing it as an expression would read `2 of` as a whole `of` expression.
      const count: Expr =
        token.kind === 'number'
          ? (next(), { kind: 'integer', value: token.value!, line: token.line, column: token.column })
          : this.parseUnary();
      this.expectType(count, 'integer');
      if (isPunct('%')) {
        next();
        return { kind: 'percent', percent: count };
      }
      if (!isWord('of') && peek().kind !== 'identifier')
        fail(token, "expected 'any', 'all', 'none' or a count after 'for'");
      return { kind: 'count', count };
    }

    /** `(a..b)` or `(a, b, …)` of integers. */
    private parseIterable(): Iterable {
      if (!isPunct('('))
        fail(
          peek(),
          "unsupported construct 'for … in' over a module array or dictionary (only '(a..b)' and '(a, b, …)')",
        );
      next();
      const first = this.integerExpression();
      if (isPunct('..')) {
        next();
        const to = this.integerExpression();
        expectPunct(')');
        return { kind: 'range', from: first, to };
      }
      const items = [first];
      while (isPunct(',')) {
        next();
        items.push(this.integerExpression());
      }
      expectPunct(')');
      return { kind: 'list', items };
    }

    /** `( rule_a, rule_b* )`: rules declared before this one, in file order. */
    private parseRuleSet(): number[] {
      expectPunct('(');
      const chosen = new Set<number>();
      do {
        const token = expectKind('identifier', 'a rule name');
        const wildcard =
          isPunct('*') && peek().line === token.line && peek().column === token.column + token.text.length;
        if (wildcard) next();
        const found = wildcard
          ? [...ruleIndex].filter(([name]) => name.startsWith(token.text)).map(([, index]) => index)
          : ruleIndex.has(token.text)
            ? [ruleIndex.get(token.text)!]
            : [];
        if (found.length === 0) fail(token, `unknown rule '${token.text}${wildcard ? '*' : ''}'`);
        for (const index of found) chosen.add(index);
      } while (isPunct(',') && next());
      expectPunct(')');
      return [...chosen].sort((a, b) => a - b);
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

    private expectType(expression: Expr, type: ValueType): void {
      if (typeOf(expression) !== type)
        fail(expression, `expected ${TYPE_NAMES[type]} expression, found ${TYPE_NAMES[typeOf(expression)]}`);
    }

    private expectNumber(expression: Expr): void {
      const type = typeOf(expression);
      if (type !== 'integer' && type !== 'float')
        fail(expression, `expected a number, found ${TYPE_NAMES[type]} expression`);
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
function nodeBeyondDepth(root: Expr, limit: number): Expr | undefined {
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
