import { HitList, type HitColumns } from './hitList.js';
import { MatchCap, type MatchLimits } from './matchCap.js';
import type { RuleScanResult } from './scanner.js';

/** The hits of one part of a scan (a job), in offset order, as the chunks of columns that crossed threads. */
export interface ScanPart {
  readonly columns: readonly HitColumns[];
  /** Strings the part capped on its own. */
  readonly truncated: readonly number[];
}

/**
 * The parts of one scan (jobs in address order) joined into one result, with the match limits
 * applied to the whole in part order. Parts may arrive in any order: each is appended, and
 * dropped, as soon as every part before it has been, so only parts that finished early wait
 * beside the growing result instead of every part being held until the end.
 */
export class PartMerge {
  private readonly hits = new HitList();
  private readonly cap: MatchCap;
  private readonly waiting = new Map<number, ScanPart>();
  private next = 0;

  constructor(ruleOfString: ArrayLike<number>, limits: MatchLimits) {
    this.cap = new MatchCap(ruleOfString, limits);
  }

  /** Part number `index` (from 0, in address order). */
  add(index: number, part: ScanPart): void {
    if (index < this.next || this.waiting.has(index)) throw new RangeError(`scan part ${index} was already merged`);
    this.waiting.set(index, part);
    for (let ready = this.waiting.get(this.next); ready; ready = this.waiting.get(this.next)) {
      this.waiting.delete(this.next++);
      this.cap.markTruncated(ready.truncated);
      for (const columns of ready.columns) this.hits.append(columns, (string) => this.cap.take(string));
    }
  }

  /** The merged result, once parts 0 to `partCount` - 1 have all been added. */
  result(partCount: number): RuleScanResult {
    if (this.next !== partCount) throw new RangeError(`scan merge has ${this.next} of ${partCount} parts in order`);
    return { hits: this.hits, truncated: this.cap.truncatedStrings() };
  }
}
