import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { parse } from 'lossless-json';
import { z } from 'zod';
import type XzDecompress from 'xz-decompress';
import { VmscopeError } from '../util/errors.js';
import { readInputFile, writeOutputFile } from '../util/files.js';
import { lazyRequire } from '../util/lazyRequire.js';

// Only .xz ISF files need it: loaded then, not at every start-up.
const xzDecompress = lazyRequire<typeof XzDecompress>('xz-decompress');

/**
 * Volatility 3's Intermediate Symbol Format (schema 6.x), the interchange format for profiles:
 * vmscope reads ISF files users already have and writes ISF that Volatility loads. The shapes
 * below follow volatility3/schemas/schema-6.x.json, which forbids extra keys.
 */
export type IsfTypeDescriptor =
  | { kind: 'base'; name: string }
  | { kind: 'pointer'; subtype: IsfTypeDescriptor; base?: string }
  | { kind: 'array'; count: number; subtype: IsfTypeDescriptor }
  | { kind: 'struct' | 'union' | 'class'; name: string }
  | { kind: 'enum'; name: string }
  | { kind: 'function' }
  | { kind: 'bitfield'; bit_position: number; bit_length: number; type: IsfTypeDescriptor };

/** C-like spelling of an ISF type, e.g. `struct list_head *`, `char[16]`. */
export function describeType(type: IsfTypeDescriptor): string {
  switch (type.kind) {
    case 'base':
      return type.name;
    case 'pointer':
      return `${describeType(type.subtype)} *`;
    case 'array':
      return `${describeType(type.subtype)}[${type.count}]`;
    case 'struct':
    case 'union':
    case 'class':
    case 'enum':
      return `${type.kind} ${type.name}`;
    case 'function':
      return 'function';
    case 'bitfield':
      return describeType(type.type);
  }
}

export interface IsfField {
  type: IsfTypeDescriptor;
  offset: number;
  anonymous?: boolean;
}

export interface IsfUserType {
  kind: 'struct' | 'union' | 'class';
  size: number;
  fields: Record<string, IsfField>;
}

export interface IsfBaseType {
  kind: 'void' | 'int' | 'float' | 'char' | 'bool';
  size: number;
  signed: boolean;
  endian: 'little' | 'big';
}

export interface IsfEnum {
  size: number;
  base: string;
  constants: Record<string, number | bigint>;
}

export interface IsfSymbol {
  /** Link-time address (before KASLR), exact to 64 bits. */
  address: number | bigint;
  linkage_name?: string;
  type?: IsfTypeDescriptor;
  /** base64 bytes: Volatility matches `linux_banner`'s to pick the ISF for a dump. */
  constant_data?: string;
}

export interface IsfMetadataItem {
  kind: 'dwarf' | 'symtab' | 'system-map';
  name?: string;
  hash_type?: 'sha256';
  hash_value?: string;
}

export interface IsfDocument {
  metadata: {
    format: string;
    producer?: { name: string; version: string; datetime?: string };
    linux?: { symbols?: IsfMetadataItem[]; types?: IsfMetadataItem[] };
  };
  base_types: Record<string, IsfBaseType>;
  user_types: Record<string, IsfUserType>;
  enums: Record<string, IsfEnum>;
  symbols: Record<string, IsfSymbol>;
}

/** The type sections of an ISF: what BTF gives. */
export type IsfTypes = Pick<IsfDocument, 'base_types' | 'user_types' | 'enums'>;

const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];

const BIGINT_MARK = '\u0000u64:';

/**
 * Serialize with 64-bit addresses written as exact integers. JSON.stringify cannot write a
 * bigint, so each is emitted as a marked string and unquoted afterwards (the NUL in the mark
 * cannot occur in any real name); this is several times faster than a lossless serializer.
 */
export function stringifyIsf(document: IsfDocument): string {
  const text = JSON.stringify(document, (_key, value: unknown) =>
    typeof value === 'bigint' ? `${BIGINT_MARK}${value}` : value,
  );
  return text.replace(/"\\u0000u64:(-?\d+)"/g, '$1') + '\n';
}

/** Parse ISF text; integers beyond 2^53 (kernel addresses) come back as bigints, not rounded floats. */
export function parseIsf(text: string, path: string): IsfDocument {
  let document: unknown;
  try {
    document = parse(text, null, exactNumber);
  } catch (error) {
    throw new VmscopeError('CORRUPT_STRUCTURE', `not valid JSON: ${(error as Error).message}`, path, 0);
  }
  validateIsf(document, path);
  return document;
}

/** Integers that a double cannot hold exactly (64-bit addresses) become bigints; the rest stay numbers. */
function exactNumber(text: string): number | bigint {
  const value = Number(text);
  return Number.isSafeInteger(value) || !/^-?\d+$/.test(text) ? value : BigInt(text);
}

function validateIsf(document: unknown, path: string): asserts document is IsfDocument {
  const fail = (what: string): never => {
    throw new VmscopeError('CORRUPT_STRUCTURE', `not a Volatility ISF: ${what}`, path, 0);
  };
  if (typeof document !== 'object' || document === null) fail('the top level is not an object');
  const record = document as Record<string, unknown>;
  for (const section of ['metadata', 'base_types', 'user_types', 'enums', 'symbols']) {
    if (typeof record[section] !== 'object' || record[section] === null) fail(`missing "${section}"`);
  }
  const format = (record.metadata as Record<string, unknown>).format;
  if (typeof format !== 'string' || !/^[4-6]\.\d+\.\d+$/.test(format))
    fail(`metadata.format ${JSON.stringify(format)} is not a supported ISF version (4.x to 6.x)`);
  // Every value a profile reads is checked here, so a string offset or a cyclic-looking type is
  // one typed error naming where, not a crash deep in an analysis.
  const sections = isfSectionsSchema.safeParse(document);
  if (!sections.success) {
    const issue = sections.error.issues[0]!;
    fail(`${issue.path.map(String).join('.')}: ${issue.message}`);
  }
}

