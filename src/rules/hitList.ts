/** One match of one string: `string` indexes RuleScanner.strings. */
export interface StringHit {
  readonly string: number;
  readonly offset: number;
  readonly length: number;
}

/** Hits as three parallel columns, one entry per hit: how a part of a scan crosses threads. */
export interface HitColumns {
  readonly offsets: Float64Array;
  readonly strings: Uint32Array;
  readonly lengths: Uint32Array;
}

/** Hits per chunk (1 MiB of columns): a list grows by whole chunks and never copies one, so it holds its hits plus at most one chunk's slack. */
const CHUNK_SHIFT = 16;
const CHUNK_HITS = 1 << CHUNK_SHIFT;
const INDEX_IN_CHUNK = CHUNK_HITS - 1;
/** A list's first chunk starts this small and doubles up to a whole chunk: most scans (a process region, a small file) keep few hits. */
const FIRST_CHUNK_HITS = 256;
const HIT_BYTES = 16;

/** The three columns of `capacity` hits in one buffer, so a chunk is one allocation and crosses threads as one transfer. */
function columnsOf(capacity: number): HitColumns {
  const buffer = new ArrayBuffer(capacity * HIT_BYTES);
  return {
    offsets: new Float64Array(buffer, 0, capacity),
    strings: new Uint32Array(buffer, capacity * 8, capacity),
    lengths: new Uint32Array(buffer, capacity * 12, capacity),
  };
}

function viewOf(columns: HitColumns, from: number, to: number): HitColumns {
  return {
    offsets: columns.offsets.subarray(from, to),
    strings: columns.strings.subarray(from, to),
    lengths: columns.lengths.subarray(from, to),
  };
}

/**
 * A scan's hits in columns (16 bytes a hit), never an object per hit: a string may keep a
 * million matches and a rule set many such strings, so hits are stored as YARA stores them,
 * compactly, and objects are made only for the few that are looked at one by one. The columns
 * are cut into chunks: growing never copies what is kept, and a part of a scan is handed to
 * another thread by transferring its chunks.
 */
export class HitList implements Iterable<StringHit> {
  private readonly chunks: HitColumns[] = [];
  private count = 0;
  /** The last chunk, and how many of its entries are used. */
  private tail: HitColumns = columnsOf(0);
  private tailCount = 0;

  get length(): number {
    return this.count;
  }

  push(string: number, offset: number, length: number): void {
    if (this.tailCount === this.tail.offsets.length) this.growTail();
    this.tail.offsets[this.tailCount] = offset;
    this.tail.strings[this.tailCount] = string;
    this.tail.lengths[this.tailCount++] = length;
    this.count++;
  }

  /** Appends every hit of `columns` that `keep` accepts, in order. */
  append(columns: HitColumns, keep: (string: number) => boolean): void {
    const { offsets, strings, lengths } = columns;
    for (let i = 0; i < offsets.length; i++) {
      const string = strings[i]!;
      if (keep(string)) this.push(string, offsets[i]!, lengths[i]!);
    }
  }

  stringAt(index: number): number {
    return this.chunks[index >>> CHUNK_SHIFT]!.strings[index & INDEX_IN_CHUNK]!;
  }

  offsetAt(index: number): number {
    return this.chunks[index >>> CHUNK_SHIFT]!.offsets[index & INDEX_IN_CHUNK]!;
  }

  lengthAt(index: number): number {
    return this.chunks[index >>> CHUNK_SHIFT]!.lengths[index & INDEX_IN_CHUNK]!;
  }

  /**
   * Views of this list's own chunks holding the hits whose offset lies in [start, end), for a list
   * in offset order (a scan's): no copy is made, so transferring the views' buffers hands the hits
   * to another thread and leaves this list unusable.
   */
  columnsWithOffsetsIn(start = -Infinity, end = Infinity): HitColumns[] {
    const from = this.firstIndexAtOrAfter(start);
    const to = this.firstIndexAtOrAfter(end);
    const views: HitColumns[] = [];
    for (let chunk = from >>> CHUNK_SHIFT; chunk < this.chunks.length && chunk << CHUNK_SHIFT < to; chunk++) {
      const chunkStart = chunk << CHUNK_SHIFT;
      views.push(
        viewOf(
          this.chunks[chunk]!,
          Math.max(from, chunkStart) - chunkStart,
          Math.min(to, chunkStart + CHUNK_HITS) - chunkStart,
        ),
      );
    }
    return views;
  }

  /** Each hit as an object, made on the fly (tests and small results). */
  *[Symbol.iterator](): Iterator<StringHit> {
    for (let i = 0; i < this.count; i++)
      yield { string: this.stringAt(i), offset: this.offsetAt(i), length: this.lengthAt(i) };
  }

  /** The first chunk doubles until it is whole; after that every chunk is allocated whole. */
  private growTail(): void {
    const capacity = this.tail.offsets.length;
    if (this.chunks.length <= 1 && capacity < CHUNK_HITS) {
      const grown = columnsOf(Math.max(FIRST_CHUNK_HITS, capacity * 2));
      grown.offsets.set(this.tail.offsets);
      grown.strings.set(this.tail.strings);
      grown.lengths.set(this.tail.lengths);
      this.chunks[0] = this.tail = grown;
    } else {
      this.chunks.push((this.tail = columnsOf(CHUNK_HITS)));
      this.tailCount = 0;
    }
  }

  /** The index of the first hit at or after `offset` (the list's length when there is none), by bisection. */
  private firstIndexAtOrAfter(offset: number): number {
    let low = 0;
    let high = this.count;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.offsetAt(middle) < offset) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
