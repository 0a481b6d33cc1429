import { describeType, type IsfTypeDescriptor } from '../symbols/isf.js';
import type { Profile } from '../symbols/profile.js';
import { VmscopeError } from '../util/errors.js';
import { z } from 'zod';
import { profileProvider } from './providers/kernel.js';
import { defineAnalysis, option, type AnalysisResult, type Column } from './types.js';

const columns: readonly Column[] = [
  { key: 'offset', kind: 'int', title: 'Offset' },
  { key: 'size', kind: 'int', title: 'Size' },
  { key: 'field', kind: 'text', title: 'Field' },
  { key: 'type', kind: 'text', title: 'Type' },
  { key: 'bit_position', kind: 'int', title: 'Bit' },
  { key: 'bit_length', kind: 'int', title: 'Bits' },
];

/** Bytes a field of this type occupies (undefined for functions and unknown types). */
export function sizeOfType(profile: Profile, type: IsfTypeDescriptor): number | undefined {
  switch (type.kind) {
    case 'pointer':
      return profile.types.base_types.pointer?.size ?? 8;
    case 'array': {
      const element = sizeOfType(profile, type.subtype);
      return element === undefined ? undefined : element * type.count;
    }
    case 'bitfield':
      return sizeOfType(profile, type.type);
    case 'function':
      return undefined;
    default:
      try {
        return profile.sizeOf(type.name);
      } catch (error) {
        if (error instanceof VmscopeError) return undefined;
        throw error;
      }
  }
}

/** The layout of one struct or union, fields in offset order. */
export function typeLayout(profile: Profile, name: string): AnalysisResult {
  const type = profile.type(name);
  if (!type) throw new VmscopeError('NO_PROFILE', `the profile has no struct or union "${name}"`, profile.source);
  const rows = Object.entries(type.fields)
    .map(([field, { offset, type: fieldType }]) => ({
      offset,
      size: sizeOfType(profile, fieldType) ?? null,
      field,
      type: describeType(fieldType),
      bit_position: fieldType.kind === 'bitfield' ? fieldType.bit_position : null,
      bit_length: fieldType.kind === 'bitfield' ? fieldType.bit_length : null,
    }))
    .sort((a, b) => a.offset - b.offset || (a.bit_position ?? 0) - (b.bit_position ?? 0));
  return {
    columns,
    rows,
    single: false,
    partial: false,
    warnings: [],
    title: `${type.kind} ${name}: ${type.size} bytes`,
  };
}

export const typesAnalysis = defineAnalysis({
  name: 'types',
  description: 'print the layout of a struct or union (offsets, sizes, types, bitfields) from the dump-derived profile',
  columns,
  uses: [profileProvider],
  options: z.object({ struct: option(z.string().min(1), { description: 'struct or union name, e.g. task_struct' }) }),
  arguments: ['struct'],
  help: 'Fields inside anonymous structs and unions are listed at their offset in the outer struct.',
  async compute(inputs, options) {
    return typeLayout((await inputs.get(profileProvider)).profile, options.struct);
  },
});
