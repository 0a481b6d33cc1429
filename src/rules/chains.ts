import type { JumpRange } from './compile.js';
import type { StringMatch } from './matchList.js';

/** yara keeps a chained match's length within its match-data limit (YR_CONFIG_MAX_MATCH_DATA's default): `yara -L` and `!a` see at most this. */
const MAX_CHAIN_MATCH_LENGTH = 512;

/**
 * YARA's chained strings, as `yara -s` reports them (checked against yara 4.2 on crafted inputs):
 * a match starts at a match of the first part from which every next part can be reached (part
 * i + 1 starting between `min` and `max` bytes after part i ends), and it ends where the earliest
 * reachable match of the last part ends (a length capped at MAX_CHAIN_MATCH_LENGTH, as yara
 * does). Each first-part match is reported once.
 *
 * `parts[i]` holds part i's matches sorted by offset. Worked backward from the last part: each
 * match gets the earliest end of a last-part match reachable from it, a range minimum over the
 * next part's matches, so the cost is O(n log n) in the number of part matches, whatever the gaps.
 */
export function resolveChain(parts: ReadonlyArray<readonly StringMatch[]>, gaps: readonly JumpRange[]): StringMatch[] {
  const last = parts[parts.length - 1]!;
  let reachableEnd = Float64Array.from(last, (match) => match.offset + match.length);
  for (let part = parts.length - 2; part >= 0; part--) {
    const next = parts[part + 1]!;
    const nextStarts = Float64Array.from(next, (match) => match.offset);
    const earliest = new RangeMinimum(reachableEnd);
    const { min, max } = gaps[part]!;
    reachableEnd = Float64Array.from(parts[part]!, (match) => {
      const end = match.offset + match.length;
      return earliest.over(lowerBound(nextStarts, end + min), lowerBound(nextStarts, end + max + 1));
    });
  }
  return parts[0]!.flatMap((match, i) =>
    reachableEnd[i]! === Infinity
      ? []
      : [{ offset: match.offset, length: Math.min(reachableEnd[i]! - match.offset, MAX_CHAIN_MATCH_LENGTH) }],
  );
}

/** The first index whose value is at least `value` (values sorted ascending). */
function lowerBound(values: Float64Array, value: number): number {
  let low = 0;
  let high = values.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (values[middle]! < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Minimum over index ranges of a fixed array (an iterative segment tree); Infinity for an empty range. */
class RangeMinimum {
  private readonly tree: Float64Array;
  private readonly size: number;

  constructor(values: Float64Array) {
    this.size = values.length;
    this.tree = new Float64Array(2 * this.size).fill(Infinity);
    this.tree.set(values, this.size);
    for (let node = this.size - 1; node > 0; node--)
      this.tree[node] = Math.min(this.tree[2 * node]!, this.tree[2 * node + 1]!);
  }

  /** Minimum of values[from..to). */
  over(from: number, to: number): number {
    let minimum = Infinity;
    for (let low = from + this.size, high = to + this.size; low < high; low >>= 1, high >>= 1) {
      if (low & 1) minimum = Math.min(minimum, this.tree[low++]!);
      if (high & 1) minimum = Math.min(minimum, this.tree[--high]!);
    }
    return minimum;
  }
}
