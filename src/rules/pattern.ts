/**
 * The byte-level pattern IR that hex strings and regular expressions both compile to (YARA does
 * the same: a hex string is a regular expression over bytes). A `ByteSet` node consumes one byte.
 */
export type ByteSet = Uint8Array; // 256 entries, 1 where the byte is accepted

export type PatternNode =
  | { readonly kind: 'byte'; readonly set: ByteSet }
  | { readonly kind: 'concat'; readonly items: readonly PatternNode[] }
  | { readonly kind: 'alternation'; readonly options: readonly PatternNode[] }
  | {
      readonly kind: 'repeat';
      readonly item: PatternNode;
      readonly min: number;
      readonly max: number;
      readonly greedy: boolean;
    }
  | { readonly kind: 'assertion'; readonly at: 'start' | 'end' | 'wordBoundary' | 'notWordBoundary' };

/** Deepest nesting of groups, alternations or condition parentheses: parsing recurses per level. */
export const MAX_NESTING = 200;

/** YARA's RE_SCAN_LIMIT: no regex or hex match is longer than this many bytes. */
export const MAX_MATCH_LENGTH = 4096;

export function byteSet(accept: (byte: number) => boolean): ByteSet {
  const set = new Uint8Array(256);
  for (let byte = 0; byte < 256; byte++) set[byte] = accept(byte) ? 1 : 0;
  return set;
}

export const singleByte = (value: number): PatternNode => ({ kind: 'byte', set: byteSet((byte) => byte === value) });

export function isAsciiLetter(byte: number): boolean {
  return (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
}

/** The other case of an ASCII letter (YARA's nocase folds ASCII only), or the byte itself. */
export function otherCase(byte: number): number {
  return isAsciiLetter(byte) ? byte ^ 0x20 : byte;
}

export function isAsciiAlphanumeric(byte: number): boolean {
  return isAsciiLetter(byte) || (byte >= 0x30 && byte <= 0x39);
}

/** The single byte a set accepts, or undefined when it accepts none or several. */
export function onlyByte(set: ByteSet): number | undefined {
  let found: number | undefined;
  for (let byte = 0; byte < 256; byte++) {
    if (!set[byte]) continue;
    if (found !== undefined) return undefined;
    found = byte;
  }
  return found;
}

/**
 * Whether the pattern is a plain byte sequence (each byte fixed, or one ASCII letter in either
 * case): yara turns such regular expressions into text strings, which changes how their ascii
 * and wide forms combine with `fullword`.
 */
export function isLiteralPattern(node: PatternNode): boolean {
  if (node.kind === 'concat') return node.items.every(isLiteralPattern);
  if (node.kind !== 'byte') return false;
  const members = node.set.reduce((count, bit) => count + bit, 0);
  const first = node.set.indexOf(1);
  return members === 1 || (members === 2 && otherCase(first) !== first && node.set[otherCase(first)] === 1);
}

/**
 * A `wide` pattern: every consumed byte is followed by a zero byte, as UTF-16LE text of ASCII
 * is. Assertions stay where they are.
 */
export function widen(node: PatternNode): PatternNode {
  switch (node.kind) {
    case 'byte':
      return { kind: 'concat', items: [node, singleByte(0)] };
    case 'concat':
      return { kind: 'concat', items: node.items.map(widen) };
    case 'alternation':
      return { kind: 'alternation', options: node.options.map(widen) };
    case 'repeat':
      return { ...node, item: widen(node.item) };
    case 'assertion':
      return node;
  }
}

/** The fewest and most bytes a match of `node` consumes (max is Infinity for unbounded repeats). */
export function lengthBounds(node: PatternNode): { min: number; max: number } {
  switch (node.kind) {
    case 'byte':
      return { min: 1, max: 1 };
    case 'assertion':
      return { min: 0, max: 0 };
    case 'concat':
      return node.items
        .map(lengthBounds)
        .reduce((a, b) => ({ min: a.min + b.min, max: a.max + b.max }), { min: 0, max: 0 });
    case 'alternation': {
      const bounds = node.options.map(lengthBounds);
      return { min: Math.min(...bounds.map((b) => b.min)), max: Math.max(...bounds.map((b) => b.max)) };
    }
    case 'repeat': {
      const item = lengthBounds(node.item);
      return {
        min: item.min * node.min,
        max: node.max === Infinity ? (item.max === 0 ? 0 : Infinity) : item.max * node.max,
      };
    }
  }
}
