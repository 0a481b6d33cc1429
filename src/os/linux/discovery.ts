import type { MemoryImage } from '../../image/types.js';
import { MultiNeedleSearcher, pointerNeedle, type NeedleHit } from '../../kernels/multiNeedle.js';
import type { Stream } from '../../kernels/streaming.js';
import { X86AddressSpace, type PagingLevels } from '../../space/x86.js';
import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import { cString } from '../../util/text.js';
import { MODULES_VADDR, START_KERNEL_MAP } from './layout.js';
import { runsOnAVcpu } from './runningKernel.js';
import { readVmcoreinfoNote, vmcoreinfoFromFileNotes, type Vmcoreinfo } from './vmcoreinfo.js';

/** __START_KERNEL with the default CONFIG_PHYSICAL_START (16 MiB): KERNELOFFSET is `_text` minus this. */
const DEFAULT_START_KERNEL = 0xffffffff81000000n;
/** Where the randomized direct map may begin (__PAGE_OFFSET_BASE_L4 / _L5) and where its region ends. */
const DIRECT_MAP_REGION = {
  4: { start: 0xffff888000000000n, end: 0xfffffe0000000000n },
  5: { start: 0xff11000000000000n, end: 0xfffffe0000000000n },
} as const;
/** Direct-map randomization keeps PUD (1 GiB) alignment. */
const PUD_SIZE = 1n << 30n;
const U64 = (1n << 64n) - 1n;

const BANNER_PREFIX = 'Linux version ';
const NEEDLES = {
  osRelease: new TextEncoder().encode('OSRELEASE='),
  banner: new TextEncoder().encode(BANNER_PREFIX),
  initTaskComm: new TextEncoder().encode('swapper/0\0'),
};
const MAX_BANNER_BYTES = 1024;
/** How far from the banner the fallback looks for init_top_pgt: both live in one kernel image. */
const DTB_SEARCH_RADIUS = 128 << 20;

export type DiscoveryMethod = 'vmcoreinfo' | 'page-table-scan';

export interface LinuxKernel {
  readonly image: MemoryImage;
  readonly method: DiscoveryMethod;
  readonly release: string;
  /** The exact bytes of linux_banner, trailing newline included. */
  readonly banner: string;
  readonly bannerPhysical: number;
  readonly kaslrSlide: bigint;
  /** The u64 in phys_base (often "negative" with physical KASLR). */
  readonly physBase: bigint;
  /** Physical address of init_top_pgt (swapper_pg_dir): the kernel's DTB. */
  readonly dtb: number;
  readonly pageOffsetBase: bigint;
  readonly pagingLevels: PagingLevels;
  /** True when the kernel text or the direct map sits at a randomized address. */
  readonly kaslr: boolean;
  readonly vmcoreinfo: Vmcoreinfo | undefined;
  readonly space: X86AddressSpace;
  /** Things that did not add up but did not prevent an answer (shown by `info`). */
  readonly warnings: readonly string[];
}

