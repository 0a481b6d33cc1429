import {
  INFLATE_CODE_LENGTHS_ADDRESS,
  INFLATE_CODE_LENGTH_ROOT_BITS,
  INFLATE_CODE_LENGTH_TABLE_ADDRESS,
  INFLATE_DISTANCE_ROOT_BITS,
  INFLATE_DISTANCE_TABLE_ADDRESS,
  INFLATE_DISTANCE_TABLE_ENTRIES,
  INFLATE_ERROR_BLOCK_TYPE,
  INFLATE_ERROR_CHECKSUM,
  INFLATE_ERROR_CODE_LENGTHS,
  INFLATE_ERROR_DISTANCE_CODE,
  INFLATE_ERROR_DISTANCE_TOO_FAR,
  INFLATE_ERROR_HEADER,
  INFLATE_ERROR_LITERAL_CODE,
  INFLATE_ERROR_OUTPUT_FULL,
  INFLATE_ERROR_STORED_LENGTH,
  INFLATE_ERROR_TRUNCATED,
  INFLATE_INPUT_ADDRESS,
  INFLATE_LENGTH_COUNTS_ADDRESS,
  INFLATE_LENGTH_OFFSETS_ADDRESS,
  INFLATE_LITERAL_ROOT_BITS,
  INFLATE_LITERAL_TABLE_ADDRESS,
  INFLATE_LITERAL_TABLE_ENTRIES,
  INFLATE_SORTED_SYMBOLS_ADDRESS,
} from './inflateMemoryMap';

/**
 * A zlib stream (RFC 1950 around RFC 1951's deflate) inflated in one call: what a kdump page
 * compressed with zlib holds. Node's zlib costs a stream object, its buffers and their garbage
 * collection per call, about as much as the inflating itself on a 4 KiB page; this keeps its
 * tables in its own memory (inflateMemoryMap.ts) and writes the page where the host reads it.
 *
 * Decoding follows zlib's rules: the header's method, window and check, no preset dictionary;
 * over-subscribed codes refused, incomplete ones only as a single one-bit code (or, for distances,
 * no code at all); repeat codes bounded by the symbol count; distances no further back than the
 * output holds; the Adler-32 of the output checked. The bit reader keeps up to 64 bits and reads
 * past the input's end only as zeros, never from memory; more than 8 such bytes is a truncated stream.
 */

// The layout's addresses as pointers (the shared file's constants are plain integers).
const CODE_LENGTHS: usize = INFLATE_CODE_LENGTHS_ADDRESS;
const LENGTH_COUNTS: usize = INFLATE_LENGTH_COUNTS_ADDRESS;
const LENGTH_OFFSETS: usize = INFLATE_LENGTH_OFFSETS_ADDRESS;
const SORTED_SYMBOLS: usize = INFLATE_SORTED_SYMBOLS_ADDRESS;
const LITERAL_TABLE: usize = INFLATE_LITERAL_TABLE_ADDRESS;
const DISTANCE_TABLE: usize = INFLATE_DISTANCE_TABLE_ADDRESS;
const CODE_LENGTH_TABLE: usize = INFLATE_CODE_LENGTH_TABLE_ADDRESS;
const INPUT: usize = INFLATE_INPUT_ADDRESS;

const KIND_LITERAL: u32 = 0;
const KIND_BASE: u32 = 16;
const KIND_END_OF_BLOCK: u32 = 32;
const KIND_INVALID: u32 = 64;

const TABLE_CODE_LENGTHS: u32 = 0;
const TABLE_LITERALS: u32 = 1;
const TABLE_DISTANCES: u32 = 2;

const END_OF_BLOCK_SYMBOL: u32 = 256;
const MAX_LITERAL_SYMBOLS: u32 = 286;
const MAX_DISTANCE_SYMBOLS: u32 = 30;
const CODE_LENGTH_SYMBOLS: u32 = 19;
const MAX_CODE_BITS: u32 = 15;
const ADLER_MODULUS: u32 = 65521;
/** Bytes summed before Adler-32's sums must be reduced to stay within 32 bits (zlib's NMAX). */
const ADLER_RUN: usize = 5552;
/**
 * Bits a refill leaves at least (and at most 63, so the next refill's shift stays below 64): more
 * than one length and its distance take, 15 + 5 + 15 + 13.
 */
