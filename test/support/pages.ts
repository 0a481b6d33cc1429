import type { X86AddressSpace } from '../../src/space/x86.js';
import { userHalfEnd } from '../../src/os/linux/reverseMap.js';

const PAGE = 4096;

/**
 * The first virtual address in a process's user half where two virtually consecutive 4 KiB pages
 * sit in frames that are not neighbours (in either order): a string planted across it exists
 * only in the process's view, never as one run of physical bytes.
 */
export function physicallySplitBoundary(space: X86AddressSpace): bigint | undefined {
  const runs = [...space.mappings(0n, userHalfEnd(space))];
  const boundary = runs.slice(1).find((run, index) => {
    const previous = runs[index]!;
    const previousLastFrame = previous.physical + previous.length - PAGE;
    return (
      previous.virtual + BigInt(previous.length) === run.virtual &&
      run.physical !== previousLastFrame + PAGE &&
      run.physical !== previousLastFrame
    );
  });
  return boundary?.virtual;
}
