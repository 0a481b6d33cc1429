import type * as IcedX86 from 'iced-x86';
import type { Decoder, Instruction } from 'iced-x86';
import type { Profile } from '../../symbols/profile.js';
import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { CodeOwners } from './codeOwners.js';
import { readFtraceRecords, type FtraceRecordReport } from './ftrace.js';
import { icedX86 } from './icedX86.js';
import type { KernelReader } from './kernelReader.js';
import { moduleFunctions, type ModuleInfo } from './modules.js';

/** `endbr64`: an IBT landing pad; the ftrace site follows it. */
const ENDBR64 = [0xf3, 0x0f, 0x1e, 0xfa] as const;
/** What the kernel seals an unused ENDBR64 with (`osp nopl (%rax)`, gen_endbr_poison() in asm/ibt.h). */
const SEALED_ENDBR64 = [0x66, 0x0f, 0x1f, 0x00] as const;
const LANDING_PAD_LENGTH = ENDBR64.length;
/** The 5-byte NOP (`nopl 0x0(%rax,%rax,1)`) ftrace writes over each `call __fentry__` it is not using. */
const FTRACE_NOP = [0x0f, 0x1f, 0x44, 0x00, 0x00] as const;
const INT3 = 0xcc;
/** Bytes decoded per entry: an ENDBR64, the ftrace site and two instructions of at most 15 bytes. */
const ENTRY_WINDOW = 4 + 5 + 2 * 15;
/** How far past an entry padding is checked: int3 fill between sections is at most this long before the next symbol. */
const PADDING_WINDOW = 64;
const PAGE_SIZE = 4096;
/** Kernel text is read in chunks of this size; a chunk that fails is retried page by page. */
const READ_CHUNK = 1 << 21;
/** The trampolines enabled ftrace sites call when no ftrace_ops has its own (arch/x86/kernel/ftrace_64.S). */
const FTRACE_CALLERS = ['ftrace_caller', 'ftrace_regs_caller'];
/** Larger than any module's text (the biggest, GPU drivers, have tens of MiB). */
const MAX_MODULE_REGION = 1 << 28;
/** kallsyms type letters of code: local and global text, and weak definitions (which kallsyms shows as W/w). */
const TEXT_SYMBOL_TYPES = new Set(['t', 'T', 'w', 'W']);
/** Fill the compiler and linker put between functions: int3 (x86 kernels since 5.x) or nop. */
const PADDING_BYTES = new Set([0xcc, 0x90]);
/** The kernel's static_call naming (include/linux/static_call_types.h): trampoline and key of one call. */
const STATIC_CALL_TRAMPOLINE = '__SCT__';
const STATIC_CALL_KEY = '__SCK__';

/** One function entry that is not the plain ftrace NOP: traced by ftrace, or patched. */
export interface FunctionEntryFinding {
  readonly function: string;
  /** The function's first byte (its symbol's address). */
  readonly address: bigint;
  /** Who owns the function: `kernel` or the module's name. */
  readonly functionOwner: string;
  /** The first instruction after an ENDBR64 (or its sealed form), where the ftrace site is. */
  readonly patchAt: bigint;
  /** The bytes of the decoded instruction(s), lowercase hex. */
  readonly bytes: string;
  readonly instruction: string;
  /** Whether the kernel has a dyn_ftrace record for `patchAt` (a site ftrace may patch). */
  readonly ftraceSite: boolean;
  /** Where control goes, when the instruction says. */
  readonly target: bigint | undefined;
  readonly targetSymbol: string | undefined;
  readonly targetOwner: string | undefined;
  readonly suspicious: boolean;
  readonly evidence: string;
}

export interface FunctionEntryScan {
  readonly findings: FunctionEntryFinding[];
  /** Function entries read and judged. */
  readonly checked: number;
  readonly problems: string[];
}

export interface FunctionEntryOptions {
  /** Call targets the ftrace state accounts for: kernelFtraceTrampolines() and the trampolines of registered ftrace_ops. */
  readonly accountedTargets: ReadonlySet<bigint>;
  /** Addresses where a registered kprobe legitimately placed an int3. */
  readonly accountedBreakpoints?: ReadonlySet<bigint>;
  /** The dyn_ftrace records when the caller has read them already (read here otherwise). */
  readonly ftraceRecords?: FtraceRecordReport;
}

