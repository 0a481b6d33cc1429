import { endianness } from 'node:os';
import { cachedSymbolTable } from './cachedSymbolTable.js';
import type { IsfBaseType, IsfEnum, IsfTypeDescriptor, IsfTypes, IsfUserType } from './isf.js';
import { lazyRecord } from './lazyRecord.js';
import type { ProfileSources, ProfileSymbol } from './profile.js';
import { relocatableOrder, symbolsByName, type SymbolTable } from './symbolTable.js';
import type { SymbolTypeSource } from './symbolTypes.js';
import { z } from 'zod';
import { VmscopeError } from '../util/errors.js';

/**
 * The payload of a profile cache file, laid out so that loading it costs little: a command
 * reads a few dozen of ten thousand types and a few hundred of a hundred thousand symbols, and
 * building them all (parsing a 16 MiB JSON document, then a map of every symbol name) was most
 * of every command's start-up. The symbols are columns of fixed-size values with their name and
 * address orders precomputed, read on demand (cachedSymbolTable.ts); the types one JSON text
 * each, decoded on first use (lazyRecord.ts).
 *
 *   u32 LE  index length
 *   index   JSON (PayloadIndex): counts, lengths, base types, symbol types, sources
 *   addresses      u64 LE per symbol (link-time; plain value when absolute)
 *   name ends      u32 LE per symbol (UTF-8 end of its name in the names section)
 *   type letters   u8 per symbol (the kallsyms letter's code, 0 when unknown)
 *   absolute       u8 per symbol (0 or 1)
 *   by name        u32 LE per distinct name: the symbol it stands for, in the names' byte order
 *   by address     u32 LE per relocatable symbol: symbol index, in link-time address order
 *   names          UTF-8, concatenated
 *   types          UTF-8 JSON texts, concatenated: user types then enums, as listed in the index
 *
 * Every count, length and index is checked against the payload's size before anything is
 * decoded: the file is attacker-reachable (its header's checksum only catches accidents).
 */
const BIGINT_PREFIX = 'u64:';
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

interface PayloadIndex {
  symbols: number;
  /** Distinct names (entries of the by-name order) and relocatable symbols (of the by-address order). */
  named: number;
  relocatable: number;
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
  /** Addresses with the slide given to the decoder applied (absolute values as they are). */
  readonly symbols: SymbolTable;
  readonly types: IsfTypes;
  readonly symbolTypes: PayloadIndex['symbol_types'];
  readonly sources: ProfileSources | null;
  /** The enums whose JSON text holds `text` (in the types section's order), found without decoding any. */
  readonly enumsMentioning: (text: string) => string[];
}

const jsonText = (value: unknown) =>
  JSON.stringify(value, (_key, inner: unknown) => (typeof inner === 'bigint' ? `${BIGINT_PREFIX}${inner}` : inner));

/**
 * The payload, written into one buffer of its final size: a derivation's peak memory is where
 * this runs, so no section is built apart and then copied into place.
 */
