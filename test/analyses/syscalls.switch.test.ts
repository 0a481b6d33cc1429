import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { followSwitch, type SwitchMap } from '../../src/os/linux/x86Switch.js';

const START = 0xffffffff81000000n;
const U32_MAX = 0xffffffff;

/** Where `nr` leaves the switch, or undefined when no exit covers it. */
function targetOf(map: SwitchMap, nr: number): bigint | undefined {
  return map.exits.find((exit) => exit.first <= nr && nr <= exit.last)?.target;
}

/** Conditional jumps that split the cases: ja and jae jump to the upper half, jbe and jb to the lower. */
const HALF_SPLITS: ReadonlyArray<readonly [condition: number, takenGoesRight: boolean]> = [
  [0x7, true],
  [0x3, true],
  [0x6, false],
  [0x2, false],
];

/**
 * A tiny compiler of `switch (nr)` into the shape GCC gives the kernel's dispatchers: a binary
 * search of `cmp $v, %esi; jne +5; jmp handler; ja right-half` (or jae, jbe, jb), each empty half a jmp to the default.
 */
class SwitchAssembler {
  private readonly bytes: number[] = [];

  constructor(readonly start: bigint) {}

  get code(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }

  emit(...bytes: number[]): void {
    this.bytes.push(...bytes);
  }

  private rel32(value: number): number[] {
    return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
  }

  /** `jmp`/`call` (opcode e9/e8) to an absolute address outside the code. */
  transfer(opcode: number, target: bigint): void {
    const next = this.start + BigInt(this.bytes.length + 5);
    this.emit(opcode, ...this.rel32(Number(BigInt.asIntN(32, target - next))));
  }

  cmpEsi(value: number): void {
    this.emit(0x81, 0xfe, ...this.rel32(value));
  }

  /** A rel32 jcc whose displacement is filled in by the returned function, at the current position then. */
  forwardBranch(condition: number): () => void {
    this.emit(0x0f, 0x80 | condition, 0, 0, 0, 0);
    const end = this.bytes.length;
    return () => this.bytes.splice(end - 4, 4, ...this.rel32(this.bytes.length - end));
  }

  compile(cases: ReadonlyArray<readonly [number, bigint]>, fallback: bigint): void {
    if (cases.length === 0) return this.transfer(0xe9, fallback);
    const middle = cases.length >> 1;
    const [value, target] = cases[middle]!;
    const [condition, takenGoesRight] = HALF_SPLITS[value % HALF_SPLITS.length]!;
    // Either test the middle case first, or split without it (GCC does both): [..middle) and [middle..).
    const testMiddle = cases.length === 1 || ((value >>> 2) & 1) === 1;
    const left = cases.slice(0, middle);
    const right = cases.slice(testMiddle ? middle + 1 : middle);
    if (testMiddle) {
      this.cmpEsi(value);
      this.emit(0x75, 0x05); // jne over the next jmp
      this.transfer(0xe9, target);
    } else {
      // ja/jbe split after the compared value, jae/jb before it: compare with value - 1 for the former.
      this.cmpEsi(condition === 0x7 || condition === 0x6 ? value - 1 : value);
    }
    const taken = this.forwardBranch(condition);
    this.compile(takenGoesRight ? left : right, fallback);
    taken();
    this.compile(takenGoesRight ? right : left, fallback);
  }
}