interface FunctionSymbol {
  readonly name: string;
  readonly address: bigint;
}

/** Memory read in one go, with the pages that could not be read. */
interface ReadRange {
  readonly base: bigint;
  readonly bytes: Uint8Array;
  /** [from, to) offsets that could not be read (left zero). */
  readonly unreadable: Array<[number, number]>;
}

/**
 * Which instruction is judged: a function's ftrace site, the ENDBR64 before one (found
 * overwritten), the first instruction of a function ftrace does not know, or the one after a site.
 */
type EntryRole = 'ftrace-site' | 'overwritten-pad' | 'entry' | 'after-site';
/** Legacy prefixes (segment, operand and address size, lock, rep) that may precede an opcode. */
const LEGACY_PREFIXES = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]);
const isRex = (byte: number) => (byte & 0xf0) === 0x40;
const isRexW = (byte: number) => (byte & 0xf8) === 0x48;
/** An x86 instruction is at most 15 bytes: a decoder gives up on more prefixes than that. */
const MAX_INSTRUCTION_LENGTH = 15;
/** One-byte opcodes of what an entry is judged by: call/jmp rel, int3, push imm, jmp/call r/m. */
const JUDGED_OPCODES = new Set([0xe8, 0xe9, 0xeb, 0xcc, 0x68, 0x6a, 0xff]);
/** First bytes of the instructions hooks are made of: those opcodes unprefixed, or the REX.W of a movabs. */
const HOOK_OPENERS = new Set([...JUDGED_OPCODES, 0x48, 0x49]);

/** What an entry does, before it is judged against the function's ftrace site and owner. */
interface EntryShape {
  readonly kind: 'ftrace-nop' | 'branch' | 'absolute-jump' | 'push-ret' | 'indirect-jump' | 'int3' | 'other';
  readonly length: number;
  /** Instructions decoded into the judge's two Instruction slots (0 for the ftrace NOP, recognised by its bytes). */
  readonly decoded: 0 | 1 | 2;
  readonly call: boolean;
  readonly target: bigint | undefined;
}

/** The kernel's own ftrace trampolines (`ftrace_caller`, `ftrace_regs_caller`), those this kernel has. */
export function kernelFtraceTrampolines(reader: KernelReader): bigint[] {
  return FTRACE_CALLERS.flatMap((name) => reader.profile.symbol(name) ?? []);
}

/**
 * Judge the entry of every kernel function (kallsyms text symbols inside `_stext`..`_etext`) and
 * every module function (each module's own kallsyms, listed and hidden modules both). After an
 * optional ENDBR64 the kernel's dyn_ftrace records say whether the first instruction is an ftrace
 * site: one must hold the ftrace NOP or a call into a trampoline the ftrace state accounts for.
 * Elsewhere an entry may legitimately branch (thunks, static-call trampolines, return thunks),
 * but not out of kernel text (or, for a module function, out of kernel text and its own module),
 * and never by `movabs`+`jmp reg`, `push`+`ret`, `jmp [mem]` or an int3 no kprobe accounts for.
 */
export function checkFunctionEntries(
  reader: KernelReader,
  owners: CodeOwners,
  modules: readonly ModuleInfo[],
  options: FunctionEntryOptions,
): FunctionEntryScan {
  const problems: string[] = [];
  const ftrace = options.ftraceRecords ?? readFtraceRecords(reader);
  problems.push(...ftrace.problems);
  const judge = new EntryJudge(
    reader,
    owners,
    ftrace.records.map((record) => record.ip),
    options,
  );
  try {
    const checked =
      checkKernel(reader, judge, problems) +
      modules.reduce((total, module) => total + checkModule(reader, judge, module, problems), 0);
    return { findings: judge.findings, checked, problems };
  } finally {
    judge.free();
  }
}

/**
 * The last verdict on a kernel's text, per profile: a live monitor judges the same kernel every
 * few seconds, and while the text, the ftrace sites and what the ftrace and kprobe state account
 * for are byte for byte the same, so is the verdict. Kept only for a judgement of text read
 * whole that found nothing and read no memory outside the text (a pointer a jump goes through, a
 * static call's key): then nothing else could change it.
 */
