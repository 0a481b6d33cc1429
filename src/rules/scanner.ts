import type { MemoryImage } from '../image/types.js';
import { AtomFilter } from '../kernels/atomFilter.js';
import { KernelInstance } from '../kernels/kernelInstance.js';
import { DEFAULT_WINDOW_BYTES, MAX_ATOMS, MAX_GROUP_NEEDLES, MAX_NEEDLE_LENGTH } from '../kernels/memoryMap.js';
import { MultiNeedleSearcher } from '../kernels/multiNeedle.js';
import {
  scanBuffer,
  scanImage,
  scanStreams,
  type ImageSearchOptions,
  type Stream,
  type WindowScanner,
} from '../kernels/streaming.js';
import type { Atom } from './atoms.js';
import { searchedAtoms, type CompiledRules, type CompiledString, type ProgramVariant } from './compile.js';
import { evaluateRules, type RuleMatch } from './evaluate.js';
import { HitList } from './hitList.js';
import { MatchCap, type MatchLimits } from './matchCap.js';
import { PartMerge } from './partMerge.js';
import { ColumnMatches, matchListOf, matchObjects, type MatchList, type StringMatch } from './matchList.js';
import { isAsciiLetter, otherCase } from './pattern.js';
import type { ScannedUnit } from './unit.js';
import { LazyDfa, UnanchoredEndsDfa } from './lazyDfa.js';
import {
  acceptMatch,
  chainMatches,
  literalMatchesAt,
  programMatchAt,
  programMatchesBeforeEnds,
  programMatchesIn,
} from './verify.js';
import { WindowRecords } from './windowRecords.js';

export type { StringHit } from './hitList.js';

/** A string of some rule, as the scanner numbers them: rule by rule, in file order. */
export interface ScannedString {
  readonly rule: number;
  /** Index among the rule's strings. */
  readonly index: number;
  /** What is searched: the rule's string, or one part of a chained string. */
  readonly compiled: CompiledString;
  /** Which part of a chained hex string this is; its matches are joined into the string's by evaluate(). */
  readonly part?: number;
}

/** YARA's YR_MAX_STRING_MATCHES: a string's matches past this many are dropped, with a warning, so a scan's memory stays bounded. */
export const MAX_STRING_MATCHES = 1_000_000;
/**
 * A rule's strings together: a rule of many strings matching everywhere stays bounded too, and
 * cannot take the whole scan's share. Twice a string's, so that a rule with one string at
 * YARA's cap still reports its other strings' matches as yara does.
 */
export const MAX_RULE_MATCHES = 2_000_000;
/**
 * The whole scan's bound (16 bytes a match as the scan keeps them, 48 MiB): rules matching
 * everywhere cannot add up past the memory a scan is given, whatever the rule file.
 */
export const MAX_SCAN_MATCHES = 3_000_000;

/** Bytes after a match that `fullword` looks at (a wide string's next character is two bytes). */
const LOOKAHEAD = 2;
/** Verified starts a pass of a window may record (20 bytes each, 5 MiB) before it is done again in shorter passes. */
const RECORD_BUDGET = 1 << 18;
/** The shortest pass, decided whatever it records: a pass of n bytes records at most n starts a string. */
const MIN_PASS_BYTES = 4096;
/**
 * The longest pass, which passes lengthen back to after a flood: what one pass holds (its records, the automaton's
 * match ends of every atomless pattern) stays bounded by it whatever the rules match.
 */
const MAX_PASS_BYTES = 1 << 20;
/** Bytes before a match that `fullword` looks at. */
const LOOKBEHIND = 2;

/** A variant that a needle's hit may belong to, and where the needle sits inside its match. */
interface Target {
  /** Index among all targets. */
  readonly id: number;
  readonly string: number;
  readonly variant: number;
  readonly offset: number;
  readonly maxOffset: number;
  /** A program whose atom may sit at several distances from the start: one start can be reached from several hits. */
  readonly ranged: boolean;
}

