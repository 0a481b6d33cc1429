import { openImage } from '../image/open.js';
import type { MemoryImage } from '../image/types.js';
import { discoverLinuxKernel, type LinuxKernel } from '../os/linux/discovery.js';
import { linuxProfile, type LinuxProfile, type ProfileOptions } from '../os/linux/profile.js';
import type { Profile } from '../symbols/profile.js';

export interface ContextOptions extends ProfileOptions {
  onProgress?: (phase: string, doneBytes: number, totalBytes: number) => void;
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
