/** One match of a string as a condition sees it. */
export interface StringMatch {
  /** Where the match starts: the scan's base offset plus the index in the data. */
  readonly offset: number;
  readonly length: number;
}

/**
 * A string's matches in offset order, read by index: `#a`, `@a[i]`, `!a[i]`, `$a at`, `$a in`.
 * Backed by columns for a scan's hits (no object per match), or by an array of objects.
 */
export interface MatchList {
  readonly count: number;
  offsetAt(index: number): number;
  lengthAt(index: number): number;
}

/** Matches held in two columns (views into a scan's sorted hits). */
export class ColumnMatches implements MatchList {
  constructor(
    private readonly offsets: Float64Array,
    private readonly lengths: Uint32Array,
  ) {}

  get count(): number {
    return this.offsets.length;
  }

  offsetAt(index: number): number {
    return this.offsets[index]!;
  }

  lengthAt(index: number): number {
    return this.lengths[index]!;
  }
}

/** An array of matches as a MatchList. */
export function matchListOf(matches: readonly StringMatch[]): MatchList {
  return {
    count: matches.length,
    offsetAt: (index) => matches[index]!.offset,
    lengthAt: (index) => matches[index]!.length,
  };
}

/** The list's matches as objects (a chain's parts, tests): made on the fly, for small lists. */
export function matchObjects(list: MatchList): StringMatch[] {
  return Array.from({ length: list.count }, (_, index) => ({
    offset: list.offsetAt(index),
    length: list.lengthAt(index),
  }));
}