/** One search kernel with the targets behind each of its needles. */
interface Prefilter {
  readonly targets: readonly (readonly Target[])[];
  /** Calls `visit` with the needle index and window-relative offset of every hit starting in [from, to) of the window's first `dataLength` bytes (each needle's in offset order). */
  visitHits(dataLength: number, visit: (id: number, offset: number) => void, from: number, to: number): void;
}

export interface RuleScannerOptions {
  /** The kernel window (default DEFAULT_WINDOW_BYTES): must hold the longest match with room to spare. */
  windowBytes?: number;
  /** Matches kept per string (default MAX_STRING_MATCHES), per rule (MAX_RULE_MATCHES) and per scan (MAX_SCAN_MATCHES). */
  limits?: Partial<MatchLimits>;
  /** Verified starts a pass of a window may record before it is done again in shorter passes (default RECORD_BUDGET). */
  recordBudget?: number;
}

export interface RuleScanResult {
  /** In offset order (then string order). */
  readonly hits: HitList;
  /** Strings that lost matches to the limits (per string, rule or scan), by index into `strings`. */
  readonly truncated: readonly number[];
}

/**
 * Compiled rules as a streaming scanner (YARA-X's scanner half): the atoms of every string go
 * into one prefilter kernel — a few exact needles use the multi-needle search, anything more
 * (or any `nocase` atom, loaded as its case variants) the atom filter — and each atom hit is
 * verified where it points, in the window that holds it, with the same per-offset rules as the
 * reference matcher (verify.ts). Strings without an atom are tried at every offset. Chunks
 * overlap by the longest match plus the bytes `fullword` looks at, and start a little early
 * for the bytes it looks at before a match, so a window decides every match it owns by itself.
 */
export class RuleScanner {
  readonly strings: readonly ScannedString[];
  private readonly prefilters: readonly Prefilter[];
  /** Program variants without an atom, by string and variant, with their program's index in everywhereDfa when it has one. */
  private readonly everywhere: ReadonlyArray<{
    readonly string: number;
    readonly variant: number;
    readonly dfaIndex: number | undefined;
  }>;
  /** The match-end automaton of every atomless program without assertions. */
  private readonly everywhereDfa: UnanchoredEndsDfa | undefined;
  /** Hits go to `collected`, in columns, not to the streaming functions' array of objects (which stays empty). */
  private readonly windowScanner: WindowScanner<never>;
  /** The current scan's hits. */
  private collected = new HitList();
  /** The current window's verified matches, before they are decided. */
  private readonly records = new WindowRecords();
  /** The current scan's count of kept matches per string. */
  private cap: MatchCap;
  private readonly triedThrough: Int32Array;
  /** Starts each target recorded in the current window. */
  private readonly recordedByTarget: Uint32Array;
  /** Each scanned string's rule index, as the match limits count them. */
  private readonly ruleOfString: Uint32Array;
  /** Per string, how many starts the current window needs at most: the cap's remaining matches and one more. */
  private readonly wantedStarts: Float64Array;
  /** How many owned bytes of a window one pass decides (see scanWindow): shortened by floods, lengthened after. */
  private passBytes = MAX_PASS_BYTES;

  private constructor(
    readonly rules: CompiledRules,
    private readonly kernel: KernelInstance,
    readonly limits: MatchLimits,
    private readonly recordBudget: number,
  ) {
    this.strings = rules.rules.flatMap((rule, ruleIndex) =>
      rule.strings.flatMap((compiled, index) => scannedStrings(ruleIndex, index, compiled)),
    );
    const { prefilters, everywhere, longestReach, targetCount } = planPrefilters(this.strings, kernel.window.length);
    this.triedThrough = new Int32Array(targetCount);
    this.recordedByTarget = new Uint32Array(targetCount);
    this.wantedStarts = new Float64Array(this.strings.length);
    this.prefilters = prefilters;
    const programOf = ({ string, variant }: { string: number; variant: number }) =>
      (this.strings[string]!.compiled.variants[variant] as ProgramVariant).program;
    const automatable = everywhere.filter((entry) => LazyDfa.supports(programOf(entry)));
    this.everywhereDfa = automatable.length > 0 ? new UnanchoredEndsDfa(automatable.map(programOf)) : undefined;
    this.everywhere = everywhere.map((entry) => ({
      ...entry,
      dfaIndex: automatable.includes(entry) ? automatable.indexOf(entry) : undefined,
    }));
    this.ruleOfString = Uint32Array.from(this.strings, ({ rule }) => rule);
    this.cap = new MatchCap(this.ruleOfString, limits);
    this.windowScanner = {
      kernel,
      overlap: Math.max(rules.longestMatch, longestReach) + LOOKAHEAD,
      lookbehind: LOOKBEHIND,
      hasPatterns: this.strings.length > 0,
      // No limit: a rule scan has no "first N hits"; the match limits bound it per string, rule and scan instead.
      scanWindow: (windowBase, dataLength, ownedFrom, ownedTo) =>
        this.scanWindow(windowBase, dataLength, ownedFrom, ownedTo),
    };
  }

