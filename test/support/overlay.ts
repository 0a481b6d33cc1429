import { DumpContext } from '../../src/analyses/context.js';
import type { MemoryImage } from '../../src/image/types.js';
import type { LinuxKernel } from '../../src/os/linux/discovery.js';
import type { LinuxProfile } from '../../src/os/linux/profile.js';
import { X86AddressSpace } from '../../src/space/x86.js';

/**
 * Adversarial tests need hostile guest memory, and the only realistic guests are the real
 * fixtures: an OverlayImage is a real image with some bytes replaced in memory, so a test can
 * forge pointers and lengths without copying or touching a 512 MiB fixture file.
 */
export class OverlayImage implements MemoryImage {
  private readonly patches: Array<{ physical: number; bytes: Uint8Array }> = [];

  constructor(readonly base: MemoryImage) {}

  get path(): string {
    return this.base.path;
  }
  get format(): MemoryImage['format'] {
    return this.base.format;
  }
  get ranges(): MemoryImage['ranges'] {
    return this.base.ranges;
  }
  get totalBytes(): number {
    return this.base.totalBytes;
  }
  get notes(): MemoryImage['notes'] {
    return this.base.notes;
  }
  get cpus(): MemoryImage['cpus'] {
    return this.base.cpus;
  }

  /**
   * Replace bytes at `physical` (later patches win over earlier ones). The bytes must be present
   * in the base image: a patch that silently did nothing would make a test prove nothing.
   */
  patch(physical: number, bytes: Uint8Array): void {
    const present = this.base.readPresent(physical, new Uint8Array(bytes.length));
    if (present < bytes.length)
      throw new Error(`cannot patch 0x${physical.toString(16)}+0x${bytes.length.toString(16)}: not in the base image`);
    this.patches.push({ physical, bytes: bytes.slice() });
  }

  /** Write `bytes` at a virtual address of `space`, page by page (virtual pages need not be physically adjacent). */
  patchVirtual(space: X86AddressSpace, virtual: bigint, bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length;) {
      const { physical, pageSize } = space.translate(virtual + BigInt(done));
      const length = Math.min(bytes.length - done, pageSize - (physical % pageSize));
      this.patch(physical, bytes.subarray(done, done + length));
      done += length;
    }
  }

  /** Write a little-endian u64 at a virtual address of `space`. */
  patchU64(space: X86AddressSpace, virtual: bigint, value: bigint): void {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
    this.patchVirtual(space, virtual, bytes);
  }

  read(physical: number, into: Uint8Array): void {
    this.base.read(physical, into);
    this.applyPatches(physical, into);
  }

  readPresent(physical: number, into: Uint8Array): number {
    const filled = this.base.readPresent(physical, into);
    this.applyPatches(physical, into.subarray(0, filled));
    return filled;
  }

  /** The base image belongs to whoever opened it. */
  close(): void {}

  private applyPatches(physical: number, into: Uint8Array): void {
    const end = physical + into.length;
    for (const patch of this.patches) {
      const from = Math.max(physical, patch.physical);
      const to = Math.min(end, patch.physical + patch.bytes.length);
      if (from < to) into.set(patch.bytes.subarray(from - patch.physical, to - patch.physical), from - physical);
    }
  }
}

/**
 * A DumpContext over an overlay of another context's image, reusing its kernel discovery and
 * profile (a patch of a few pointers changes neither, and finding them again costs seconds).
 * Patch before the first read through `kernel.space`: the space caches tables, translations and
 * the pages of small reads (read what a patch depends on through the base context instead).
 */
export class OverlayContext extends DumpContext {
  declare readonly image: OverlayImage;
  private readonly overlayKernel: LinuxKernel;

  constructor(private readonly base: DumpContext) {
    super(base.path);
    // The constructor opened the file a second time; read through the base's handle instead.
    super.close();
    const overlay = new OverlayImage(base.image);
    this.image = overlay;
    const kernel = base.kernel;
    this.overlayKernel = {
      ...kernel,
      image: overlay,
      space: new X86AddressSpace(overlay, kernel.dtb, kernel.pagingLevels),
    };
  }

  override get kernel(): LinuxKernel {
    return this.overlayKernel;
  }

  override linuxProfile(): Promise<LinuxProfile> {
    return this.base.linuxProfile();
  }

  /** Write a u64 at a kernel virtual address. */
  patchKernelU64(virtual: bigint, value: bigint): void {
    this.image.patchU64(this.kernel.space, virtual, value);
  }
}
