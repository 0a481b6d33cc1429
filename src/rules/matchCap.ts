/** How many matches a scan keeps: past any of these, later matches (by offset) are dropped and the strings that lost some are named. */
export interface MatchLimits {
  /** Per string: YARA's YR_MAX_STRING_MATCHES. */
  readonly perString: number;
  /** Per rule, over all its strings: a rule of many strings matching everywhere stays bounded. */
  readonly perRule: number;
  /** Over the whole scan: many such rules stay bounded too. */
  readonly perScan: number;
}

/**
 * At most `limits` matches, the first ones in the order they are offered; which strings lost
 * some. A string counts towards its rule (`ruleOfString`) and the scan.
 */
export class MatchCap {
  private readonly stringCounts: Uint32Array;
  private readonly ruleCounts: Uint32Array;
  private total = 0;
  private readonly truncated = new Set<number>();

  /** `alreadyKept`: per string, matches kept before this part of a scan (earlier jobs). */
  constructor(
    private readonly ruleOfString: ArrayLike<number>,
    private readonly limits: MatchLimits,
    alreadyKept?: Uint32Array,
  ) {
    this.stringCounts = new Uint32Array(ruleOfString.length);
    let rules = 0;
    for (let string = 0; string < ruleOfString.length; string++) rules = Math.max(rules, ruleOfString[string]! + 1);
    this.ruleCounts = new Uint32Array(rules);
    if (alreadyKept)
      for (let string = 0; string < ruleOfString.length; string++) {
        const kept = alreadyKept[string] ?? 0;
        this.stringCounts[string] = kept;
        this.ruleCounts[ruleOfString[string]!]! += kept;
        this.total += kept;
      }
  }

  /** Strings that lost matches elsewhere (a part of the scan capped on its own). */
  markTruncated(strings: readonly number[]): void {
    for (const string of strings) this.truncated.add(string);
  }

  /** Counts one more match of the string: false (and the string marked truncated) when a limit is reached. */
  take(string: number): boolean {
    if (this.remaining(string) === 0) {
      this.truncated.add(string);
      return false;
    }
    this.stringCounts[string]!++;
    this.ruleCounts[this.ruleOfString[string]!]!++;
    this.total++;
    return true;
  }

  /** How many more matches of the string are kept. */
  remaining(string: number): number {
    const { perString, perRule, perScan } = this.limits;
    return Math.max(
      0,
      Math.min(
        perString - this.stringCounts[string]!,
        perRule - this.ruleCounts[this.ruleOfString[string]!]!,
        perScan - this.total,
      ),
    );
  }

  /**
   * Whether the string already lost a match to a limit: any further match of it would be dropped,
   * so need not be looked for. (A string with nothing remaining is still looked for until it
   * loses one, so that only strings which really lost matches are named.)
   */
  exhausted(string: number): boolean {
    return this.truncated.has(string);
  }

  truncatedStrings(): number[] {
    return [...this.truncated].sort((a, b) => a - b);
  }
}