  static create(rules: CompiledRules, options: RuleScannerOptions = {}): RuleScanner {
    return new RuleScanner(
      rules,
      KernelInstance.shared(options.windowBytes ?? DEFAULT_WINDOW_BYTES),
      {
        perString: options.limits?.perString ?? MAX_STRING_MATCHES,
        perRule: options.limits?.perRule ?? MAX_RULE_MATCHES,
        perScan: options.limits?.perScan ?? MAX_SCAN_MATCHES,
      },
      options.recordBudget ?? RECORD_BUDGET,
    );
  }

  /** How far past its owned bytes a window must read: for scans cut into jobs (workers/physicalJobs.ts). */
  get reach(): { readonly overlap: number; readonly lookbehind: number } {
    return { overlap: this.windowScanner.overlap, lookbehind: LOOKBEHIND };
  }

  /** A merge of this scanner's parts of one scan (jobs in address order), given as they finish, with the limits applied to the whole. */
  partMerge(): PartMerge {
    return new PartMerge(this.ruleOfString, this.limits);
  }

  /**
   * Every string's matches in the physical memory of `image`, in offset order; no match spans a gap
   * between ranges. `keptBefore` counts, per string, matches already kept before this part of a
   * scan (earlier jobs): only what the cap leaves of them is kept, and past it the string is truncated.
   */
  scanImage(image: MemoryImage, options: ImageSearchOptions & { keptBefore?: Uint32Array } = {}): RuleScanResult {
    return this.collect(() => scanImage(this.windowScanner, image, options), options.keptBefore);
  }

  /** Every string's matches in `bytes`, offsets `base` + index. */
  scanBuffer(bytes: Uint8Array, base = 0): RuleScanResult {
    return this.collect(() => scanBuffer(this.windowScanner, bytes, base));
  }

  /** Every string's matches in streams of bytes the caller assembles (a process's virtual memory), each stream on its own. */
  scanStreams(streams: readonly Stream[]): RuleScanResult {
    return this.collect(() => scanStreams(this.windowScanner, streams, Infinity, () => {}));
  }

  /**
   * The rules that match, given every string's hits in offset order over the whole scanned data
   * (one scan, or several scans' hits merged in order), with `filesize` as the data's size and
   * `unit` the bytes `uint32(…)` and the modules read (without it, they are undefined).
   */
  evaluate(hits: HitList, filesize: number, unit?: ScannedUnit): RuleMatch[] {
    const byString = this.matchesByString(hits);
    const matches: MatchList[][] = this.rules.rules.map((rule) => rule.strings.map(() => matchListOf([])));
    const partMatches = this.rules.rules.map((rule) =>
      rule.strings.map((string) => (string.chainGaps ? string.variants.map((): StringMatch[] => []) : [])),
    );
    this.strings.forEach(({ rule, index, part }, string) => {
      if (part === undefined) matches[rule]![index] = byString[string]!;
      else partMatches[rule]![index]![part] = matchObjects(byString[string]!);
    });
    this.rules.rules.forEach((rule, ruleIndex) =>
      rule.strings.forEach((string, index) => {
        if (string.chainGaps)
          matches[ruleIndex]![index] = matchListOf(
            chainMatches(string, partMatches[ruleIndex]![index]!, string.chainGaps),
          );
      }),
    );
    return evaluateRules(this.rules, matches, filesize, unit);
  }

