import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { IsfTypeDescriptor, IsfTypes } from './isf.js';
import { Profile, type ProfileSources, type ProfileSymbol } from './profile.js';
import type { SymbolTypeEntry, SymbolTypeSource } from './symbolTypes.js';
import { z } from 'zod';
import { readInputFile, writeFileAtomically } from '../util/files.js';

/**
 * Derived profiles on disk: the second run on the same kernel build skips the kallsyms and BTF
 * decode. Symbols are stored at link-time addresses, so a later boot with another KASLR slide
 * reuses them. The format is vmscope's own (an ISF cannot hold duplicate symbol names or
 * kallsyms type letters) and plain JSON, so it loads with the native parser.
 *
 * A profile is keyed by what it was derived from, not by the banner alone (anyone can copy a
 * banner): the banner's hash names the kernel build, the fingerprint (sha256 of the dump's BTF
 * and kallsyms tables) the very bytes. A candidate is used only when the dump it is loaded for
 * hashes to the same fingerprint, and a file whose payload does not hash to its header's sum
 * (edited, truncated, half-written) is ignored: one dump's derivation never decides another's.
 *
 * File: one header line (JSON: format, banner, build id, fingerprint, payload sha256), then the
 * payload (JSON: symbols, types, symbol types, sources).
 */
const FORMAT = 'vmscope-profile-cache/3';
const U64 = (1n << 64n) - 1n;
const BIGINT_PREFIX = 'u64:';

/** What a profile was derived from: the sha256 of the kernel's BTF and of its kallsyms tables, as read from the dump. */
export interface ProfileFingerprint {
  readonly btfSha256: string;
  readonly kallsymsSha256: string;
}

interface CacheHeader {
  format: string;
  banner: string;
  build_id: string | null;
  fingerprint: ProfileFingerprint;
  payload_sha256: string;
}

interface CachePayload {
  /** [name, link-time address in hex, type letter or "", 1 when absolute] */
  symbols: Array<[string, string, string, 0 | 1]>;
  types: IsfTypes;
  /** [name, type, source] of each typed data symbol. */
  symbol_types: Array<[string, IsfTypeDescriptor, SymbolTypeSource]>;
  /** What the profile was derived from, so an ISF exported from the cache names it as one derived afresh would. */
  sources: ProfileSources | null;
}

export function defaultProfileCacheDir(): string {
  return (
    process.env.VMSCOPE_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'vmscope', 'profiles')
  );
}

/** Every file of this banner starts with the banner's hash; the fingerprint tells them apart. */
function bannerPrefix(banner: string): string {
  return `${createHash('sha256').update(banner, 'latin1').digest('hex')}-`;
}

function cachePath(cacheDir: string, banner: string, fingerprint: ProfileFingerprint): string {
  const bytes = createHash('sha256').update(`${fingerprint.btfSha256}:${fingerprint.kallsymsSha256}`).digest('hex');
  return join(cacheDir, `${bannerPrefix(banner)}${bytes.slice(0, 32)}.json`);
}

const sameFingerprint = (a: ProfileFingerprint, b: ProfileFingerprint | undefined) =>
  b !== undefined && a.btfSha256 === b.btfSha256 && a.kallsymsSha256 === b.kallsymsSha256;

/** Saves a derived profile; returns why it could not (a cache that cannot be written is a warning, never a failure). */
export function saveProfile(
  cacheDir: string,
  profile: Profile,
  buildId: string | undefined,
  fingerprint: ProfileFingerprint,
): string | undefined {
  if (profile.banner === undefined) return undefined;
  const payload: CachePayload = {
    symbols: profile.symbolList.map((symbol) => [
      symbol.name,
      (symbol.absolute ? symbol.address : (symbol.address - profile.slide) & U64).toString(16),
      symbol.type ?? '',
      symbol.absolute ? 1 : 0,
    ]),
    types: profile.types,
    symbol_types: [...(profile.details.symbolTypes ?? [])].map(([name, { type, source }]) => [name, type, source]),
    sources: profile.details.sources ?? null,
  };
  const body = JSON.stringify(payload, (_key, value: unknown) =>
    typeof value === 'bigint' ? `${BIGINT_PREFIX}${value}` : value,
  );
  const header: CacheHeader = {
    format: FORMAT,
    banner: profile.banner,
    build_id: buildId ?? null,
    fingerprint,
    payload_sha256: createHash('sha256').update(body).digest('hex'),
  };
  try {
    mkdirSync(cacheDir, { recursive: true });
    writeFileAtomically(cachePath(cacheDir, profile.banner, fingerprint), `${JSON.stringify(header)}\n${body}`);
    return undefined;
  } catch (error) {
    return `cannot write to ${cacheDir}: ${(error as NodeJS.ErrnoException).code ?? String(error)} (the profile is derived again next time)`;
  }
}