interface KernelTextVerdict {
  readonly text: ReadRange;
  readonly ftraceSites: readonly bigint[];
  readonly accountedTargets: ReadonlySet<bigint>;
  readonly accountedBreakpoints: ReadonlySet<bigint> | undefined;
  readonly checked: number;
}
const kernelTextVerdicts = new WeakMap<Profile, KernelTextVerdict>();

/** The kernel's functions (kallsyms text symbols inside `_stext`..`_etext`), once per profile. */
const kernelFunctionsByProfile = new WeakMap<Profile, readonly FunctionSymbol[]>();

function kernelFunctions(profile: Profile, textStart: bigint, textEnd: bigint): readonly FunctionSymbol[] {
  let functions = kernelFunctionsByProfile.get(profile);
  if (!functions) {
    functions = uniqueByAddress(
      profile.symbolsBetween(textStart, textEnd).filter((symbol) => TEXT_SYMBOL_TYPES.has(symbol.type ?? '')),
    );
    kernelFunctionsByProfile.set(profile, functions);
  }
  return functions;
}

function checkKernel(reader: KernelReader, judge: EntryJudge, problems: string[]): number {
  const { profile } = reader;
  const textStart = profile.requireSymbol('_stext');
  const textEnd = profile.requireSymbol('_etext');
  const last = kernelTextVerdicts.get(profile);
  if (last && judge.judgesAsBefore(last) && stillReads(reader, last.text)) return last.checked;
  kernelTextVerdicts.delete(profile);
  const text = readRange(reader, textStart, Number(textEnd - textStart));
  reportUnreadable(text, 'kernel text', problems);
  const findingsBefore = judge.findings.length;
  judge.readMemory = false;
  const checked = judge.checkAll(
    text,
    kernelFunctions(profile, textStart, textEnd),
    'kernel',
    (address) => profile.symbolAfter(address)?.address ?? textEnd,
  );
  if (judge.findings.length === findingsBefore && !judge.readMemory && text.unreadable.length === 0)
    kernelTextVerdicts.set(profile, { text, checked, ...judge.inputs });
  return checked;
}

/** Whether memory still holds `range`'s bytes, all readable; compared a chunk at a time (no second copy of kernel text). */
function stillReads(reader: KernelReader, range: ReadRange): boolean {
  const chunk = new Uint8Array(Math.min(READ_CHUNK, range.bytes.length));
  for (let from = 0; from < range.bytes.length; from += chunk.length) {
    const now = chunk.subarray(0, Math.min(chunk.length, range.bytes.length - from));
    try {
      reader.space.read(range.base + BigInt(from), now);
    } catch (error) {
      if (error instanceof VmscopeError) return false;
      throw error;
    }
    if (!Buffer.from(now.buffer, now.byteOffset, now.length).equals(range.bytes.subarray(from, from + now.length)))
      return false;
  }
  return true;
}

const sameSet = <T>(a: ReadonlySet<T> | undefined, b: ReadonlySet<T> | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.size === b.size && [...a].every((value) => b.has(value)));

/** The module's functions, region by region (its sizes are guest data: a forged one is a problem, not an allocation). */
function checkModule(reader: KernelReader, judge: EntryJudge, module: ModuleInfo, problems: string[]): number {
  let functions: FunctionSymbol[];
  try {
    functions = moduleFunctions(reader, module);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`module ${module.name}: its symbol table is unreadable: ${error.message}`);
    return 0;
  }
  let checked = 0;
  for (const region of module.regions) {
    const end = region.base + BigInt(region.size);
    const inRegion = functions.filter((symbol) => symbol.address >= region.base && symbol.address < end);
    if (inRegion.length === 0) continue;
    if (region.size > MAX_MODULE_REGION) {
      problems.push(
        `module ${module.name}: a region of ${region.size} bytes at ${hex(region.base)} is larger than any module's; its functions are not checked`,
      );
      continue;
    }
    const bytes = readRange(reader, region.base, region.size);
    checked += judge.checkAll(
      bytes,
      inRegion,
      module.name,
      (address) => inRegion.find((other) => other.address > address)?.address ?? end,
    );
    reportUnreadable(bytes, `module ${module.name} memory`, problems);
  }
  return checked;
}

