import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileSource } from '../../src/rules/compile.js';
import { matchReference } from '../../src/rules/reference.js';
import { VmscopeError } from '../../src/util/errors.js';

const corpus = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'corpus', 'corpus.yar'), 'utf8');

/** Compiles `source`: rules, or a VmscopeError naming the file, line and column; anything else fails the property. */
function compileOrRefuse(source: string): ReturnType<typeof compileSource> | undefined {
  try {
    return compileSource(source, 'fuzz.yar');
  } catch (error) {
    expect(error, String(error)).toBeInstanceOf(VmscopeError);
    expect((error as VmscopeError).message).toMatch(/^fuzz\.yar:\d+:\d+: /);
    return undefined;
  }
}

/** Pieces of YARA syntax, so mutations reach deep into the parser instead of failing at the first byte. */
const TOKENS = [
  'rule',
  'private',
  'global',
  'strings:',
  'condition:',
  'meta:',
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  '$a',
  '$',
  '#a',
  '@a[1]',
  '!a[1]',
  '"x\\x00"',
  '/a+b?/i',
  '{ 41 ?? [2-4] (42 | 43) }',
  'nocase',
  'wide',
  'ascii',
  'fullword',
  'xor(1-3)',
  'and',
  'or',
  'not',
  'of',
  'them',
  'all',
  'any',
  'for',
  'in',
  '..',
  'at',
  'filesize',
  '0x10',
  '1MB',
  '==',
  '<',
  '+',
  '\\',
  '%',
  '<<',
  ':',
  ',',
  '=',
  '\n',
  ' ',
  '"',
  '/*',
  '*/',
  '//',
  'import "pe"',
];

describe('the rule parser and compiler on hostile input', () => {
  it('mutated corpus text compiles or is refused with file:line:column, never another error', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.nat(corpus.length),
            fc.nat(40),
            fc.oneof(fc.constantFrom(...TOKENS), fc.string({ maxLength: 4 })),
          ),
          { minLength: 1, maxLength: 6 },
        ),
        (edits) => {
          let source = corpus;
          for (const [at, removed, inserted] of edits)
            source = source.slice(0, at) + inserted + source.slice(at + removed);
          compileOrRefuse(source);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('random token sequences compile or are refused, and what compiles runs on data', () => {
    const data = new Uint8Array(Buffer.from('AxB abab x\x00y CAT dog 41 42 43 '.repeat(8)));
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }), (tokens) => {
        const rules = compileOrRefuse(`rule r { strings: $a = "ab" condition: ${tokens.join(' ')} }`);
        if (rules) matchReference(rules, data);
        compileOrRefuse(tokens.join(' '));
      }),
      { numRuns: 600 },
    );
  });
});
