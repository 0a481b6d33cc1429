import type { ValueType } from '../ast.js';
import type { ScannedUnit } from '../unit.js';

/** A YARA value: integers are int64 bigints, floats numbers, strings latin1 text; undefined is yara's undefined. */
export type Value = bigint | number | boolean | string | undefined;

/** One way of calling a module function: its argument types and what it returns. */
export interface Overload {
  readonly args: readonly ValueType[];
  readonly returns: ValueType;
  readonly run: (args: readonly Value[], unit: ScannedUnit) => Value;
}

/**
 * What a module declares (yara's module declarations): the parser type-checks references
 * against it, and the evaluator walks the same shape over the module's data for one unit.
 */
export type ModuleType =
  | { readonly kind: 'value'; readonly type: Exclude<ValueType, 'boolean'> }
  | { readonly kind: 'struct'; readonly fields: Readonly<Record<string, ModuleType>> }
  | { readonly kind: 'array'; readonly of: ModuleType }
  | { readonly kind: 'function'; readonly overloads: readonly Overload[] };

/** Data of a module for one unit: structs are objects, arrays arrays, leaves values (a missing field is undefined). */
export type ModuleData = Value | ModuleData[] | { readonly [field: string]: ModuleData };

export interface Module {
  readonly name: string;
  readonly type: ModuleType & { kind: 'struct' };
  /** The module's data for one unit (computed once per unit); functions need none. */
  readonly load: (unit: ScannedUnit) => ModuleData;
}

export const integer: ModuleType = { kind: 'value', type: 'integer' };
export const float: ModuleType = { kind: 'value', type: 'float' };
export const string: ModuleType = { kind: 'value', type: 'string' };
export const fn = (...overloads: Overload[]): ModuleType => ({ kind: 'function', overloads });