/**
 * Aliases share an address: judge each entry once, under its global name when it has one (else
 * its first). `symbols` are in address order (aliases in list order), as symbolsBetween gives them.
 */
function uniqueByAddress(
  symbols: ReadonlyArray<{ name: string; address: bigint; type: string | undefined }>,
): FunctionSymbol[] {
  const unique: FunctionSymbol[] = [];
  for (let first = 0; first < symbols.length;) {
    const { address } = symbols[first]!;
    let chosen = symbols[first]!;
    let next = first + 1;
    for (; next < symbols.length && symbols[next]!.address === address; next++)
      if (isLocalType(chosen.type) && !isLocalType(symbols[next]!.type)) chosen = symbols[next]!;
    unique.push(chosen);
    first = next;
  }
  return unique;
}

const isLocalType = (type: string | undefined) => type !== undefined && type === type.toLowerCase();

/** Read [base, base+length) in big chunks; a chunk that fails is read page by page, and unreadable pages stay zero. */
function readRange(reader: KernelReader, base: bigint, length: number): ReadRange {
  const bytes = new Uint8Array(length);
  const unreadable: Array<[number, number]> = [];
  const attempt = (from: number, to: number): boolean => {
    try {
      reader.space.read(base + BigInt(from), bytes.subarray(from, to));
      return true;
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      return false;
    }
  };
  for (let chunk = 0; chunk < length; chunk += READ_CHUNK) {
    const chunkEnd = Math.min(length, chunk + READ_CHUNK);
    if (attempt(chunk, chunkEnd)) continue;
    for (let from = chunk; from < chunkEnd;) {
      const pageEnd = Math.min(chunkEnd, from + PAGE_SIZE - Number((base + BigInt(from)) % BigInt(PAGE_SIZE)));
      if (!attempt(from, pageEnd)) unreadable.push([from, pageEnd]);
      from = pageEnd;
    }
  }
  return { base, bytes, unreadable };
}

function overlapsUnreadable(range: ReadRange, from: number, to: number): boolean {
  return range.unreadable.some(([start, end]) => from < end && to > start);
}

function reportUnreadable(range: ReadRange, what: string, problems: string[]): void {
  if (range.unreadable.length === 0) return;
  const bytes = range.unreadable.reduce((total, [start, end]) => total + end - start, 0);
  problems.push(
    `${what}: ${bytes} bytes from ${hex(range.base + BigInt(range.unreadable[0]![0]))} are unreadable; function entries there are not checked`,
  );
}

/** An ENDBR64, or the NOP the kernel sealed one with: either way the ftrace site follows. */
const isLandingPad = (bytes: Uint8Array, at: number) =>
  hasBytes(bytes, at, ENDBR64) || hasBytes(bytes, at, SEALED_ENDBR64);
function hasBytes(bytes: Uint8Array, at: number, expected: readonly number[]): boolean {
  for (let index = 0; index < expected.length; index++) if (bytes[at + index] !== expected[index]) return false;
  return true;
}
const hexBytes = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/**
 * Whether the instruction at `at` may be one an entry is judged by (decode() tells it from
 * 'other'): its opcode, past any prefixes, is a branch, an int3, a push imm or a jmp/call r/m, or
 * a `movabs` (B8+r right after a REX.W). Most entries (a mov, a push of a register) are none of
 * these and are passed over without decoding them: decoding is most of the judge's time.
 */
function mayBeJudged(bytes: Uint8Array, at: number): boolean {
  let opcode = at;
  while (opcode - at < MAX_INSTRUCTION_LENGTH && opcode < bytes.length) {
    const byte = bytes[opcode]!;
    if (!LEGACY_PREFIXES.has(byte) && !isRex(byte)) break;
    opcode++;
  }
  const byte = bytes[opcode];
  // Code cut short by the end of the range is left to the decoder, as everything else it might be.
  if (byte === undefined) return true;
  return JUDGED_OPCODES.has(byte) || ((byte & 0xf8) === 0xb8 && opcode > at && isRexW(bytes[opcode - 1]!));
}

/**
 * Offsets into a range, a bit each: a hundred thousand entries looked up in a Set of numbers
 * (or, worse, of bigints) cost several times more.
 */
class OffsetSet {
  private readonly bits: Uint32Array;

