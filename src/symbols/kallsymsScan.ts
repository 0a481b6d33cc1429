import type { X86AddressSpace } from '../space/x86.js';
import { VmscopeError } from '../util/errors.js';
import { hex } from '../util/hex.js';
import type { KallsymsLocation } from './kallsyms.js';
import {
  MAX_NAMES_BYTES,
  MAX_SYMBOLS,
  MAX_TOKEN_TABLE_BYTES,
  MIN_NAME_ENTRY_BYTES,
  nextNameEntry,
  readRegion,
  relativeAddresses,
  TABLE_ALIGNMENTS,
  TOKEN_COUNT,
  TOKEN_INDEX_BYTES,
  type AddressTable,
  type TableAlignment,
} from './kallsymsTables.js';

/**
 * Finding the kallsyms tables in a kernel image without symbols (kernels before 6.0 do not name
 * them in VMCOREINFO). scripts/kallsyms.c gives every character that occurs in a name a
 * one-character token at its own code, so the tokens "0" … "9" sit back to back at indices
 * 48–57 of the token table: that 20-byte run anchors the search. Everything around it is then
 * proved rather than assumed at fixed distances, for labels aligned to 8 bytes (up to 6.19),
 * then to 4 (7.0+):
 *
 * - kallsyms_token_index is the aligned array after the anchor whose 256 offsets walk the
 *   token table exactly, token after token, to its aligned end;
 * - kallsyms_names is the aligned stream before the token table, preceded by
 *   kallsyms_num_syms = N, whose N entries end where kallsyms_markers starts, with
 *   markers[k] = the offset of entry 256·k; between the markers and the token table there is
 *   nothing (6.4+) or kallsyms_seqs_of_names, 3 bytes a symbol (6.2–6.3, and 6.1 as Debian ships it);
 * - the addresses are in kallsyms_offsets + kallsyms_relative_base either before
 *   kallsyms_num_syms (up to 6.3) or after kallsyms_token_index (6.4+), in kallsyms_offsets alone
 *   after kallsyms_token_index (7.0+), or in kallsyms_addresses before kallsyms_num_syms
 *   (!KALLSYMS_BASE_RELATIVE): the candidate whose values are sorted (but for a few tampered
 *   entries) and whose first kernel address the page tables map.
 */
const DIGIT_TOKENS = Buffer.from('0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00', 'latin1');
const FIRST_DIGIT_TOKEN = 0x30;
const SCAN_CHUNK_BYTES = 4 << 20;
const PAGE_BYTES = 4096;
/** How far before the token table kallsyms_num_syms can be: names, markers (u64 at most) and kallsyms_seqs_of_names. */
const MAX_NAMES_TO_TOKENS = 8 + MAX_NAMES_BYTES + 8 * Math.ceil(MAX_SYMBOLS / 256) + 3 * MAX_SYMBOLS + 3 * 8;
/** Names take 1–3 MiB in real kernels: look there first, then widen. */
const FIRST_NAMES_WINDOW = 4 << 20;
/** Markers are u32 (`.long`) in recent kernels, pointer-sized (`PTR`) in older ones. */
const MARKER_WIDTHS = [4, 8] as const;
const SYMBOLS_PER_MARKER = 256;
const KERNEL_HALF = 1n << 63n;
/** Address tables may have this fraction of entries below their predecessor (tampering) and still count as sorted. */
const MAX_DESCENT_FRACTION = 0.01;
const REPORTED_MISSES = 4;
/**
 * Work bounds against planted decoys: a digit run that indexes no token table costs about as
 * much as reading 128 KiB, a token table with no names before it up to an 80 MiB backward
 * search. A real kernel has exactly one of each.
 */
const MAX_DIGIT_RUNS = 1024;
const MAX_TOKEN_TABLES = 8;
/** Token offsets are u16: the table starts at most this far before its token "0". */
const TOKEN_OFFSET_RANGE = 0x10000n;

interface Span {
  readonly start: bigint;
  end: bigint;
}

