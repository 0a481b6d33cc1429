import { AbsentMemoryError } from '../util/errors.js';
import type { MemoryImage } from './types.js';

const PAGE_SIZE = 4096;
/** How much larger than needed a new copy's buffer is. */
const SPARE_ROOM = 1.25;

/**
 * Physical memory of a live image as it was at one instant for a chosen set of pages: the pages
 * are copied from the live image at once (while the guest is paused), and reads of them are
 * served from the copy, so the guest can run on while they are analysed. A read of a page not
 * copied goes to the live image and is counted as a miss: what reads it saw bytes of two
 * instants. Every page read is recorded, so the next copy can take the pages the last analysis
 * needed.
 */
export class PageCopyImage implements MemoryImage {
  readonly format: MemoryImage['format'];
  readonly ranges: MemoryImage['ranges'];
  readonly totalBytes: number;
  readonly notes: MemoryImage['notes'];
  readonly cpus: MemoryImage['cpus'];
  /** Pages read since the copy, copied or not. */
  readonly touched = new Set<number>();
  /** Pages read that were not copied: read live, at another instant than the copy. */
  readonly missed = new Set<number>();
  /** Where each copied page is in `copy`, in pages. */
  private readonly slots = new Map<number, number>();
  private copy: Uint8Array | undefined;

  /**
   * Copy `pages` (page numbers) of `live` now; pages absent from it are left out (they read as
   * absent). `replacing`, an earlier copy no one reads any more, gives its buffer when it is large
   * enough (a monitor copies tens of MiB every check, which would pile up until the GC ran) and
   * can no longer be read.
   */
  constructor(
    private readonly live: MemoryImage,
    pages: Iterable<number>,
    replacing?: PageCopyImage,
  ) {
    this.format = live.format;
    this.ranges = live.ranges;
    this.totalBytes = live.totalBytes;
    this.notes = live.notes;
    this.cpus = live.cpus;
    const sorted = [...pages].sort((a, b) => a - b);
    const spare = replacing?.retire();
    // A new buffer has room to spare: the next copy, a few pages larger, can take it over.
    const copy = (this.copy =
      spare && spare.length >= sorted.length * PAGE_SIZE
        ? spare
        : new Uint8Array(Math.ceil(sorted.length * SPARE_ROOM) * PAGE_SIZE));
    // Runs of consecutive pages are copied with one read each.
    let copied = 0;
    for (let first = 0; first < sorted.length;) {
      let end = first + 1;
      while (end < sorted.length && sorted[end] === sorted[end - 1]! + 1) end++;
      const run = copy.subarray(copied * PAGE_SIZE, (copied + end - first) * PAGE_SIZE);
      const present = Math.floor(live.readPresent(sorted[first]! * PAGE_SIZE, run) / PAGE_SIZE);
      for (let index = 0; index < present; index++) this.slots.set(sorted[first + index]!, copied + index);
      copied += present;
      // An absent page ends what one read returns: the rest of the run is copied from the page after it.
      first = present === end - first ? end : first + present + 1;
    }
  }

  get path(): string {
    return this.live.path;
  }

  /** Pages copied. */
  get copiedPages(): number {
    return this.slots.size;
  }

  readPresent(physical: number, into: Uint8Array): number {
    const copy = this.copy;
    if (!copy) throw new Error('a page copy was read after a newer copy took its buffer');
    let filled = 0;
    while (filled < into.length) {
      const at = physical + filled;
      const page = Math.floor(at / PAGE_SIZE);
      const inPage = at - page * PAGE_SIZE;
      const length = Math.min(into.length - filled, PAGE_SIZE - inPage);
      this.touched.add(page);
      const slot = this.slots.get(page);
      if (slot !== undefined) {
        into.set(copy.subarray(slot * PAGE_SIZE + inPage, slot * PAGE_SIZE + inPage + length), filled);
        filled += length;
        continue;
      }
      const got = this.live.readPresent(at, into.subarray(filled, filled + length));
      if (got > 0) this.missed.add(page);
      filled += got;
      if (got < length) break;
    }
    return filled;
  }

  read(physical: number, into: Uint8Array): void {
    const filled = this.readPresent(physical, into);
    if (filled < into.length) throw new AbsentMemoryError(this.path, physical + filled, into.length - filled);
  }

  /** The buffer, given up: this copy cannot be read any more. */
  private retire(): Uint8Array | undefined {
    const copy = this.copy;
    this.copy = undefined;
    return copy;
  }

  /** The live image stays open: it is its owner's. */
  close(): void {}
}
