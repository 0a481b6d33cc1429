/**
 * Where each page of one migration-stream RAM block lies: a file offset, or ZERO_PAGE, or
 * ABSENT_PAGE. The table is sparse, in chunks allocated when the stream first sends a page of
 * theirs, so its memory follows the pages the file holds, not the block length the stream
 * declares: a stream is attacker-controlled, and a length word of 2^64-1 must cost nothing.
 */
export const ABSENT_PAGE = -1;
export const ZERO_PAGE = -2;

/** 4,096 pages (16 MiB of guest memory) per chunk: 32 KiB of table. */
const CHUNK_PAGES = 4096;

export interface PageRun {
  /** First page of the run. */
  readonly start: number;
  /** Page after the run. */
  readonly end: number;
}

export class MigrationPageTable {
  private readonly chunks = new Map<number, Float64Array>();
  /** The chunk of the last lookup: reads walk pages in order. */
  private lastIndex = -1;
  private lastChunk: Float64Array | undefined;

  /** The entry of `page`: a file offset, ZERO_PAGE or ABSENT_PAGE. */
  get(page: number): number {
    const index = Math.floor(page / CHUNK_PAGES);
    const chunk = index === this.lastIndex ? this.lastChunk : this.chunkAt(index);
    return chunk ? chunk[page - index * CHUNK_PAGES]! : ABSENT_PAGE;
  }

  set(page: number, entry: number): void {
    const index = Math.floor(page / CHUNK_PAGES);
    let chunk = this.chunkAt(index);
    if (!chunk) {
      chunk = new Float64Array(CHUNK_PAGES).fill(ABSENT_PAGE);
      this.chunks.set(index, chunk);
      this.lastIndex = index;
      this.lastChunk = chunk;
    }
    chunk[page - index * CHUNK_PAGES] = entry;
  }

  /** Runs of present pages (sent as data or as zero pages) within [first, first + count), in order. */
  presentRuns(first: number, count: number): PageRun[] {
    const end = first + count;
    const runs: PageRun[] = [];
    let runStart = -1;
    let runEnd = -1;
    for (const index of [...this.chunks.keys()].sort((a, b) => a - b)) {
      const chunk = this.chunks.get(index)!;
      const base = index * CHUNK_PAGES;
      for (let page = Math.max(base, first); page < Math.min(base + CHUNK_PAGES, end); page++) {
        if (chunk[page - base] === ABSENT_PAGE) continue;
        if (page !== runEnd) {
          if (runStart >= 0) runs.push({ start: runStart, end: runEnd });
          runStart = page;
        }
        runEnd = page + 1;
      }
    }
    if (runStart >= 0) runs.push({ start: runStart, end: runEnd });
    return runs;
  }

  private chunkAt(index: number): Float64Array | undefined {
    const chunk = this.chunks.get(index);
    if (chunk) {
      this.lastIndex = index;
      this.lastChunk = chunk;
    }
    return chunk;
  }
}