export function encodePayload(
  symbols: readonly ProfileSymbol[],
  slide: bigint,
  types: IsfTypes,
  symbolTypes: PayloadIndex['symbol_types'],
  sources: ProfileSources | null,
): Buffer {
  const sectionOf = (record: Record<string, unknown>) => {
    const names = Object.keys(record);
    const texts = names.map((name) => jsonText(record[name]));
    return { names, texts, lengths: texts.map((text) => Buffer.byteLength(text, 'utf8')) };
  };
  const userTypes = sectionOf(types.user_types);
  const enums = sectionOf(types.enums);
  const count = symbols.length;
  const nameEnds = new Uint32Array(count);
  let nameBytes = 0;
  symbols.forEach((symbol, at) => (nameEnds[at] = nameBytes += Buffer.byteLength(symbol.name, 'utf8')));
  const linkAddress = (symbol: ProfileSymbol) =>
    symbol.absolute ? symbol.address : BigInt.asUintN(64, symbol.address - slide);
  const indexOf = new Map(symbols.map((symbol, at) => [symbol, at]));
  const byName = [...symbolsByName(symbols).values()].map((symbol) => indexOf.get(symbol)!);
  const byAddress = relocatableOrder(
    count,
    (at) => symbols[at]!.absolute,
    (at) => linkAddress(symbols[at]!),
  );
  const index: PayloadIndex = {
    symbols: count,
    named: byName.length,
    relocatable: byAddress.length,
    name_bytes: nameBytes,
    base_types: types.base_types,
    user_types: { names: userTypes.names, lengths: userTypes.lengths },
    enums: { names: enums.names, lengths: enums.lengths },
    symbol_types: symbolTypes,
    sources,
  };
  const indexText = jsonText(index);
  const columns = 4 + Buffer.byteLength(indexText, 'utf8');
  const orders = columns + count * 14;
  const namesStart = orders + (byName.length + byAddress.length) * 4;
  const sum = (lengths: number[]) => lengths.reduce((total, length) => total + length, 0);
  const payload = Buffer.alloc(namesStart + nameBytes + sum(userTypes.lengths) + sum(enums.lengths));

  payload.writeUInt32LE(columns - 4, 0);
  payload.write(indexText, 4, 'utf8');
  const nameStart = (at: number) => namesStart + (at === 0 ? 0 : nameEnds[at - 1]!);
  symbols.forEach((symbol, at) => {
    payload.writeBigUInt64LE(linkAddress(symbol), columns + at * 8);
    payload.writeUInt32LE(nameEnds[at]!, columns + count * 8 + at * 4);
    payload[columns + count * 12 + at] = symbol.type?.charCodeAt(0) ?? 0;
    payload[columns + count * 13 + at] = symbol.absolute ? 1 : 0;
    payload.write(symbol.name, nameStart(at), 'utf8');
  });
  // Names in UTF-8 byte order, compared where they are written.
  byName.sort((a, b) => payload.compare(payload, nameStart(b), nameStart(b + 1), nameStart(a), nameStart(a + 1)));
  byName.forEach((at, rank) => payload.writeUInt32LE(at, orders + rank * 4));
  byAddress.forEach((at, rank) => payload.writeUInt32LE(at, orders + (byName.length + rank) * 4));
  let typeAt = namesStart + nameBytes;
  for (const text of [...userTypes.texts, ...enums.texts]) typeAt += payload.write(text, typeAt, 'utf8');
  return payload;
}

