import type { RuleAst, RuleFile, StringAst } from './ast.js';
import {
  WEAK_ATOM_RATE,
  alternationAtoms,
  atomVerificationRate,
  literalAtom,
  patternAtom,
  type Atom,
} from './atoms.js';
import { base64Forms } from './base64.js';
import { ruleError } from './errors.js';
import { readRules } from './parser.js';
import { MAX_MATCH_LENGTH, isLiteralPattern, lengthBounds, widen, type PatternNode } from './pattern.js';
import { compileProgram, type Program } from './pikeVm.js';

/** One exact byte sequence a text string can take (ascii or wide form, one xor key). */
export interface LiteralVariant {
  readonly kind: 'literal';
  readonly bytes: Uint8Array;
  /** `nocase`: ASCII letters compare without case, instead of expanding 2^n variants. */
  readonly caseInsensitive: boolean;
  readonly wide: boolean;
  /** The key `bytes` were XORed with, for `xor` strings. */
  readonly xorKey: number | undefined;
  readonly atom: Atom;
}

/** A hex string or regex (one variant per ascii/wide form), verified by the Pike VM. */
export interface ProgramVariant {
  readonly kind: 'program';
  readonly program: Program;
  readonly wide: boolean;
  /** Undefined when the pattern has no fixed byte at a known distance from its start. */
  readonly atom: Atom | undefined;
  /** Without `atom`: one atom per option of an alternation, every match holding one of them (atoms.ts alternationAtoms). */
  readonly alternationAtoms?: readonly Atom[];
  /** The longest match, capped at MAX_MATCH_LENGTH. */
  readonly maxLength: number;
}

export type MatcherVariant = LiteralVariant | ProgramVariant;

export interface CompiledString {
  readonly id: string;
  readonly kind: StringAst['kind'];
  readonly isPrivate: boolean;
  readonly fullword: boolean;
  /** Only matches starting here are recorded (YARA's fixed-offset strings: `$s at 0` and nothing else). */
  readonly fixedOffset: number | undefined;
  readonly variants: readonly MatcherVariant[];
  /**
   * Regexes (yara's regex verification): at each offset the first form that matches (ascii,
   * then wide) is the candidate, and `fullword` may then reject it without the next form being
   * tried. Text strings try each form on its own.
   */
  readonly firstFormOnly: boolean;
  /** Some variant has no atom: the prefilter cannot help, every offset must be verified. */
  readonly scanEverywhere: boolean;
  /**
   * A hex string cut at its long jumps (YARA's string chaining): `variants` are then its parts in
   * order, each matched on its own, and `chainGaps[i]` is how far part i + 1 may start after
   * part i ends. A match is a run of parts from a first to a last one (chains.ts).
   */
  readonly chainGaps?: readonly JumpRange[];
}

export interface JumpRange {
  readonly min: number;
  readonly max: number;
}

/** YARA's STRING_CHAINING_THRESHOLD: a top-level hex jump longer than this splits the string into chained parts. */
export const CHAINING_THRESHOLD = 200;

/** A parsed rule whose strings are compiled to matchers. */
export type CompiledRule = Omit<RuleAst, 'position' | 'strings'> & { readonly strings: readonly CompiledString[] };

export interface CompiledRules {
  readonly file: string;
  readonly rules: readonly CompiledRule[];
  /** The longest match any string can have: the overlap chunked scans need. */
  readonly longestMatch: number;
}

/** Parses and compiles a rule file's text; errors name `file`, line, column and rule. */
export function compileSource(source: string, file = '<rules>'): CompiledRules {
  // Rule by rule: each syntax tree is dropped once compiled.
  return compiledRules(
    file,
    Array.from(readRules(source, file), (rule) => compileRule(rule, file)),
  );
}

export function compileRules(parsed: RuleFile): CompiledRules {
  return compiledRules(
    parsed.file,
    parsed.rules.map((rule) => compileRule(rule, parsed.file)),
  );
}

function compiledRules(file: string, rules: CompiledRule[]): CompiledRules {
  const lengths = rules.flatMap((rule) => rule.strings.flatMap((string) => string.variants.map(variantMaxLength)));
  return { file, rules, longestMatch: lengths.reduce((longest, length) => Math.max(longest, length), 0) };
}

function compileRule(rule: RuleAst, file: string): CompiledRule {
  const strings = rule.strings.map((string) => {
    const variants = compileVariants(string, (message) => ruleError(file, string.position, rule.name, message));
    const fullword = string.kind !== 'hex' && string.modifiers.fullword;
    const fixedOffset = string.fixedOffset === undefined ? undefined : Number(string.fixedOffset);
    const firstFormOnly = string.kind === 'regex' && !isLiteralPattern(string.pattern);
    const scanEverywhere = variants.some((variant) => searchedAtoms(variant).length === 0);
    const common = {
      id: string.id,
      kind: string.kind,
      isPrivate: string.isPrivate,
      fullword,
      fixedOffset,
      variants,
      firstFormOnly,
      scanEverywhere,
    };
    const chainGaps = string.kind === 'hex' ? chainParts(string.pattern).gaps : [];
    return chainGaps.length > 0 ? { ...common, chainGaps } : common;
  });
  const { name, isPrivate, isGlobal, tags, meta, condition } = rule;
  return { name, isPrivate, isGlobal, tags, meta, strings, condition };
}

