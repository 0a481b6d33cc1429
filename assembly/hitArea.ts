import { HITS_ADDRESS, HIT_BYTES, HIT_CAPACITY, HIT_SLOT_FIELD, HIT_START_FIELD } from './memoryMap';

/**
 * The hit area as every kernel fills it (memoryMap.ts): hits in address order, each a start
 * address and the id of what matched there. A kernel checks for room before verifying an
 * address, so it stops between two addresses and the host resumes without losing a hit.
 */

/** No address in the window is 0 (memoryMap.ts), so it can mean "no stop". */
export const ALL_VERIFIED: usize = 0;

let hitCount: i32 = 0;

export function resetHits(): void {
  hitCount = 0;
}

export function hitsRecorded(): i32 {
  return hitCount;
}

/** Whether `count` more hits still fit. */
@inline
export function hasRoomFor(count: i32): bool {
  return hitCount + count <= HIT_CAPACITY;
}

@inline
export function recordHit(at: usize, id: u32): void {
  const hit = <usize>(HITS_ADDRESS + hitCount * HIT_BYTES);
  store<u32>(hit, <u32>at, HIT_START_FIELD);
  store<u32>(hit, id, HIT_SLOT_FIELD);
  hitCount++;
}