  /**
   * Each scanned string's hits, in offset order, as views into one copy of the hits sorted by
   * string (a counting sort, stable, so each string's hits keep their offset order).
   */
  private matchesByString(hits: HitList): ColumnMatches[] {
    const firsts = new Float64Array(this.strings.length + 1);
    for (let i = 0; i < hits.length; i++) firsts[hits.stringAt(i) + 1]!++;
    for (let string = 0; string < this.strings.length; string++) firsts[string + 1]! += firsts[string]!;
    const offsets = new Float64Array(hits.length);
    const lengths = new Uint32Array(hits.length);
    const next = firsts.slice(0, this.strings.length);
    for (let i = 0; i < hits.length; i++) {
      const at = next[hits.stringAt(i)]!++;
      offsets[at] = hits.offsetAt(i);
      lengths[at] = hits.lengthAt(i);
    }
    return this.strings.map(
      (_, string) =>
        new ColumnMatches(
          offsets.subarray(firsts[string], firsts[string + 1]),
          lengths.subarray(firsts[string], firsts[string + 1]),
        ),
    );
  }

  /** Human-readable name of a scanned string, `rule:$id`. */
  describe(string: number): string {
    const { rule, compiled, part } = this.strings[string]!;
    return `${this.rules.rules[rule]!.name}:${compiled.id}${part === undefined ? '' : ` (part ${part + 1})`}`;
  }

  private collect(scan: () => void, keptBefore?: Uint32Array): RuleScanResult {
    this.cap = new MatchCap(this.ruleOfString, this.limits, keptBefore);
    const hits = (this.collected = new HitList());
    try {
      scan();
    } finally {
      this.collected = new HitList(); // the scanner keeps no reference to a finished scan's hits
    }
    return { hits, truncated: this.cap.truncatedStrings() };
  }

  /**
   * Decides the matches starting in [ownedFrom, ownedTo) of the window. Strings matching nearly
   * everywhere (a flood of `{ ?? ?? }`, many `{ 00 00 }`) would fill the records with millions of
   * starts, so the owned bytes are decided in passes short enough to keep the records within
   * the record budget: a pass that records more is given up and done again in quarters, and passes
   * lengthen again once the flood is over (or its strings have lost matches to the limits).
   */
  private scanWindow(windowBase: number, dataLength: number, ownedFrom: number, ownedTo: number): void {
    const data = this.kernel.window.subarray(0, dataLength);
    for (let from = ownedFrom; from < ownedTo;) {
      const to = Math.min(ownedTo, from + this.passBytes);
      if (!this.recordPass(data, from, to, to - from > MIN_PASS_BYTES ? this.recordBudget : Infinity)) {
        this.passBytes = Math.max(MIN_PASS_BYTES, Math.floor((to - from) / 4));
        continue;
      }
      for (const { string, start, matched } of this.records.byStart()) {
        const length = acceptMatch(this.strings[string]!.compiled, data, windowBase, start, matched);
        if (length !== undefined && this.cap.take(string)) this.collected.push(string, windowBase + start, length);
      }
      if (this.records.length < this.recordBudget / 4) this.passBytes = Math.min(this.passBytes * 2, MAX_PASS_BYTES);
      from = to;
    }
  }

