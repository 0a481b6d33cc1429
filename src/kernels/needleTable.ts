import { chooseRarePair, type RarePair } from './byteFrequency.js';
import {
  DESCRIPTOR_BYTES_FIELD,
  DESCRIPTOR_LENGTH_FIELD,
  DESCRIPTOR_RARE_A_FIELD,
  DESCRIPTOR_RARE_B_FIELD,
  MAX_GROUP_NEEDLES,
  MAX_NEEDLE_LENGTH,
  NEEDLE_BYTES_ADDRESS,
  NEEDLE_DESCRIPTOR_BYTES,
  NEEDLE_TABLE_ADDRESS,
} from './memoryMap.js';

/** Up to MAX_GROUP_NEEDLES needles searched in one pass of the kernel. */
export interface NeedleGroup {
  /** The caller's index of the needle in each slot. */
  readonly needleIndices: readonly number[];
  readonly needles: readonly Uint8Array[];
  readonly rarePairs: readonly RarePair[];
}

/** Splits needles into kernel passes, keeping the caller's order so each pass reports hits in needle order. */
export function planNeedleGroups(needles: readonly Uint8Array[]): NeedleGroup[] {
  needles.forEach((needle, index) => {
    if (needle.length === 0 || needle.length > MAX_NEEDLE_LENGTH) {
      throw new RangeError(
        `needle ${index} is ${needle.length} bytes; needles must be 1 to ${MAX_NEEDLE_LENGTH} bytes`,
      );
    }
  });
  const groups: NeedleGroup[] = [];
  for (let first = 0; first < needles.length; first += MAX_GROUP_NEEDLES) {
    const slice = needles.slice(first, first + MAX_GROUP_NEEDLES);
    groups.push({
      needleIndices: slice.map((_, slot) => first + slot),
      needles: slice,
      rarePairs: slice.map((needle) => chooseRarePair(needle)),
    });
  }
  return groups;
}

/** Writes a group's bytes and descriptors into the needle table (layout in memoryMap.ts). */
export function writeNeedleGroup(memory: Uint8Array, group: NeedleGroup): void {
  const table = new DataView(
    memory.buffer,
    memory.byteOffset + NEEDLE_TABLE_ADDRESS,
    MAX_GROUP_NEEDLES * NEEDLE_DESCRIPTOR_BYTES,
  );
  group.needles.forEach((needle, slot) => {
    const bytesAddress = NEEDLE_BYTES_ADDRESS + slot * MAX_NEEDLE_LENGTH;
    memory.set(needle, bytesAddress);
    const { offsetA, offsetB } = group.rarePairs[slot]!;
    const descriptor = slot * NEEDLE_DESCRIPTOR_BYTES;
    table.setUint32(descriptor + DESCRIPTOR_BYTES_FIELD, bytesAddress, true);
    table.setUint32(descriptor + DESCRIPTOR_LENGTH_FIELD, needle.length, true);
    table.setUint32(descriptor + DESCRIPTOR_RARE_A_FIELD, offsetA, true);
    table.setUint32(descriptor + DESCRIPTOR_RARE_B_FIELD, offsetB, true);
  });
}
