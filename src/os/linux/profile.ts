import { createHash } from 'node:crypto';
import { btfIsfConversion, carveVmlinuxBtf } from '../../symbols/btf.js';
import { readIsfFile } from '../../symbols/isf.js';
import { decodeKallsyms, findKallsyms, type KallsymsLocation } from '../../symbols/kallsyms.js';
import { Profile } from '../../symbols/profile.js';
import {
  defaultProfileCacheDir,
  encodeProfile,
  loadProfile,
  profileFromPayload,
  saveProfile,
  type ProfileFingerprint,
} from '../../symbols/profileCache.js';
import { typeDataSymbols } from '../../symbols/symbolTypes.js';
import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import { kernelImageVirtual, type LinuxKernel } from './discovery.js';
import { MODULES_VADDR, START_KERNEL_MAP } from './layout.js';
import { dumpFingerprint } from './profileFingerprint.js';

export interface ProfileOptions {
  /** A Volatility ISF (`.json` or `.json.xz`) to use instead of deriving one from the dump. */
  isf?: string;
  /** Where derived profiles are cached; false disables the cache. */
  cacheDir?: string | false;
  /**
   * Derive elsewhere than in this thread's heap (the monitor plugs in a thread of its own: the
   * derivation's transient hundred MiB go with that thread, instead of growing a long-lived
   * process's heap for good). Default: here.
   */
  deriveElsewhere?: ProfileDerivation;
}

/** A derivation as it crosses threads: the profile as the cache stores it, how it was derived, and its fingerprint. */
export interface EncodedDerivation {
  readonly payload: Buffer;
  readonly provenance: ProfileProvenance;
  readonly fingerprint: ProfileFingerprint | undefined;
}

export type ProfileDerivation = (kernel: LinuxKernel, kallsyms: KallsymsLocation) => Promise<EncodedDerivation>;

/** How a derived profile was put together, for `info`-style explanations (the ISF metadata comes from the profile's own sources). */
export interface ProfileProvenance {
  readonly kallsyms: KallsymsLocation;
  readonly kallsymsFoundBy: 'vmcoreinfo' | 'scan';
  readonly btfPhysical: number;
  readonly btfBytes: number;
  readonly btfSha256: string;
  /** Kernel declarations this kernel's BTF or kallsyms contradicts, each with why (their symbols stay untyped). */
  readonly refusedDeclarations: readonly string[];
}

export interface LinuxProfile {
  readonly profile: Profile;
  readonly provenance: ProfileProvenance | undefined;
}

/**
 * The profile for this dump's kernel, in order of preference: the user's ISF, the on-disk cache
 * of an earlier derivation for the same banner, or a new derivation from the dump's own
 * kallsyms and BTF.
 */
export async function linuxProfile(kernel: LinuxKernel, options: ProfileOptions = {}): Promise<LinuxProfile> {
  if (options.isf) return { profile: await profileFromIsf(kernel, options.isf), provenance: undefined };
  const cacheDir = options.cacheDir === undefined ? defaultProfileCacheDir() : options.cacheDir;
  const buildId = kernel.vmcoreinfo?.entries.get('BUILD-ID');
  const kallsyms = kallsymsLocation(kernel);
  if (cacheDir) {
    // A cached profile is used only when this dump's own BTF and kallsyms hash to what it was derived from.
    const cached = loadProfile(cacheDir, kernel.banner, buildId, kernel.kaslrSlide, kernel.image.path, (candidate) =>
      dumpFingerprint(kernel, kallsyms, candidate),
    );
    (kernel.warnings as string[]).push(...cached.warnings);
    if (cached.profile) return { profile: cached.profile, provenance: undefined };
  }
  if (options.deriveElsewhere) {
    const { payload, provenance, fingerprint } = await options.deriveElsewhere(kernel, kallsyms);
    if (cacheDir && fingerprint) saveToCache(kernel, cacheDir, payload, fingerprint);
    return { profile: readBack(kernel, payload), provenance };
  }
  const derived = deriveProfile(kernel, kallsyms);
  const fingerprint = dumpFingerprint(kernel, kallsyms, derived.profile);
  if (!cacheDir || !fingerprint) return derived;
  const payload = encodeProfile(derived.profile);
  saveToCache(kernel, cacheDir, payload, fingerprint);
  // What a cached run holds, not the derivation's objects: a long-running monitor keeps this profile.
  return { profile: readBack(kernel, payload), provenance: derived.provenance };
}

/** Derive, then encode as the cache stores it: the work a derivation thread does, so only the payload crosses back. */
export function deriveEncoded(kernel: LinuxKernel, kallsyms: KallsymsLocation): EncodedDerivation {
  const derived = deriveProfile(kernel, kallsyms);
  return {
    payload: encodeProfile(derived.profile),
    provenance: derived.provenance!,
    fingerprint: dumpFingerprint(kernel, kallsyms, derived.profile),
  };
}

