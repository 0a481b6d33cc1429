import { openImage } from '../image/open.js';
import { KernelInstance } from '../kernels/kernelInstance.js';
import type { NeedleHit } from '../kernels/multiNeedle.js';
import type { MemoryImage } from '../image/types.js';
import { discoverLinuxKernel, type LinuxKernel } from '../os/linux/discovery.js';
import { linuxProfile, type LinuxProfile, type ProfileOptions } from '../os/linux/profile.js';
import type { RuleScanResult, RuleScanner } from '../rules/scanner.js';
import { X86AddressSpace } from '../space/x86.js';
import type { Profile } from '../symbols/profile.js';
import { fileIdentity, type FileIdentity } from '../util/files.js';
import { timed, timedAsync } from '../util/phases.js';

/** What a physical rule scan on several threads needs. */
export interface ParallelRuleScanRequest {
  readonly path: string;
  /** The dump as the context opened it; a thread that finds another file there refuses to scan it. */
  readonly identity: FileIdentity | undefined;
  /** The compiled rules: each thread receives them compiled. */
  readonly scanner: RuleScanner;
  readonly threads: number;
  readonly onProgress: (doneBytes: number, totalBytes: number) => void;
  /** Called as each part of the dump with string hits is done: work that only hits need can start then. */
  readonly onHits?: () => void;
}
export type ParallelRuleScan = (request: ParallelRuleScanRequest) => Promise<RuleScanResult>;

/** What a physical needle search on other threads needs (carving task_structs from all of memory). */
export interface ParallelNeedleSearchRequest {
  readonly path: string;
  readonly identity: FileIdentity | undefined;
  /** The needles once known: the threads start while the caller still works them out (finds the kernel, its profile). */
  readonly needles: Promise<readonly Uint8Array[]>;
  readonly threads: number;
  readonly onProgress: (doneBytes: number, totalBytes: number) => void;
  /** The needles are pointers: 8-byte words wanted at 8-aligned offsets only (kernels/needleSearcher.ts). */
  readonly wordAligned?: boolean;
}
/** Every hit of the needles in the dump, sorted by (offset, needle): MultiNeedleSearcher.searchImage's result. */
export type ParallelNeedleSearch = (request: ParallelNeedleSearchRequest) => Promise<NeedleHit[]>;

/**
 * Starting search threads (each loads the bundle, compiles the kernels and opens and indexes the
 * dump again) and decoding on them pages this thread decodes too (the kernel's own) cost more than
 * the threads save until the dump holds a lot to decode: on the 39 MiB kdump of a 512 MiB guest,
 * `check` took 0.98 s carving here, 1.15 s with one search thread and more with two (the carve's
 * aligned-word search is a few milliseconds; inflating the pages is the pass). A dump of many GiB
 * spends seconds inflating, which the threads share.
 */
export const DEFAULT_PARALLEL_CARVE_MIN_BYTES = 256 << 20;

export interface ContextOptions extends ProfileOptions {
  onProgress?: (phase: string, doneBytes: number, totalBytes: number) => void;
  /** Physical rule scans on several threads: the worker pool sits above this layer, so its user plugs it in (the CLI does). */
  parallelRuleScan?: ParallelRuleScan;
  /**
   * Needle searches over the whole dump on other threads (plugged in like parallelRuleScan): the
   * main thread goes on with the rest of the analysis while they read memory.
   */
  parallelNeedleSearch?: ParallelNeedleSearch;
  /**
   * The least stored bytes (the file's size) a decoded dump (kdump, AVML, migration stream) has
   * for its carving pass to go to parallelNeedleSearch's threads (default
   * DEFAULT_PARALLEL_CARVE_MIN_BYTES). Below it the pass runs on the calling thread.
   */
  parallelCarveMinBytes?: number;
  /**
   * Threads a scan may use when its analysis is not told (default: the available parallelism).
   * A batch sets 1: its parallelism is across dumps.
   */
  threads?: number;
}

/**
 * A typed, memoized source of kernel objects (Volatility's requirement, without the class
 * tree): the task list, carved tasks, the module search, the reverse map, ... Computed at most
 * once per DumpContext, whoever asks, and free to ask for other providers.
 */
export interface Provider<T> {
  readonly name: string;
  compute(context: DumpContext): T | Promise<T>;
}

export function defineProvider<T>(name: string, compute: (context: DumpContext) => T | Promise<T>): Provider<T> {
  return { name, compute };
}

/**
 * One dump under analysis: the image is opened at once; everything else (kernel, profile,
 * kernel objects) comes from providers, found on first use and kept for the context's life.
 */
export class DumpContext {
  readonly image: MemoryImage;
  /** The file as it was opened: scans on other threads check they read the same one. */
  readonly identity: FileIdentity | undefined;
  private readonly provided = new Map<Provider<unknown>, Promise<unknown>>();
  private readonly computed = new Map<string, number>();
  /** Stand-ins for providers' own computations (substitute), run when first asked for like theirs. */
  private readonly substitutes = new Map<Provider<unknown>, (context: DumpContext) => unknown>();
  private kernelCache: LinuxKernel | undefined;
  /** False for an image the caller lent (a live guest's memory, read again at every check). */
  private readonly ownsImage: boolean;