  /**
   * Records the verified starts in [from, to) of every string, with every variant that matched
   * there (a pass's starts are decided together, so that variant order can apply): false, with
   * the records incomplete, as soon as there are more than `budget`.
   */
  private recordPass(data: Uint8Array, from: number, to: number, budget: number): boolean {
    const records = this.records;
    records.clear();
    let overBudget = false;
    const record = (string: number, start: number, variant: number, length: number) => {
      records.add(string, start, variant, length);
      if (records.length > budget) overBudget = true;
    };
    // A ranged target's hits come in offset order, so the starts it has tried are always a prefix: one number per target.
    const triedThrough = this.triedThrough.fill(-1);
    // A target's starts come in offset order too: past the cap's remaining matches (and one more, to know it was
    // exceeded) none of its later starts can be among the string's first, so a window of zeros records no more than that.
    // `fullword` or a fixed offset may still reject some of the first starts: such strings need them all.
    const recordedByTarget = this.recordedByTarget.fill(0);
    const wanted = this.wantedStarts;
    this.strings.forEach(({ compiled: { fullword, fixedOffset } }, string) => {
      wanted[string] = fullword || fixedOffset !== undefined ? Infinity : this.cap.remaining(string) + 1;
    });
    for (const prefilter of this.prefilters)
      prefilter.visitHits(
        data.length,
        (id, offset) => {
          if (overBudget) return;
          for (const target of prefilter.targets[id]!) {
            if (this.cap.exhausted(target.string) || recordedByTarget[target.id]! >= wanted[target.string]!) continue;
            const first = Math.max(from, offset - target.maxOffset, target.ranged ? triedThrough[target.id]! + 1 : 0);
            const last = Math.min(to - 1, offset - target.offset);
            if (target.ranged && last >= first) triedThrough[target.id] = last;
            for (let start = first; start <= last; start++) {
              const length = this.verify(target, data, start);
              if (length > 0) {
                record(target.string, start, target.variant, length);
                if (++recordedByTarget[target.id]! >= wanted[target.string]! || overBudget) break;
              }
            }
          }
        },
        // An atom lies at most `overlap` bytes after the start it points to: only these can point into the pass.
        from,
        Math.min(data.length, to + this.windowScanner.overlap),
      );
    // Patterns without a useful atom: one DFA run over the pass for all of them, then starts tried only where an end is in reach.
    const automatonNeeded = this.everywhere.some(
      ({ string, dfaIndex }) => dfaIndex !== undefined && !this.cap.exhausted(string),
    );
    // Only matches starting in the pass matter: the automaton starts there (on a word boundary, for its zero-run skip)
    // and stops once every such match has ended.
    const ends =
      automatonNeeded && !overBudget
        ? this.everywhereDfa?.matchEnds(data, from & ~3, Math.min(data.length, to + this.windowScanner.overlap))
        : undefined;
    this.everywhere.forEach(({ string, variant, dfaIndex }) => {
      if (overBudget || this.cap.exhausted(string)) return;
      const program = this.strings[string]!.compiled.variants[variant] as ProgramVariant;
      const matches =
        dfaIndex === undefined
          ? programMatchesIn(program, data, from, to)
          : programMatchesBeforeEnds(program, data, ends![dfaIndex]!, from, to);
      // Starts come in order: past what the cap keeps (and one more, to know it was exceeded) they would be dropped.
      let taken = 0;
      for (const [start, length] of matches) {
        record(string, start, variant, length);
        if (++taken >= wanted[string]! || overBudget) break;
      }
    });
    return !overBudget;
  }

  /** Length of the target variant's match at `start`, or 0. */
  private verify(target: Target, data: Uint8Array, start: number): number {
    const variant = this.strings[target.string]!.compiled.variants[target.variant]!;
    if (variant.kind === 'literal') return literalMatchesAt(variant, data, start) ? variant.bytes.length : 0;
    return Math.max(0, programMatchAt(variant, data, start));
  }
}

/** The scanned strings of one rule string: itself, or each part of a chained hex string as a string of its own. */
function scannedStrings(rule: number, index: number, compiled: CompiledString): ScannedString[] {
  if (!compiled.chainGaps) return [{ rule, index, compiled }];
  return compiled.variants.map((variant, part) => ({
    rule,
    index,
    part,
    compiled: {
      id: compiled.id,
      kind: compiled.kind,
      isPrivate: compiled.isPrivate,
      fullword: false,
      fixedOffset: undefined,
      variants: [variant],
      firstFormOnly: false,
      scanEverywhere: searchedAtoms(variant).length === 0,
    },
  }));
}

/**
 * The needles to search for and what each hit may be. Every variant with an atom contributes
 * its atom (nocase atoms as each of their case spellings); identical needles are searched once.
 * When a handful of exact needles cover everything, whole literals are searched instead of
 * their atoms, so the kernel's hits are already matches.
 */