const REFILL_BITS: u32 = 56;

/** Where the next byte not yet in the bit buffer is (past inputEnd: zeros that were never there). */
let inputAt: usize = 0;
let inputEnd: usize = 0;
let bitBuffer: u64 = 0;
let bitCount: u32 = 0;
let outputAt: usize = 0;
/** Whether the decoding tables hold the fixed code, so consecutive fixed blocks build them once. */
let fixedTablesBuilt = false;

/**
 * Inflates the `inputLength` bytes at INFLATE_INPUT_ADDRESS into at most `outputCapacity` bytes at
 * `outputAddress`. Returns the number of bytes inflated, or an INFLATE_ERROR_* code.
 */
export function inflateZlib(inputLength: usize, outputAddress: usize, outputCapacity: usize): i32 {
  inputAt = INPUT;
  inputEnd = INPUT + inputLength;
  bitBuffer = 0;
  bitCount = 0;
  outputAt = outputAddress;
  const outputEnd = outputAddress + outputCapacity;
  if (inputLength < 2) return INFLATE_ERROR_TRUNCATED;
  const method = <u32>load<u8>(inputAt);
  const flags = <u32>load<u8>(inputAt, 1);
  if ((method & 15) != 8 || method >> 4 > 7 || ((method << 8) | flags) % 31 != 0 || (flags & 0x20) != 0)
    return INFLATE_ERROR_HEADER;
  inputAt += 2;
  let last: u32 = 0;
  do {
    last = takeBits(1);
    const type = takeBits(2);
    let status: i32;
    if (type == 0) status = copyStoredBlock(outputEnd);
    else if (type == 1) {
      buildFixedTables();
      status = decodeHuffmanBlock(outputAddress, outputEnd);
    } else if (type == 2) {
      status = readDynamicTables();
      if (status == 0) status = decodeHuffmanBlock(outputAddress, outputEnd);
    } else return INFLATE_ERROR_BLOCK_TYPE;
    if (status < 0) return status;
    if (consumedEnd() > inputEnd) return INFLATE_ERROR_TRUNCATED;
  } while (last == 0);
  dropToByte();
  const trailer = consumedEnd();
  if (trailer + 4 > inputEnd) return INFLATE_ERROR_TRUNCATED;
  const length = outputAt - outputAddress;
  if (adler32(outputAddress, length) != bswap<u32>(load<u32>(trailer))) return INFLATE_ERROR_CHECKSUM;
  return <i32>length;
}

/** The first input byte no consumed bit came from. */
@inline
function consumedEnd(): usize {
  return inputAt - (bitCount >> 3);
}

function refill(): void {
  if (inputAt + 8 <= inputEnd) {
    // Bits above bitCount already hold the bytes at inputAt, so OR-ing them in again changes nothing.
    bitBuffer |= load<u64>(inputAt) << bitCount;
    const bytes = (63 - bitCount) >> 3;
    inputAt += bytes;
    bitCount += bytes << 3;
    return;
  }
  while (bitCount < REFILL_BITS) {
    if (inputAt < inputEnd) bitBuffer |= (<u64>load<u8>(inputAt)) << bitCount;
    inputAt++;
    bitCount += 8;
  }
}

/** The next `count` (at most 32) bits of the stream, least significant first. */
function takeBits(count: u32): u32 {
  if (bitCount < count) refill();
  const value = <u32>(bitBuffer & ((<u64>1 << count) - 1));
  bitBuffer >>= count;
  bitCount -= count;
  return value;
}

@inline
function dropToByte(): void {
  const odd = bitCount & 7;
  bitBuffer >>= odd;
  bitCount -= odd;
}

