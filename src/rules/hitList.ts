/** One match of one string: `string` indexes RuleScanner.strings. */
export interface StringHit {
  readonly string: number;
  readonly offset: number;
  readonly length: number;
}

/** Hits as three parallel columns, one entry per hit: how they cross threads and how a list is built from parts. */
export interface HitColumns {
  readonly offsets: Float64Array;
  readonly strings: Uint32Array;
  readonly lengths: Uint32Array;
}

const INITIAL_CAPACITY = 256;

/**
 * A scan's hits in columns (16 bytes a hit), never an object per hit: a string may keep a
 * million matches and a rule set many such strings, so hits are stored as YARA stores them,
 * compactly, and objects are made only for the few that are looked at one by one.
 */
export class HitList implements Iterable<StringHit> {
  private offsets = new Float64Array(INITIAL_CAPACITY);
  private strings = new Uint32Array(INITIAL_CAPACITY);
  private lengths = new Uint32Array(INITIAL_CAPACITY);
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(string: number, offset: number, length: number): void {
    if (this.count === this.offsets.length) this.reserve(this.count * 2);
    this.offsets[this.count] = offset;
    this.strings[this.count] = string;
    this.lengths[this.count] = length;
    this.count++;
  }

  stringAt(index: number): number {
    return this.strings[index]!;
  }

  offsetAt(index: number): number {
    return this.offsets[index]!;
  }

  lengthAt(index: number): number {
    return this.lengths[index]!;
  }

  /** Copies of the columns of the hits whose offset lies in [start, end), in order (transferable: they own their buffers). */
  columnsWithOffsetsIn(start = -Infinity, end = Infinity): HitColumns {
    const inside = (i: number) => this.offsets[i]! >= start && this.offsets[i]! < end;
    let kept = 0;
    for (let i = 0; i < this.count; i++) if (inside(i)) kept++;
    const columns = { offsets: new Float64Array(kept), strings: new Uint32Array(kept), lengths: new Uint32Array(kept) };
    for (let i = 0, at = 0; i < this.count; i++)
      if (inside(i)) {
        columns.offsets[at] = this.offsets[i]!;
        columns.strings[at] = this.strings[i]!;
        columns.lengths[at++] = this.lengths[i]!;
      }
    return columns;
  }

  /** Room for `capacity` hits, so a list whose size is known grows once. */
  reserve(capacity: number): void {
    if (capacity <= this.offsets.length) return;
    const grow = <T extends Float64Array | Uint32Array>(column: T, make: (size: number) => T): T => {
      const grown = make(capacity);
      grown.set(column.subarray(0, this.count));
      return grown;
    };
    this.offsets = grow(this.offsets, (size) => new Float64Array(size));
    this.strings = grow(this.strings, (size) => new Uint32Array(size));
    this.lengths = grow(this.lengths, (size) => new Uint32Array(size));
  }

  /** Each hit as an object, made on the fly (tests and small results). */
  *[Symbol.iterator](): Iterator<StringHit> {
    for (let i = 0; i < this.count; i++)
      yield { string: this.strings[i]!, offset: this.offsets[i]!, length: this.lengths[i]! };
  }
}
