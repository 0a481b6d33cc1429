import { ruleError, type SourcePosition } from './errors.js';

export type TokenKind =
  | 'identifier'
  | 'stringId' // $name, $name*, or the anonymous $ inside a for-of body
  | 'stringCount' // #name
  | 'stringOffset' // @name
  | 'stringLength' // !name
  | 'number'
  | 'float' // 7.5, value in `float`
  | 'text' // "…", escapes decoded into `bytes`
  | 'hex' // { … } after '=', body in `text`
  | 'regex' // /…/flags after '=', body in `text`, flags in `flags`
  | 'punct'
  | 'eof';

export interface Token extends SourcePosition {
  readonly kind: TokenKind;
  /** Source text: the identifier, the punctuation, the name after the sigil, the hex or regex body. */
  readonly text: string;
  readonly bytes?: Uint8Array;
  readonly value?: bigint;
  readonly float?: number;
  readonly flags?: string;
}

// Two-character operators before their one-character prefixes, so `<=` is not read as `<` then
// `=`. A lone '.' only appears so that module
// references (`pe.imports`) reach the parser, which rejects them with the rule's name.
const PUNCTUATION = [
  '..',
  '.',
  '==',
  '!=',
  '<=',
  '>=',
  '<<',
  '>>',
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  ':',
  '=',
  ',',
  '<',
  '>',
  '+',
  '-',
  '*',
  '\\',
  '%',
  '&',
  '|',
  '^',
  '~',
];

const textEncoder = new TextEncoder();

const SIMPLE_ESCAPES: Record<string, number> = { n: 0x0a, t: 0x09, r: 0x0d, '\\': 0x5c, '"': 0x22 };

