import type { MetaValue, RuleAst, RuleFile, StringAst, TextModifiers } from './ast.js';
import type { SourcePosition } from './errors.js';
import { parseHexString, type BodyFailure } from './hexString.js';
import { positionInBody, tokenize } from './lexer.js';
import { ConditionParser, KEYWORDS, MAX_CONDITION_DEPTH, nodeBeyondDepth } from './conditionParser.js';
import { TokenCursor } from './tokenCursor.js';
import { MODULES } from './modules/index.js';
import { parseRegex } from './regex.js';

const STANDARD_BASE64 = new TextEncoder().encode('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/');

/** YARA's default YR_CONFIG_MAX_STRINGS_PER_RULE: `yara` refuses a rule with more ("too many strings in rule"). */
export const MAX_STRINGS_PER_RULE = 10_000;

/** Words that end a string's modifier list. */
const SECTION_KEYWORDS = new Set(['meta', 'strings', 'condition']);

/**
 * Parses a YARA rule file (recursive descent over `tokenize`'s tokens) into checked rules:
 * string references resolve to the rule's strings, rule references to earlier rules, integer
 * operators get integers, and every string is used (YARA refuses unreferenced strings).
 * Anything outside the supported subset is an error naming file, line, column and rule.
 */
export function parseRules(source: string, file = '<rules>'): RuleFile {
  return { file, rules: [...readRules(source, file)] };
}

/**
 * parseRules one rule at a time, in file order: a caller that compiles each rule as it comes
 * never holds the syntax trees of a 190k-rule file at once.
 */
export function* readRules(source: string, file = '<rules>'): Generator<RuleAst, void, undefined> {
  const cursor = new TokenCursor(tokenize(source, file), file);
  const { peek, next, fail, describe, isPunct, isWord, expectPunct, expectWord, expectKind } = cursor;
  let ruleCount = 0;
  const ruleIndex = new Map<string, number>();
  const imported = new Set<string>();

  function* parseFile(): Generator<RuleAst, void, undefined> {
    while (peek().kind !== 'eof') {
      cursor.currentRule = undefined;
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
      yield parseRule();
      ruleCount++;
    }
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
    cursor.currentRule = name;
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
    const conditionParser = new ConditionParser(cursor, strings, { ruleIndex, imported });
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
    ruleIndex.set(name, ruleCount);
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
    const ids = new Set<string>();
    while (peek().kind === 'stringId') {
      const idToken = next();
      if (idToken.text.endsWith('*')) fail(idToken, `invalid string name '$${idToken.text}'`);
      if (strings.length === MAX_STRINGS_PER_RULE) {
        fail(idToken, `too many strings in rule (limit: ${MAX_STRINGS_PER_RULE}, as yara's)`);
      }
      const id = '$' + idToken.text;
      if (id !== '$' && ids.has(id)) fail(idToken, `duplicate string "${id}"`);
      ids.add(id);
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

  yield* parseFile();
}

export { typeOf } from './conditionParser.js';
