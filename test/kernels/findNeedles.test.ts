import { describe, expect, it } from 'vitest';
import { KernelInstance } from '../../src/kernels/kernelInstance.js';
import {
  HITS_ADDRESS,
  HIT_BYTES,
  HIT_CAPACITY,
  HIT_SLOT_FIELD,
  HIT_START_FIELD,
  SCAN_RESUME_ADDRESS,
  WINDOW_ADDRESS,
} from '../../src/kernels/memoryMap.js';
import { planNeedleGroups } from '../../src/kernels/needleTable.js';

/** The raw kernel contract of memoryMap.ts, below the searcher: capacity, resume address, hit records. */
describe('findNeedles', () => {
  const kernel = KernelInstance.shared(192 * 1024);

  function hitsOfLastCall(count: number): Array<{ start: number; slot: number }> {
    return Array.from({ length: count }, (_, i) => {
      const record = (HITS_ADDRESS + i * HIT_BYTES) / 4;
      return { start: kernel.words[record + HIT_START_FIELD / 4]!, slot: kernel.words[record + HIT_SLOT_FIELD / 4]! };
    });
  }

  it('stops between addresses before overflowing the hit area, and resumes without loss or repeats', () => {
    const zero = Uint8Array.of(0);
    const group = planNeedleGroups([zero, zero, zero])[0]!;
    kernel.loadGroup(group);
    kernel.window.fill(0);
    const dataEnd = WINDOW_ADDRESS + kernel.window.length;

    const first = kernel.kernels.findNeedles(3, dataEnd, WINDOW_ADDRESS, dataEnd);
    const resume = kernel.words[SCAN_RESUME_ADDRESS / 4]!;
    expect(first).toBeLessThanOrEqual(HIT_CAPACITY);
    expect(first).toBe(3 * Math.floor(HIT_CAPACITY / 3));
    expect(resume).toBe(WINDOW_ADDRESS + first / 3);
    const firstHits = hitsOfLastCall(first);
    expect(firstHits.slice(-3)).toEqual([0, 1, 2].map((slot) => ({ start: resume - 1, slot })));

    const second = kernel.kernels.findNeedles(3, dataEnd, resume, dataEnd);
    expect(hitsOfLastCall(second)[0]).toEqual({ start: resume, slot: 0 });
  });

  it('reports a complete scan by resuming at its end, and honours dataEnd for needles that would run past it', () => {
    const group = planNeedleGroups([Uint8Array.of(7, 7), Uint8Array.of(7)])[0]!;
    kernel.loadGroup(group);
    kernel.window.fill(7, 0, 100);
    const dataEnd = WINDOW_ADDRESS + 40;
    const count = kernel.kernels.findNeedles(2, dataEnd, WINDOW_ADDRESS + 10, WINDOW_ADDRESS + 50);
    expect(kernel.words[SCAN_RESUME_ADDRESS / 4]).toBe(WINDOW_ADDRESS + 50);
    const hits = hitsOfLastCall(count);
    expect(hits.filter((hit) => hit.slot === 0).map((hit) => hit.start - WINDOW_ADDRESS)).toEqual(range(10, 39));
    expect(hits.filter((hit) => hit.slot === 1).map((hit) => hit.start - WINDOW_ADDRESS)).toEqual(range(10, 40));
  });
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}
