import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Profile, type ProfileOrigin } from './profile.js';
import { decodePayload, encodePayload } from './profileCacheFormat.js';
import type { SymbolTypeEntry } from './symbolTypes.js';
import { z } from 'zod';
import { isVmscopeError, VmscopeError } from '../util/errors.js';
import { readInputFile, writeFileAtomically } from '../util/files.js';

/**
 * Derived profiles on disk: the second run on the same kernel build skips the kallsyms and BTF
 * decode. Symbols are stored at link-time addresses, so a later boot with another KASLR slide
 * reuses them. The format is vmscope's own (an ISF cannot hold duplicate symbol names or
 * kallsyms type letters), laid out for a cheap load (profileCacheFormat.ts).
 *
 * A profile is keyed by what it was derived from, not by the banner alone (anyone can copy a
 * banner): the banner's hash names the kernel build, the fingerprint (sha256 of the dump's BTF
 * and kallsyms tables) the very bytes. A candidate is used only when the dump it is loaded for
 * hashes to the same fingerprint, and a file whose payload does not hash to its header's sum
 * (edited, truncated, half-written) is ignored with a warning: one dump's derivation never
 * decides another's.
 *
 * File: one header line (JSON: format, banner, build id, fingerprint, payload sha256), then the
 * binary payload.
 */
const FORMAT = 'vmscope-profile-cache/5';
const EXTENSION = '.profile';

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
  return join(cacheDir, `${bannerPrefix(banner)}${bytes.slice(0, 32)}${EXTENSION}`);
}

const sameFingerprint = (a: ProfileFingerprint, b: ProfileFingerprint | undefined) =>
  b !== undefined && a.btfSha256 === b.btfSha256 && a.kallsymsSha256 === b.kallsymsSha256;

/** A derived profile as the cache stores it: what is saved, and what `profileFromPayload` reads back. */
export function encodeProfile(profile: Profile): Buffer {
  return encodePayload(
    profile.symbolList,
    profile.slide,
    profile.types,
    [...(profile.details.symbolTypes ?? [])].map(([name, { type, source }]) => [name, type, source]),
    profile.details.sources ?? null,
  );
}

/** Saves a derived profile's payload; returns why it could not (a cache that cannot be written is a warning, never a failure). */
export function saveProfile(
  cacheDir: string,
  banner: string,
  payload: Buffer,
  buildId: string | undefined,
  fingerprint: ProfileFingerprint,
): string | undefined {
  const header: CacheHeader = {
    format: FORMAT,
    banner,
    build_id: buildId ?? null,
    fingerprint,
    payload_sha256: createHash('sha256').update(payload).digest('hex'),
  };
  try {
    mkdirSync(cacheDir, { recursive: true });
    // Header and payload written one after the other: the payload (~10 MiB) is not copied behind the header.
    writeFileAtomically(cachePath(cacheDir, banner, fingerprint), `${JSON.stringify(header)}\n`, payload);
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

/** A cached profile this dump confirms, and what was wrong with the files that could not be read. */
export interface CacheLookup {
  readonly profile: Profile | undefined;
  readonly warnings: readonly string[];
}

/**
 * The cached profile for this banner (and build id, when the dump has one) whose fingerprint
 * the dump itself confirms, if any. `fingerprintOf` hashes the dump's BTF and kallsyms as placed
 * by the candidate's symbols. A file of another dump of this build is passed over quietly; one
 * that cannot be read as a cache file is passed over with a warning (it is derived again, and
 * the new derivation replaces it when the fingerprints agree).
 */
export function loadProfile(
  cacheDir: string,
  banner: string,
  buildId: string | undefined,
  slide: bigint,
  source: string,
  fingerprintOf: (candidate: Profile) => ProfileFingerprint | undefined,
): CacheLookup {
  let names: string[];
  try {
    names = readdirSync(cacheDir).filter((name) => name.startsWith(bannerPrefix(banner)) && name.endsWith(EXTENSION));
  } catch {
    return { profile: undefined, warnings: [] }; // no cache yet, or not readable: derive
  }
  const warnings: string[] = [];
  for (const name of names) {
    const path = join(cacheDir, name);
    let candidate: ReturnType<typeof readCandidate>;
    try {
      candidate = readCandidate(path, banner, buildId, slide, source);
    } catch (error) {
      if (!isVmscopeError(error)) throw error;
      warnings.push(`profile cache: ignored ${error.describe()} (the profile is derived again)`);
      continue;
    }
    if (candidate && sameFingerprint(candidate.fingerprint, fingerprintOf(candidate.profile)))
      return { profile: candidate.profile, warnings };
  }
  return { profile: undefined, warnings };
}

/** The file's profile, undefined when it is another build's; throws a VmscopeError when it is not a sound cache file. */
function readCandidate(path: string, banner: string, buildId: string | undefined, slide: bigint, source: string) {
  const bytes = readInputFile(path, 'profile cache file', MAX_CACHE_FILE_BYTES);
  const newline = bytes.indexOf(0x0a);
  const header = headerSchema.safeParse(newline < 0 ? undefined : parseJson(bytes.toString('utf8', 0, newline)));
  if (!header.success) throw new VmscopeError('CORRUPT_HEADER', `not a ${FORMAT} file`, path, 0);
  const { data } = header;
  if (data.banner !== banner || (buildId !== undefined && data.build_id !== null && data.build_id !== buildId))
    return undefined;
  const payload = bytes.subarray(newline + 1);
  if (createHash('sha256').update(payload).digest('hex') !== data.payload_sha256)
    throw new VmscopeError('CORRUPT_STRUCTURE', 'the payload does not match its checksum', path, newline + 1);
  return { profile: profileFromPayload(payload, path, slide, 'cache', source, banner), fingerprint: data.fingerprint };
}

/**
 * The profile a payload holds (`file` is named in its errors), for a dump with this slide. Its
 * symbols stay in the payload's columns and its types in their text until used: a derived
 * profile read back this way holds a few MiB, not the derivation's hundred thousand objects.
 */
export function profileFromPayload(
  payload: Buffer,
  file: string,
  slide: bigint,
  origin: ProfileOrigin,
  source: string,
  banner: string,
): Profile {
  const decoded = decodePayload(payload, file, slide);
  const symbolTypes = new Map<string, SymbolTypeEntry>(
    decoded.symbolTypes.map(([name, type, typeSource]) => [name, { type, source: typeSource }]),
  );
  return new Profile(decoded.types, decoded.symbols, slide, origin, source, banner, {
    symbolTypes,
    ...(decoded.sources ? { sources: decoded.sources } : {}),
    enumsMentioning: decoded.enumsMentioning,
  });
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
