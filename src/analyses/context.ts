import { openImage } from '../image/open.js';
import type { MemoryImage } from '../image/types.js';
import { discoverLinuxKernel, type LinuxKernel } from '../os/linux/discovery.js';

export interface ContextOptions {
  onProgress?: (phase: string, doneBytes: number, totalBytes: number) => void;
}

/** One dump under analysis: the image is opened at once, the kernel found on first use and kept. */
export class DumpContext {
  readonly image: MemoryImage;
  private kernelCache: LinuxKernel | undefined;

  constructor(readonly path: string, private readonly options: ContextOptions = {}) {
    this.image = openImage(path);
  }

  get kernel(): LinuxKernel {
    this.kernelCache ??= discoverLinuxKernel(this.image, {
      onProgress: (done, total) => this.options.onProgress?.('locating kernel', done, total),
    });
    return this.kernelCache;
  }

  close(): void {
    this.image.close();
  }
}
