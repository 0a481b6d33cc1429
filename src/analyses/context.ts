import { openImage } from '../image/open.js';
import type { MemoryImage } from '../image/types.js';
import { discoverLinuxKernel, type LinuxKernel } from '../os/linux/discovery.js';
import { linuxProfile, type LinuxProfile, type ProfileOptions } from '../os/linux/profile.js';
import type { RuleScanResult, RuleScanner } from '../rules/scanner.js';
import type { Profile } from '../symbols/profile.js';

/** What a physical rule scan on several threads needs. */
export interface ParallelRuleScanRequest {
  readonly path: string;
  readonly scanner: RuleScanner;
  /** The rule file's text and name: each thread compiles it itself. */
  readonly source: string;
  readonly file: string;
  readonly threads: number;
  readonly onProgress: (doneBytes: number, totalBytes: number) => void;
}
export type ParallelRuleScan = (request: ParallelRuleScanRequest) => Promise<RuleScanResult>;

export interface ContextOptions extends ProfileOptions {
  onProgress?: (phase: string, doneBytes: number, totalBytes: number) => void;
  /** Physical rule scans on several threads: the worker pool sits above this layer, so its user plugs it in (the CLI does). */
  parallelRuleScan?: ParallelRuleScan;
}

/**
 * One dump under analysis: the image is opened at once; the kernel and its profile are found
 * on first use and kept, so analyses declare what they need simply by asking for it.
 */
export class DumpContext {
  readonly image: MemoryImage;
  private kernelCache: LinuxKernel | undefined;
  private profileCache: Promise<LinuxProfile> | undefined;

  constructor(readonly path: string, private readonly options: ContextOptions = {}) {
    this.image = openImage(path);
  }

  get kernel(): LinuxKernel {
    this.kernelCache ??= discoverLinuxKernel(this.image, {
      onProgress: this.progress('locating kernel'),
    });
    return this.kernelCache;
  }

  /** The profile with how it was obtained (ISF, cache, or derived from this dump). */
  linuxProfile(): Promise<LinuxProfile> {
    this.profileCache ??= linuxProfile(this.kernel, this.options);
    return this.profileCache;
  }

  get parallelRuleScan(): ParallelRuleScan | undefined {
    return this.options.parallelRuleScan;
  }

  /** A progress callback for a long phase (drawn by the CLI on a terminal, ignored otherwise). */
  progress(phase: string): (doneBytes: number, totalBytes: number) => void {
    return (done, total) => this.options.onProgress?.(phase, done, total);
  }

  async profile(): Promise<Profile> {
    return (await this.linuxProfile()).profile;
  }

  close(): void {
    this.image.close();
  }
}
