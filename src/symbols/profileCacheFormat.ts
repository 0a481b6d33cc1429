import type { IsfBaseType, IsfEnum, IsfTypeDescriptor, IsfTypes, IsfUserType } from './isf.js';
import { lazyRecord } from './lazyRecord.js';
import type { ProfileSources, ProfileSymbol } from './profile.js';
import type { SymbolTypeSource } from './symbolTypes.js';
import { z } from 'zod';
import { VmscopeError } from '../util/errors.js';

/**
 * The payload of a profile cache file, laid out so that loading it costs little: a command
 * reads a few dozen of ten thousand types, and parsing a 16 MiB JSON document (then collecting
 * it) was most of every command's start-up. The symbols are columns of fixed-size values, the
 * types one JSON text each, decoded on first use (lazyRecord.ts).
 *
 *   u32 LE  index length
 *   index   JSON (PayloadIndex): counts, lengths, base types, symbol types, sources
 *   addresses      u64 LE per symbol (link-time; plain value when absolute)
 *   name lengths   u32 LE per symbol (UTF-16 code units of its name)
 *   type letters   u8 per symbol (the kallsyms letter's code, 0 when unknown)
 *   absolute       u8 per symbol (0 or 1)
 *   names          UTF-8, concatenated
 *   types          UTF-8 JSON texts, concatenated: user types then enums, as listed in the index
 *
 * Every count and length is checked against the payload's size before anything is decoded:
 * the file is attacker-reachable (its header's checksum only catches accidents).
 */
const BIGINT_PREFIX = 'u64:';

interface PayloadIndex {
  symbols: number;
  name_bytes: number;
  base_types: Record<string, IsfBaseType>;
  /** Names and JSON byte lengths of the lazily decoded types, in the order of the types section. */
  user_types: { names: string[]; lengths: number[] };
  enums: { names: string[]; lengths: number[] };
  /** [name, type, source] of each typed data symbol. */
  symbol_types: Array<[string, IsfTypeDescriptor, SymbolTypeSource]>;
  sources: ProfileSources | null;
}

export interface CachedPayload {
  /** Link-time addresses: the loader applies this dump's slide. */
  readonly symbols: Array<{ name: string; linkAddress: bigint; type: string | undefined; absolute: boolean }>;
  readonly types: IsfTypes;
  readonly symbolTypes: PayloadIndex['symbol_types'];
  readonly sources: ProfileSources | null;
}

const jsonText = (value: unknown) =>
  JSON.stringify(value, (_key, inner: unknown) => (typeof inner === 'bigint' ? `${BIGINT_PREFIX}${inner}` : inner));

export function encodePayload(
  symbols: readonly ProfileSymbol[],
  slide: bigint,
  types: IsfTypes,
  symbolTypes: PayloadIndex['symbol_types'],
  sources: ProfileSources | null,
): Buffer {
  const sectionOf = (record: Record<string, unknown>) => {
    const names = Object.keys(record);
    const texts = names.map((name) => Buffer.from(jsonText(record[name]), 'utf8'));
    return { names, texts, lengths: texts.map((text) => text.length) };
  };
  const userTypes = sectionOf(types.user_types);
  const enums = sectionOf(types.enums);
  const names = Buffer.from(symbols.map((symbol) => symbol.name).join(''), 'utf8');
  const index: PayloadIndex = {
    symbols: symbols.length,
    name_bytes: names.length,
    base_types: types.base_types,
    user_types: { names: userTypes.names, lengths: userTypes.lengths },
    enums: { names: enums.names, lengths: enums.lengths },
    symbol_types: symbolTypes,
    sources,
  };
  const indexBytes = Buffer.from(jsonText(index), 'utf8');
  const columns = Buffer.alloc(symbols.length * 14);
  symbols.forEach((symbol, at) => {
    const linkAddress = symbol.absolute ? symbol.address : BigInt.asUintN(64, symbol.address - slide);
    columns.writeBigUInt64LE(linkAddress, at * 8);
    columns.writeUInt32LE(symbol.name.length, symbols.length * 8 + at * 4);
    columns[symbols.length * 12 + at] = symbol.type?.charCodeAt(0) ?? 0;
    columns[symbols.length * 13 + at] = symbol.absolute ? 1 : 0;
  });
  const indexLength = Buffer.alloc(4);
  indexLength.writeUInt32LE(indexBytes.length);
  return Buffer.concat([indexLength, indexBytes, columns, names, ...userTypes.texts, ...enums.texts]);
}

// Lists of ten thousand entries are checked by hand: zod's per-element parse would cost more than the load saves.
const isLength = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0;
const section = z.object({
  names: z.custom<string[]>((value) => Array.isArray(value) && value.every((name) => typeof name === 'string')),
  lengths: z.custom<number[]>((value) => Array.isArray(value) && value.every(isLength)),
});
const indexSchema = z.object({
  symbols: z.number().int().nonnegative(),
  name_bytes: z.number().int().nonnegative(),
  base_types: z.record(
    z.string(),
    z.object({ size: z.number().int().nonnegative(), signed: z.boolean(), kind: z.string(), endian: z.string() }),
  ),
  user_types: section,
  enums: section,
  symbol_types: z.custom<PayloadIndex['symbol_types']>(
    (value) =>
      Array.isArray(value) &&
      value.every(
        (entry) =>
          Array.isArray(entry) && entry.length === 3 && typeof entry[0] === 'string' && typeof entry[2] === 'string',
      ),
  ),
  sources: z.unknown(),
});