const headerSchema = z.object({
  format: z.literal(FORMAT),
  banner: z.string(),
  build_id: z.string().nullable(),
  fingerprint: z.object({ btfSha256: z.string(), kallsymsSha256: z.string() }),
  payload_sha256: z.string(),
});

const payloadSchema = z.object({
  symbols: z.array(
    z.tuple([z.string(), z.string().regex(/^[0-9a-f]{1,16}$/), z.string(), z.union([z.literal(0), z.literal(1)])]),
  ),
  types: z
    .object({
      user_types: z.record(z.string(), z.unknown()),
      base_types: z.record(z.string(), z.unknown()),
      enums: z.record(z.string(), z.unknown()),
    })
    .loose(),
  symbol_types: z.array(z.tuple([z.string(), z.unknown(), z.string()])),
  sources: z.unknown(),
});

/**
 * The cached profile for this banner (and build id, when the dump has one) whose fingerprint
 * the dump itself confirms, or undefined. `fingerprintOf` hashes the dump's BTF and kallsyms
 * as placed by the candidate's symbols.
 */
export function loadProfile(
  cacheDir: string,
  banner: string,
  buildId: string | undefined,
  slide: bigint,
  source: string,
  fingerprintOf: (candidate: Profile) => ProfileFingerprint | undefined,
): Profile | undefined {
  let names: string[];
  try {
    names = readdirSync(cacheDir).filter((name) => name.startsWith(bannerPrefix(banner)) && name.endsWith('.json'));
  } catch {
    return undefined; // no cache yet, or not readable: derive
  }
  for (const name of names) {
    const profile = readCandidate(join(cacheDir, name), banner, buildId, slide, source);
    if (profile && sameFingerprint(profile.fingerprint, fingerprintOf(profile.profile))) return profile.profile;
  }
  return undefined;
}

function readCandidate(path: string, banner: string, buildId: string | undefined, slide: bigint, source: string) {
  let text: string;
  try {
    text = readInputFile(path, 'profile cache file', MAX_CACHE_FILE_BYTES).toString('utf8');
  } catch {
    return undefined;
  }
  const newline = text.indexOf('\n');
  if (newline < 0) return undefined;
  const header = headerSchema.safeParse(parseJson(text.slice(0, newline)));
  if (!header.success) return undefined;
  const body = text.slice(newline + 1);
  const { data } = header;
  if (data.banner !== banner || (buildId !== undefined && data.build_id !== null && data.build_id !== buildId))
    return undefined;
  if (createHash('sha256').update(body).digest('hex') !== data.payload_sha256) return undefined;
  const parsed = payloadSchema.safeParse(parseJson(body));
  if (!parsed.success) return undefined;
  const file = parsed.data as unknown as CachePayload;
  for (const enumeration of Object.values(file.types.enums)) {
    for (const [name, value] of Object.entries(enumeration.constants)) {
      if (typeof value === 'string' && (value as string).startsWith(BIGINT_PREFIX))
        enumeration.constants[name] = BigInt((value as string).slice(BIGINT_PREFIX.length));
    }
  }
  if (!file.symbols.every(isSymbolEntry)) return undefined;
  const symbols: ProfileSymbol[] = file.symbols.map(([name, hexAddress, type, absolute]) => {
    const linkAddress = BigInt(`0x${hexAddress}`);
    return {
      name,
      address: absolute ? linkAddress : (linkAddress + slide) & U64,
      type: type || undefined,
      absolute: absolute === 1,
    };
  });
  const symbolTypes = new Map<string, SymbolTypeEntry>(
    file.symbol_types.map(([name, type, typeSource]) => [name, { type, source: typeSource }]),
  );
  const profile = new Profile(file.types, symbols, slide, 'cache', source, banner, {
    symbolTypes,
    ...(file.sources ? { sources: file.sources } : {}),
  });
  return { profile, fingerprint: data.fingerprint };
}

const HEX_ADDRESS = /^[0-9a-f]{1,16}$/;

function isSymbolEntry(entry: unknown): entry is [string, string, string, 0 | 1] {
  return (
    Array.isArray(entry) &&
    entry.length === 4 &&
    typeof entry[0] === 'string' &&
    typeof entry[1] === 'string' &&
    HEX_ADDRESS.test(entry[1]) &&
    typeof entry[2] === 'string' &&
    (entry[3] === 0 || entry[3] === 1)
  );
}

/** A profile cache file is tens of MiB at most (a 6.12 kernel's is ~16 MiB). */
const MAX_CACHE_FILE_BYTES = 256 << 20;

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
