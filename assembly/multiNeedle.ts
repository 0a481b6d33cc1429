import {
  DESCRIPTOR_BYTES_FIELD,
  DESCRIPTOR_LENGTH_FIELD,
  DESCRIPTOR_RARE_A_FIELD,
  DESCRIPTOR_RARE_B_FIELD,
  NEEDLE_DESCRIPTOR_BYTES,
  NEEDLE_TABLE_ADDRESS,
  SCAN_RESUME_ADDRESS,
} from './memoryMap';
import { ALL_VERIFIED, hasRoomFor, hitsRecorded, recordHit, resetHits } from './hitArea';

const BLOCK: usize = 16;

/**
 * Exact search for the 1–4 needles loaded in the needle table: every start address in
 * [from, positionEnd) where a needle lies wholly below dataEnd is a hit. Returns the hit count and
 * stores where to resume (memoryMap.ts). A rare-pair filter screens 16 addresses at a time: two
 * bytes of each needle, chosen by the host for rarity, compared at their offsets; only addresses
 * passing it are verified byte by byte.
 */
export function findNeedles(needleCount: i32, dataEnd: usize, from: usize, positionEnd: usize): i32 {
  resetHits();
  let resume: usize = 0;
  // One specialised copy per group size keeps each needle's pair in registers.
  switch (needleCount) {
    case 1:
      resume = scanGroup(1, dataEnd, from, positionEnd);
      break;
    case 2:
      resume = scanGroup(2, dataEnd, from, positionEnd);
      break;
    case 3:
      resume = scanGroup(3, dataEnd, from, positionEnd);
      break;
    case 4:
      resume = scanGroup(4, dataEnd, from, positionEnd);
      break;
    default:
      unreachable();
  }
  store<u32>(SCAN_RESUME_ADDRESS, resume);
  return hitsRecorded();
}

@inline
function descriptor(slot: i32): usize {
  return <usize>(NEEDLE_TABLE_ADDRESS + slot * NEEDLE_DESCRIPTOR_BYTES);
}

@inline
function rareOffsetA(slot: i32): usize {
  return load<u32>(descriptor(slot), DESCRIPTOR_RARE_A_FIELD);
}

@inline
function rareOffsetB(slot: i32): usize {
  return load<u32>(descriptor(slot), DESCRIPTOR_RARE_B_FIELD);
}

@inline
function splatNeedleByte(slot: i32, offset: usize): v128 {
  return i8x16.splat(load<u8>(<usize>load<u32>(descriptor(slot), DESCRIPTOR_BYTES_FIELD) + offset));
}

@inline
function pairMatches(at: usize, offsetA: usize, byteA: v128, offsetB: usize, byteB: v128): v128 {
  return v128.and(i8x16.eq(v128.load(at + offsetA), byteA), i8x16.eq(v128.load(at + offsetB), byteB));
}