  constructor(private readonly length: number) {
    this.bits = new Uint32Array((length >>> 5) + 1);
  }

  add(offset: number): void {
    this.bits[offset >>> 5]! |= 1 << (offset & 31);
  }

  has(offset: number): boolean {
    return offset >= 0 && offset < this.length && (this.bits[offset >>> 5]! & (1 << (offset & 31))) !== 0;
  }
}

/** Bytes of code the decoder holds at a time. */
const DECODE_WINDOW = 1 << 16;

/**
 * iced-x86's decoder copies the code it decodes into WASM memory, which never shrinks: it is
 * given a window of the code at a time (entries come in address order), not all of kernel text.
 */
class WindowedDecoder {
  private window: { readonly decoder: Decoder; readonly start: number; readonly end: number } | undefined;

  constructor(
    private readonly iced: ReturnType<typeof icedX86>,
    private readonly bytes: Uint8Array,
  ) {}

  /** The decoder, at `offset` of the code (which is at `address`), with at least an entry's worth of bytes after it. */
  at(offset: number, address: bigint): Decoder {
    let window = this.window;
    if (!window || offset < window.start || (offset + ENTRY_WINDOW > window.end && window.end < this.bytes.length)) {
      window?.decoder.free();
      const end = Math.min(this.bytes.length, offset + DECODE_WINDOW);
      const code = this.bytes.subarray(offset, end);
      window = this.window = {
        decoder: new this.iced.Decoder(64, code, this.iced.DecoderOptions.None),
        start: offset,
        end,
      };
    }
    window.decoder.position = offset - window.start;
    window.decoder.ip = address;
    return window.decoder;
  }

  free(): void {
    this.window?.decoder.free();
  }
}

/** Decodes entries with iced-x86 and judges each against the ftrace records, the owners and the kernel's static calls. */
class EntryJudge {
  readonly findings: FunctionEntryFinding[] = [];
  private readonly iced = icedX86();
  private readonly instruction = new this.iced.Instruction();
  private readonly second = new this.iced.Instruction();
  /** Made for the first finding: most kernels have few, and a formatter costs milliseconds to make. */
  private formatterMade: IcedX86.Formatter | undefined;
  private readonly initText: { start: bigint; end: bigint } | undefined;
  /** Set when a judgement read memory outside the code it judged (its verdict then depends on more than the code). */
  readMemory = false;

  constructor(
    private readonly reader: KernelReader,
    private readonly owners: CodeOwners,
    private readonly ftraceSites: readonly bigint[],
    private readonly options: FunctionEntryOptions,
  ) {
    const [start, end] = [reader.profile.symbol('_sinittext'), reader.profile.symbol('_einittext')];
    this.initText = start !== undefined && end !== undefined ? { start, end } : undefined;
  }

  /** What every verdict depends on besides the code judged and the profile. */
  get inputs(): Omit<KernelTextVerdict, 'text' | 'checked'> {
    const { accountedTargets, accountedBreakpoints } = this.options;
    return { ftraceSites: this.ftraceSites, accountedTargets, accountedBreakpoints };
  }

  /** Whether this judge would judge code as the one that made `verdict` did. */
  judgesAsBefore(verdict: KernelTextVerdict): boolean {
    return (
      verdict.ftraceSites.length === this.ftraceSites.length &&
      verdict.ftraceSites.every((ip, index) => this.ftraceSites[index] === ip) &&
      sameSet(verdict.accountedTargets, this.options.accountedTargets) &&
      sameSet(verdict.accountedBreakpoints, this.options.accountedBreakpoints)
    );
  }