interface TokenTables {
  readonly tokenTable: bigint;
  readonly tokenIndex: bigint;
}

interface NamesTables {
  readonly numSyms: bigint;
  readonly names: bigint;
  readonly markers: bigint;
  readonly count: number;
}

type AddressTables = Pick<KallsymsLocation, 'offsets' | 'relativeBase' | 'addresses'>;

/** Digit runs so far that index a token table (each costs up to two names searches). */
interface ScanBudget {
  tokenTables: number;
}

/** Locate the kallsyms tables in the mapped part of [searchFrom, searchTo) of the kernel's address space. */
export function findKallsyms(space: X86AddressSpace, searchFrom: bigint, searchTo: bigint): KallsymsLocation {
  const misses: string[] = [];
  const budget: ScanBudget = { tokenTables: 0 };
  let runs = 0;
  scan: for (const span of mappedSpans(space, searchFrom, searchTo)) {
    for (const anchor of digitTokenRuns(space, span)) {
      runs += 1;
      const found = locationAround(space, span, anchor, budget);
      if (typeof found !== 'string') return found;
      if (misses.length < REPORTED_MISSES) misses.push(`${hex(anchor)}: ${found}`);
      if (runs >= MAX_DIGIT_RUNS || budget.tokenTables >= MAX_TOKEN_TABLES) {
        misses.push(`gave up after ${runs} digit runs and ${budget.tokenTables} token tables`);
        break scan;
      }
    }
  }
  const why =
    runs === 0
      ? 'no run of the tokens "0" to "9" (a kallsyms token table) is mapped there'
      : `${runs} run(s) of the tokens "0" to "9" rejected: ${misses.join('; ')}`;
  throw new VmscopeError(
    'NO_PROFILE',
    `no kallsyms tables in ${hex(searchFrom)}–${hex(searchTo)}: ${why}`,
    space.image.path,
    searchFrom,
  );
}

/** Tables around one digit run, for either label alignment; the budget counts runs that index a token table. */
function locationAround(
  space: X86AddressSpace,
  span: Span,
  anchor: bigint,
  budget: ScanBudget,
): KallsymsLocation | string {
  const misses = new Set<string>();
  let indexed = false;
  for (const alignment of TABLE_ALIGNMENTS) {
    const tokens = tokenTablesAround(space, span, anchor, alignment);
    if (!tokens) {
      misses.add('no kallsyms_token_index after it walks a token table holding it');
      continue;
    }
    indexed = true;
    const found = tablesBeforeAndAfter(space, span, tokens, alignment);
    if (typeof found !== 'string') return found;
    misses.add(found);
  }
  if (indexed) budget.tokenTables += 1;
  return [...misses].join('; or ');
}

function tablesBeforeAndAfter(
  space: X86AddressSpace,
  span: Span,
  tokens: TokenTables,
  alignment: TableAlignment,
): KallsymsLocation | string {
  const names = namesBefore(space, span, tokens.tokenTable, alignment);
  if (!names)
    return `no kallsyms_num_syms and kallsyms_names before the token table at ${hex(tokens.tokenTable)} end at consistent kallsyms_markers`;
  const addresses = addressTables(space, tokens, names, alignment);
  if (!addresses)
    return `kallsyms_names at ${hex(names.names)} checks out, but no kallsyms_offsets or kallsyms_addresses beside it holds sorted, mapped addresses`;
  return {
    names: names.names,
    numSyms: names.numSyms,
    markers: names.markers,
    tokenTable: tokens.tokenTable,
    tokenIndex: tokens.tokenIndex,
    ...addresses,
  };
}

/** Mapped virtual ranges clipped to [from, to), runs that touch merged: tables may straddle pages of different permissions. */
function mappedSpans(space: X86AddressSpace, from: bigint, to: bigint): Span[] {
  const spans: Span[] = [];
  for (const run of space.mappings(from, to)) {
    const start = run.virtual < from ? from : run.virtual;
    const runEnd = run.virtual + BigInt(run.length);
    const end = runEnd > to ? to : runEnd;
    const last = spans[spans.length - 1];
    if (last && last.end === start) last.end = end;
    else spans.push({ start, end });
  }
  return spans;
}