@inline
function scanGroup(n: i32, dataEnd: usize, from: usize, positionEnd: usize): usize {
  const offsetA0 = rareOffsetA(0);
  const offsetB0 = rareOffsetB(0);
  const byteA0 = splatNeedleByte(0, offsetA0);
  const byteB0 = splatNeedleByte(0, offsetB0);
  let longest: usize = load<u32>(descriptor(0), DESCRIPTOR_LENGTH_FIELD);
  let offsetA1: usize = 0, offsetB1: usize = 0, byteA1 = i8x16.splat(0), byteB1 = i8x16.splat(0);
  let offsetA2: usize = 0, offsetB2: usize = 0, byteA2 = i8x16.splat(0), byteB2 = i8x16.splat(0);
  let offsetA3: usize = 0, offsetB3: usize = 0, byteA3 = i8x16.splat(0), byteB3 = i8x16.splat(0);
  if (n > 1) {
    offsetA1 = rareOffsetA(1);
    offsetB1 = rareOffsetB(1);
    byteA1 = splatNeedleByte(1, offsetA1);
    byteB1 = splatNeedleByte(1, offsetB1);
    longest = max(longest, <usize>load<u32>(descriptor(1), DESCRIPTOR_LENGTH_FIELD));
  }
  if (n > 2) {
    offsetA2 = rareOffsetA(2);
    offsetB2 = rareOffsetB(2);
    byteA2 = splatNeedleByte(2, offsetA2);
    byteB2 = splatNeedleByte(2, offsetB2);
    longest = max(longest, <usize>load<u32>(descriptor(2), DESCRIPTOR_LENGTH_FIELD));
  }
  if (n > 3) {
    offsetA3 = rareOffsetA(3);
    offsetB3 = rareOffsetB(3);
    byteA3 = splatNeedleByte(3, offsetA3);
    byteB3 = splatNeedleByte(3, offsetB3);
    longest = max(longest, <usize>load<u32>(descriptor(3), DESCRIPTOR_LENGTH_FIELD));
  }

  // Below blockEnd every needle at every address of a block lies inside the data, so the filter's
  // loads stay in bounds and candidates need no length check; the few addresses after it go one by one.
  const blockEnd = min(positionEnd, dataEnd + 1 - longest);
  let at = from;
  // Measured under V8: one needle screens fastest four blocks per step, more needles two (their
  // pairs crowd the registers); leftover blocks go singly.
  while (n == 1 && at + 4 * BLOCK <= blockEnd) {
    const found0 = screen(n, at, offsetA0, byteA0, offsetB0, byteB0, offsetA1, byteA1, offsetB1, byteB1, offsetA2, byteA2, offsetB2, byteB2, offsetA3, byteA3, offsetB3, byteB3);
    const found1 = screen(n, at + BLOCK, offsetA0, byteA0, offsetB0, byteB0, offsetA1, byteA1, offsetB1, byteB1, offsetA2, byteA2, offsetB2, byteB2, offsetA3, byteA3, offsetB3, byteB3);
    const found2 = screen(n, at + 2 * BLOCK, offsetA0, byteA0, offsetB0, byteB0, offsetA1, byteA1, offsetB1, byteB1, offsetA2, byteA2, offsetB2, byteB2, offsetA3, byteA3, offsetB3, byteB3);
    const found3 = screen(n, at + 3 * BLOCK, offsetA0, byteA0, offsetB0, byteB0, offsetA1, byteA1, offsetB1, byteB1, offsetA2, byteA2, offsetB2, byteB2, offsetA3, byteA3, offsetB3, byteB3);
    if (v128.any_true(v128.or(v128.or(found0, found1), v128.or(found2, found3)))) {
      const candidates =
        <u64>i8x16.bitmask(found0) | (<u64>i8x16.bitmask(found1) << 16) | (<u64>i8x16.bitmask(found2) << 32) | (<u64>i8x16.bitmask(found3) << 48);
      const stoppedAt = verifyCandidates<u64>(n, at, candidates, dataEnd);
      if (stoppedAt != ALL_VERIFIED) return stoppedAt;
    }
    at += 4 * BLOCK;
  }
  while (at + 2 * BLOCK <= blockEnd) {
    const found0 = screen(n, at, offsetA0, byteA0, offsetB0, byteB0, offsetA1, byteA1, offsetB1, byteB1, offsetA2, byteA2, offsetB2, byteB2, offsetA3, byteA3, offsetB3, byteB3);
    const found1 = screen(n, at + BLOCK, offsetA0, byteA0, offsetB0, byteB0, offsetA1, byteA1, offsetB1, byteB1, offsetA2, byteA2, offsetB2, byteB2, offsetA3, byteA3, offsetB3, byteB3);
    if (v128.any_true(v128.or(found0, found1))) {
      const candidates = <u32>i8x16.bitmask(found0) | (<u32>i8x16.bitmask(found1) << 16);
      const stoppedAt = verifyCandidates<u32>(n, at, candidates, dataEnd);
      if (stoppedAt != ALL_VERIFIED) return stoppedAt;
    }
    at += 2 * BLOCK;
  }
  while (at + BLOCK <= blockEnd) {
    const found = screen(n, at, offsetA0, byteA0, offsetB0, byteB0, offsetA1, byteA1, offsetB1, byteB1, offsetA2, byteA2, offsetB2, byteB2, offsetA3, byteA3, offsetB3, byteB3);
    if (v128.any_true(found)) {
      const stoppedAt = verifyCandidates<u32>(n, at, <u32>i8x16.bitmask(found), dataEnd);
      if (stoppedAt != ALL_VERIFIED) return stoppedAt;
    }
    at += BLOCK;
  }
  for (; at < positionEnd; at++) {
    if (!verifyAt(n, at, dataEnd)) return at;
  }
  return positionEnd;
}