function copyStoredBlock(outputEnd: usize): i32 {
  dropToByte();
  const at = consumedEnd();
  bitBuffer = 0;
  bitCount = 0;
  inputAt = at;
  if (at + 4 > inputEnd) return INFLATE_ERROR_TRUNCATED;
  const length = <usize>load<u16>(at);
  if ((length ^ <usize>load<u16>(at, 2)) != 0xffff) return INFLATE_ERROR_STORED_LENGTH;
  if (at + 4 + length > inputEnd) return INFLATE_ERROR_TRUNCATED;
  if (length > outputEnd - outputAt) return INFLATE_ERROR_OUTPUT_FULL;
  memory.copy(outputAt, at + 4, length);
  outputAt += length;
  inputAt = at + 4 + length;
  return 0;
}

/** The fixed code's tables (RFC 1951 3.2.6), unless the last block already built them. */
function buildFixedTables(): void {
  if (fixedTablesBuilt) return;
  const lengths = CODE_LENGTHS;
  memory.fill(lengths, 8, 144);
  memory.fill(lengths + 144, 9, 112);
  memory.fill(lengths + 256, 7, 24);
  memory.fill(lengths + 280, 8, 8);
  memory.fill(lengths + 288, 5, 32);
  buildLiteralTable(lengths, 288);
  buildDistanceTable(lengths + 288, 32);
  fixedTablesBuilt = true;
}

function readDynamicTables(): i32 {
  fixedTablesBuilt = false;
  const literalCount = takeBits(5) + 257;
  const distanceCount = takeBits(5) + 1;
  const codeLengthCount = takeBits(4) + 4;
  if (literalCount > MAX_LITERAL_SYMBOLS || distanceCount > MAX_DISTANCE_SYMBOLS) return INFLATE_ERROR_CODE_LENGTHS;
  const lengths = CODE_LENGTHS;
  const order = memory.data<u8>([16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]);
  for (let i: u32 = 0; i < CODE_LENGTH_SYMBOLS; i++)
    store<u8>(lengths + load<u8>(order + i), i < codeLengthCount ? takeBits(3) : 0);
  if (buildCodeLengthTable(lengths, CODE_LENGTH_SYMBOLS) != 0) return INFLATE_ERROR_CODE_LENGTHS;
  const total = literalCount + distanceCount;
  let index: u32 = 0;
  while (index < total) {
    if (bitCount < 14) refill();
    const entry = load<u32>(CODE_LENGTH_TABLE + ((<usize>bitBuffer & 127) << 2));
    const bits = entry & 0xff;
    bitBuffer >>= bits;
    bitCount -= bits;
    const symbol = entry >> 16;
    if (symbol < 16) {
      store<u8>(lengths + index++, symbol);
      continue;
    }
    let value: u32 = 0;
    let repeat: u32;
    if (symbol == 16) {
      if (index == 0) return INFLATE_ERROR_CODE_LENGTHS;
      value = load<u8>(lengths + index - 1);
      repeat = 3 + takeBits(2);
    } else if (symbol == 17) repeat = 3 + takeBits(3);
    else repeat = 11 + takeBits(7);
    if (repeat > total - index) return INFLATE_ERROR_CODE_LENGTHS;
    memory.fill(lengths + index, <u8>value, repeat);
    index += repeat;
  }
  if (consumedEnd() > inputEnd) return INFLATE_ERROR_TRUNCATED;
  if (load<u8>(lengths + END_OF_BLOCK_SYMBOL) == 0) return INFLATE_ERROR_CODE_LENGTHS;
  // The literal/length code must be complete (or one one-bit code); so must the distance code, or be absent.
  if (buildLiteralTable(lengths, literalCount) != 0) return INFLATE_ERROR_CODE_LENGTHS;
  if (buildDistanceTable(lengths + literalCount, distanceCount) != 0) return INFLATE_ERROR_CODE_LENGTHS;
  return 0;
}