/**
 * A hex string's parts between top-level jumps longer than CHAINING_THRESHOLD, and those jumps;
 * one part and no gap when it has none. Such jumps (`[8-]`, `[0-300]`) reach past what one
 * match can hold, and yara matches the parts separately, which this follows.
 */
export function chainParts(pattern: PatternNode): { parts: PatternNode[]; gaps: JumpRange[] } {
  const items = pattern.kind === 'concat' ? pattern.items : [pattern];
  const parts: PatternNode[][] = [[]];
  const gaps: JumpRange[] = [];
  for (const item of items) {
    if (item.kind === 'repeat' && !item.greedy && (item.min > CHAINING_THRESHOLD || item.max > CHAINING_THRESHOLD)) {
      gaps.push({ min: item.min, max: item.max });
      parts.push([]);
    } else parts[parts.length - 1]!.push(item);
  }
  return { parts: parts.map((part) => (part.length === 1 ? part[0]! : { kind: 'concat', items: part })), gaps };
}

function compileVariants(string: StringAst, error: (message: string) => Error): MatcherVariant[] {
  if (string.kind === 'hex') return chainParts(string.pattern).parts.map((part) => programVariant(part, false, error));
  const forms = [...(string.modifiers.ascii ? [false] : []), ...(string.modifiers.wide ? [true] : [])];
  if (string.kind === 'regex')
    return forms.map((wide) => programVariant(wide ? widen(string.pattern) : string.pattern, wide, error));
  const { nocase, xor, base64, base64wide } = string.modifiers;
  if (base64 || base64wide)
    return base64Variants(
      forms.map((wide) => (wide ? widenBytes(string.bytes) : string.bytes)),
      base64,
      base64wide,
    );
  return forms.flatMap((wide) => {
    const plain = wide ? widenBytes(string.bytes) : string.bytes;
    const keys = xor ? Array.from({ length: xor.max - xor.min + 1 }, (_, i) => xor.min + i) : [undefined];
    return keys.map((xorKey): LiteralVariant => {
      const bytes = xorKey === undefined ? plain : plain.map((byte) => byte ^ xorKey);
      return { kind: 'literal', bytes, caseInsensitive: nocase, wide, xorKey, atom: literalAtom(bytes, nocase) };
    });
  });
}

/** Every encoded form of every plaintext form: `base64` as they are, `base64wide` as UTF-16LE. */
function base64Variants(
  plaintexts: readonly Uint8Array[],
  base64: Uint8Array | undefined,
  base64wide: Uint8Array | undefined,
): LiteralVariant[] {
  const literal = (bytes: Uint8Array, wide: boolean): LiteralVariant => ({
    kind: 'literal',
    bytes,
    caseInsensitive: false,
    wide,
    xorKey: undefined,
    atom: literalAtom(bytes, false),
  });
  return plaintexts.flatMap((plaintext) => [
    ...(base64 ? base64Forms(plaintext, base64).map((bytes) => literal(bytes, false)) : []),
    ...(base64wide ? base64Forms(plaintext, base64wide).map((bytes) => literal(widenBytes(bytes), true)) : []),
  ]);
}

function programVariant(pattern: PatternNode, wide: boolean, error: (message: string) => Error): ProgramVariant {
  try {
    const maxLength = Math.min(MAX_MATCH_LENGTH, lengthBounds(pattern).max);
    const atom = patternAtom(pattern);
    // A pattern whose best atom would flood verification is searched by its automaton instead.
    const usefulAtom = atom && atomVerificationRate(atom) <= WEAK_ATOM_RATE ? atom : undefined;
    const program = compileProgram(pattern);
    if (usefulAtom) return { kind: 'program', program, wide, atom: usefulAtom, maxLength };
    const atoms = alternationAtoms(pattern);
    return {
      kind: 'program',
      program,
      wide,
      atom: undefined,
      maxLength,
      ...(atoms ? { alternationAtoms: atoms } : {}),
    };
  } catch (cause) {
    if (cause instanceof RangeError) throw error(`pattern too large: ${cause.message}`);
    throw cause;
  }
}

/** The atoms the prefilter searches for a variant: none when it must be tried at every offset. */
export function searchedAtoms(variant: MatcherVariant): readonly Atom[] {
  if (variant.atom) return [variant.atom];
  return variant.kind === 'program' ? (variant.alternationAtoms ?? []) : [];
}

/** UTF-16LE of ASCII text: each byte followed by a zero. */
function widenBytes(bytes: Uint8Array): Uint8Array {
  const wide = new Uint8Array(bytes.length * 2);
  bytes.forEach((byte, i) => (wide[i * 2] = byte));
  return wide;
}

function variantMaxLength(variant: MatcherVariant): number {
  return variant.kind === 'literal' ? variant.bytes.length : variant.maxLength;
}
