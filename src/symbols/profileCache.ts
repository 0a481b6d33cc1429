import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { IsfTypeDescriptor, IsfTypes } from './isf.js';
import { Profile, type ProfileSources, type ProfileSymbol } from './profile.js';
import type { SymbolTypeEntry, SymbolTypeSource } from './symbolTypes.js';
import { writeFileAtomically } from '../util/files.js';

/**
 * Derived profiles on disk, keyed by the banner's hash: the second run on the same kernel build
 * skips the kallsyms and BTF decode. Symbols are stored at link-time addresses, so a later boot
 * with another KASLR slide reuses them. The format is vmscope's own (an ISF cannot hold duplicate
 * symbol names or kallsyms type letters) and plain JSON, so it loads with the native parser.
 */
const FORMAT = 'vmscope-profile-cache/2';
const U64 = (1n << 64n) - 1n;
const BIGINT_PREFIX = 'u64:';

interface CacheFile {
  format: string;
  banner: string;
  build_id: string | null;
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

function cachePath(cacheDir: string, banner: string): string {
  return join(cacheDir, `${createHash('sha256').update(banner, 'latin1').digest('hex')}.json`);
}

export function saveProfile(cacheDir: string, profile: Profile, buildId: string | undefined): void {
  if (profile.banner === undefined) return;
  const file: CacheFile = {
    format: FORMAT,
    banner: profile.banner,
    build_id: buildId ?? null,
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
  mkdirSync(cacheDir, { recursive: true });
  const path = cachePath(cacheDir, profile.banner);
  writeFileAtomically(
    path,
    JSON.stringify(file, (_key, value: unknown) => (typeof value === 'bigint' ? `${BIGINT_PREFIX}${value}` : value)),
  );
}

/** The cached profile for this banner (and build id, when the dump has one), or undefined. */
export function loadProfile(
  cacheDir: string,
  banner: string,
  buildId: string | undefined,
  slide: bigint,
  source: string,
): Profile | undefined {
  let file: CacheFile;
  try {
    file = JSON.parse(readFileSync(cachePath(cacheDir, banner), 'utf8')) as CacheFile;
  } catch {
    return undefined; // absent or unreadable: derive again
  }
  if (
    file.format !== FORMAT ||
    file.banner !== banner ||
    (buildId !== undefined && file.build_id !== null && file.build_id !== buildId)
  )
    return undefined;
  for (const enumeration of Object.values(file.types.enums)) {
    for (const [name, value] of Object.entries(enumeration.constants)) {
      if (typeof value === 'string' && (value as string).startsWith(BIGINT_PREFIX))
        enumeration.constants[name] = BigInt((value as string).slice(BIGINT_PREFIX.length));
    }
  }
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
  return new Profile(file.types, symbols, slide, 'cache', source, banner, {
    symbolTypes,
    ...(file.sources ? { sources: file.sources } : {}),
  });
}
