import { describe, expect, it } from 'vitest';
import { compileSource } from '../../src/rules/compile.js';
import { matchReference } from '../../src/rules/reference.js';
import { VmscopeError } from '../../src/util/errors.js';

/** The USAGE error compiling `source` as rules.yar throws. */
function compileError(source: string): VmscopeError {
  try {
    compileSource(source, 'rules.yar');
  } catch (error) {
    expect(error).toBeInstanceOf(VmscopeError);
    const vmscopeError = error as VmscopeError;
    expect(vmscopeError.code).toBe('USAGE');
    expect(vmscopeError.file).toBe('rules.yar');
    return vmscopeError;
  }
  throw new Error(`compiled without error:\n${source}`);
}

describe('bad rules give a clear error with file, line and column', () => {
  it.each([
    [
      'unterminated string',
      'rule x {\n  strings:\n    $a = "abc\n  condition:\n    $a\n}',
      'rules.yar:3:10: unterminated string',
    ],
    [
      'unknown identifier',
      'rule x {\n  condition:\n    true and nothing_here\n}',
      'rules.yar:3:14: rule "x": unknown identifier \'nothing_here\'',
    ],
    [
      'module import',
      'import "pe"\nrule x { condition: true }',
      "rules.yar:1:8: unsupported module 'pe' (supported: math, hash, elf)",
    ],
    [
      'module without import',
      'rule x { condition: math.entropy(0, filesize) > 7 }',
      'rules.yar:1:21: rule "x": module \'math\' used without \'import "math"\'',
    ],
    [
      'module overload',
      'import "math"\nrule x { condition: math.in_range(2, 1, 3) }',
      'rules.yar:2:34: rule "x": no \'math.in_range\' takes (integer, integer, integer); it takes (float, float, float)',
    ],
    [
      'module field',
      'rule x {\n  condition:\n    pe.imports("a", "b")\n}',
      'rules.yar:3:5: rule "x": unsupported construct \'pe.imports\'',
    ],
    [
      'function call',
      'rule x { condition: uint64(0) == 0x5a4d }',
      'rules.yar:1:21: rule "x": unsupported construct \'uint64(…)\'',
    ],
    [
      'entrypoint',
      'rule x { condition: entrypoint == 0 }',
      "rules.yar:1:21: rule \"x\": unsupported construct 'entrypoint' (deprecated by yara: use the module's entry point, such as elf.entry_point)",
    ],
    [
      'dictionary loop',
      'rule x { condition: for any k, v in (1..2) : (k > 0) }',
      'rules.yar:1:30: rule "x": unsupported construct \'for\' with several variables (module dictionaries)',
    ],
    [
      'undefined string',
      'rule x { strings: $a = "a" condition: $a and $b }',
      'rules.yar:1:46: rule "x": undefined string "$b"',
    ],
    [
      'unreferenced string',
      'rule x { strings: $a = "a" $b = "b" condition: $a }',
      'rules.yar:1:28: rule "x": unreferenced string "$b"',
    ],
    [
      'anonymous string outside for-of',
      'rule x { strings: $a = "a" condition: $a and # > 1 }',
      'rules.yar:1:46: rule "x": anonymous "#" outside a \'for … of\' body',
    ],
    [
      'later rule reference',
      'rule x { condition: y }\nrule y { condition: true }',
      'rules.yar:1:21: rule "x": unknown identifier \'y\'',
    ],
    [
      'duplicate rule',
      'rule x { condition: true }\nrule x { condition: true }',
      'rules.yar:2:6: rule "x": duplicate rule name',
    ],
    [
      'constant division by zero',
      'rule x { condition: filesize \\ 0 > 1 }',
      'rules.yar:1:32: rule "x": division by zero',
    ],
    [
      'type error',
      'rule x { strings: $a = "a" condition: $a + 1 > 0 }',
      'rules.yar:1:39: rule "x": expected a number, found a boolean expression',
    ],
    [
      'bad hex byte',
      'rule x {\n  strings:\n    $a = { 4D 5G }\n  condition:\n    $a\n}',
      'rules.yar:3:15: rule "x": invalid hex byte \'5G\' in "$a"',
    ],
    [
      'hex starting with a jump',
      'rule x { strings: $a = { [2] 4D } condition: $a }',
      'rules.yar:1:26: rule "x": a hex string cannot start with a jump in "$a"',
    ],
    [
      'unbalanced regex',
      'rule x { strings: $a = /ab(c/ condition: $a }',
      'rules.yar:1:29: rule "x": missing \')\' in regular expression in "$a"',
    ],
    [
      'regex backreference',
      'rule x { strings: $a = /(a)\\1/ condition: $a }',
      'rules.yar:1:28: rule "x": unsupported escape \'\\1\' in "$a"',
    ],
    [
      'unsupported modifier',
      'rule x { strings: $a = { 41 } nocase condition: $a }',
      'rules.yar:1:31: rule "x": unsupported modifier \'nocase\' for hex string "$a"',
    ],
    [
      'base64 with nocase',
      'rule x { strings: $a = "abc" base64 nocase condition: $a }',
      'rules.yar:1:24: rule "x": \'base64\' and \'nocase\' cannot be combined in "$a"',
    ],
    [
      'xor with nocase',
      'rule x { strings: $a = "a" xor nocase condition: $a }',
      'rules.yar:1:24: rule "x": \'xor\' and \'nocase\' cannot be combined in "$a"',
    ],
    ['unterminated comment', 'rule x { condition: true }\n/* never closed', 'rules.yar:2:1: unterminated comment'],
    [
      'missing condition',
      'rule x { strings: $a = "a" }',
      "rules.yar:1:28: rule \"x\": expected 'condition', found '}'",
    ],
  ])('%s', (_, source, message) => {
    expect(compileError(source).message).toBe(message);
  });
});