/** For each of 16 addresses from `at`: all ones where some loaded needle's rare pair matches. */
@inline
function screen(
  n: i32,
  at: usize,
  offsetA0: usize, byteA0: v128, offsetB0: usize, byteB0: v128,
  offsetA1: usize, byteA1: v128, offsetB1: usize, byteB1: v128,
  offsetA2: usize, byteA2: v128, offsetB2: usize, byteB2: v128,
  offsetA3: usize, byteA3: v128, offsetB3: usize, byteB3: v128,
): v128 {
  let found = pairMatches(at, offsetA0, byteA0, offsetB0, byteB0);
  if (n > 1) found = v128.or(found, pairMatches(at, offsetA1, byteA1, offsetB1, byteB1));
  if (n > 2) found = v128.or(found, pairMatches(at, offsetA2, byteA2, offsetB2, byteB2));
  if (n > 3) found = v128.or(found, pairMatches(at, offsetA3, byteA3, offsetB3, byteB3));
  return found;
}

/** Verifies the candidate addresses `at` + each set bit; where to resume if the hit area filled, else ALL_VERIFIED. */
@inline
function verifyCandidates<Mask>(n: i32, at: usize, candidates: Mask, dataEnd: usize): usize {
  while (candidates != 0) {
    const candidate = at + <usize>ctz<Mask>(candidates);
    if (!verifyAt(n, candidate, dataEnd)) return candidate;
    candidates &= candidates - 1;
  }
  return ALL_VERIFIED;
}

/** Records every loaded needle found at `at`; false, recording nothing, when the hit area might not hold them all. */
function verifyAt(n: i32, at: usize, dataEnd: usize): bool {
  if (!hasRoomFor(n)) return false;
  for (let slot = 0; slot < n; slot++) {
    const entry = descriptor(slot);
    const needle = <usize>load<u32>(entry, DESCRIPTOR_BYTES_FIELD);
    const length = <usize>load<u32>(entry, DESCRIPTOR_LENGTH_FIELD);
    const offsetA = <usize>load<u32>(entry, DESCRIPTOR_RARE_A_FIELD);
    const offsetB = <usize>load<u32>(entry, DESCRIPTOR_RARE_B_FIELD);
    if (
      at + length <= dataEnd &&
      load<u8>(at + offsetA) == load<u8>(needle + offsetA) &&
      load<u8>(at + offsetB) == load<u8>(needle + offsetB) &&
      bytesEqual(needle, at, length)
    ) {
      recordHit(at, <u32>slot);
    }
  }
  return true;
}

function bytesEqual(a: usize, b: usize, length: usize): bool {
  let i: usize = 0;
  for (; i + BLOCK <= length; i += BLOCK) {
    if (v128.any_true(v128.xor(v128.load(a + i), v128.load(b + i)))) return false;
  }
  for (; i < length; i++) {
    if (load<u8>(a + i) != load<u8>(b + i)) return false;
  }
  return true;
}