/** Every start of DIGIT_TOKENS in the span; chunks overlap so that no run across a chunk edge is missed. */
function* digitTokenRuns(space: X86AddressSpace, span: Span): Generator<bigint> {
  const chunk = Buffer.alloc(SCAN_CHUNK_BYTES);
  const overlap = DIGIT_TOKENS.length - 1;
  for (let at = span.start; ;) {
    const remaining = span.end - at;
    const data = readMapped(
      space,
      at,
      chunk.subarray(0, remaining < BigInt(chunk.length) ? Number(remaining) : chunk.length),
    );
    // A run found here ends inside this chunk, so it starts before the next chunk does: none is reported twice.
    for (let hit = data.indexOf(DIGIT_TOKENS); hit >= 0; hit = data.indexOf(DIGIT_TOKENS, hit + 1))
      yield at + BigInt(hit);
    if (at + BigInt(data.length) >= span.end) return;
    at += BigInt(data.length - overlap);
  }
}

/**
 * The token table holding the digit run at `anchor` and the index after it. Token 48 ("0") lies
 * at `anchor`, so a candidate index gives the table's start; the index must then walk the whole
 * table, each token starting right after the previous NUL, up to the index's own aligned start.
 */
function tokenTablesAround(
  space: X86AddressSpace,
  span: Span,
  anchor: bigint,
  alignment: TableAlignment,
): TokenTables | undefined {
  const lowest = anchor - TOKEN_OFFSET_RANGE > span.start ? anchor - TOKEN_OFFSET_RANGE : span.start;
  const windowStart = alignUpAddress(lowest, alignment);
  const highest = anchor + BigInt(MAX_TOKEN_TABLE_BYTES + TOKEN_INDEX_BYTES);
  const windowEnd = highest < span.end ? highest : span.end;
  if (windowEnd <= windowStart) return undefined;
  const bytes = readMapped(space, windowStart, new Uint8Array(Number(windowEnd - windowStart)));
  const view = new DataView(bytes.buffer);
  const anchorAt = Number(anchor - windowStart);
  for (
    let index = alignUp(anchorAt + DIGIT_TOKENS.length, alignment);
    index + TOKEN_INDEX_BYTES <= bytes.length;
    index += alignment
  ) {
    if (view.getUint16(index, true) !== 0) continue;
    const table = anchorAt - view.getUint16(index + 2 * FIRST_DIGIT_TOKEN, true);
    if (table < 0 || table % alignment !== 0) continue;
    if (indexWalksTable(bytes.subarray(table, index), view, index, alignment)) {
      return { tokenTable: windowStart + BigInt(table), tokenIndex: windowStart + BigInt(index) };
    }
  }
  return undefined;
}

function indexWalksTable(table: Uint8Array, view: DataView, index: number, alignment: TableAlignment): boolean {
  let next = 0;
  for (let token = 0; token < TOKEN_COUNT; token++) {
    if (view.getUint16(index + 2 * token, true) !== next) return false;
    const end = table.indexOf(0, next);
    if (end <= next) return false;
    next = end + 1;
  }
  return alignUp(next, alignment) === table.length;
}

/**
 * kallsyms_num_syms and kallsyms_names: the aligned slot before the token table whose count N
 * (a u32, zero-padded to 8 bytes or a u64 when labels are 8-aligned) is followed by exactly N
 * name entries ending at kallsyms_markers, which sits where the token table's start, N and the
 * marker width put it.
 */
