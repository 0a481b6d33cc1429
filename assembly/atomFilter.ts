import {
  ATOM_ENTRIES_OFFSET,
  ATOM_ENTRY_BYTES,
  ATOM_ENTRY_ID_FIELD,
  ATOM_ENTRY_LENGTH_FIELD,
  ATOM_ENTRY_MASK_FIELD,
  ATOM_ENTRY_VALUE_FIELD,
  ATOM_PAIR_TABLE_OFFSET,
  ATOM_PREFIX_STARTS_OFFSET,
  ATOM_SINGLE_IDS_OFFSET,
  ATOM_SINGLE_STARTS_OFFSET,
  SCAN_RESUME_ADDRESS,
} from './memoryMap';
import { ALL_VERIFIED, hasRoomFor, hitsRecorded, recordHit, resetHits } from './hitArea';

/** Addresses per zero-page test: four v128s. */
const STEP: usize = 64;
/** Addresses per candidate mask (and per zero-run test inside non-zero pages). */
const BLOCK: usize = 16;
const NO_ATOM: u32 = u32.MAX_VALUE;

/**
 * Every occurrence of the loaded atoms (1–4 bytes, tables at `tables`, layout in memoryMap.ts)
 * starting in [from, positionEnd) and lying wholly below dataEnd, in address order then atom id.
 * Returns the hit count and stores where to resume, as findNeedles does.
 *
 * Two levels: a table of every atom's first two bytes screens each address with two loads and no
 * branch, and only addresses whose pair is in it look that pair up in the prefix table, whose few
 * entries compare the whole atom as one masked u32. Memory dumps are mostly zero pages and atoms
 * avoid zero pairs, so when no atom starts 00 00 any 64 zero bytes are skipped with four v128
 * loads. Reads may run up to 3 bytes past dataEnd (into the atom tables); what they see there
 * never makes a hit, because every atom's length is checked against dataEnd.
 */
export function filterAtoms(tables: usize, dataEnd: usize, from: usize, positionEnd: usize): i32 {
  resetHits();
  const skipZeros = load<u8>(tables + ATOM_PAIR_TABLE_OFFSET) == 0;
  let at = from;
  let resume = positionEnd;
  while (at + STEP <= positionEnd) {
    if (!(skipZeros && zeroPairsOnly(at))) {
      const stoppedAt = screenAndVerify(tables, at, at + STEP, dataEnd, skipZeros);
      if (stoppedAt != ALL_VERIFIED) {
        resume = stoppedAt;
        break;
      }
    }
    at += STEP;
  }
  if (resume == positionEnd && at < positionEnd) {
    const stoppedAt = screenAndVerify(tables, at, positionEnd, dataEnd, skipZeros);
    if (stoppedAt != ALL_VERIFIED) resume = stoppedAt;
  }
  store<u32>(SCAN_RESUME_ADDRESS, <u32>resume);
  return hitsRecorded();
}

/** True when every address in [at, at + STEP) starts the pair 00 00: its bytes and the one after are zero. */
@inline
function zeroPairsOnly(at: usize): bool {
  const any = v128.or(v128.or(v128.load(at), v128.load(at, 16)), v128.or(v128.load(at, 32), v128.load(at, 48)));
  return !v128.any_true(any) && load<u8>(at, STEP) == 0;
}

/** 1 when an atom may start at `at`: some atom starts with the two bytes there (or with the first alone). */
@inline
function pairBit(pairs: usize, at: usize): u32 {
  return <u32>load<u8>(pairs + <usize>load<u16>(at));
}

/** pairBit of eight consecutive addresses as bits 0–7. */
@inline
function eightPairBits(pairs: usize, at: usize): u32 {
  return (
    pairBit(pairs, at) |
    (pairBit(pairs, at + 1) << 1) |
    (pairBit(pairs, at + 2) << 2) |
    (pairBit(pairs, at + 3) << 3) |
    (pairBit(pairs, at + 4) << 4) |
    (pairBit(pairs, at + 5) << 5) |
    (pairBit(pairs, at + 6) << 6) |
    (pairBit(pairs, at + 7) << 7)
  );
}