describe('bounded time and memory', () => {
  it('a regex that would backtrack exponentially runs in linear time', () => {
    const rules = compileSource(
      'rule exponential { strings: $a = /(a+)+b/ $b = /(a|aa)*c/ $c = /(a*)*(b|c)/ condition: any of them }',
    );
    const data = new Uint8Array(64 * 1024).fill(0x61);
    const started = performance.now();
    expect(matchReference(rules, data)).toEqual([]);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('a regex matching everywhere stops each match at 4096 bytes', () => {
    const rules = compileSource(
      'rule everywhere { strings: $a = /a+/ condition: #a == 4200 and !a[1] == 4096 and !a[4200] == 1 }',
    );
    expect(matchReference(rules, new Uint8Array(4200).fill(0x61)).map((match) => match.rule)).toEqual(['everywhere']);
  });

  it('a counted repeat too large to expand is refused, not compiled', () => {
    expect(compileError('rule x { strings: $a = /(((a{1000}){1000}){1000})/ condition: $a }').message).toMatch(
      /^rules\.yar:1:19: rule "x": pattern too large/,
    );
  });

  it('deep nesting is refused before it exhausts the stack', () => {
    const deep = (open: string, close: string) => open.repeat(100_000) + close.repeat(100_000);
    expect(compileError(`rule x { condition: ${deep('(', ')')}true }`).message).toMatch(
      /^rules\.yar:1:221: rule "x": condition nested more than 200 deep$/,
    );
    expect(compileError(`rule x { condition: ${'not '.repeat(100_000)}true }`).message).toMatch(
      /condition nested more than 200 deep$/,
    );
    expect(compileError(`rule x { condition: ${'-'.repeat(100_000)}1 == 1 }`).message).toMatch(
      /condition nested more than 200 deep$/,
    );
    expect(compileError(`rule x { strings: $a = /${deep('(', ')')}/ condition: $a }`).message).toMatch(
      /groups nested more than 200 deep in "\$a"$/,
    );
    expect(compileError(`rule x { strings: $a = { 41 ${deep('( ', '| 42 ) ')}} condition: $a }`).message).toMatch(
      /alternations nested more than 200 deep in "\$a"$/,
    );
  });

  it('a condition too deep to evaluate recursively is refused', () => {
    const chain = Array.from({ length: 5000 }, () => '$a').join(' or ');
    expect(compileError(`rule x { strings: $a = "a" condition: ${chain} }`).message).toMatch(
      /rule "x": condition more than 1000 operators deep/,
    );
    const rules = compileSource(`rule x { strings: $a = "a" condition: ${chain.slice(0, 1000 * 6 - 4)} }`);
    expect(matchReference(rules, new Uint8Array([0x61]))).toHaveLength(1);
  });

  it('10 000 rules compile and run', () => {
    const source = Array.from(
      { length: 10_000 },
      (_, i) =>
        `rule r${i} { strings: $a = "<needle${i}>" $b = { 4E ?? ${(i & 0xff).toString(16).padStart(2, '0')} [1-4] 21 } condition: $a or $b }`,
    ).join('\n');
    const rules = compileSource(source);
    expect(rules.rules).toHaveLength(10_000);
    const data = new TextEncoder().encode('...<needle9999>...<needle42>!');
    expect(matchReference(rules, data).map((match) => match.rule)).toEqual(['r42', 'r9999']);
  });
});
