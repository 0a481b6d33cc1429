import { ruleError, type SourcePosition } from './errors.js';
import type { Token, TokenKind } from './lexer.js';

/**
 * The parser's position in a rule file's tokens, shared by the rule parser and the condition
 * parser: look ahead, consume, expect, and fail with the file, position and rule being parsed.
 * Methods are bound, so parsers destructure the ones they use.
 */
export class TokenCursor {
  /** Tokens read from the lexer but not consumed yet: only as many as the parser looks ahead. */
  private readonly ahead: Token[] = [];
  /** The rule being parsed, named in errors. */
  currentRule: string | undefined;

  constructor(
    private readonly tokens: Iterator<Token, void>,
    readonly file: string,
  ) {}

  /** The token `ahead` places on (end of file once the tokens run out). */
  readonly peek = (ahead = 0): Token => {
    while (this.ahead.length <= ahead) {
      const last = this.ahead[this.ahead.length - 1];
      if (last?.kind === 'eof') return last;
      const read = this.tokens.next();
      if (read.done) throw new Error('the lexer ended without an eof token');
      this.ahead.push(read.value);
    }
    return this.ahead[ahead]!;
  };
  readonly next = (): Token => {
    const token = this.peek();
    if (token.kind !== 'eof') this.ahead.shift();
    return token;
  };
  readonly fail = (at: SourcePosition, message: string): never => {
    throw ruleError(this.file, at, this.currentRule, message);
  };
  readonly describe = (token: Token): string =>
    token.kind === 'eof' ? 'end of file' : `'${token.kind === 'text' ? '"…"' : token.text}'`;
  readonly isPunct = (text: string, token = this.peek()): boolean => token.kind === 'punct' && token.text === text;
  readonly isWord = (text: string, token = this.peek()): boolean => token.kind === 'identifier' && token.text === text;
  readonly expectPunct = (text: string): Token =>
    this.isPunct(text)
      ? this.next()
      : this.fail(this.peek(), `expected '${text}', found ${this.describe(this.peek())}`);
  readonly expectWord = (text: string): Token =>
    this.isWord(text) ? this.next() : this.fail(this.peek(), `expected '${text}', found ${this.describe(this.peek())}`);
  readonly expectKind = (kind: TokenKind, what: string): Token =>
    this.peek().kind === kind
      ? this.next()
      : this.fail(this.peek(), `expected ${what}, found ${this.describe(this.peek())}`);
}