describe('following a compiled switch', () => {
  it('maps every value of random switches to its handler, whatever bytes the immediates hold', () => {
    const handler = (index: number) => 0xffffffff82000000n + BigInt(index) * 0x40n;
    const fallback = 0xffffffff8f000000n;
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: U32_MAX }), { maxLength: 200 }),
        fc.array(fc.integer({ min: 0, max: U32_MAX }), { maxLength: 20 }),
        (values, probes) => {
          const cases = values.sort((a, b) => a - b).map((value, index) => [value, handler(index)] as const);
          const assembler = new SwitchAssembler(START);
          assembler.compile(cases, fallback);
          const map = followSwitch(assembler.code, START);
          expect(map.stops).toEqual([]);
          // Only real jumps are exits: one per case and one per empty half, never bytes read out of an immediate.
          const targets = new Set([...cases.map(([, target]) => target), fallback]);
          for (const exit of map.exits) expect(targets.has(exit.target)).toBe(true);
          // The exits partition all 2^32 values.
          const covered = map.exits.reduce((total, exit) => total + (exit.last - exit.first + 1), 0);
          expect(covered).toBe(U32_MAX + 1);
          const expected = new Map(cases);
          for (const nr of [...values, ...values.map((value) => (value + 1) >>> 0), ...probes, 0, U32_MAX]) {
            expect(targetOf(map, nr), `nr ${nr}`).toBe(expected.get(nr) ?? fallback);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('stops at padding, nops and `test %esi,%esi`, and treats a call as the handler of a noreturn case', () => {
    const assembler = new SwitchAssembler(START);
    assembler.emit(0xf3, 0x0f, 0x1e, 0xfa); // endbr64
    assembler.emit(0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00); // nopw 0x0(%rax,%rax,1)
    assembler.emit(0x85, 0xf6); // test %esi,%esi
    assembler.emit(0x75, 0x05); // jne +5
    assembler.transfer(0xe8, 0xffffffff83000000n); // nr 0: call (noreturn)
    assembler.transfer(0xe9, 0xffffffff84000000n); // everything else
    assembler.emit(0xcc, 0xe8, 0xe8, 0xe8, 0xe8); // int3 padding, then bytes that look like a call
    const map = followSwitch(assembler.code, START);
    expect(map).toEqual({
      exits: [
        { first: 0, last: 0, site: START + 14n, target: 0xffffffff83000000n },
        { first: 1, last: U32_MAX, site: START + 19n, target: 0xffffffff84000000n },
      ],
      stops: [],
    });
  });

  it('reports the values whose path it cannot follow instead of guessing, and survives a jump to itself', () => {
    const assembler = new SwitchAssembler(START);
    assembler.cmpEsi(10);
    assembler.emit(0x77, 0x03); // ja +3 (to the mov)
    assembler.emit(0xeb, 0xfe); // jmp to itself, for nr <= 10
    assembler.emit(0xcc);
    assembler.emit(0x48, 0x89, 0xf0); // mov %rsi,%rax: not part of a switch
    const map = followSwitch(assembler.code, START);
    expect(map.exits).toEqual([]);
    expect(map.stops).toEqual([
      { first: 11, last: U32_MAX, at: START + 11n, reason: 'cannot decode instruction bytes 4889f0' },
    ]);
  });

  it('gives up after its instruction budget with one stop covering every unfinished value', () => {
    const assembler = new SwitchAssembler(START);
    assembler.compile(
      Array.from({ length: 64 }, (_, index) => [index * 3, 0xffffffff82000000n + BigInt(index)] as const),
      0xffffffff8f000000n,
    );
    const map = followSwitch(assembler.code, START, { maxSteps: 20 });
    expect(map.stops).toHaveLength(1);
    expect(map.stops[0]!.reason).toMatch(/^gave up after 20 instructions with \d+ paths unfinished$/);
    // Every value is either mapped or inside the stop's range.
    for (let nr = 0; nr < 200; nr++) {
      const stop = map.stops[0]!;
      expect(targetOf(map, nr) !== undefined || (stop.first <= nr && nr <= stop.last), `nr ${nr}`).toBe(true);
    }
  });

  it('does not branch on flags that no compare of the switch value set', () => {
    const code = Uint8Array.from([0x83, 0xf8, 0x05, 0x74, 0x00]); // cmp $5,%eax; je
    expect(followSwitch(code, START).stops).toEqual([
      { first: 0, last: U32_MAX, at: START, reason: 'compares register 0, not the switch value' },
    ]);
  });
});