const count = z.number().int().nonnegative();
const address = z.union([z.number().int(), z.bigint()]);
const typeDescriptor: z.ZodType<IsfTypeDescriptor> = z.lazy(() =>
  z.union([
    z.object({ kind: z.literal('base'), name: z.string() }),
    z.object({ kind: z.literal('pointer'), subtype: typeDescriptor, base: z.string().optional() }),
    z.object({ kind: z.literal('array'), count, subtype: typeDescriptor }),
    z.object({ kind: z.enum(['struct', 'union', 'class']), name: z.string() }),
    z.object({ kind: z.literal('enum'), name: z.string() }),
    z.object({ kind: z.literal('function') }),
    z.object({ kind: z.literal('bitfield'), bit_position: count, bit_length: count, type: typeDescriptor }),
  ]),
);

/** The sections a profile reads, with the types every reader assumes (offsets and sizes are integers, ...). */
const isfSectionsSchema = z.object({
  base_types: z.record(
    z.string(),
    z.object({ kind: z.string(), size: count, signed: z.boolean(), endian: z.enum(['little', 'big']) }),
  ),
  user_types: z.record(
    z.string(),
    z.object({
      kind: z.enum(['struct', 'union', 'class']),
      size: count,
      fields: z.record(
        z.string(),
        z.object({ type: typeDescriptor, offset: count, anonymous: z.boolean().optional() }),
      ),
    }),
  ),
  enums: z.record(z.string(), z.object({ size: count, base: z.string(), constants: z.record(z.string(), address) })),
  symbols: z.record(
    z.string(),
    z.object({ address, type: typeDescriptor.optional(), constant_data: z.string().optional() }),
  ),
});

/** A kernel's ISF is 5-40 MB of JSON (a few MB as .xz): bounds on the file and on what it decompresses to. */
export const MAX_ISF_FILE_BYTES = 256 << 20;
export const MAX_ISF_JSON_BYTES = 512 << 20;

/** Read `file.json` or `file.json.xz` (the form Volatility's symbol packs ship in). */
export async function readIsfFile(path: string): Promise<IsfDocument> {
  let bytes: Uint8Array = readInputFile(path, 'ISF', MAX_ISF_FILE_BYTES);
  if (XZ_MAGIC.every((byte, i) => bytes[i] === byte)) bytes = await unxz(bytes, path);
  return parseIsf(new TextDecoder().decode(bytes), path);
}

async function unxz(compressed: Uint8Array, path: string): Promise<Uint8Array> {
  try {
    // xz-decompress is CommonJS (a WASM liblzma build): its class comes through the default export.
    const stream = new (xzDecompress().XzReadableStream)(
      Readable.toWeb(Readable.from([compressed])) as ReadableStream<Uint8Array>,
    );
    // Read piece by piece and stop at the bound: an xz bomb must not decompress into memory whole.
    const pieces: Uint8Array[] = [];
    let total = 0;
    const reader = stream.getReader();
    for (let piece = await reader.read(); !piece.done; piece = await reader.read()) {
      total += piece.value.length;
      if (total > MAX_ISF_JSON_BYTES) {
        await reader.cancel();
        throw new VmscopeError(
          'CORRUPT_STRUCTURE',
          `decompresses to more than ${MAX_ISF_JSON_BYTES} bytes: no ISF is that large`,
          path,
          0,
        );
      }
      pieces.push(piece.value);
    }
    return Buffer.concat(pieces);
  } catch (error) {
    if (error instanceof VmscopeError) throw error;
    throw new VmscopeError('CORRUPT_STRUCTURE', `xz stream is corrupt: ${(error as Error).message}`, path, 0);
  }
}

/** An exported ISF is about 12 MiB of JSON; xz makes it about 1 MiB. */
const MAX_XZ_OUTPUT = 256 << 20;

/**
 * Write ISF text to `path`, xz-compressed when the name ends in `.xz` (the form Volatility's
 * symbol packs use; it reads both). Compression runs the `xz` command (xz-utils: the reference
 * implementation, on every mainstream distribution, threaded with -T0): the npm xz compressors
 * need Node 22 (node-liblzma, @napi-rs/lzma 1.5) or store without compressing (@napi-rs/lzma
 * 1.4). Without `xz` the error says how to get it, or to write plain `.json`.
 */
export function writeIsfFile(path: string, text: string): void {
  if (!path.endsWith('.xz')) {
    writeOutputFile(path, text);
    return;
  }
  const result = spawnSync('xz', ['--compress', '--stdout', '--threads=0', '-6'], {
    input: text,
    maxBuffer: MAX_XZ_OUTPUT,
  });
  if (result.error || result.status !== 0) {
    const why =
      result.error && 'code' in result.error && result.error.code === 'ENOENT'
        ? 'the xz command is not installed (Debian/Ubuntu: apt-get install xz-utils)'
        : `xz failed: ${result.error?.message ?? result.stderr.toString().trim()}`;
    throw new VmscopeError('USAGE', `cannot write a .xz ISF: ${why}; or write plain JSON with -o FILE.json`, path);
  }
  writeOutputFile(path, result.stdout);
}