/** The entry of `symbol` in a table of `type`, its code `bits` long (past the root, for a sub-table's). */
@inline
function symbolEntry(type: u32, symbol: u32, bits: u32): u32 {
  if (type == TABLE_CODE_LENGTHS) return entryOf(bits, KIND_LITERAL, symbol);
  if (type == TABLE_LITERALS) {
    if (symbol < END_OF_BLOCK_SYMBOL) return entryOf(bits, KIND_LITERAL, symbol);
    if (symbol == END_OF_BLOCK_SYMBOL) return entryOf(bits, KIND_END_OF_BLOCK, 0);
    if (symbol >= MAX_LITERAL_SYMBOLS) return entryOf(bits, KIND_INVALID, 0);
    // Lengths 3-258: symbols 257-264 one each, then four per extra bit, then 285 for 258.
    const code = symbol - 257;
    if (code < 8) return entryOf(bits, KIND_BASE, 3 + code);
    if (code == 28) return entryOf(bits, KIND_BASE, 258);
    const extra = (code >> 2) - 1;
    return entryOf(bits, KIND_BASE | extra, ((4 + (code & 3)) << extra) + 3);
  }
  if (symbol >= MAX_DISTANCE_SYMBOLS) return entryOf(bits, KIND_INVALID, 0);
  // Distances 1-32768: codes 0-3 one each, then two per extra bit.
  if (symbol < 4) return entryOf(bits, KIND_BASE, 1 + symbol);
  const extra = (symbol >> 1) - 1;
  return entryOf(bits, KIND_BASE | extra, ((2 + (symbol & 1)) << extra) + 1);
}

@inline
function entryOf(bits: u32, kind: u32, value: u32): u32 {
  return bits | (kind << 8) | (value << 16);
}

/**
 * The decoding table of the canonical code whose `count` code lengths are at `lengths`: a root
 * table indexed by the next root bits of the stream (codes being read least significant bit
 * first, each entry repeated for every value of the bits past its code), and for codes longer than
 * the root, sub-tables sized to the codes sharing a root entry, as zlib's inflate_table builds
 * them. Returns 0, or -1 for a set of lengths no prefix code has.
 */