// Lists of ten thousand entries are checked by hand: zod's per-element parse would cost more than the load saves.
const isLength = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0;
const section = z.object({
  names: z.custom<string[]>((value) => Array.isArray(value) && value.every((name) => typeof name === 'string')),
  lengths: z.custom<number[]>((value) => Array.isArray(value) && value.every(isLength)),
});
const indexSchema = z.object({
  symbols: z.number().int().nonnegative(),
  named: z.number().int().nonnegative(),
  relocatable: z.number().int().nonnegative(),
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
 * The payload of `file` (read into `payload`) for a dump with this KASLR slide, or a typed error
 * saying what is wrong and where.
 * Types are decoded when first read; one that is not a JSON object then throws (CORRUPT_STRUCTURE).
 */
export function decodePayload(payload: Buffer, file: string, slide: bigint): CachedPayload {
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
  const orders = columns + count * 14;
  const namesStart = orders + (index.named + index.relocatable) * 4;
  const typesStart = namesStart + index.name_bytes;
  const sum = (lengths: number[]) => lengths.reduce((total, length) => total + length, 0);
  const expected = typesStart + sum(index.user_types.lengths) + sum(index.enums.lengths);
  if (expected !== payload.length)
    throw corrupt(`the payload is ${payload.length} bytes where its index adds up to ${expected}`, 0);

  // Copied (a typed array needs an aligned offset; the payload follows a header of any length), byte for byte
  // where the host is little-endian as the file is, else value by value.
  const u32s = (offset: number, length: number) => {
    const values = new Uint32Array(length);
    if (LITTLE_ENDIAN_HOST) new Uint8Array(values.buffer).set(payload.subarray(offset, offset + length * 4));
    else for (let at = 0; at < length; at++) values[at] = payload.readUInt32LE(offset + at * 4);
    return values;
  };
  const nameEnds = u32s(columns + count * 8, count);
  const letters = payload.subarray(columns + count * 12, columns + count * 13);
  const absolute = payload.subarray(columns + count * 13, columns + count * 14);
  const byName = u32s(orders, index.named);
  const byAddress = u32s(orders + index.named * 4, index.relocatable);
  let nameStart = 0;
  for (let at = 0; at < count; at++) {
    if (nameEnds[at]! < nameStart || nameEnds[at]! > index.name_bytes)
      throw corrupt(`symbol ${at}'s name runs past the names`, columns + count * 8 + at * 4);
    nameStart = nameEnds[at]!;
    if (!isTypeLetter(letters[at]!) || absolute[at]! > 1)
      throw corrupt(
        `symbol ${at} has type ${letters[at]} and absolute flag ${absolute[at]}`,
        columns + count * 12 + at,
      );
  }
  if (nameStart !== index.name_bytes) throw corrupt('the symbol names do not add up to the names section', namesStart);
  byName.forEach((at, rank) => {
    if (at >= count) throw corrupt(`name ${rank} is of symbol ${at} of ${count}`, orders + rank * 4);
  });
  byAddress.forEach((at, rank) => {
    if (at >= count || absolute[at] === 1)
      throw corrupt(`address rank ${rank} is not a relocatable symbol`, orders + (index.named + rank) * 4);
  });
  const symbols = cachedSymbolTable(
    {
      count,
      addresses: new DataView(payload.buffer, payload.byteOffset + columns, count * 8),
      nameEnds,
      letters,
      absolute,
      names: payload.subarray(namesStart, typesStart),
      byName,
      byAddress,
    },
    slide,
  );

  let typeAt = typesStart;
  const startsOf = (list: PayloadIndex['user_types']) => list.lengths.map((length) => (typeAt += length) - length);
  const lazySection = <T extends object>(
    list: PayloadIndex['user_types'],
    starts: number[],
    what: string,
    check: (value: object) => value is T,
  ) =>
    lazyRecord(list.names, (at, name) => {
      const value = parseJson(payload.toString('utf8', starts[at], starts[at]! + list.lengths[at]!));
      if (typeof value !== 'object' || value === null || Array.isArray(value) || !check(value))
        throw corrupt(`${what} "${name}" is not a ${what} vmscope writes`, starts[at]!);
      return value;
    });
  const userTypeStarts = startsOf(index.user_types);
  const enumStarts = startsOf(index.enums);
  const types: IsfTypes = {
    base_types: index.base_types,
    user_types: lazySection(index.user_types, userTypeStarts, 'user type', isUserType),
    enums: lazySection(index.enums, enumStarts, 'enum', isEnum),
  };
  const enumsMentioning = (text: string): string[] => {
    const found: string[] = [];
    for (let hit = payload.indexOf(text, enumStarts[0] ?? typeAt, 'latin1'); hit >= 0 && hit < typeAt;) {
      // The enum whose JSON text holds the hit: the last one starting at or before it.
      let [low, high] = [0, enumStarts.length];
      while (high - low > 1) {
        const middle = (low + high) >>> 1;
        if (enumStarts[middle]! <= hit) low = middle;
        else high = middle;
      }
      found.push(index.enums.names[low]!);
      hit = payload.indexOf(text, enumStarts[low]! + index.enums.lengths[low]!, 'latin1');
    }
    return found;
  };
  return { symbols, types, symbolTypes: index.symbol_types, sources: index.sources, enumsMentioning };
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
