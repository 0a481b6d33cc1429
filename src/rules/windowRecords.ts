import type { VariantMatch } from './verify.js';

/** One start of one string in a window, with every variant that matched there in variant order. */
export interface WindowStart {
  readonly string: number;
  readonly start: number;
  readonly matched: readonly VariantMatch[];
}

const INITIAL_CAPACITY = 1024;

/**
 * What a window's verification found, before its hits are decided: one (string, start, variant,
 * length) record per verified match, in columns reused window after window. A window of zeros
 * can hold a million matches of `{ 00 00 00 00 }`; as columns they take 16 bytes each, not a map
 * entry and an array apiece.
 */
export class WindowRecords {
  private strings = new Uint32Array(INITIAL_CAPACITY);
  private starts = new Uint32Array(INITIAL_CAPACITY);
  private variants = new Uint32Array(INITIAL_CAPACITY);
  private lengths = new Uint32Array(INITIAL_CAPACITY);
  private order = new Uint32Array(INITIAL_CAPACITY);
  private count = 0;

  get length(): number {
    return this.count;
  }

  clear(): void {
    this.count = 0;
  }

  add(string: number, start: number, variant: number, length: number): void {
    if (this.count === this.strings.length) this.grow();
    this.strings[this.count] = string;
    this.starts[this.count] = start;
    this.variants[this.count] = variant;
    this.lengths[this.count] = length;
    this.count++;
  }

  /**
   * The starts found, by start then string (the order a window's hits are kept in), each with its
   * variants in variant order and each variant once (two atoms of one variant may find one start).
   * Records arrive almost in start order (the prefilter reports hits by offset), so the sort is
   * skipped when they already are, and is otherwise a merge of long runs.
   */
  *byStart(): Generator<WindowStart> {
    const { strings, starts, variants, lengths } = this;
    const before = (a: number, b: number) =>
      starts[a]! - starts[b]! || strings[a]! - strings[b]! || variants[a]! - variants[b]!;
    const order = this.order.subarray(0, this.count);
    let sorted = true;
    for (let i = 0; i < this.count; i++) {
      order[i] = i;
      if (i > 0 && sorted && before(i - 1, i) > 0) sorted = false;
    }
    if (!sorted) order.sort(before);
    for (let at = 0; at < order.length;) {
      const first = order[at]!;
      const matched: VariantMatch[] = [];
      for (; at < order.length; at++) {
        const record = order[at]!;
        if (starts[record] !== starts[first] || strings[record] !== strings[first]) break;
        if (matched[matched.length - 1]?.variant !== variants[record])
          matched.push({ variant: variants[record]!, length: lengths[record]! });
      }
      yield { string: strings[first]!, start: starts[first]!, matched };
    }
  }

  private grow(): void {
    const capacity = this.strings.length * 2;
    const grown = (column: Uint32Array) => {
      const copy = new Uint32Array(capacity);
      copy.set(column);
      return copy;
    };
    this.strings = grown(this.strings);
    this.starts = grown(this.starts);
    this.variants = grown(this.variants);
    this.lengths = grown(this.lengths);
    this.order = new Uint32Array(capacity);
  }
}