  /** Judge every function of `functions` (inside `range`); `nextSymbol` bounds padding checks. Returns how many were read. */
  checkAll(
    range: ReadRange,
    functions: readonly FunctionSymbol[],
    owner: string,
    nextSymbol: (address: bigint) => bigint,
  ): number {
    const decoder = new WindowedDecoder(this.iced, range.bytes);
    const { base, bytes } = range;
    const end = base + BigInt(bytes.length);
    const sites = new OffsetSet(bytes.length);
    for (const ip of this.ftraceSites) if (ip >= base && ip < end) sites.add(Number(ip - base));
    const entries = functions.map((symbol) => Number(symbol.address - base));
    // A record 4 bytes past an entry is that function's site only when no other function starts there.
    const starts = new OffsetSet(bytes.length);
    for (const entry of entries) starts.add(entry);
    let checked = 0;
    try {
      for (let index = 0; index < functions.length; index++) {
        const symbol = functions[index]!;
        const entry = entries[index]!;
        if (overlapsUnreadable(range, entry, entry + ENTRY_WINDOW)) continue;
        checked++;
        const landingPad = isLandingPad(bytes, entry);
        const site = sites.has(entry)
          ? 'entry'
          : sites.has(entry + LANDING_PAD_LENGTH) && !starts.has(entry + LANDING_PAD_LENGTH)
            ? 'after-pad'
            : undefined;
        // Where the record is, or (no record) past a landing pad: the first instruction of the body.
        const siteOffset = site === 'entry' || !landingPad ? entry : entry + LANDING_PAD_LENGTH;
        if (site === 'after-pad' && !landingPad) {
          this.inspect(decoder, range, symbol, entry, owner, 'overwritten-pad', nextSymbol);
          continue;
        }
        if (!site) {
          if (mayBeJudged(bytes, siteOffset))
            this.inspect(decoder, range, symbol, siteOffset, owner, 'entry', nextSymbol);
          continue;
        }
        // The common case is decided without decoding: the ftrace NOP where the kernel's record says the site is.
        if (
          !hasBytes(bytes, siteOffset, FTRACE_NOP) &&
          this.inspect(decoder, range, symbol, siteOffset, owner, 'ftrace-site', nextSymbol)?.suspicious !== false
        )
          continue;
        // Hooks that leave the site alone patch the instruction after it; only likely openers are decoded.
        const afterSite = siteOffset + FTRACE_NOP.length;
        if (HOOK_OPENERS.has(bytes[afterSite] ?? -1) && mayBeJudged(bytes, afterSite))
          this.inspect(decoder, range, symbol, afterSite, owner, 'after-site', nextSymbol);
      }
    } finally {
      decoder.free();
    }
    return checked;
  }

  free(): void {
    this.instruction.free();
    this.second.free();
    this.formatterMade?.free();
  }

  private get formatter(): IcedX86.Formatter {
    if (!this.formatterMade) {
      const formatter = new this.iced.Formatter(this.iced.FormatterSyntax.Intel);
      formatter.uppercaseHex = false;
      formatter.hexPrefix = '0x';
      formatter.hexSuffix = '';
      formatter.spaceAfterOperandSeparator = true;
      this.formatterMade = formatter;
    }
    return this.formatterMade;
  }

  /** Decode the instruction at `offset` and judge it for its role; a finding (kept in `findings`) when it is traced or hooked. */
  private inspect(
    decoder: WindowedDecoder,
    range: ReadRange,
    symbol: FunctionSymbol,
    offset: number,
    owner: string,
    role: EntryRole,
    nextSymbol: (address: bigint) => bigint,
  ): FunctionEntryFinding | undefined {
    const { bytes } = range;
    const patchAt = range.base + BigInt(offset);
    const shape = this.decode(decoder, bytes, offset, patchAt);
    let verdict: { suspicious: boolean; evidence: string } | undefined;
    if (role === 'overwritten-pad')
      verdict = {
        suspicious: true,
        evidence: `the ENDBR64 before the ftrace site is overwritten with ${this.quote(shape)}`,
      };
    else if (role === 'ftrace-site')
      verdict = shape.kind === 'ftrace-nop' ? undefined : this.judgeFtraceSite(shape, patchAt);
    else
      verdict = this.judgeOtherEntry(
        shape,
        symbol,
        owner,
        bytes,
        offset,
        range.base,
        nextSymbol,
        role === 'entry' ? 'entry' : 'the instruction after the ftrace site',
      );
    if (!verdict) return undefined;
    const location = shape.target === undefined ? undefined : this.owners.resolve(shape.target);
    const finding: FunctionEntryFinding = {
      function: symbol.name,
      address: symbol.address,
      functionOwner: owner,
      patchAt,
      bytes: hexBytes(bytes.subarray(offset, offset + shape.length)),
      instruction: this.text(shape),
      ftraceSite: role === 'ftrace-site' || role === 'overwritten-pad',
      target: shape.target,
      targetSymbol: location?.symbol,
      targetOwner: location?.owner,
      suspicious: verdict.suspicious,
      evidence: verdict.evidence,
    };
    this.findings.push(finding);
    return finding;
  }

