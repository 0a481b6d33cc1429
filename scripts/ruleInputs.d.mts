export function pseudoRandomBytes(length: number, seed?: number): Buffer;
export function peHeader(options?: { is64?: boolean; dll?: boolean }): Buffer;
export function elfHeader(options?: { is64?: boolean; type?: number }): Buffer;
export function communityInputs(): Record<string, Buffer>;
export interface MatchSummary {
  readonly matches: number;
  readonly rules: Record<string, number>;
  readonly sha256: string;
}
export function matchSummary(
  matches: ReadonlyArray<{
    readonly rule: string;
    readonly strings: ReadonlyArray<{ readonly string: string; readonly offset: number }>;
  }>,
): MatchSummary;
export function yaraMatches(
  output: string,
): Array<{ rule: string; strings: Array<{ string: string; offset: number }> }>;