@inline
function buildTable(lengths: usize, count: u32, type: u32): i32 {
  const table = type == TABLE_LITERALS ? LITERAL_TABLE : type == TABLE_DISTANCES ? DISTANCE_TABLE : CODE_LENGTH_TABLE;
  const rootBits: u32 =
    type == TABLE_LITERALS
      ? INFLATE_LITERAL_ROOT_BITS
      : type == TABLE_DISTANCES
        ? INFLATE_DISTANCE_ROOT_BITS
        : INFLATE_CODE_LENGTH_ROOT_BITS;
  const capacity: u32 =
    type == TABLE_LITERALS
      ? INFLATE_LITERAL_TABLE_ENTRIES
      : type == TABLE_DISTANCES
        ? INFLATE_DISTANCE_TABLE_ENTRIES
        : 1 << INFLATE_CODE_LENGTH_ROOT_BITS;
  const counts = LENGTH_COUNTS;
  const offsets = LENGTH_OFFSETS;
  const sorted = SORTED_SYMBOLS;
  const rootSize: u32 = 1 << rootBits;
  memory.fill(counts, 0, (MAX_CODE_BITS + 1) << 1);
  for (let symbol: u32 = 0; symbol < count; symbol++) {
    const at = counts + ((<usize>load<u8>(lengths + symbol)) << 1);
    store<u16>(at, load<u16>(at) + 1);
  }
  let longest = MAX_CODE_BITS;
  while (longest > 0 && load<u16>(counts + (<usize>longest << 1)) == 0) longest--;
  if (longest == 0) {
    // No code at all: allowed for distances (a block of literals only); any use is an invalid code.
    if (type != TABLE_DISTANCES) return -1;
    for (let index: u32 = 0; index < rootSize; index++)
      store<u32>(table + (<usize>index << 2), entryOf(1, KIND_INVALID, 0));
    return 0;
  }
  let left: i32 = 1;
  for (let length: u32 = 1; length <= MAX_CODE_BITS; length++) {
    left = (left << 1) - <i32>load<u16>(counts + (<usize>length << 1));
    if (left < 0) return -1;
  }
  if (left > 0 && (type == TABLE_CODE_LENGTHS || longest != 1)) return -1;
  store<u16>(offsets + 2, 0);
  for (let length: u32 = 1; length < MAX_CODE_BITS; length++) {
    const at = offsets + (<usize>length << 1);
    store<u16>(at + 2, load<u16>(at) + load<u16>(counts + (<usize>length << 1)));
  }
  for (let symbol: u32 = 0; symbol < count; symbol++) {
    const length = <usize>load<u8>(lengths + symbol);
    if (length == 0) continue;
    const at = offsets + (length << 1);
    const slot = load<u16>(at);
    store<u16>(sorted + (<usize>slot << 1), <u16>symbol);
    store<u16>(at, slot + 1);
  }

  let code: u32 = 0; // the current code, bit-reversed: as its bits arrive
  let next: u32 = 0; // first entry of the (sub-)table being filled
  let tableBits = rootBits;
  let dropped: u32 = 0; // root bits already consumed when a sub-table entry is reached
  let used = rootSize;
  let subTableRoot: u32 = 0xffffffff;
  let symbolIndex: u32 = 0;
  let length: u32 = 1;
  while (load<u16>(counts + (<usize>length << 1)) == 0) length++;
  while (true) {
    const entry = symbolEntry(type, load<u16>(sorted + (<usize>symbolIndex << 1)), length - dropped);
    const step: u32 = 1 << (length - dropped);
    const size: u32 = 1 << tableBits;
    for (let fill = code >> dropped; fill < size; fill += step)
      store<u32>(table + (<usize>(next + fill) << 2), entry);
    let increment: u32 = 1 << (length - 1);
    while ((code & increment) != 0) increment >>= 1;
    code = increment != 0 ? (code & (increment - 1)) + increment : 0;
    symbolIndex++;
    const lengthCount = counts + (<usize>length << 1);
    store<u16>(lengthCount, load<u16>(lengthCount) - 1);
    if (load<u16>(lengthCount) == 0) {
      if (length == longest) break;
      length = load<u8>(lengths + load<u16>(sorted + (<usize>symbolIndex << 1)));
    }
    if (length > rootBits && (code & (rootSize - 1)) != subTableRoot) {
      // A new root entry whose codes are longer than the root: its sub-table follows the last one.
      next += <u32>1 << tableBits;
      dropped = rootBits;
      tableBits = length - dropped;
      let room: i32 = 1 << tableBits;
      while (tableBits + dropped < longest) {
        room -= <i32>load<u16>(counts + (<usize>(tableBits + dropped) << 1));
        if (room <= 0) break;
        tableBits++;
        room <<= 1;
      }
      used += 1 << tableBits;
      if (used > capacity) return -1;
      subTableRoot = code & (rootSize - 1);
      store<u32>(table + (<usize>subTableRoot << 2), entryOf(rootBits, tableBits, next));
    }
  }
  // An incomplete code is a single one-bit code here: the other half of the root table is no code.
  if (code != 0) {
    for (let index = code; index < rootSize; index += 2)
      store<u32>(table + (<usize>index << 2), entryOf(1, KIND_INVALID, 0));
  }
  return 0;
}

// One copy of buildTable per kind of table, each with its type a constant the compiler folds.
function buildLiteralTable(lengths: usize, count: u32): i32 {
  return buildTable(lengths, count, TABLE_LITERALS);
}

function buildDistanceTable(lengths: usize, count: u32): i32 {
  return buildTable(lengths, count, TABLE_DISTANCES);
}

function buildCodeLengthTable(lengths: usize, count: u32): i32 {
  return buildTable(lengths, count, TABLE_CODE_LENGTHS);
}

/**
 * Literals and length/distance pairs until the end-of-block code. The bit reader's state lives in
 * locals here. A refill leaves at least 56 bits: room for three literal codes (15 bits each at
 * most), or for a literal/length code with its extra bits and a distance code with its own
 * (15 + 5 + 15 + 13), so the common runs of literals cost one refill per three. An entry looked up
 * before a refill stays valid after it: a refill only adds bits above those present.
 */