  constructor(
    readonly path: string,
    private readonly options: ContextOptions = {},
    lent?: MemoryImage,
  ) {
    this.image = lent ?? timed('image open', () => openImage(path, { readAhead: true }));
    this.ownsImage = lent === undefined;
    this.identity = fileIdentity(path);
  }

  /**
   * A context over memory that changes under it (a running guest): every kernel object is read
   * again, but what cannot change while the same kernel runs — where it is (KASLR, DTB, banner)
   * and its profile — is carried over from the last context when given. The page tables are
   * not: the carried kernel gets a fresh address space. The image stays the caller's to close.
   */
  static overLiveImage(image: MemoryImage, options: ContextOptions, carried?: CarriedKernel): DumpContext {
    const context = new DumpContext(image.path, options, image);
    if (carried) {
      context.kernelCache = {
        ...carried.kernel,
        space: new X86AddressSpace(image, carried.kernel.dtb, carried.kernel.pagingLevels),
      };
      context.provided.set(linuxProfileProvider, Promise.resolve(carried.profile));
    }
    return context;
  }

  /** What overLiveImage may carry to the next context while the banner stays the same. */
  async carriedKernel(): Promise<CarriedKernel> {
    return { kernel: this.kernel, profile: await this.linuxProfile() };
  }

  /** The value of a provider, computed on first request and shared by every later one. */
  get<T>(provider: Provider<T>): Promise<T> {
    let value = this.provided.get(provider) as Promise<T> | undefined;
    if (!value) {
      const substitute = this.substitutes.get(provider) as ((context: DumpContext) => T | Promise<T>) | undefined;
      if (!substitute) this.computed.set(provider.name, (this.computed.get(provider.name) ?? 0) + 1);
      value = Promise.resolve().then(() => (substitute ? substitute(this) : provider.compute(this)));
      this.provided.set(provider, value);
    }
    return value;
  }

  /**
   * Compute `provider` in this context with `compute` instead of its own way: a live monitor
   * gives the full-memory scans a cheaper stand-in between its full checks. Only before anyone
   * asked for it; computed, like the provider's own way, when first asked for (not at all when
   * no analysis needs it).
   */
  substitute<T>(provider: Provider<T>, compute: (context: DumpContext) => T | Promise<T>): void {
    if (this.provided.has(provider))
      throw new Error(`provider '${provider.name}' was already computed in this context`);
    this.substitutes.set(provider, compute);
  }

  /** How many times each provider was computed in this context (once, or the memo is broken). */
  get computations(): ReadonlyMap<string, number> {
    return this.computed;
  }

  get kernel(): LinuxKernel {
    if (!this.kernelCache) {
      // Discovery's first scan would compile the WASM kernels; compiled first, they show as a phase of their own.
      timed('wasm compile', () => KernelInstance.shared());
      this.kernelCache = timed('kernel discovery', () =>
        discoverLinuxKernel(this.image, { onProgress: this.progress('locating kernel') }),
      );
    }
    return this.kernelCache;
  }

  /** The profile with how it was obtained (ISF, cache, or derived from this dump). */
  linuxProfile(): Promise<LinuxProfile> {
    return this.get(linuxProfileProvider);
  }

  async profile(): Promise<Profile> {
    return (await this.linuxProfile()).profile;
  }

  get profileOptions(): ProfileOptions {
    return this.options;
  }

  get parallelRuleScan(): ParallelRuleScan | undefined {
    return this.options.parallelRuleScan;
  }

  /** Searches on threads that open the dump by its path: none over memory the caller lent (a live guest's RAM file). */
  get parallelNeedleSearch(): ParallelNeedleSearch | undefined {
    return this.ownsImage ? this.options.parallelNeedleSearch : undefined;
  }

  /** Stored bytes from which a decoded dump is carved on parallelNeedleSearch's threads (ContextOptions). */
  get parallelCarveMinBytes(): number {
    return this.options.parallelCarveMinBytes ?? DEFAULT_PARALLEL_CARVE_MIN_BYTES;
  }

  /** Threads for a scan whose analysis was not told how many. */
  get defaultThreads(): number | undefined {
    return this.options.threads;
  }

  /** A progress callback for a long phase (drawn by the CLI on a terminal, ignored otherwise). */
  progress(phase: string): (doneBytes: number, totalBytes: number) => void {
    return (done, total) => this.options.onProgress?.(phase, done, total);
  }

  close(): void {
    if (this.ownsImage) this.image.close();
  }
}

/** The kernel's place and profile, found once and reused while the same kernel runs. */
export interface CarriedKernel {
  readonly kernel: LinuxKernel;
  readonly profile: LinuxProfile;
}

export const linuxProfileProvider = defineProvider('profile', (context) => {
  const { kernel } = context;
  return timedAsync('profile', () => linuxProfile(kernel, context.profileOptions));
});
