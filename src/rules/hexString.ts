import { MAX_MATCH_LENGTH, MAX_NESTING, byteSet, type ByteSet, type PatternNode } from './pattern.js';

/** Reports a problem at character `offset` of the body; never returns. */
export type BodyFailure = (offset: number, message: string) => never;

/**
 * Parses the body of a hex string (`{ … }` without the braces): bytes `4D`, wildcards `??`,
 * nibble wildcards `?A` `A?`, jumps `[n]` `[n-m]` `[n-]` `[-]`, alternations `( AA | BB CC )`
 * and comments. Jumps are lazy, as YARA compiles them: `{ 41 [1-3] 42 }` on `A_B_B` matches `A_B`.
 */
export function parseHexString(body: string, fail: BodyFailure): PatternNode {
  let index = 0;

  const skipSpace = () => {
    while (index < body.length) {
      if (/\s/.test(body[index]!)) index++;
      else if (body.startsWith('//', index))
        index = body.includes('\n', index) ? body.indexOf('\n', index) : body.length;
      else if (body.startsWith('/*', index)) {
        const end = body.indexOf('*/', index + 2);
        if (end < 0) fail(index, 'unterminated comment in hex string');
        index = end + 2;
      } else return;
    }
  };

  const sequence = parseSequence(0);
  skipSpace();
  if (index < body.length) fail(index, `unexpected '${body[index]}' in hex string`);
  return sequence;

  function parseSequence(depth: number): PatternNode {
    const items: PatternNode[] = [];
    const itemOffsets: number[] = [];
    while (true) {
      skipSpace();
      const c = body[index];
      if (c === undefined || c === '|' || c === ')') break;
      itemOffsets.push(index);
      if (c === '[') items.push(parseJump());
      else if (c === '(') items.push(parseAlternation(depth));
      else items.push(parseByte());
    }
    if (items.length === 0) fail(index, 'empty hex string or alternative');
    const isJump = (item: PatternNode | undefined) => item?.kind === 'repeat';
    if (depth === 0 && isJump(items[0])) fail(itemOffsets[0]!, 'a hex string cannot start with a jump');
    if (depth === 0 && isJump(items[items.length - 1]))
      fail(itemOffsets[items.length - 1]!, 'a hex string cannot end with a jump');
    return { kind: 'concat', items };
  }

  function parseAlternation(depth: number): PatternNode {
    if (depth >= MAX_NESTING) fail(index, `alternations nested more than ${MAX_NESTING} deep`);
    index++; // (
    const options = [parseSequence(depth + 1)];
    while (body[index] === '|') {
      index++;
      options.push(parseSequence(depth + 1));
    }
    if (body[index] !== ')') fail(index, 'unterminated alternation in hex string');
    index++;
    return { kind: 'alternation', options };
  }

  function parseByte(): PatternNode {
    const pair = body.slice(index, index + 2);
    if (!/^[0-9A-Fa-f?]{2}$/.test(pair)) fail(index, `invalid hex byte '${pair}'`);
    index += 2;
    return { kind: 'byte', set: hexByteSet(pair.toLowerCase()) };
  }

  function parseJump(): PatternNode {
    const start = index;
    const close = body.indexOf(']', index);
    if (close < 0) fail(start, 'unterminated jump in hex string');
    const text = body.slice(index + 1, close).replace(/\s+/g, '');
    index = close + 1;
    const match = /^(\d*)(-?)(\d*)$/.exec(text);
    if (!match || (match[2] === '' && match[1] === '')) fail(start, `invalid jump '[${text}]'`);
    const min = match[1] === '' ? 0 : Number(match[1]);
    const max = match[2] === '' ? min : match[3] === '' ? Infinity : Number(match[3]);
    if (min > max) fail(start, `jump '[${text}]' has its lower bound above its upper bound`);
    if (min > MAX_MATCH_LENGTH || (max !== Infinity && max > MAX_MATCH_LENGTH))
      fail(start, `jump '[${text}]' is longer than ${MAX_MATCH_LENGTH} bytes`);
    return { kind: 'repeat', item: { kind: 'byte', set: hexByteSet('??') }, min, max, greedy: false };
  }
}

/**
 * The byte set of a hex pair (`4d`, `4?`, `??`), one shared set per spelling: a rule set holds
 * hundreds of thousands of hex bytes, and sets are never changed once built.
 */
const hexByteSets = new Map<string, ByteSet>();
function hexByteSet(pair: string): ByteSet {
  let set = hexByteSets.get(pair);
  if (!set) {
    const [high, low] = [pair[0]!, pair[1]!].map((nibble) => (nibble === '?' ? undefined : parseInt(nibble, 16)));
    set = byteSet((byte) => (high === undefined || byte >> 4 === high) && (low === undefined || (byte & 15) === low));
    hexByteSets.set(pair, set);
  }
  return set;
}
