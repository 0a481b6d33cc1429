import { describe, expect, it } from 'vitest';
import * as map from '../../src/kernels/memoryMap.js';

describe('kernel memory map', () => {
  it('lays out disjoint areas in address order, the window last and page-aligned', () => {
    const areas = [
      { name: 'scan resume', start: map.SCAN_RESUME_ADDRESS, end: map.SCAN_RESUME_ADDRESS + 4 },
      {
        name: 'needle table',
        start: map.NEEDLE_TABLE_ADDRESS,
        end: map.NEEDLE_TABLE_ADDRESS + map.MAX_GROUP_NEEDLES * map.NEEDLE_DESCRIPTOR_BYTES,
      },
      {
        name: 'needle bytes',
        start: map.NEEDLE_BYTES_ADDRESS,
        end: map.NEEDLE_BYTES_ADDRESS + map.NEEDLE_BYTES_CAPACITY,
      },
      { name: 'hits', start: map.HITS_ADDRESS, end: map.HITS_ADDRESS + map.HIT_CAPACITY * map.HIT_BYTES },
      { name: 'window', start: map.WINDOW_ADDRESS, end: map.WINDOW_ADDRESS + map.DEFAULT_WINDOW_BYTES },
    ];
    expect(areas[0]!.start).toBeGreaterThanOrEqual(map.WASM_PAGE_BYTES);
    for (let i = 1; i < areas.length; i++) {
      expect(areas[i]!.start, `${areas[i]!.name} after ${areas[i - 1]!.name}`).toBeGreaterThanOrEqual(
        areas[i - 1]!.end,
      );
    }
    expect(map.WINDOW_ADDRESS % map.WASM_PAGE_BYTES).toBe(0);
    expect(map.MAX_NEEDLE_LENGTH * map.MAX_GROUP_NEEDLES).toBeLessThanOrEqual(map.NEEDLE_BYTES_CAPACITY);
  });

  it('fits each field inside its record', () => {
    for (const field of [
      map.DESCRIPTOR_BYTES_FIELD,
      map.DESCRIPTOR_LENGTH_FIELD,
      map.DESCRIPTOR_RARE_A_FIELD,
      map.DESCRIPTOR_RARE_B_FIELD,
    ]) {
      expect(field + 4).toBeLessThanOrEqual(map.NEEDLE_DESCRIPTOR_BYTES);
    }
    for (const field of [map.HIT_START_FIELD, map.HIT_SLOT_FIELD]) expect(field + 4).toBeLessThanOrEqual(map.HIT_BYTES);
  });
});