function decodeHuffmanBlock(outputStart: usize, outputEnd: usize): i32 {
  let buffer = bitBuffer;
  let count = bitCount;
  let input = inputAt;
  const end = inputEnd;
  let output = outputAt;
  let status: i32 = 0;
  const literalMask: u64 = (1 << INFLATE_LITERAL_ROOT_BITS) - 1;
  const distanceMask: u64 = (1 << INFLATE_DISTANCE_ROOT_BITS) - 1;
  while (true) {
    if (input + 8 <= end) {
      buffer |= load<u64>(input) << count;
      const bytes = (63 - count) >> 3;
      input += bytes;
      count += bytes << 3;
    } else {
      while (count < REFILL_BITS) {
        if (input < end) buffer |= (<u64>load<u8>(input)) << count;
        input++;
        count += 8;
      }
      if (input > end + 8) {
        status = INFLATE_ERROR_TRUNCATED;
        break;
      }
    }
    let entry = load<u32>(LITERAL_TABLE + (<usize>(buffer & literalMask) << 2));
    if (((entry >> 8) & 0xff) == KIND_LITERAL) {
      if (output + 3 > outputEnd) {
        // Near the end of the output: one literal per refill, each checked.
        if (output >= outputEnd) {
          status = INFLATE_ERROR_OUTPUT_FULL;
          break;
        }
        buffer >>= entry & 0xff;
        count -= entry & 0xff;
        store<u8>(output++, entry >> 16);
        continue;
      }
      buffer >>= entry & 0xff;
      count -= entry & 0xff;
      store<u8>(output++, entry >> 16);
      entry = load<u32>(LITERAL_TABLE + (<usize>(buffer & literalMask) << 2));
      if (((entry >> 8) & 0xff) != KIND_LITERAL) continue;
      buffer >>= entry & 0xff;
      count -= entry & 0xff;
      store<u8>(output++, entry >> 16);
      entry = load<u32>(LITERAL_TABLE + (<usize>(buffer & literalMask) << 2));
      if (((entry >> 8) & 0xff) != KIND_LITERAL) continue;
      buffer >>= entry & 0xff;
      count -= entry & 0xff;
      store<u8>(output++, entry >> 16);
      continue;
    }
    let kind = (entry >> 8) & 0xff;
    if (kind - 1 < MAX_CODE_BITS) {
      buffer >>= INFLATE_LITERAL_ROOT_BITS;
      count -= INFLATE_LITERAL_ROOT_BITS;
      const index = (entry >> 16) + (<u32>buffer & ((1 << kind) - 1));
      entry = load<u32>(LITERAL_TABLE + (<usize>index << 2));
      kind = (entry >> 8) & 0xff;
    }
    buffer >>= entry & 0xff;
    count -= entry & 0xff;
    if (kind == KIND_LITERAL) {
      if (output >= outputEnd) {
        status = INFLATE_ERROR_OUTPUT_FULL;
        break;
      }
      store<u8>(output++, entry >> 16);
      continue;
    }
    if ((kind & KIND_BASE) == 0) {
      status = kind == KIND_END_OF_BLOCK ? 0 : INFLATE_ERROR_LITERAL_CODE;
      break;
    }
    const lengthExtra = kind & 15;
    const length = <usize>((entry >> 16) + (<u32>buffer & ((1 << lengthExtra) - 1)));
    buffer >>= lengthExtra;
    count -= lengthExtra;
    let distanceEntry = load<u32>(DISTANCE_TABLE + (<usize>(buffer & distanceMask) << 2));
    let distanceKind = (distanceEntry >> 8) & 0xff;
    if (distanceKind - 1 < MAX_CODE_BITS) {
      buffer >>= INFLATE_DISTANCE_ROOT_BITS;
      count -= INFLATE_DISTANCE_ROOT_BITS;
      const index = (distanceEntry >> 16) + (<u32>buffer & ((1 << distanceKind) - 1));
      distanceEntry = load<u32>(DISTANCE_TABLE + (<usize>index << 2));
      distanceKind = (distanceEntry >> 8) & 0xff;
    }
    buffer >>= distanceEntry & 0xff;
    count -= distanceEntry & 0xff;
    if ((distanceKind & KIND_BASE) == 0) {
      status = INFLATE_ERROR_DISTANCE_CODE;
      break;
    }
    const distanceExtra = distanceKind & 15;
    const distance = <usize>((distanceEntry >> 16) + (<u32>buffer & ((1 << distanceExtra) - 1)));
    buffer >>= distanceExtra;
    count -= distanceExtra;
    if (distance > output - outputStart) {
      status = INFLATE_ERROR_DISTANCE_TOO_FAR;
      break;
    }
    if (length > outputEnd - output) {
      status = INFLATE_ERROR_OUTPUT_FULL;
      break;
    }
    copyMatch(output, distance, length, outputEnd);
    output += length;
  }
  bitBuffer = buffer;
  bitCount = count;
  inputAt = input;
  outputAt = output;
  return status;
}

