/**
 * The decompressed pages and blocks of one open image, bounded in bytes: every reader of the image
 * (kernel discovery, page walks, scans) goes through the same cache, so a page inflated once is
 * not inflated again while it stays among the most recently used.
 */
export class ByteLruCache {
  /** Map iteration order is insertion order: the first key is the least recently used. */
  private readonly entries = new Map<number, Uint8Array>();
  private heldBytes = 0;

  constructor(readonly budgetBytes: number) {
    if (!(budgetBytes > 0)) throw new RangeError(`cache budget ${budgetBytes} must be positive`);
  }

  get bytes(): number {
    return this.heldBytes;
  }

  get(key: number): Uint8Array | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** Keep `value` under `key`, evicting the least recently used entries beyond the budget. */
  set(key: number, value: Uint8Array): void {
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.heldBytes -= old.length;
      this.entries.delete(key);
    }
    if (value.length > this.budgetBytes) return;
    this.entries.set(key, value);
    this.heldBytes += value.length;
    for (const [oldest, bytes] of this.entries) {
      if (this.heldBytes <= this.budgetBytes) break;
      this.entries.delete(oldest);
      this.heldBytes -= bytes.length;
    }
  }

  /** The cached value, or `load()`'s, cached. */
  through(key: number, load: () => Uint8Array): Uint8Array {
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const value = load();
    this.set(key, value);
    return value;
  }

  clear(): void {
    this.entries.clear();
    this.heldBytes = 0;
  }
}

/** Default budget of one image's cache: enough for a scan window's pages and the hot kernel pages. */
export const DEFAULT_CACHE_BYTES = 64 << 20;

export function cacheBudgetFromEnvironment(): number {
  const configured = Number(process.env.VMSCOPE_IMAGE_CACHE_MIB);
  return Number.isFinite(configured) && configured > 0 ? configured * (1 << 20) : DEFAULT_CACHE_BYTES;
}
