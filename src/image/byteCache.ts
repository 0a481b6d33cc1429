/**
 * The decompressed pages and blocks of one open image, bounded in bytes: every reader of the image
 * (kernel discovery, page walks, scans) goes through the same cache, so a page inflated once is
 * not inflated again while it stays among the most recently used.
 */
export class ByteLruCache {
  /**
   * Approximate LRU by second chance (CLOCK): a hit only marks its entry, the Map keeps insertion
   * order, and eviction walks from the oldest entry, giving a marked one another round at the end.
   * A strict LRU moves every hit to the end of the Map (a delete and an insert per page read),
   * which measured as the most expensive step of reading a compressed dump.
   */
  private readonly entries = new Map<number, { value: Uint8Array; used: boolean }>();
  private heldBytes = 0;
  private budget: number;

  constructor(budgetBytes: number) {
    if (!(budgetBytes > 0)) throw new RangeError(`cache budget ${budgetBytes} must be positive`);
    this.budget = budgetBytes;
  }

  get budgetBytes(): number {
    return this.budget;
  }

  /** Give `bytes` of the budget to decoded units held elsewhere (inflateAhead.ts), evicting what no longer fits. */
  reserve(bytes: number): void {
    if (!(bytes >= 0 && bytes < this.budget))
      throw new RangeError(`cannot reserve ${bytes} of a ${this.budget}-byte budget`);
    this.budget -= bytes;
    this.evictBeyondBudget(undefined);
  }

  get bytes(): number {
    return this.heldBytes;
  }

  get(key: number): Uint8Array | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    entry.used = true;
    return entry.value;
  }

  /** Keep `value` under `key`, evicting the least recently used entries beyond the budget. */
  set(key: number, value: Uint8Array): void {
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.heldBytes -= old.value.length;
      this.entries.delete(key);
    }
    if (value.length > this.budgetBytes) return;
    this.entries.set(key, { value, used: false });
    this.heldBytes += value.length;
    this.evictBeyondBudget(key);
  }

  /** Evict from the oldest entry until the held bytes fit, giving a marked entry (not `kept`) another round. */
  private evictBeyondBudget(kept: number | undefined): void {
    while (this.heldBytes > this.budget) {
      const [oldest, entry] = this.entries.entries().next().value as [number, { value: Uint8Array; used: boolean }];
      this.entries.delete(oldest);
      if (entry.used && oldest !== kept) {
        entry.used = false;
        this.entries.set(oldest, entry);
      } else {
        this.heldBytes -= entry.value.length;
      }
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

/**
 * Default budget of one image's cache (VMSCOPE_IMAGE_CACHE_MIB overrides it). `check` reads the
 * whole memory several times (kernel search, task carving, module search): measured on the
 * 512 MiB kdump-zlib capture, 64 MiB made it 2.8x slower than the raw file (every pass inflates
 * again), 256 MiB 1.1x, because the passes then find most non-zero pages still decoded.
 */
export const DEFAULT_CACHE_BYTES = 256 << 20;

export function cacheBudgetFromEnvironment(): number {
  const configured = Number(process.env.VMSCOPE_IMAGE_CACHE_MIB);
  return Number.isFinite(configured) && configured > 0 ? configured * (1 << 20) : DEFAULT_CACHE_BYTES;
}
