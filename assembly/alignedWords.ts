import { SCAN_RESUME_ADDRESS } from './memoryMap';
import { hasRoomFor, hitsRecorded, recordHit, resetHits } from './hitArea';

const WORD: usize = 8;
/** Eight words (four v128) screened per step. */
const STEP: usize = 8 * WORD;
/** Flipping the sign bit turns unsigned order into the signed order i64x2 compares in. */
const SIGN: i64 = 0x8000000000000000;

/**
 * Every address `from` + 8k below `positionEnd` whose little-endian u64 lies wholly below
 * `dataEnd` and, as an unsigned number, in [low, high]: where memory holds a pointer into one
 * small region (the scheduling classes every task_struct points to, say). Hits carry id 0; the
 * host reads each one's value from the window and keeps those it looks for. Returns the hit count
 * and stores where to resume (memoryMap.ts): a step whose words might not all fit in the hit area
 * is left for the next call.
 */
export function findWordsInRange(low: u64, high: u64, dataEnd: usize, from: usize, positionEnd: usize): i32 {
  resetHits();
  const lowered = i64x2.splat(<i64>low ^ SIGN);
  const raised = i64x2.splat(<i64>high ^ SIGN);
  const sign = i64x2.splat(SIGN);
  // A word may start below wordEnd: before positionEnd, and with its 8 bytes inside the data.
  const wordEnd = dataEnd >= WORD ? min(positionEnd, dataEnd - WORD + 1) : from;
  let at = from;
  while (at + STEP - WORD < wordEnd) {
    const in01 = inRange(v128.load(at), sign, lowered, raised);
    const in23 = inRange(v128.load(at, 16), sign, lowered, raised);
    const in45 = inRange(v128.load(at, 32), sign, lowered, raised);
    const in67 = inRange(v128.load(at, 48), sign, lowered, raised);
    if (v128.any_true(v128.or(v128.or(in01, in23), v128.or(in45, in67)))) {
      if (!hasRoomFor(8)) {
        store<u32>(SCAN_RESUME_ADDRESS, <u32>at);
        return hitsRecorded();
      }
      const found =
        i64x2.bitmask(in01) | (i64x2.bitmask(in23) << 2) | (i64x2.bitmask(in45) << 4) | (i64x2.bitmask(in67) << 6);
      for (let bits = found; bits != 0; bits &= bits - 1) recordHit(at + <usize>ctz(bits) * WORD, 0);
    }
    at += STEP;
  }
  for (; at < wordEnd; at += WORD) {
    const value = load<u64>(at);
    if (value >= low && value <= high) {
      if (!hasRoomFor(1)) {
        store<u32>(SCAN_RESUME_ADDRESS, <u32>at);
        return hitsRecorded();
      }
      recordHit(at, 0);
    }
  }
  store<u32>(SCAN_RESUME_ADDRESS, <u32>positionEnd);
  return hitsRecorded();
}

/** All ones in each lane whose word, sign-flipped, lies in [lowered, raised]. */
@inline
function inRange(words: v128, sign: v128, lowered: v128, raised: v128): v128 {
  const flipped = v128.xor(words, sign);
  return v128.and(i64x2.ge_s(flipped, lowered), i64x2.le_s(flipped, raised));
}