function namesBefore(
  space: X86AddressSpace,
  span: Span,
  tokenTable: bigint,
  alignment: TableAlignment,
): NamesTables | undefined {
  const spanStart = alignUpAddress(span.start, alignment);
  let checkedFrom = tokenTable;
  for (let windowBytes = FIRST_NAMES_WINDOW; ; windowBytes *= 4) {
    const wanted = tokenTable - BigInt(Math.min(windowBytes, MAX_NAMES_TO_TOKENS));
    const start = wanted > spanStart ? alignUpAddress(wanted, alignment) : spanStart;
    if (start >= tokenTable) return undefined;
    const bytes = readMapped(space, start, new Uint8Array(Number(tokenTable - start)));
    const view = new DataView(bytes.buffer);
    for (let names = Number(checkedFrom - start) - alignment; names >= alignment; names -= alignment) {
      const found = namesAt(bytes, view, names, alignment);
      if (found)
        return {
          numSyms: start + BigInt(names - alignment),
          names: start + BigInt(names),
          markers: start + BigInt(found.markers),
          count: found.count,
        };
    }
    if (start === spanStart || windowBytes >= MAX_NAMES_TO_TOKENS) return undefined;
    checkedFrom = start + BigInt(alignment);
  }
}

/** `bytes` ends at the token table; `names` is a candidate start of kallsyms_names in it. */
function namesAt(
  bytes: Uint8Array,
  view: DataView,
  names: number,
  alignment: TableAlignment,
): { count: number; markers: number } | undefined {
  const count = view.getUint32(names - alignment, true);
  if (count === 0 || count > MAX_SYMBOLS || (alignment === 8 && view.getUint32(names - 4, true) !== 0))
    return undefined;
  if (names + count * MIN_NAME_ENTRY_BYTES > bytes.length) return undefined;
  const markerCount = Math.ceil(count / SYMBOLS_PER_MARKER);
  for (const width of MARKER_WIDTHS) {
    for (const seqsOfNames of [0, alignUp(3 * count, alignment)]) {
      const markers = bytes.length - seqsOfNames - alignUp(width * markerCount, alignment);
      if (markers < names + count * MIN_NAME_ENTRY_BYTES || marker(view, markers, 0, width) !== 0) continue;
      if (namesEndAtMarkers(bytes.subarray(0, markers), view, names, count, width, alignment))
        return { count, markers };
    }
  }
  return undefined;
}

function namesEndAtMarkers(
  stream: Uint8Array,
  view: DataView,
  names: number,
  count: number,
  width: number,
  alignment: TableAlignment,
): boolean {
  const markers = stream.length;
  let at = names;
  for (let i = 0; i < count; i++) {
    if (i % SYMBOLS_PER_MARKER === 0 && marker(view, markers, i / SYMBOLS_PER_MARKER, width) !== at - names)
      return false;
    at = nextNameEntry(stream, at);
    if (at < 0) return false;
  }
  return alignUp(at, alignment) === markers;
}

function marker(view: DataView, markers: number, index: number, width: number): number {
  const at = markers + index * width;
  return width === 8 && view.getUint32(at + 4, true) !== 0 ? -1 : view.getUint32(at, true);
}

function addressTables(
  space: X86AddressSpace,
  tokens: TokenTables,
  names: NamesTables,
  alignment: TableAlignment,
): AddressTables | undefined {
  const { count } = names;
  const offsetsAfterIndex = tokens.tokenIndex + BigInt(TOKEN_INDEX_BYTES);
  // 7.0 made the offsets place-relative and the labels 4-aligned in one change: …, token_index, offsets.
  if (alignment === 4)
    return placeRelativePlausible(space, offsetsAfterIndex, count) ? { offsets: offsetsAfterIndex } : undefined;
  // …, token_table, token_index, offsets, relative_base: 6.4 to 6.19
  const afterIndex = {
    offsets: offsetsAfterIndex,
    relativeBase: offsetsAfterIndex + BigInt(alignUp(4 * count, alignment)),
  };
  if (plausible(space, () => relativeTable(space, afterIndex.offsets, afterIndex.relativeBase, count)))
    return afterIndex;
  // offsets, relative_base, num_syms, names, …: up to 6.3
  const relativeBase = names.numSyms - 8n;
  const beforeCount = { offsets: relativeBase - BigInt(alignUp(4 * count, alignment)), relativeBase };
  if (plausible(space, () => relativeTable(space, beforeCount.offsets, beforeCount.relativeBase, count)))
    return beforeCount;
  // addresses, num_syms, names, …: !KALLSYMS_BASE_RELATIVE
  const addresses = names.numSyms - BigInt(8 * count);
  if (
    plausible(space, () => ({
      addresses: new BigUint64Array(readRegion(space, addresses, 8 * count, 'kallsyms_addresses').buffer),
    }))
  )
    return { addresses };
  return undefined;
}