/**
 * Verifies each address of [start, end) whose first two bytes are in the pair table; where to
 * resume if the hit area filled, else ALL_VERIFIED. Even non-zero pages hold runs of zeros
 * (padding, unused fields), so with `skipZeros` any 16 addresses starting only 00 00 pairs are skipped.
 */
function screenAndVerify(tables: usize, start: usize, end: usize, dataEnd: usize, skipZeros: bool): usize {
  const pairs = tables + ATOM_PAIR_TABLE_OFFSET;
  let at = start;
  for (; at + BLOCK <= end; at += BLOCK) {
    if (skipZeros && !v128.any_true(v128.or(v128.load(at), v128.load(at, 1)))) continue;
    let candidates = eightPairBits(pairs, at) | (eightPairBits(pairs, at + 8) << 8);
    while (candidates != 0) {
      const candidate = at + <usize>ctz(candidates);
      if (!verifyAt(tables, candidate, dataEnd)) return candidate;
      candidates &= candidates - 1;
    }
  }
  for (; at < end; at++) {
    if (pairBit(pairs, at) != 0 && !verifyAt(tables, at, dataEnd)) return at;
  }
  return ALL_VERIFIED;
}

/**
 * Records every atom found at `at`, single-byte and longer ones merged by id; false, recording
 * nothing, when the hit area might not hold them all.
 */
function verifyAt(tables: usize, at: usize, dataEnd: usize): bool {
  const singleStarts = tables + ATOM_SINGLE_STARTS_OFFSET + ((<usize>load<u8>(at)) << 2);
  let single = <usize>load<u32>(singleStarts);
  const singleEnd = <usize>load<u32>(singleStarts, 4);
  const prefixStarts = tables + ATOM_PREFIX_STARTS_OFFSET + ((<usize>load<u16>(at)) << 2);
  let entry = <usize>load<u32>(prefixStarts);
  const entryEnd = <usize>load<u32>(prefixStarts, 4);
  if (!hasRoomFor(<i32>(singleEnd - single) + <i32>(entryEnd - entry))) return false;
  const word = load<u32>(at);
  const room = dataEnd - at;
  const singleIds = tables + ATOM_SINGLE_IDS_OFFSET;
  entry = nextMatchingEntry(tables, entry, entryEnd, word, room);
  while (single < singleEnd || entry < entryEnd) {
    const singleId = single < singleEnd ? load<u32>(singleIds + (single << 2)) : NO_ATOM;
    const entryId = entry < entryEnd ? load<u32>(entryAddress(tables, entry), ATOM_ENTRY_ID_FIELD) : NO_ATOM;
    if (singleId < entryId) {
      recordHit(at, singleId);
      single++;
    } else {
      recordHit(at, entryId);
      entry = nextMatchingEntry(tables, entry + 1, entryEnd, word, room);
    }
  }
  return true;
}

@inline
function entryAddress(tables: usize, entry: usize): usize {
  return tables + ATOM_ENTRIES_OFFSET + entry * ATOM_ENTRY_BYTES;
}

/** Whether the entry's atom is `word` under its mask and fits in the `room` bytes left. */
@inline
function entryMatches(tables: usize, entry: usize, word: u32, room: usize): bool {
  const address = entryAddress(tables, entry);
  return (word & load<u32>(address, ATOM_ENTRY_MASK_FIELD)) == load<u32>(address, ATOM_ENTRY_VALUE_FIELD) && <usize>load<u32>(address, ATOM_ENTRY_LENGTH_FIELD) <= room;
}

/** The first entry of [entry, entryEnd) that matches; entryEnd if none. */
function nextMatchingEntry(tables: usize, entry: usize, entryEnd: usize, word: u32, room: usize): usize {
  while (entry < entryEnd && !entryMatches(tables, entry, word, room)) entry++;
  return entry;
}