const isIdentifierStart = (c: string) => (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c === '_';
const isIdentifierPart = (c: string) => isIdentifierStart(c) || (c >= '0' && c <= '9');
/** White space as JavaScript's \s: the ASCII blanks tested first, as nearly every character is one of them or none. */
const isSpace = (c: string) =>
  c === ' ' || c === '\n' || c === '\t' || c === '\r' || c === '\v' || c === '\f' || (c > '\x7f' && /\s/.test(c));

/**
 * Splits a rule file into tokens with their line and column, one at a time as the parser asks
 * (a 10 MB rule file holds millions of tokens: never all of them at once). Hex strings and
 * regular expressions are only recognised right after '=' (in a strings section), as YARA's own
 * lexer does, because '{' and '/' mean something else elsewhere.
 */
export function* tokenize(source: string, file: string): Generator<Token, void, undefined> {
  let previous: Token | undefined;
  let index = 0;
  let line = 1;
  let lineStart = 0;
  const here = (): SourcePosition => ({ line, column: index - lineStart + 1 });
  const fail = (at: SourcePosition, message: string) => ruleError(file, at, undefined, message);
  const advance = (count: number) => {
    for (let i = 0; i < count; i++) {
      if (source[index] === '\n') {
        line++;
        lineStart = index + 1;
      }
      index++;
    }
  };

  while (true) {
    skipSpaceAndComments();
    const at = here();
    if (index >= source.length) {
      yield { kind: 'eof', text: '', ...at };
      return;
    }
    const c = source[index]!;
    const afterAssign = previous?.kind === 'punct' && previous.text === '=';
    const afterMatches = previous?.kind === 'identifier' && previous.text === 'matches';
    if (c === '"') previous = readText(at);
    else if (afterAssign && c === '{') previous = readHex(at);
    else if ((afterAssign || afterMatches) && c === '/') previous = readRegex(at);
    else if (/[0-9]/.test(c)) previous = readNumber(at);
    else if (isIdentifierStart(c)) previous = { kind: 'identifier', text: readWhile(isIdentifierPart), ...at };
    else if (c === '$' || c === '#' || c === '@' || (c === '!' && source[index + 1] !== '='))
      previous = readStringReference(at, c);
    else {
      const punct = PUNCTUATION.find((p) => source.startsWith(p, index));
      if (!punct) throw fail(at, `unexpected character '${c}'`);
      advance(punct.length);
      previous = { kind: 'punct', text: punct, ...at };
    }
    yield previous;
  }

  function skipSpaceAndComments(): void {
    while (index < source.length) {
      if (isSpace(source[index]!)) advance(1);
      else if (source.startsWith('//', index)) {
        while (index < source.length && source[index] !== '\n') advance(1);
      } else if (source.startsWith('/*', index)) {
        const at = here();
        const end = source.indexOf('*/', index + 2);
        if (end < 0) throw fail(at, 'unterminated comment');
        advance(end + 2 - index);
      } else return;
    }
  }

  function readWhile(accept: (c: string) => boolean): string {
    const start = index;
    while (index < source.length && accept(source[index]!)) advance(1);
    return source.slice(start, index);
  }

  function readStringReference(at: SourcePosition, sigil: string): Token {
    advance(1);
    const name = readWhile(isIdentifierPart);
    const wildcard = sigil === '$' && source[index] === '*';
    if (wildcard) advance(1);
    const kind = ({ $: 'stringId', '#': 'stringCount', '@': 'stringOffset', '!': 'stringLength' } as const)[
      sigil as '$'
    ];
    return { kind, text: name + (wildcard ? '*' : ''), ...at };
  }

  function readNumber(at: SourcePosition): Token {
    const radix = source.startsWith('0x', index) ? 'hex' : source.startsWith('0o', index) ? 'octal' : 'decimal';
    if (radix !== 'decimal') advance(2);
    const digits = readWhile((c) => ({ hex: /[0-9a-fA-F]/, octal: /[0-7]/, decimal: /[0-9]/ })[radix].test(c));
    const text = { hex: '0x', octal: '0o', decimal: '' }[radix] + digits;
    if (digits === '') throw fail(at, `${radix} number without digits`);
    // A fraction (7.5), never the start of a range (0..4).
    if (radix === 'decimal' && source[index] === '.' && /[0-9]/.test(source[index + 1] ?? '')) {
      advance(1);
      const fraction = readWhile((c) => /[0-9]/.test(c));
      if (index < source.length && isIdentifierPart(source[index]!))
        throw fail(here(), `malformed number '${digits}.${fraction}${source[index]}'`);
      return { kind: 'float', text: `${digits}.${fraction}`, float: Number(`${digits}.${fraction}`), ...at };
    }
    const unit = source.startsWith('KB', index) ? 1024n : source.startsWith('MB', index) ? 1024n * 1024n : 1n;
    if (unit !== 1n) advance(2);
    if (index < source.length && isIdentifierPart(source[index]!))
      throw fail(here(), `malformed number '${text}${source[index]}'`);
    return { kind: 'number', text, value: BigInt(text) * unit, ...at };
  }

  function readText(at: SourcePosition): Token {
    advance(1);
    const bytes: number[] = [];
    while (true) {
      const c = source[index];
      if (c === undefined || c === '\n') throw fail(at, 'unterminated string');
      if (c === '"') break;
      if (c !== '\\') {
        // The file's bytes as written: ASCII as is, anything else as its UTF-8 (the rule file was read as UTF-8).
        const codePoint = source.codePointAt(index)!;
        if (codePoint < 0x80) {
          bytes.push(codePoint);
          advance(1);
          continue;
        }
        const character = String.fromCodePoint(codePoint);
        for (const byte of textEncoder.encode(character)) bytes.push(byte);
        advance(character.length);
        continue;
      }
      const escapeAt = here();
      const kind = source[index + 1];
      if (kind !== undefined && kind in SIMPLE_ESCAPES) {
        bytes.push(SIMPLE_ESCAPES[kind]!);
        advance(2);
      } else if (kind === 'x' && /^[0-9a-fA-F]{2}$/.test(source.slice(index + 2, index + 4))) {
        bytes.push(parseInt(source.slice(index + 2, index + 4), 16));
        advance(4);
      } else throw fail(escapeAt, `invalid escape sequence '\\${kind ?? ''}'`);
    }
    advance(1);
    return { kind: 'text', text: '', bytes: Uint8Array.from(bytes), ...at };
  }

  function readHex(at: SourcePosition): Token {
    const end = source.indexOf('}', index + 1);
    if (end < 0) throw fail(at, 'unterminated hex string');
    const text = source.slice(index + 1, end);
    advance(end + 1 - index);
    return { kind: 'hex', text, ...at };
  }

  function readRegex(at: SourcePosition): Token {
    let end = index + 1;
    while (end < source.length && source[end] !== '/' && source[end] !== '\n') end += source[end] === '\\' ? 2 : 1;
    if (source[end] !== '/') throw fail(at, 'unterminated regular expression');
    const text = source.slice(index + 1, end);
    advance(end + 1 - index);
    const flags = readWhile((c) => /[A-Za-z]/.test(c));
    return { kind: 'regex', text, flags, ...at };
  }
}

/** Line and column of character `offset` inside a token whose body starts one character after `start`. */
export function positionInBody(start: SourcePosition, body: string, offset: number): SourcePosition {
  const before = body.slice(0, offset);
  const newline = before.lastIndexOf('\n');
  if (newline < 0) return { line: start.line, column: start.column + 1 + offset };
  return { line: start.line + before.split('\n').length - 1, column: offset - newline };
}