/** The `length` bytes from `distance` back, copied forward to `output` (overlapping: repeating them). */
@inline
function copyMatch(output: usize, distance: usize, length: usize, outputEnd: usize): void {
  const from = output - distance;
  if (distance >= 8 && length + 8 <= outputEnd - output) {
    // Eight bytes a step: each step reads bytes the steps before it finished writing.
    for (let done: usize = 0; done < length; done += 8) store<u64>(output + done, load<u64>(from + done));
  } else if (distance == 1) {
    memory.fill(output, load<u8>(from), length);
  } else {
    for (let done: usize = 0; done < length; done++) store<u8>(output + done, load<u8>(from + done));
  }
}

/**
 * Adler-32 (RFC 1950) of `length` bytes at `at`, sixteen bytes a step: per step, b gains 16 a plus
 * the bytes weighted 16..1, and a gains their sum. Lanes hold partial sums, combined (and reduced)
 * once per run short enough that no lane overflows.
 */
function adler32(at: usize, length: usize): u32 {
  let a: u64 = 1;
  let b: u64 = 0;
  const weightsLow = i16x8(16, 15, 14, 13, 12, 11, 10, 9);
  const weightsHigh = i16x8(8, 7, 6, 5, 4, 3, 2, 1);
  let remaining = length;
  while (remaining >= 16) {
    const steps = min(remaining, ADLER_RUN) >> 4;
    remaining -= steps << 4;
    let byteSums = i32x4.splat(0);
    let earlierSums = i32x4.splat(0);
    let weighted = i32x4.splat(0);
    for (let step: usize = 0; step < steps; step++) {
      const bytes = v128.load(at);
      at += 16;
      earlierSums = i32x4.add(earlierSums, byteSums);
      byteSums = i32x4.add(byteSums, i32x4.extadd_pairwise_i16x8_u(i16x8.extadd_pairwise_i8x16_u(bytes)));
      weighted = i32x4.add(weighted, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(bytes), weightsLow));
      weighted = i32x4.add(weighted, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(bytes), weightsHigh));
    }
    b += ((<u64>steps * a) << 4) + (laneSum(earlierSums) << 4) + laneSum(weighted);
    a += laneSum(byteSums);
    a %= ADLER_MODULUS;
    b %= ADLER_MODULUS;
  }
  for (; remaining > 0; remaining--) {
    a += load<u8>(at++);
    b += a;
  }
  return <u32>((b % ADLER_MODULUS) << 16) | <u32>(a % ADLER_MODULUS);
}

@inline
function laneSum(lanes: v128): u64 {
  return (
    <u64>i32x4.extract_lane(lanes, 0) +
    <u64>i32x4.extract_lane(lanes, 1) +
    <u64>i32x4.extract_lane(lanes, 2) +
    <u64>i32x4.extract_lane(lanes, 3)
  );
}