export interface DiscoveryOptions {
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

interface KernelLayout {
  method: DiscoveryMethod;
  kaslrSlide: bigint;
  physBase: bigint;
  dtb: number;
  pagingLevels: PagingLevels;
  vmcoreinfo: Vmcoreinfo | undefined;
}

/** Kernel-image virtual address of a physical address, given phys_base. */
export function kernelImageVirtual(physical: number, physBase: bigint): bigint {
  return (BigInt(physical) - physBase + START_KERNEL_MAP) & U64;
}

function kernelImagePhysical(virtual: bigint, physBase: bigint): bigint {
  return (virtual - START_KERNEL_MAP + physBase) & U64;
}

/**
 * Find the running kernel in physical memory with nothing but the dump: VMCOREINFO when the
 * kernel left its note in RAM, otherwise the banner and the kernel's own page tables. Every
 * derived value is checked against the page tables before it is believed.
 */
export function discoverLinuxKernel(image: MemoryImage, options: DiscoveryOptions = {}): LinuxKernel {
  const { located, warnings } = locateFromFirstVmcoreinfo(image) ?? locateByFullScan(image, options);
  const { layout, space, mapped } = located;
  const found = linuxBanner(space, layout.vmcoreinfo, mapped, warnings);
  const pageOffsetBase = directMapBase(space, layout.vmcoreinfo, warnings);
  const release = layout.vmcoreinfo?.osRelease ?? releaseFromBanner(found.text);
  if (layout.vmcoreinfo && !found.text.startsWith(`${BANNER_PREFIX}${release} `)) {
    warnings.push(`banner release differs from VMCOREINFO OSRELEASE=${release}`);
  }
  return {
    image,
    method: layout.method,
    release,
    banner: found.text,
    bannerPhysical: found.physical,
    kaslrSlide: layout.kaslrSlide,
    physBase: layout.physBase,
    dtb: layout.dtb,
    pageOffsetBase,
    pagingLevels: layout.pagingLevels,
    kaslr: layout.kaslrSlide !== 0n || pageOffsetBase !== DIRECT_MAP_REGION[layout.pagingLevels].start,
    vmcoreinfo: layout.vmcoreinfo,
    space,
    warnings,
  };
}

/** How many of the first VMCOREINFO candidates (by offset) the quick path reads before it gives up. */
const QUICK_VMCOREINFO_CANDIDATES = 3;
/** The kernel-image mapping spans KERNEL_IMAGE_SIZE (1 GiB) at most, in 2 MiB pages. */
const KERNEL_IMAGE_SIZE = 1n << 30n;
const PMD_SIZE = 2n << 20n;

type Located = NonNullable<ReturnType<typeof locateBanners>>;

/**
 * The common case, without reading the whole dump: the VMCOREINFO note the full scan would take
 * (the file's, else the first valid one in memory by offset: only the first few hits are read),
 * then banners only in the physical memory the note's own page tables map as the kernel image.
 * Undefined whenever any step fails: the full scan then decides, with its own warnings.
 */
function locateFromFirstVmcoreinfo(image: MemoryImage): { located: Located; warnings: string[] } | undefined {
  let warnings: string[] = [];
  const fileNote = vmcoreinfoFromFileNotes(image);
  let layout = fileNote && layoutFromVmcoreinfo(image, fileNote, warnings);
  const searcher = MultiNeedleSearcher.create([NEEDLES.osRelease]);
  for (let limit = 1; !fileNote && !layout && limit <= QUICK_VMCOREINFO_CANDIDATES; limit++) {
    const hits = searcher.searchImage(image, { limit });
    if (hits.length < limit) return undefined;
    const note = readVmcoreinfoNote(image, hits[limit - 1]!.offset);
    if (!note) continue;
    warnings = [];
    layout = layoutFromVmcoreinfo(image, note, warnings);
    // An earlier boot's note (a reboot leaves it, maybe below this boot's) names page tables no vCPU runs: read on.
    if (layout && !runsOnAVcpu(image, image.cpus, layout.dtb)) layout = undefined;
    else if (!layout) return undefined;
  }
  const span = layout && kernelImageSpan(image, layout);
  if (!layout || !span) return undefined;
  const space = new X86AddressSpace(image, layout.dtb, layout.pagingLevels);
  const steps = kernelImageSteps(space, layout.physBase, span);
  // The kernel's text is read late if at all (a check reads its function entries after the carve, which skips it).
  const text = firstExecutableRun(steps);
  if (text) image.decodeLast?.(text.start, text.end);
  const version = vmcoreinfoUtsVersion(space, layout.vmcoreinfo);
  const located = locateBanners(image, layout, kernelImageBanners(space, steps, span, version));
  return located && { located, warnings };
}

/** How much of the kernel image is searched for banners at a time (its mapping's page size). */
const BANNER_SEARCH_STEP = Number(PMD_SIZE);

/**
 * The banners in the kernel image, in physical order, found until one ends with init_uts_ns's
 * `version` (linux_banner, which linuxBanner then picks), or all of them when none does or the
 * version is unknown. The image is searched a 2 MiB page at a time, the pages the kernel maps
 * no-execute first: linux_banner is in .rodata, and the text before it (16 MiB) and the data and
 * bss after it (tens of MiB a compressed dump inflates page by page) are read only when .rodata
 * does not hold it (a dump taken before mark_rodata_ro, say). Every banner in the span is mapped:
 * the span is where the kernel-image mapping holds (kernelImageSpan).
 */
function kernelImageBanners(
  space: X86AddressSpace,
  steps: readonly KernelImageStep[],
  span: { start: number; end: number },
  version: string | undefined,
): Banner[] {
  const searcher = MultiNeedleSearcher.create([NEEDLES.banner]);
  const banners: Banner[] = [];
  for (const { start, end } of [
    ...steps.filter((step) => !step.executable),
    ...steps.filter((step) => step.executable),
  ]) {
    // A banner starting near the step's end is read whole: the search reaches past it by the needle.
    const reach = { start, end: Math.min(span.end, end + NEEDLES.banner.length - 1) };
    const hits = searcher.searchStreams(physicalStreams(space.image, reach)).filter((hit) => hit.offset < end);
    const found = readBanners(space.image, hits);
    banners.push(...found);
    if (version !== undefined && found.some((banner) => banner.text.endsWith(` ${version}\n`))) break;
  }
  return banners.sort((a, b) => a.physical - b.physical);
}

/** A 2 MiB page of the kernel image (physical), and whether the kernel maps it executable. */
interface KernelImageStep {
  readonly start: number;
  readonly end: number;
  readonly executable: boolean;
}

/** The kernel image's span a 2 MiB page at a time, in physical order (a page the mapping does not say of counts as executable). */
function kernelImageSteps(
  space: X86AddressSpace,
  physBase: bigint,
  span: { start: number; end: number },
): KernelImageStep[] {
  const steps: KernelImageStep[] = [];
  for (let start = span.start; start < span.end; start += BANNER_SEARCH_STEP) {
    const executable = space.tryTranslate(kernelImageVirtual(start, physBase))?.executable ?? true;
    steps.push({ start, end: Math.min(span.end, start + BANNER_SEARCH_STEP), executable });
  }
  return steps;
}

/** The first run of executable steps (the kernel's text, from _stext's 2 MiB page on), or undefined. */
function firstExecutableRun(steps: readonly KernelImageStep[]): { start: number; end: number } | undefined {
  const first = steps.findIndex((step) => step.executable);
  if (first < 0) return undefined;
  let last = first;
  while (last + 1 < steps.length && steps[last + 1]!.executable) last++;
  return { start: steps[first]!.start, end: steps[last]!.end };
}

/**
 * The physical memory the kernel-image mapping maps, from _stext's 2 MiB page up to the first
 * 2 MiB page that is not mapped where phys_base puts it: text, rodata (linux_banner) and data.
 */
function kernelImageSpan(image: MemoryImage, layout: KernelLayout): { start: number; end: number } | undefined {
  const stext = layout.vmcoreinfo?.symbol('_stext');
  if (stext === undefined) return undefined;
  const space = new X86AddressSpace(image, layout.dtb, layout.pagingLevels);
  const first = stext & ~(PMD_SIZE - 1n);
  let virtual = first;
  while (virtual - first < KERNEL_IMAGE_SIZE) {
    const translated = space.tryTranslate(virtual);
    if (!translated || BigInt(translated.physical) !== kernelImagePhysical(virtual, layout.physBase)) break;
    virtual += PMD_SIZE;
  }
  if (virtual === first) return undefined;
  const start = kernelImagePhysical(first, layout.physBase);
  return { start: Number(start), end: Number(start + (virtual - first)) };
}

/** The dump's bytes in [span.start, span.end), one stream per range of the image. */
function physicalStreams(image: MemoryImage, span: { start: number; end: number }): Stream[] {
  return image.ranges
    .map((range) => ({ start: Math.max(range.start, span.start), end: Math.min(range.end, span.end) }))
    .filter(({ start, end }) => start < end)
    .map(({ start, end }) => ({
      start,
      length: end - start,
      fill: (streamOffset: number, into: Uint8Array) => image.read(start + streamOffset, into),
    }));
}

/** Every candidate needle in the dump: VMCOREINFO notes, banners, and init_task's comm for the page-table fallback. */
function locateByFullScan(image: MemoryImage, options: DiscoveryOptions): { located: Located; warnings: string[] } {
  const searcher = MultiNeedleSearcher.create([NEEDLES.osRelease, NEEDLES.banner, NEEDLES.initTaskComm]);
  const hits = searcher.searchImage(image, options.onProgress ? { onProgress: options.onProgress } : {});
  const byNeedle = (needle: number) => hits.filter((hit: NeedleHit) => hit.needle === needle);
  const [osReleaseHits, bannerHits, initTaskCommHits] = [byNeedle(0), byNeedle(1), byNeedle(2)];
  const banners = readBanners(image, bannerHits);

  const warnings: string[] = [];
  const fileNote = vmcoreinfoFromFileNotes(image);
  const notes = fileNote ? [fileNote] : osReleaseHits.flatMap((hit) => readVmcoreinfoNote(image, hit.offset) ?? []);
  // After a reboot the earlier boot's note can still be in RAM, with the page tables it names: the note whose
  // layout maps a banner and runs on a vCPU is this boot's. Without one such, the first note decides (and warns).
  const vmcoreinfo =
    notes.find((note) => {
      const layout = layoutFromVmcoreinfo(image, note, []);
      return layout && runsOnAVcpu(image, image.cpus, layout.dtb) && locateBanners(image, layout, banners);
    }) ?? notes[0];
  if (!vmcoreinfo) warnings.push('no VMCOREINFO note in memory: kernel located from its banner and page tables');
  const fromVmcoreinfo = vmcoreinfo && layoutFromVmcoreinfo(image, vmcoreinfo, warnings);
  let located = fromVmcoreinfo && locateBanners(image, fromVmcoreinfo, banners);
  if (fromVmcoreinfo && !located) warnings.push('VMCOREINFO layout maps no "Linux version" banner: not trusted');
  located ??= firstDefined(banners, (banner) => {
    const scanned = layoutFromPageTables(
      image,
      banner,
      initTaskCommHits.map((hit) => hit.offset),
    );
    return scanned && locateBanners(image, scanned, banners);
  });
  if (!located) {
    throw new VmscopeError(
      'NO_KERNEL_FOUND',
      `no Linux kernel found: ${vmcoreinfo ? 'VMCOREINFO present but its layout is not mapped by its own page tables' : 'no VMCOREINFO note'}, ` +
        `${banners.length} "Linux version" banner(s) none of which a kernel page table maps ` +
        `(searched ${image.totalBytes} bytes of physical memory from 0x${(image.ranges[0]?.start ?? 0).toString(16)})`,
      image.path,
      image.ranges[0]?.start ?? 0,
    );
  }
  return { located, warnings };
}

function readBanners(image: MemoryImage, hits: readonly NeedleHit[]): Banner[] {
  return hits
    .map((hit) => ({ physical: hit.offset, text: readBanner(image, hit.offset) }))
    .filter((banner): banner is Banner => banner.text !== undefined);
}

interface Banner {
  physical: number;
  text: string;
}

function firstDefined<T, R>(items: readonly T[], map: (item: T) => R | undefined): R | undefined {
  for (const item of items) {
    const result = map(item);
    if (result !== undefined) return result;
  }
  return undefined;
}

/** linux_banner is printable ASCII ending in "\n" then NUL; log copies and format strings are not. */
function readBanner(image: MemoryImage, physical: number): string | undefined {
  const bytes = new Uint8Array(MAX_BANNER_BYTES);
  const got = image.readPresent(physical, bytes);
  const end = bytes.subarray(0, got).indexOf(0);
  if (end < BANNER_PREFIX.length + 2 || bytes[end - 1] !== 0x0a) return undefined;
  for (let i = 0; i < end - 1; i++) if (bytes[i]! < 0x20 || bytes[i]! > 0x7e) return undefined;
  return new TextDecoder('latin1').decode(bytes.subarray(0, end));
}

function releaseFromBanner(banner: string): string {
  return banner.slice(BANNER_PREFIX.length).split(' ', 1)[0]!;
}

function layoutFromVmcoreinfo(
  image: MemoryImage,
  vmcoreinfo: Vmcoreinfo,
  warnings: string[],
): KernelLayout | undefined {
  const physBase = vmcoreinfo.number('phys_base');
  const dtbVirtual = vmcoreinfo.symbol('init_top_pgt') ?? vmcoreinfo.symbol('swapper_pg_dir');
  if (physBase === undefined || dtbVirtual === undefined) {
    warnings.push('VMCOREINFO lacks NUMBER(phys_base) or SYMBOL(init_top_pgt): falling back to a page-table scan');
    return undefined;
  }
  const dtb = kernelImagePhysical(dtbVirtual, physBase);
  if (dtb > BigInt(Number.MAX_SAFE_INTEGER) || dtb % 4096n !== 0n) {
    warnings.push(`VMCOREINFO puts the DTB at an impossible physical address ${hex(dtb)}`);
    return undefined;
  }
  const pagingLevels: PagingLevels = vmcoreinfo.number('pgtable_l5_enabled') === 1n ? 5 : 4;
  const kaslrSlide = vmcoreinfo.kernelOffset ?? 0n;
  const layout: KernelLayout = {
    method: 'vmcoreinfo',
    kaslrSlide,
    physBase,
    dtb: Number(dtb),
    pagingLevels,
    vmcoreinfo,
  };
  // The DTB must map the kernel's own text where phys_base says it is.
  const stext = vmcoreinfo.symbol('_stext');
  if (stext !== undefined) {
    const translated = new X86AddressSpace(image, layout.dtb, pagingLevels).tryTranslate(stext);
    if (!translated || BigInt(translated.physical) !== kernelImagePhysical(stext, physBase)) {
      warnings.push(
        `VMCOREINFO's DTB ${hex(dtb)} does not map _stext ${hex(stext)} to phys_base + offset: not trusted`,
      );
      return undefined;
    }
  }
  return layout;
}

/**
 * The kernel address space a layout implies and the banners it maps (those whose kernel-image
 * virtual address translates back to where they were found), or undefined when it maps none.
 */
function locateBanners(
  image: MemoryImage,
  layout: KernelLayout,
  banners: readonly Banner[],
): { layout: KernelLayout; space: X86AddressSpace; mapped: Banner[] } | undefined {
  const space = new X86AddressSpace(image, layout.dtb, layout.pagingLevels);
  const mapped = banners.filter(
    (banner) => space.tryTranslate(kernelImageVirtual(banner.physical, layout.physBase))?.physical === banner.physical,
  );
  return mapped.length > 0 ? { layout, space, mapped } : undefined;
}

/** struct new_utsname: six 65-byte fields; release is the third, version the fourth. */
const UTS_FIELD = 65;
const UTS_RELEASE = 2 * UTS_FIELD;
const UTS_VERSION = 3 * UTS_FIELD;

/**
 * The image can hold more than one mapped banner (6.1+ links a second copy built before the
 * build number is known: "# SMP" instead of "#1 SMP"). linux_banner is the one that ends with
 * the version init_uts_ns reports, as `uname -v` does.
 */
function linuxBanner(
  space: X86AddressSpace,
  vmcoreinfo: Vmcoreinfo | undefined,
  mapped: readonly Banner[],
  warnings: string[],
): Banner {
  const version = utsVersion(space, vmcoreinfo);
  const matching = version === undefined ? [] : mapped.filter((banner) => banner.text.endsWith(` ${version}\n`));
  if (matching.length === 0)
    warnings.push(
      `no banner matches the init_uts_ns version ${JSON.stringify(version)}: reporting the first mapped banner`,
    );
  return matching[0] ?? mapped[0]!;
}

/**
 * init_uts_ns.name.version: through VMCOREINFO's symbol, or else by finding every new_utsname in
 * the kernel image and keeping the one the kernel points to (the image also holds an unreferenced
 * template with the placeholder version "# SMP …").
 */
function utsVersion(space: X86AddressSpace, vmcoreinfo: Vmcoreinfo | undefined): string | undefined {
  const named = vmcoreinfoUtsVersion(space, vmcoreinfo);
  if (named !== undefined) return named;
  const candidates = findUtsNames(space);
  if (candidates.length <= 1) return candidates[0]?.version;
  const references = countPointerReferences(
    space.image,
    candidates.map((candidate) => candidate.virtual),
  );
  const best = references.indexOf(Math.max(...references));
  return references[best]! > 0 ? candidates[best]!.version : undefined;
}

/** init_uts_ns.name.version at the address VMCOREINFO gives, when it names init_uts_ns and a "Linux" new_utsname is there. */
function vmcoreinfoUtsVersion(space: X86AddressSpace, vmcoreinfo: Vmcoreinfo | undefined): string | undefined {
  const symbol = vmcoreinfo?.symbol('init_uts_ns');
  if (symbol === undefined) return undefined;
  const uts = new Uint8Array(6 * UTS_FIELD);
  try {
    space.read(symbol + BigInt(vmcoreinfo?.offset('uts_namespace.name') ?? 0), uts);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return undefined;
  }
  return cString(uts, 0, UTS_FIELD) === 'Linux' ? cString(uts, UTS_VERSION, UTS_FIELD) : undefined;
}

/** Every new_utsname in the kernel image: "Linux" NUL-padded to 65 bytes, a printable release, a "#…" version. */
function findUtsNames(space: X86AddressSpace): Array<{ virtual: bigint; version: string }> {
  const sysname = new Uint8Array(UTS_FIELD);
  sysname.set(new TextEncoder().encode('Linux'));
  const needle = Buffer.from(sysname);
  const chunk = Buffer.alloc(4 << 20);
  const found: Array<{ virtual: bigint; version: string }> = [];
  for (const run of space.mappings(START_KERNEL_MAP, MODULES_VADDR)) {
    for (let offset = 0; offset < run.length; offset += chunk.length - 6 * UTS_FIELD) {
      const got = space.image.readPresent(
        run.physical + offset,
        chunk.subarray(0, Math.min(chunk.length, run.length - offset)),
      );
      for (let at = chunk.indexOf(needle); at >= 0 && at + 6 * UTS_FIELD <= got; at = chunk.indexOf(needle, at + 1)) {
        const release = cString(chunk, at + UTS_RELEASE, UTS_FIELD);
        const version = cString(chunk, at + UTS_VERSION, UTS_FIELD);
        if (/^[\x21-\x7e]+$/.test(release) && /^#[\x20-\x7e]+$/.test(version))
          found.push({ virtual: run.virtual + BigInt(offset + at), version });
      }
      if (got < chunk.length) break;
    }
  }
  return found;
}

/**
 * No usable VMCOREINFO: find init_top_pgt near the banner. Candidates are pages whose user half
 * is empty and whose kernel half maps the banner inside the kernel-image region; the first mapped
 * address of that region is `_text` (cleanup_highmap unmaps what lies before), which gives the
 * slide and phys_base, and init_task's comm must lie in the same image. Other page directories
 * pass those tests too (a kernel thread's borrowed mm, a page freed from the image and reused):
 * init_top_pgt is the one init_mm.pgd points to by its kernel-image address.
 */
function layoutFromPageTables(
  image: MemoryImage,
  banner: Banner,
  initTaskCommHits: readonly number[],
): KernelLayout | undefined {
  const candidates: KernelLayout[] = [];
  const chunk = new Uint8Array(2 << 20);
  const from = Math.max(0, banner.physical - DTB_SEARCH_RADIUS) & ~0xfff;
  const to = banner.physical + DTB_SEARCH_RADIUS;
  for (let base = from; base < to; base += chunk.length) {
    const got = image.readPresent(base, chunk) & ~0xfff;
    const entries = new BigUint64Array(chunk.buffer, 0, got / 8);
    for (let page = 0; page < got; page += 4096) {
      if (!looksLikeKernelTopLevelTable(entries, page / 8)) continue;
      for (const pagingLevels of [4, 5] as const) {
        const layout = kernelImageLayout(image, base + page, pagingLevels, banner, initTaskCommHits);
        if (layout) candidates.push(layout);
      }
    }
  }
  if (candidates.length <= 1) return candidates[0];
  const references = countPointerReferences(
    image,
    candidates.map((candidate) => kernelImageVirtual(candidate.dtb, candidate.physBase)),
  );
  const best = references.indexOf(Math.max(...references));
  return references[best]! > 0 ? candidates[best] : undefined;
}

/** How often each address occurs as an aligned-or-not little-endian u64 anywhere in physical memory. */
function countPointerReferences(image: MemoryImage, addresses: readonly bigint[]): number[] {
  const needles = addresses.map(pointerNeedle);
  const counts = new Array<number>(addresses.length).fill(0);
  for (const hit of MultiNeedleSearcher.create(needles).searchImage(image)) counts[hit.needle]! += 1;
  return counts;
}

function looksLikeKernelTopLevelTable(entries: BigUint64Array, first: number): boolean {
  if ((entries[first + 511]! & 1n) === 0n) return false;
  for (let i = 0; i < 256; i++) if (entries[first + i] !== 0n) return false;
  return true;
}

function kernelImageLayout(
  image: MemoryImage,
  dtb: number,
  pagingLevels: PagingLevels,
  banner: Banner,
  initTaskCommHits: readonly number[],
): KernelLayout | undefined {
  const space = new X86AddressSpace(image, dtb, pagingLevels);
  let text: { virtual: bigint; physical: number } | undefined;
  let imageEnd = 0;
  let bannerMapped = false;
  try {
    for (const run of space.mappings(START_KERNEL_MAP, MODULES_VADDR)) {
      text ??= run;
      // The image is physically contiguous from _text; stop at the first run that is not.
      if (BigInt(run.physical) - BigInt(text.physical) !== run.virtual - text.virtual) break;
      imageEnd = run.physical + run.length;
      if (banner.physical >= run.physical && banner.physical < run.physical + run.length) bannerMapped = true;
    }
  } catch (error) {
    if (error instanceof VmscopeError) return undefined;
    throw error;
  }
  if (!text || !bannerMapped) return undefined;
  const textStart = text;
  if (!initTaskCommHits.some((physical) => physical >= textStart.physical && physical < imageEnd)) return undefined;
  const physBase = (BigInt(textStart.physical) - (textStart.virtual - START_KERNEL_MAP)) & U64;
  return {
    method: 'page-table-scan',
    kaslrSlide: (textStart.virtual - DEFAULT_START_KERNEL) & U64,
    physBase,
    dtb,
    pagingLevels,
    vmcoreinfo: undefined,
  };
}

/**
 * page_offset_base from the page tables: the first mapping in the direct-map region is the
 * direct map itself (it precedes vmalloc and vmemmap), and it is linear, so base = virtual −
 * physical. A direct-map pointer from VMCOREINFO (mem_section) cross-checks it.
 */
function directMapBase(space: X86AddressSpace, vmcoreinfo: Vmcoreinfo | undefined, warnings: string[]): bigint {
  const region = DIRECT_MAP_REGION[space.levels];
  let base: bigint | undefined;
  for (const run of space.mappings(region.start, region.end)) {
    base = run.virtual - BigInt(run.physical);
    break;
  }
  if (base === undefined)
    throw new VmscopeError(
      'NO_KERNEL_FOUND',
      'the kernel page tables map no direct-map region',
      space.image.path,
      space.dtb,
    );
  if (base % PUD_SIZE !== 0n) warnings.push(`direct map base ${hex(base)} is not 1 GiB aligned`);
  const memSection = vmcoreinfo?.symbol('mem_section');
  if (memSection !== undefined && memSection >= region.start && memSection < region.end) {
    const translated = space.tryTranslate(memSection);
    if (translated && memSection - BigInt(translated.physical) !== base) {
      warnings.push(
        `mem_section ${hex(memSection)} implies a direct map at ${hex(memSection - BigInt(translated.physical))}, page tables say ${hex(base)}`,
      );
    }
  }
  return base;
}