function offsetsArray(space: X86AddressSpace, offsets: bigint, count: number): Int32Array {
  return new Int32Array(readRegion(space, offsets, 4 * count, 'kallsyms_offsets').buffer);
}

/** `plausible` for 7.0's offsets, in plain numbers: entry i is at offsets + 4i + value, so order is decided by 4i + value. */
function placeRelativePlausible(space: X86AddressSpace, offsets: bigint, count: number): boolean {
  let values: Int32Array;
  try {
    values = offsetsArray(space, offsets, count);
  } catch (error) {
    if (error instanceof VmscopeError) return false;
    throw error;
  }
  let descents = 0;
  for (let i = 1; i < count; i++) if (4 * i + values[i]! < 4 * (i - 1) + values[i - 1]!) descents += 1;
  return descents <= count * MAX_DESCENT_FRACTION && space.tryTranslate(offsets + BigInt(values[0]!)) !== undefined;
}

function relativeTable(
  space: X86AddressSpace,
  offsets: bigint,
  relativeBase: bigint,
  count: number,
): AddressTable | undefined {
  const base = new DataView(readRegion(space, relativeBase, 8, 'kallsyms_relative_base').buffer).getBigUint64(0, true);
  if (base < KERNEL_HALF) return undefined;
  return relativeAddresses(offsetsArray(space, offsets, count), base);
}

/**
 * Symbols are sorted by address, and the first kernel-half one (_text, or near it) is mapped.
 * A few entries out of order (a tampered offset) do not hide the table; random bytes put about
 * half of all neighbours out of order.
 */
function plausible(space: X86AddressSpace, read: () => Pick<AddressTable, 'addresses'> | undefined): boolean {
  let table: Pick<AddressTable, 'addresses'> | undefined;
  try {
    table = read();
  } catch (error) {
    if (error instanceof VmscopeError) return false;
    throw error;
  }
  if (!table) return false;
  const { addresses } = table;
  let descents = 0;
  let firstKernel: bigint | undefined;
  for (let i = 0; i < addresses.length; i++) {
    const address = addresses[i]!;
    if (i > 0 && address < addresses[i - 1]!) descents += 1;
    firstKernel ??= address >= KERNEL_HALF ? address : undefined;
  }
  return (
    descents <= addresses.length * MAX_DESCENT_FRACTION &&
    firstKernel !== undefined &&
    space.tryTranslate(firstKernel) !== undefined
  );
}

/**
 * Fill `into` from `start`; pages the image does not hold (the mapping points outside the dump)
 * read as zeros, which no table check accepts.
 */
function readMapped<T extends Uint8Array>(space: X86AddressSpace, start: bigint, into: T): T {
  try {
    space.read(start, into);
    return into;
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
  }
  into.fill(0);
  for (let done = 0; done < into.length;) {
    const at = start + BigInt(done);
    const end = Math.min(into.length, done + PAGE_BYTES - Number(at % BigInt(PAGE_BYTES)));
    try {
      space.read(at, into.subarray(done, end));
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
    }
    done = end;
  }
  return into;
}

function alignUp(value: number, alignment: TableAlignment): number {
  return Math.ceil(value / alignment) * alignment;
}

function alignUpAddress(address: bigint, alignment: TableAlignment): bigint {
  const step = BigInt(alignment);
  return ((address + step - 1n) / step) * step;
}
