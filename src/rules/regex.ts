import type { BodyFailure } from './hexString.js';
import {
  MAX_MATCH_LENGTH,
  MAX_NESTING,
  byteSet,
  isAsciiAlphanumeric,
  otherCase,
  type ByteSet,
  type PatternNode,
} from './pattern.js';

export interface RegexFlags {
  /** `i`: ASCII letters match either case. */
  readonly caseInsensitive: boolean;
  /** `s`: `.` also matches a newline. */
  readonly dotAll: boolean;
}

const isWordByte = (byte: number) => isAsciiAlphanumeric(byte) || byte === 0x5f;
const isDigit = (byte: number) => byte >= 0x30 && byte <= 0x39;
const isSpace = (byte: number) => byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);

const CLASS_ESCAPES: Record<string, (byte: number) => boolean> = {
  d: isDigit,
  D: (byte) => !isDigit(byte),
  w: isWordByte,
  W: (byte) => !isWordByte(byte),
  s: isSpace,
  S: (byte) => !isSpace(byte),
};
const CONTROL_ESCAPES: Record<string, number> = { n: 0x0a, t: 0x09, r: 0x0d, f: 0x0c, v: 0x0b, a: 0x07 };

/**
 * Parses YARA's common regular-expression subset over bytes: literals and escapes, `.`,
 * classes (`[a-z]`, `[^…]`, `\d \w \s \D \W \S`), quantifiers `* + ? {n} {n,} {,m} {n,m}` and
 * their lazy `?` forms, anchors `^ $`, word boundaries `\b \B`, groups and alternation.
 * Backreferences, lookaround and `(?…)` groups are rejected.
 */
const BRACE_QUANTIFIER = /^\{(\d*)(,?)(\d*)\}/;