function saveToCache(kernel: LinuxKernel, cacheDir: string, payload: Buffer, fingerprint: ProfileFingerprint): void {
  const problem = saveProfile(
    cacheDir,
    kernel.banner,
    payload,
    kernel.vmcoreinfo?.entries.get('BUILD-ID'),
    fingerprint,
  );
  // A cache that cannot be written costs the next run a derivation, never this one its answer.
  if (problem) (kernel.warnings as string[]).push(`profile cache: ${problem}`);
}

/** The derived profile read from its payload (origin still 'derived'). */
function readBack(kernel: LinuxKernel, payload: Buffer): Profile {
  return profileFromPayload(payload, kernel.image.path, kernel.kaslrSlide, 'derived', kernel.image.path, kernel.banner);
}

/** Where the kallsyms tables are: named by VMCOREINFO (6.0+), else found by a structural scan. */
function kallsymsLocation(kernel: LinuxKernel): KallsymsLocation {
  return kallsymsFromVmcoreinfo(kernel) ?? findKallsyms(kernel.space, START_KERNEL_MAP, MODULES_VADDR);
}

/** Decode kallsyms and BTF from the dump itself, and type the data symbols from both. */
export function deriveProfile(
  kernel: LinuxKernel,
  kallsyms: KallsymsLocation = kallsymsLocation(kernel),
): LinuxProfile {
  const fromVmcoreinfo = kernel.vmcoreinfo?.symbol('kallsyms_names') === kallsyms.names;
  const symbols = decodeKallsyms(kernel.space, kallsyms);
  const btf = carveVmlinuxBtf(kernel.image);
  const { isf: types, describe } = btfIsfConversion(btf.types);
  const typing = typeDataSymbols({
    btf: btf.types,
    isf: types,
    describe,
    symbols,
    read: (address, length) => readKernel(kernel, address, length),
  });
  const btfSha256 = createHash('sha256').update(btf.bytes).digest('hex');
  const profile = new Profile(types, symbols, kernel.kaslrSlide, 'derived', kernel.image.path, kernel.banner, {
    symbolTypes: typing.types,
    sources: { kallsyms: fromVmcoreinfo ? 'vmcoreinfo' : 'scan', btf: { sha256: btfSha256, bytes: btf.bytes.length } },
  });
  return {
    profile,
    provenance: {
      kallsyms,
      kallsymsFoundBy: fromVmcoreinfo ? 'vmcoreinfo' : 'scan',
      btfPhysical: btf.physical,
      btfBytes: btf.bytes.length,
      btfSha256,
      refusedDeclarations: typing.refused,
    },
  };
}

function readKernel(kernel: LinuxKernel, address: bigint, length: number): Uint8Array | undefined {
  const bytes = new Uint8Array(length);
  try {
    kernel.space.read(address, bytes);
  } catch (error) {
    if (error instanceof VmscopeError) return undefined;
    throw error;
  }
  return bytes;
}

/** Since 6.0 VMCOREINFO names the kallsyms tables (for makedumpfile/crash); older kernels need the scan. */
function kallsymsFromVmcoreinfo(kernel: LinuxKernel): KallsymsLocation | undefined {
  const info = kernel.vmcoreinfo;
  const names = info?.symbol('kallsyms_names');
  const numSyms = info?.symbol('kallsyms_num_syms');
  const tokenTable = info?.symbol('kallsyms_token_table');
  const tokenIndex = info?.symbol('kallsyms_token_index');
  if (!info || names === undefined || numSyms === undefined || tokenTable === undefined || tokenIndex === undefined)
    return undefined;
  const location: KallsymsLocation = { names, numSyms, tokenTable, tokenIndex };
  const offsets = info.symbol('kallsyms_offsets');
  const relativeBase = info.symbol('kallsyms_relative_base');
  const addresses = info.symbol('kallsyms_addresses');
  if (offsets !== undefined) location.offsets = offsets;
  if (relativeBase !== undefined) location.relativeBase = relativeBase;
  if (addresses !== undefined) location.addresses = addresses;
  return location;
}

/**
 * A user's ISF holds link-time addresses: this dump's slide moves them, and linux_banner must
 * then land on the banner the kernel itself maps, or the ISF is for another build.
 */
async function profileFromIsf(kernel: LinuxKernel, path: string): Promise<Profile> {
  const profile = Profile.fromIsf(await readIsfFile(path), kernel.kaslrSlide, 'isf', path);
  const banner = profile.symbol('linux_banner');
  const expected = kernelImageVirtual(kernel.bannerPhysical, kernel.physBase);
  if (banner !== undefined && banner !== expected) {
    throw new VmscopeError(
      'NO_PROFILE',
      `ISF does not match this kernel: its linux_banner lands at ${hex(banner)}, the dump's is at ${hex(expected)}`,
      path,
      0,
    );
  }
  if (profile.banner !== undefined && profile.banner.replace(/\n$/, '') !== kernel.banner.replace(/\n$/, '')) {
    throw new VmscopeError(
      'NO_PROFILE',
      `ISF is for another kernel build: its banner is "${profile.banner.trim()}"`,
      path,
      0,
    );
  }
  return profile;
}