  /** An ftrace site holds the NOP or a call into an accounted trampoline; anything else was written by someone else. */
  private judgeFtraceSite(shape: EntryShape, patchAt: bigint): { suspicious: boolean; evidence: string } {
    if (
      shape.kind === 'branch' &&
      shape.call &&
      shape.target !== undefined &&
      this.options.accountedTargets.has(shape.target)
    ) {
      return {
        suspicious: false,
        evidence: `traced by ftrace: the site calls ${this.describe(shape.target)}, a trampoline the ftrace state accounts for`,
      };
    }
    if (shape.kind === 'int3' && this.options.accountedBreakpoints?.has(patchAt)) {
      return { suspicious: false, evidence: 'an int3 placed by a registered kprobe' };
    }
    return {
      suspicious: true,
      evidence: `ftrace site holds ${this.quote(shape)} instead of the ftrace NOP or a call into an accounted ftrace trampoline`,
    };
  }

  /** Entries that are not ftrace sites may branch within kernel text (or their own module), never out of it. */
  private judgeOtherEntry(
    shape: EntryShape,
    symbol: FunctionSymbol,
    owner: string,
    bytes: Uint8Array,
    offset: number,
    base: bigint,
    nextSymbol: (address: bigint) => bigint,
    subject: string,
  ): { suspicious: boolean; evidence: string } | undefined {
    switch (shape.kind) {
      case 'ftrace-nop':
      case 'other':
        return undefined;
      case 'branch': {
        const target = shape.target!;
        if (this.isKernelCode(target)) return undefined;
        if (owner !== 'kernel' && this.owners.moduleAt(target)?.name === owner) return undefined;
        if (this.isStaticCall(symbol, target)) return undefined;
        return {
          suspicious: true,
          evidence: `${subject} ${shape.call ? 'calls' : 'jumps to'} ${this.describe(target)}, outside ${owner === 'kernel' ? 'kernel text' : `kernel text and ${owner}`}`,
        };
      }
      case 'int3': {
        // Labels inside code share the text symbol types: a speculation trap after `sysretq` is an
        // int3 at `entry_SYSRETQ_end`. Only an entry laid out as a function start (an ENDBR64, or
        // padding before it) is one a breakpoint hooks; padding itself (int3 up to the next symbol) is none.
        const functionStart =
          isLandingPad(bytes, Number(symbol.address - base)) ||
          PADDING_BYTES.has(bytes[Number(symbol.address - base) - 1] ?? -1);
        const paddingEnd = Math.min(Number(nextSymbol(symbol.address) - base), offset + PADDING_WINDOW, bytes.length);
        if (!functionStart || bytes.subarray(offset, paddingEnd).every((byte) => byte === INT3)) return undefined;
        if (this.options.accountedBreakpoints?.has(base + BigInt(offset)))
          return { suspicious: false, evidence: 'an int3 placed by a registered kprobe' };
        return { suspicious: true, evidence: `${subject} is an int3 that no registered kprobe accounts for` };
      }
      case 'absolute-jump':
        return {
          suspicious: true,
          evidence: `${subject} loads ${this.describe(shape.target!)} into a register and jumps there`,
        };
      case 'push-ret':
        return { suspicious: true, evidence: `${subject} pushes ${this.describe(shape.target!)} and returns to it` };
      case 'indirect-jump':
        return {
          suspicious: true,
          evidence: `${subject} jumps through a pointer${shape.target === undefined ? '' : ` to ${this.describe(shape.target)}`}`,
        };
    }
  }

  /** Kernel text, or its init text: code calling __init functions (marked __ref) keeps those calls after boot frees them. */
  private isKernelCode(address: bigint): boolean {
    return (
      this.owners.inKernelText(address) ||
      (this.initText !== undefined && address >= this.initText.start && address < this.initText.end)
    );
  }

