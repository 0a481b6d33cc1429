import type { SourcePosition } from './errors.js';
import type { PatternNode } from './pattern.js';

/** A parsed rule file: what YARA's parser produces, already checked (names resolve, types fit). */
export interface RuleFile {
  readonly file: string;
  readonly rules: readonly RuleAst[];
}

export type MetaValue = string | bigint | boolean;

/** The types of YARA expressions (strings are byte strings, held as latin1 text). */
export type ValueType = 'boolean' | 'integer' | 'float' | 'string';

export interface RuleAst {
  readonly name: string;
  readonly position: SourcePosition;
  readonly isPrivate: boolean;
  readonly isGlobal: boolean;
  readonly tags: readonly string[];
  readonly meta: ReadonlyArray<readonly [string, MetaValue]>;
  readonly strings: readonly StringAst[];
  readonly condition: Expr;
}

export interface TextModifiers {
  readonly ascii: boolean;
  readonly wide: boolean;
  readonly nocase: boolean;
  readonly fullword: boolean;
  /** Single-byte XOR keys tried, inclusive; undefined without `xor`. */
  readonly xor: { readonly min: number; readonly max: number } | undefined;
  /** `base64` / `base64wide`: the alphabet (64 characters) the text is searched encoded with; undefined without. */
  readonly base64?: Uint8Array | undefined;
  readonly base64wide?: Uint8Array | undefined;
}

interface StringCommon {
  /** `$name`, or `$` for an anonymous string. */
  readonly id: string;
  readonly position: SourcePosition;
  readonly isPrivate: boolean;
  /** Set when the condition only ever asks for this string `at` this one literal offset. */
  readonly fixedOffset?: bigint | undefined;
}

export type StringAst =
  | (StringCommon & { readonly kind: 'text'; readonly bytes: Uint8Array; readonly modifiers: TextModifiers })
  | (StringCommon & { readonly kind: 'hex'; readonly pattern: PatternNode })
  | (StringCommon & {
      readonly kind: 'regex';
      readonly pattern: PatternNode;
      readonly modifiers: Omit<TextModifiers, 'xor'>;
    });

export type Quantifier =
  | { readonly kind: 'all' }
  | { readonly kind: 'any' }
  | { readonly kind: 'none' }
  | { readonly kind: 'count'; readonly count: Expr }
  | { readonly kind: 'percent'; readonly percent: Expr };

/** `uint8(…)` … `int32be(…)`: a little- or big-endian integer read from the scanned data. */
export interface IntegerRead {
  readonly bytes: 1 | 2 | 4;
  readonly signed: boolean;
  readonly bigEndian: boolean;
}

/** Operators on two strings (`"a" contains "b"`); the `i` forms ignore ASCII case. */
export type TextOperator =
  'contains' | 'icontains' | 'startswith' | 'istartswith' | 'endswith' | 'iendswith' | 'iequals';

/** What a `for … in` variable takes: a range `(a..b)` or a list `(a, b, c)`. */
export type Iterable =
  | { readonly kind: 'range'; readonly from: Expr; readonly to: Expr }
  | { readonly kind: 'list'; readonly items: readonly Expr[] };

/** One step of a module reference after the module's name: `.field`, `[index]` or `(arguments)`. */
export type ModuleStep =
  | { readonly kind: 'field'; readonly name: string }
  | { readonly kind: 'index'; readonly index: Expr }
  | { readonly kind: 'call'; readonly args: readonly Expr[]; readonly overload: number };

export type ArithmeticOperator = '+' | '-' | '*' | '\\' | '%' | '&' | '|' | '^' | '<<' | '>>';
export type ComparisonOperator = '==' | '!=' | '<' | '<=' | '>' | '>=';

/**
 * A condition expression. String references hold the index of the string in the rule, or
 * undefined for the anonymous `$` of a `for … of` body.
 */
export type Expr = SourcePosition &
  (
    | { readonly kind: 'boolean'; readonly value: boolean }
    | { readonly kind: 'integer'; readonly value: bigint }
    | { readonly kind: 'float'; readonly value: number }
    | { readonly kind: 'text'; readonly value: string }
    | { readonly kind: 'filesize' }
    | { readonly kind: 'not'; readonly operand: Expr }
    | { readonly kind: 'and' | 'or'; readonly left: Expr; readonly right: Expr }
    | { readonly kind: 'compare'; readonly operator: ComparisonOperator; readonly left: Expr; readonly right: Expr }
    | { readonly kind: 'arithmetic'; readonly operator: ArithmeticOperator; readonly left: Expr; readonly right: Expr }
    | { readonly kind: 'negate' | 'bitwiseNot'; readonly operand: Expr }
    | { readonly kind: 'stringMatches'; readonly string: number | undefined }
    | { readonly kind: 'stringAt'; readonly string: number | undefined; readonly offset: Expr }
    | { readonly kind: 'stringIn'; readonly string: number | undefined; readonly from: Expr; readonly to: Expr }
    | { readonly kind: 'stringCount'; readonly string: number | undefined }
    | { readonly kind: 'stringOffset' | 'stringLength'; readonly string: number | undefined; readonly index: Expr }
    | { readonly kind: 'of'; readonly quantifier: Quantifier; readonly strings: readonly number[] }
    | {
        readonly kind: 'forOf';
        readonly quantifier: Quantifier;
        readonly strings: readonly number[];
        readonly body: Expr;
      }
    | { readonly kind: 'stringCountIn'; readonly string: number | undefined; readonly from: Expr; readonly to: Expr }
    | { readonly kind: 'ruleReference'; readonly rule: number }
    | { readonly kind: 'ofRules'; readonly quantifier: Quantifier; readonly rules: readonly number[] }
    | { readonly kind: 'readInteger'; readonly read: IntegerRead; readonly offset: Expr }
    | { readonly kind: 'defined'; readonly operand: Expr }
    | { readonly kind: 'textOperator'; readonly operator: TextOperator; readonly left: Expr; readonly right: Expr }
    | { readonly kind: 'matches'; readonly left: Expr; readonly regex: PatternNode }
    | { readonly kind: 'variable'; readonly slot: number }
    | {
        readonly kind: 'forIn';
        readonly quantifier: Quantifier;
        readonly slot: number;
        readonly iterable: Iterable;
        readonly body: Expr;
      }
    | {
        readonly kind: 'module';
        readonly module: string;
        readonly steps: readonly ModuleStep[];
        readonly type: ValueType;
      }
  );