/** A type letter is one printable ASCII character. */
const isTypeLetter = (code: number) => code === 0 || (code > 0x20 && code < 0x7f);

/**
 * The payload of `file` (read into `payload`), or a typed error saying what is wrong and where.
 * Types are decoded when first read; one that is not a JSON object then throws (CORRUPT_STRUCTURE).
 */
export function decodePayload(payload: Buffer, file: string): CachedPayload {
  const corrupt = (what: string, offset: number) =>
    new VmscopeError('CORRUPT_STRUCTURE', `profile cache: ${what}`, file, offset);
  if (payload.length < 4) throw corrupt('no payload', 0);
  const indexEnd = 4 + payload.readUInt32LE(0);
  if (indexEnd > payload.length) throw corrupt('the index runs past the end of the file', 0);
  const raw = parseJson(payload.toString('utf8', 4, indexEnd));
  if (!indexSchema.safeParse(raw).success) throw corrupt('the index is not what vmscope writes', 4);
  // The checked value as written: zod's copy would put keys in schema order, and an exported ISF would differ.
  const index = raw as PayloadIndex;
  for (const { names, lengths } of [index.user_types, index.enums]) {
    if (names.length !== lengths.length || new Set(names).size !== names.length)
      throw corrupt('a type list has duplicate names or a length per name missing', 4);
  }

  const count = index.symbols;
  const columns = indexEnd;
  const namesStart = columns + count * 14;
  const typesStart = namesStart + index.name_bytes;
  const sum = (lengths: number[]) => lengths.reduce((total, length) => total + length, 0);
  const expected = typesStart + sum(index.user_types.lengths) + sum(index.enums.lengths);
  if (expected !== payload.length)
    throw corrupt(`the payload is ${payload.length} bytes where its index adds up to ${expected}`, 0);

  const allNames = payload.toString('utf8', namesStart, typesStart);
  const symbols: CachedPayload['symbols'] = new Array(count);
  let nameAt = 0;
  for (let at = 0; at < count; at++) {
    const nameLength = payload.readUInt32LE(columns + count * 8 + at * 4);
    const letter = payload[columns + count * 12 + at]!;
    const absolute = payload[columns + count * 13 + at]!;
    if (nameAt + nameLength > allNames.length) throw corrupt(`symbol ${at}'s name runs past the names`, namesStart);
    if (!isTypeLetter(letter) || absolute > 1)
      throw corrupt(`symbol ${at} has type ${letter} and absolute flag ${absolute}`, columns + count * 12 + at);
    symbols[at] = {
      name: allNames.slice(nameAt, nameAt + nameLength),
      linkAddress: payload.readBigUInt64LE(columns + at * 8),
      type: letter === 0 ? undefined : String.fromCharCode(letter),
      absolute: absolute === 1,
    };
    nameAt += nameLength;
  }
  if (nameAt !== allNames.length) throw corrupt('the symbol names do not add up to the names section', namesStart);

  let typeAt = typesStart;
  const lazySection = <T extends object>(
    list: PayloadIndex['user_types'],
    what: string,
    check: (value: object) => value is T,
  ) => {
    const starts = list.lengths.map((length) => (typeAt += length) - length);
    return lazyRecord(list.names, (at, name) => {
      const value = parseJson(payload.toString('utf8', starts[at], starts[at]! + list.lengths[at]!));
      if (typeof value !== 'object' || value === null || Array.isArray(value) || !check(value))
        throw corrupt(`${what} "${name}" is not a ${what} vmscope writes`, starts[at]!);
      return value;
    });
  };
  const types: IsfTypes = {
    base_types: index.base_types,
    user_types: lazySection(index.user_types, 'user type', isUserType),
    enums: lazySection(index.enums, 'enum', isEnum),
  };
  return { symbols, types, symbolTypes: index.symbol_types, sources: index.sources };
}

function isUserType(value: object): value is IsfUserType {
  const { kind, size, fields } = value as Partial<IsfUserType>;
  return typeof kind === 'string' && typeof size === 'number' && typeof fields === 'object' && fields !== null;
}

/** An enum's constants come back as numbers, or bigints where the writer marked them so. */
function isEnum(value: object): value is IsfEnum {
  const { size, base, constants } = value as Partial<IsfEnum>;
  if (typeof size !== 'number' || typeof base !== 'string' || typeof constants !== 'object' || constants === null)
    return false;
  for (const [name, constant] of Object.entries(constants as Record<string, unknown>)) {
    if (
      typeof constant === 'string' &&
      constant.startsWith(BIGINT_PREFIX) &&
      /^-?\d+$/.test(constant.slice(BIGINT_PREFIX.length))
    )
      (constants as Record<string, unknown>)[name] = BigInt(constant.slice(BIGINT_PREFIX.length));
    else if (typeof constant !== 'number') return false;
  }
  return true;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