function planPrefilters(
  strings: readonly ScannedString[],
  windowBytes: number,
): {
  prefilters: Prefilter[];
  everywhere: Array<{ string: number; variant: number }>;
  longestReach: number;
  targetCount: number;
} {
  const everywhere: Array<{ string: number; variant: number }> = [];
  const withAtoms: Array<{ target: Target; atom: Atom; literal: Uint8Array | undefined }> = [];
  strings.forEach(({ compiled }, string) => {
    compiled.variants.forEach((variant, index) => {
      const atoms = searchedAtoms(variant);
      if (atoms.length === 0) everywhere.push({ string, variant: index });
      const literal =
        variant.kind === 'literal' && !variant.caseInsensitive && variant.bytes.length <= MAX_NEEDLE_LENGTH
          ? variant.bytes
          : undefined;
      // Several atoms of one variant (an alternation's) may point at the same start: the window records it once.
      for (const atom of atoms) {
        const { offset, maxOffset } = atom;
        withAtoms.push({
          target: { id: withAtoms.length, string, variant: index, offset, maxOffset, ranged: maxOffset > offset },
          atom,
          literal,
        });
      }
    });
  });
  // reduce, not Math.max(...): spreading hundreds of thousands of arguments overflows the stack.
  const longestReach = withAtoms.reduce(
    (longest, { atom }) => Math.max(longest, atom.maxOffset + atom.bytes.length),
    0,
  );
  if (longestReach + LOOKAHEAD + LOOKBEHIND >= windowBytes)
    throw new RangeError(`a match may reach ${longestReach} bytes: more than a ${windowBytes}-byte window holds`);

  if (withAtoms.every(({ atom }) => !atom.caseInsensitive)) {
    const needles = new Needles();
    for (const { target, atom, literal } of withAtoms) {
      if (literal) needles.add(literal, { ...target, offset: 0, maxOffset: 0 });
      else needles.add(atom.bytes, target);
    }
    if (needles.count <= MAX_GROUP_NEEDLES) {
      const searcher = MultiNeedleSearcher.create(needles.bytes, { windowBytes });
      return {
        prefilters: [
          {
            targets: needles.targets,
            visitHits: (length, visit, from, to) => searcher.visitWindowHits(length, visit, from, to),
          },
        ],
        everywhere,
        longestReach,
        targetCount: withAtoms.length,
      };
    }
  }
  const atoms = new Needles();
  for (const { target, atom } of withAtoms) for (const spelling of caseSpellings(atom)) atoms.add(spelling, target);
  const prefilters: Prefilter[] = [];
  for (let first = 0; first < atoms.count; first += MAX_ATOMS) {
    const filter = AtomFilter.create(atoms.bytes.slice(first, first + MAX_ATOMS), { windowBytes });
    prefilters.push({
      targets: atoms.targets.slice(first, first + MAX_ATOMS),
      visitHits: (length, visit, from, to) => filter.visitWindowHits(length, visit, from, to),
    });
  }
  return { prefilters, everywhere, longestReach, targetCount: withAtoms.length };
}

/** Distinct needles, each with every target it serves. */
class Needles {
  readonly bytes: Uint8Array[] = [];
  readonly targets: Target[][] = [];
  private readonly index = new Map<string, number>();

  get count(): number {
    return this.bytes.length;
  }

  add(bytes: Uint8Array, target: Target): void {
    const key = Buffer.from(bytes).toString('latin1');
    let id = this.index.get(key);
    if (id === undefined) {
      this.index.set(key, (id = this.bytes.length));
      this.bytes.push(bytes);
      this.targets.push([]);
    }
    this.targets[id]!.push(target);
  }
}

/** Every spelling of a `nocase` atom (letters stored lower-case; at most 2^4 for four letters); an exact atom as itself. */
function caseSpellings(atom: Atom): Uint8Array[] {
  let spellings = [Uint8Array.from(atom.bytes)];
  if (!atom.caseInsensitive) return spellings;
  atom.bytes.forEach((byte, at) => {
    if (!isAsciiLetter(byte)) return;
    spellings = spellings.flatMap((spelling) => {
      const other = Uint8Array.from(spelling);
      other[at] = otherCase(byte);
      return [spelling, other];
    });
  });
  return spellings;
}