  /** A static-call trampoline jumps to whatever its key's `func` says, module code included. */
  private isStaticCall(symbol: FunctionSymbol, target: bigint): boolean {
    if (!symbol.name.startsWith(STATIC_CALL_TRAMPOLINE)) return false;
    const key = this.reader.profile.symbol(STATIC_CALL_KEY + symbol.name.slice(STATIC_CALL_TRAMPOLINE.length));
    if (key === undefined || !this.reader.profile.hasField('static_call_key', 'func')) return false;
    this.readMemory = true;
    try {
      return this.reader.pointerField(key, 'static_call_key', 'func') === target;
    } catch (error) {
      if (error instanceof VmscopeError) return false;
      throw error;
    }
  }

  /** The decoded instruction(s) as text; formatted only for findings (most entries never need it). */
  private text(shape: EntryShape): string {
    if (shape.decoded === 0) return 'nop (ftrace)';
    const first = this.formatter.format(this.instruction);
    return shape.decoded === 1 ? first : `${first}; ${this.formatter.format(this.second)}`;
  }

  /** The instruction as text, and where it leads when it says. */
  private quote(shape: EntryShape): string {
    return shape.target === undefined
      ? `\`${this.text(shape)}\``
      : `\`${this.text(shape)}\` to ${this.describe(shape.target)}`;
  }

  private describe(address: bigint): string {
    const location = this.owners.resolve(address);
    return `${hex(address)}${location.symbol ? ` (${location.symbol})` : ''} in ${location.owner === 'kernel' ? 'kernel text' : location.owner === 'unknown' ? 'memory no module owns' : `module ${location.owner}`}`;
  }

  private decode(windowed: WindowedDecoder, bytes: Uint8Array, offset: number, address: bigint): EntryShape {
    if (hasBytes(bytes, offset, FTRACE_NOP))
      return { kind: 'ftrace-nop', length: FTRACE_NOP.length, decoded: 0, call: false, target: undefined };
    const { Code, Mnemonic, OpKind } = this.iced;
    const first = this.instruction;
    const decoder = windowed.at(offset, address);
    decoder.decodeOut(first);
    switch (first.code) {
      case Code.Call_rel32_64:
      case Code.Jmp_rel32_64:
      case Code.Jmp_rel8_64:
        return {
          kind: 'branch',
          length: first.length,
          decoded: 1,
          call: first.code === Code.Call_rel32_64,
          target: first.nearBranchTarget,
        };
      case Code.Int3:
        return { kind: 'int3', length: first.length, decoded: 1, call: false, target: undefined };
      case Code.Jmp_rm64:
      case Code.Call_rm64:
        if (first.op0Kind === OpKind.Memory)
          return {
            kind: 'indirect-jump',
            length: first.length,
            decoded: 1,
            call: first.code === Code.Call_rm64,
            target: this.pointerTarget(first),
          };
        return { kind: 'other', length: first.length, decoded: 1, call: false, target: undefined };
      case Code.Mov_r64_imm64:
      case Code.Pushq_imm32:
      case Code.Pushq_imm8: {
        const second = this.second;
        decoder.decodeOut(second);
        const length = first.length + second.length;
        if (
          first.code === Code.Mov_r64_imm64 &&
          (second.code === Code.Jmp_rm64 || second.code === Code.Call_rm64) &&
          second.op0Kind === OpKind.Register &&
          second.op0Register === first.op0Register
        ) {
          return {
            kind: 'absolute-jump',
            length,
            decoded: 2,
            call: second.code === Code.Call_rm64,
            target: first.immediate64,
          };
        }
        if (first.code !== Code.Mov_r64_imm64 && second.mnemonic === Mnemonic.Ret) {
          return { kind: 'push-ret', length, decoded: 2, call: false, target: BigInt.asUintN(64, first.immediate(0)) };
        }
        return { kind: 'other', length: first.length, decoded: 1, call: false, target: undefined };
      }
      default:
        return { kind: 'other', length: first.length, decoded: 1, call: false, target: undefined };
    }
  }

  /** `jmp [rip+disp]`: the pointer it jumps through, when that is RIP-relative and readable. */
  private pointerTarget(instruction: Instruction): bigint | undefined {
    if (instruction.memoryBase !== this.iced.Register.RIP) return undefined;
    this.readMemory = true;
    try {
      return this.reader.u64(instruction.ipRelMemoryAddress);
    } catch (error) {
      if (error instanceof VmscopeError) return undefined;
      throw error;
    }
  }
}