export function parseRegex(body: string, flags: RegexFlags, fail: BodyFailure): PatternNode {
  let index = 0;
  let depth = 0;
  const fold = (set: ByteSet): ByteSet =>
    flags.caseInsensitive ? byteSet((byte) => set[byte] === 1 || set[otherCase(byte)] === 1) : set;

  const node = parseAlternation();
  if (index < body.length) fail(index, `unbalanced ')' in regular expression`);
  return node;

  function parseAlternation(): PatternNode {
    const options = [parseConcat()];
    while (body[index] === '|') {
      index++;
      options.push(parseConcat());
    }
    return options.length === 1 ? options[0]! : { kind: 'alternation', options };
  }

  function parseConcat(): PatternNode {
    const items: PatternNode[] = [];
    while (index < body.length && body[index] !== '|' && body[index] !== ')') items.push(parseQuantified());
    return { kind: 'concat', items };
  }

  function parseQuantified(): PatternNode {
    const atomOffset = index;
    const item = parseAtom();
    const quantifierOffset = index;
    const bounds = parseQuantifier();
    if (!bounds) return item;
    if (item.kind === 'assertion') fail(quantifierOffset, 'a quantifier cannot follow an anchor');
    if (bounds.max !== Infinity && bounds.min > bounds.max)
      fail(quantifierOffset, 'quantifier has its lower bound above its upper bound');
    if (bounds.min > MAX_MATCH_LENGTH || (bounds.max !== Infinity && bounds.max > MAX_MATCH_LENGTH)) {
      fail(quantifierOffset, `quantifier bound above ${MAX_MATCH_LENGTH}`);
    }
    const greedy = body[index] !== '?';
    if (!greedy) index++;
    if ('*+?'.includes(body[index] ?? '-') || isBraceQuantifier(index))
      fail(index, `nested quantifier after '${body.slice(atomOffset, index)}'`);
    return { kind: 'repeat', item, min: bounds.min, max: bounds.max, greedy };
  }

  /** Whether a `{n}`, `{n,}`, `{,m}` or `{n,m}` starts at `at`; any other '{' is a literal, as in yara's lexer. */
  function isBraceQuantifier(at: number): boolean {
    if (body[at] !== '{') return false;
    const match = BRACE_QUANTIFIER.exec(body.slice(at, at + 24));
    return match !== null && !(match[1] === '' && match[3] === '') && !(match[2] === '' && match[3] !== '');
  }

  function parseQuantifier(): { min: number; max: number } | undefined {
    const c = body[index];
    if (c === '*' || c === '+' || c === '?') {
      index++;
      return { min: c === '+' ? 1 : 0, max: c === '?' ? 1 : Infinity };
    }
    if (!isBraceQuantifier(index)) return undefined;
    const match = BRACE_QUANTIFIER.exec(body.slice(index))!;
    index += match[0].length;
    const min = match[1] === '' ? 0 : Number(match[1]);
    return { min, max: match[2] === '' ? min : match[3] === '' ? Infinity : Number(match[3]) };
  }

  function parseAtom(): PatternNode {
    const c = body[index]!;
    if (c === '(') {
      if (body[index + 1] === '?') fail(index, "unsupported group syntax '(?'");
      if (++depth > MAX_NESTING) fail(index, `groups nested more than ${MAX_NESTING} deep`);
      index++;
      const inner = parseAlternation();
      depth--;
      if (body[index] !== ')') fail(index, "missing ')' in regular expression");
      index++;
      return inner;
    }
    if (c === '[') return { kind: 'byte', set: fold(parseClass()) };
    if ('*+?'.includes(c) || isBraceQuantifier(index)) fail(index, `quantifier '${c}' with nothing to repeat`);
    index++;
    if (c === '.') return { kind: 'byte', set: byteSet((byte) => flags.dotAll || byte !== 0x0a) };
    if (c === '^') return { kind: 'assertion', at: 'start' };
    if (c === '$') return { kind: 'assertion', at: 'end' };
    if (c === '\\') {
      if (body[index] === 'b' || body[index] === 'B')
        return { kind: 'assertion', at: body[index++] === 'b' ? 'wordBoundary' : 'notWordBoundary' };
      return { kind: 'byte', set: fold(parseEscape()) };
    }
    const bytes = new TextEncoder().encode(c);
    if (bytes.length === 1) return { kind: 'byte', set: fold(byteSet((byte) => byte === bytes[0])) };
    return {
      kind: 'concat',
      items: Array.from(bytes, (value) => ({ kind: 'byte' as const, set: byteSet((byte) => byte === value) })),
    };
  }

  /** After a backslash: the set of bytes the escape stands for. */
  function parseEscape(): ByteSet {
    const escapeOffset = index - 1;
    const c = body[index];
    if (c === undefined) fail(escapeOffset, 'regular expression ends with a backslash');
    index++;
    const classTest = CLASS_ESCAPES[c];
    if (classTest) return byteSet(classTest);
    const control = CONTROL_ESCAPES[c];
    if (control !== undefined) return byteSet((byte) => byte === control);
    if (c === 'x') {
      const digits = body.slice(index, index + 2);
      if (!/^[0-9A-Fa-f]{2}$/.test(digits)) fail(escapeOffset, "'\\x' needs two hex digits");
      index += 2;
      return byteSet((byte) => byte === parseInt(digits, 16));
    }
    if (/[A-Za-z0-9]/.test(c)) fail(escapeOffset, `unsupported escape '\\${c}'`);
    const code = c.charCodeAt(0);
    if (code > 0x7f) fail(escapeOffset, `non-ASCII escape '\\${c}'`);
    return byteSet((byte) => byte === code);
  }

  function parseClass(): ByteSet {
    const start = index;
    index++; // [
    const negated = body[index] === '^';
    if (negated) index++;
    const accepted = new Uint8Array(256);
    let first = true;
    while (body[index] !== ']' || first) {
      if (index >= body.length) fail(start, "unterminated '[' class");
      first = false;
      const low = parseClassMember();
      if (typeof low !== 'number') {
        low.forEach((bit, byte) => (accepted[byte] ||= bit));
        continue;
      }
      if (body[index] === '-' && body[index + 1] !== ']' && index + 1 < body.length) {
        const rangeOffset = index;
        index++;
        const high = parseClassMember();
        if (typeof high !== 'number' || high < low) fail(rangeOffset, 'invalid range in class');
        for (let byte = low; byte <= high; byte++) accepted[byte] = 1;
      } else accepted[low] = 1;
    }
    index++; // ]
    return negated ? byteSet((byte) => accepted[byte] === 0) : accepted;
  }

  /** One byte, or a whole set for `\d`-style escapes inside a class. */
  function parseClassMember(): number | ByteSet {
    const c = body[index]!;
    index++;
    if (c === '\\') {
      const set = parseEscape();
      const members = set.reduce((count, bit) => count + bit, 0);
      return members === 1 ? set.indexOf(1) : set;
    }
    const code = c.charCodeAt(0);
    if (code > 0x7f) fail(index - 1, `non-ASCII character '${c}' in class`);
    return code;
  }
}
