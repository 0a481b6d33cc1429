import type { X86AddressSpace } from '../../space/x86.js';
import type { Profile } from '../../symbols/profile.js';
import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import { cString } from '../../util/text.js';

/** Steps any kernel list walk may take before it is declared runaway (a real list is far shorter). */
export const DEFAULT_MAX_LIST_STEPS = 1 << 20;

/** Why a walk stopped early; analyses turn these into `partial` results with a warning. */
export interface WalkProblem {
  readonly kind: 'cycle' | 'unreadable' | 'step-limit' | 'broken-link';
  readonly at: bigint;
  readonly detail: string;
}

export interface ListWalk {
  /** Addresses of the containing objects (entry address minus the link offset), in list order. */
  readonly entries: bigint[];
  readonly problem: WalkProblem | undefined;
}

/**
 * Typed reads of kernel objects by struct and field name, through the kernel address space.
 * Everything read is guest-controlled: list walks are cycle-checked and bounded, strings are
 * length-capped, and an unreadable address is a typed error rather than garbage.
 */
export class KernelReader {
  private readonly scratch = new Uint8Array(8);
  private readonly view = new DataView(this.scratch.buffer);

  constructor(
    readonly space: X86AddressSpace,
    readonly profile: Profile,
  ) {}

  offset(struct: string, field: string): bigint {
    return BigInt(this.profile.offsetOf(struct, field));
  }

  bytes(address: bigint, length: number): Uint8Array {
    const bytes = new Uint8Array(length);
    this.space.read(address, bytes);
    return bytes;
  }

  u64(address: bigint): bigint {
    this.space.read(address, this.scratch);
    return this.view.getBigUint64(0, true);
  }

  u32(address: bigint): number {
    this.space.read(address, this.scratch.subarray(0, 4));
    return this.view.getUint32(0, true);
  }

  i32(address: bigint): number {
    this.space.read(address, this.scratch.subarray(0, 4));
    return this.view.getInt32(0, true);
  }

  /** A NUL-terminated string of at most `max` bytes (latin1: kernel strings are bytes). */
  cString(address: bigint, max: number): string {
    return cString(this.bytes(address, max));
  }

  /** `struct.field` of the object at `base`, as a u64/pointer. */
  pointerField(base: bigint, struct: string, field: string): bigint {
    return this.u64(base + this.offset(struct, field));
  }

  i32Field(base: bigint, struct: string, field: string): number {
    return this.i32(base + this.offset(struct, field));
  }

  u32Field(base: bigint, struct: string, field: string): number {
    return this.u32(base + this.offset(struct, field));
  }

  /**
   * Walk forward and, when the forward walk is cut short, backward too, so one broken or forged
   * link loses only what lies between the two break points. Entries keep list order: the
   * forward part, then what only the backward walk reached.
   */
  walkListBothWays(
    head: bigint,
    linkOffset: bigint,
    maxSteps?: number,
  ): { entries: bigint[]; problems: WalkProblem[] } {
    const options = maxSteps === undefined ? {} : { maxSteps };
    const forward = this.walkList(head, linkOffset, options);
    if (!forward.problem) return { entries: forward.entries, problems: [] };
    const backward = this.walkList(head, linkOffset, { ...options, direction: 'prev' });
    const seen = new Set(forward.entries);
    return {
      entries: [...forward.entries, ...backward.entries.filter((entry) => !seen.has(entry)).reverse()],
      problems: [forward.problem, ...(backward.problem ? [backward.problem] : [])],
    };
  }

  /**
   * Walk a circular `struct list_head` list from `head`, following `next` (or `prev`), and
   * return the containing objects (`entry - linkOffset`). Stops at the head, at a repeated node
   * (cycle), at an unreadable node or after `maxSteps`; `verifyBackLinks` also requires
   * `next->prev == node`, which a naive DKOM unlink or a forged pointer breaks.
   */
  walkList(
    head: bigint,
    linkOffset: bigint,
    options: { direction?: 'next' | 'prev'; maxSteps?: number; verifyBackLinks?: boolean } = {},
  ): ListWalk {
    const forward = (options.direction ?? 'next') === 'next';
    const nextOffset = this.offset('list_head', forward ? 'next' : 'prev');
    const backOffset = this.offset('list_head', forward ? 'prev' : 'next');
    const maxSteps = options.maxSteps ?? DEFAULT_MAX_LIST_STEPS;
    const seen = new Set<bigint>([head]);
    const entries: bigint[] = [];
    let node = head;
    for (let step = 0; ; step++) {
      if (step >= maxSteps)
        return { entries, problem: { kind: 'step-limit', at: node, detail: `stopped after ${maxSteps} entries` } };
      let next: bigint;
      try {
        next = this.u64(node + nextOffset);
        if (options.verifyBackLinks && next !== head && this.u64(next + backOffset) !== node) {
          return {
            entries,
            problem: { kind: 'broken-link', at: next, detail: `${hex(next)} does not link back to ${hex(node)}` },
          };
        }
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        return {
          entries,
          problem: { kind: 'unreadable', at: node, detail: `list node ${hex(node)} is unreadable: ${error.message}` },
        };
      }
      if (next === head) return { entries, problem: undefined };
      if (seen.has(next))
        return {
          entries,
          problem: {
            kind: 'cycle',
            at: next,
            detail: `list loops back to ${hex(next)} without returning to its head ${hex(head)}`,
          },
        };
      // Only a node whose own link reads is an entry: a pointer into unmapped memory ends the
      // walk there instead of yielding an object that every later read would fail on.
      try {
        this.u64(next + nextOffset);
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        return {
          entries,
          problem: {
            kind: 'unreadable',
            at: next,
            detail: `${hex(node)} points to ${hex(next)}, which is unreadable: ${error.message}`,
          },
        };
      }
      seen.add(next);
      entries.push(next - linkOffset);
      node = next;
    }
  }
}
