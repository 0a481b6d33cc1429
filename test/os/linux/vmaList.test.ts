import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelReader } from '../../../src/os/linux/kernelReader.js';
import { readMemoryRegions, type MemoryRegion } from '../../../src/os/linux/vmas.js';
import type { IsfTypes } from '../../../src/symbols/isf.js';
import { Profile } from '../../../src/symbols/profile.js';
import { hex } from '../../../src/util/hex.js';
import { openLinuxFixture, type LinuxFixture } from '../../support/linuxReaders.js';
import { OverlayContext } from '../../support/overlay.js';

/**
 * Kernels before 6.1 keep a process's VMAs on a list (mm->mmap, vm_next) and have no maple
 * tree; the reader chooses by the profile's fields. No fixture runs such a kernel, so this
 * builds one from linux61-modern: a profile whose mm_struct has `mmap` where the tree's root
 * pointer is (and no mm_mt), whose vm_area_struct has `vm_next` in a pointer slot unused here
 * (vm_userfaultfd_ctx), and memory in which lab_injected's real VMAs are chained through them.
 */
let base: LinuxFixture;
beforeAll(async () => {
  base = await openLinuxFixture('linux61-modern', 'elf');
});
afterAll(() => base.close());

function listProfile(profile: Profile): { profile: Profile; mmap: number; vmNext: number } {
  // Copies of the two structs to edit, beside the others: a profile's types may be a record decoded as it is read (lazyRecord).
  const mm = structuredClone(profile.types.user_types['mm_struct']!);
  const vma = structuredClone(profile.types.user_types['vm_area_struct']!);
  const types: IsfTypes = {
    ...profile.types,
    user_types: { ...profile.types.user_types, mm_struct: mm, vm_area_struct: vma },
  };
  const pointer = vma.fields['vm_file']!.type;
  const mmap = profile.offsetOf('mm_struct', 'mm_mt') + profile.offsetOf('maple_tree', 'ma_root');
  const vmNext = profile.offsetOf('vm_area_struct', 'vm_userfaultfd_ctx');
  delete mm.fields['mm_mt'];
  for (const [name, field] of Object.entries(mm.fields))
    if (field.anonymous && field.offset === 0) delete mm.fields[name];
  mm.fields['mmap'] = { type: pointer, offset: mmap };
  vma.fields['vm_next'] = { type: pointer, offset: vmNext };
  return {
    profile: new Profile(types, profile.symbolList, profile.slide, profile.origin, profile.source, profile.banner),
    mmap,
    vmNext,
  };
}

/** lab_injected's regions read through the list: `next(index)` gives the vm_next of each VMA. */
function readThroughList(next: (index: number, vmas: bigint[]) => bigint): {
  regions: MemoryRegion[];
  problems: string[];
  clean: MemoryRegion[];
} {
  const task = base.task('lab_injected');
  const clean = readMemoryRegions(base.reader, task.mm).regions;
  const { profile, mmap, vmNext } = listProfile(base.reader.profile);
  expect(profile.hasField('mm_struct', 'mm_mt')).toBe(false);
  const context = new OverlayContext(base.context);
  const vmas = clean.map((region) => region.vma);
  context.patchKernelU64(task.mm + BigInt(mmap), vmas[0]!);
  vmas.forEach((vma, index) => context.patchKernelU64(vma + BigInt(vmNext), next(index, vmas)));
  return { ...readMemoryRegions(new KernelReader(context.kernel.space, profile), task.mm), clean };
}

describe('the VMA list of kernels before the maple tree', () => {
  it('gives the same regions as the tree when the profile has mm->mmap instead of mm_mt', () => {
    const { regions, problems, clean } = readThroughList((index, vmas) => vmas[index + 1] ?? 0n);
    expect(problems).toEqual([]);
    expect(regions).toEqual(clean);
  });

  it('a list looping back to its first VMA is cut there, with a problem', () => {
    const { regions, problems, clean } = readThroughList((index, vmas) => vmas[index + 1] ?? vmas[0]!);
    expect(problems).toEqual([`VMA list loops back to ${hex(clean[0]!.vma)}`]);
    expect(regions).toEqual(clean);
  });

  it('a vm_next into unmapped memory ends the list there, with a problem', () => {
    const nowhere = base.context.kernel.pageOffsetBase + (1n << 44n);
    const { regions, problems, clean } = readThroughList((index, vmas) =>
      index === 3 ? nowhere : (vmas[index + 1] ?? 0n),
    );
    expect(problems).toEqual([
      expect.stringMatching(
        new RegExp(`^vm_area_struct ${hex(nowhere)} is unreadable: virtual 0x[0-9a-f]+ does not translate`),
      ),
    ]);
    expect(regions).toEqual(clean.slice(0, 4));
  });
});
