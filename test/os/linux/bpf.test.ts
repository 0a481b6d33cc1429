import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { DANGEROUS_BPF_HELPERS, readBpf, readBpfSymbols } from '../../../src/os/linux/bpf.js';
import { KernelReader } from '../../../src/os/linux/kernelReader.js';
import { kprobeAttachPoints, readKprobes } from '../../../src/os/linux/kprobes.js';
import { walkTaskList } from '../../../src/os/linux/tasks.js';
import { parseHex } from '../../../src/util/hex.js';
import { fixturePath, truth } from '../../support/fixtures.js';
import { OverlayContext } from '../../support/overlay.js';
import { openKernel, otherSnapshots, ownersOf, type KernelFixture } from './kernelFixture.js';

interface BpfTruth {
  programs: Array<{
    id: number;
    type: number;
    type_name: string;
    name: string;
    tag: string;
    jited_len: number;
    xlated_len: number;
    attach: string;
    helper?: string;
    holder_pid: number;
    fd: number;
    sock_inode?: number;
  }>;
  maps: Array<{
    id: number;
    type: number;
    type_name: string;
    name: string;
    key_size: number;
    value_size: number;
    max_entries: number;
    holder_pid: number;
    fd: number;
  }>;
}

const HANG_GUARD_MS = 2000;
const expected = truth('linux61-modern').bpf as BpfTruth;
const processes = truth('linux61-modern').processes as Array<{ pid: number; comm: string }>;
const commOf = (pid: number) => processes.find((process) => process.pid === pid)!.comm;

/** The processes on the task list, whose open files name holders and socket filters. */
const processesOf = (reader: KernelReader) => walkTaskList(reader, reader.profile.requireSymbol('init_task')).tasks;

describe('bpf of linux61-modern', () => {
  let kernel: KernelFixture;
  beforeAll(async () => {
    kernel = await openKernel('linux61-modern', 'elf');
  });
  afterAll(() => kernel.close());

  it('every loaded program with its id, type, name, tag, sizes and the helpers it calls', () => {
    const report = readBpf(kernel.reader, kernel.owners);
    expect(report.problems).toEqual([]);
    expect(report.programs).toMatchObject(
      expected.programs.map((program) => ({
        id: program.id,
        type: program.type,
        typeName: program.type_name,
        name: program.name,
        tag: program.tag,
        jited: true,
        jitedLength: program.jited_len,
        xlatedLength: program.xlated_len,
        calls: (program.helper ? [program.helper] : []).map((helper) => ({
          kind: 'helper',
          name: helper,
          symbol: `bpf_${helper}`,
          owner: 'kernel',
        })),
      })),
    );
  });

  it('names helpers through the kernel: the call lands on the function the BTF enum bpf_func_id names', () => {
    const { programs } = readBpf(kernel.reader, kernel.owners);
    const calls = programs.flatMap((program) => program.calls);
    expect(calls.length).toBeGreaterThan(0);
    const ids = kernel.reader.profile.types.enums.bpf_func_id!.constants;
    for (const call of calls) {
      expect(call.target).toBe(kernel.reader.profile.symbol(call.symbol!));
      expect(call.helperId).toBe(Number(ids[`BPF_FUNC_${call.name}`]));
    }
  });

  it('only the program calling a dangerous helper is suspicious, attached where the kernel records it', () => {
    const { kprobes } = readKprobes(kernel.reader, kernel.owners);
    const { programs } = readBpf(kernel.reader, kernel.owners, { attachPoints: kprobeAttachPoints(kprobes) });
    const dangerous = expected.programs.filter(
      (program) => program.helper !== undefined && DANGEROUS_BPF_HELPERS.has(program.helper),
    );
    expect(dangerous.map((program) => program.name)).toEqual(['lab_wuser']);
    expect(programs.filter((program) => program.suspicious).map((program) => program.id)).toEqual(
      dangerous.map((program) => program.id),
    );
    for (const program of dangerous) {
      const found = programs.find((candidate) => candidate.id === program.id)!;
      expect(found.attachPoints).toEqual([program.attach]);
      expect(found.evidence).toBe(
        `${program.type_name} program ${program.name} (id ${program.id}) calls bpf_${program.helper} (kernel) from ${program.attach}`,
      );
    }
  });

  it('names the process and fd holding each program and map, and the socket each socket filter is attached to', () => {
    const report = readBpf(kernel.reader, kernel.owners, { processes: processesOf(kernel.reader) });
    expect(report.problems).toEqual([]);
    const holder = (pid: number, fd: number) => [{ pid, fd, comm: commOf(pid) }];
    expect(report.programs.map(({ id, holders }) => ({ id, holders }))).toEqual(
      expected.programs.map((program) => ({ id: program.id, holders: holder(program.holder_pid, program.fd) })),
    );
    expect(report.maps.map(({ id, holders }) => ({ id, holders }))).toEqual(
      expected.maps.map((map) => ({ id: map.id, holders: holder(map.holder_pid, map.fd) })),
    );
    const filters = expected.programs.filter((program) => program.sock_inode !== undefined);
    expect(filters.length).toBeGreaterThan(0);
    for (const program of filters)
      expect(report.programs.find((found) => found.id === program.id)!.attachPoints).toEqual([
        `socket:[${program.sock_inode}]`,
      ]);
  });

  it("BPF's symbols are the [bpf] lines of the guest's /proc/kallsyms, each program's JIT image", () => {
    const kallsyms = readFileSync(fixturePath('linux61-modern', 'kallsyms.txt'), 'latin1')
      .split('\n')
      .filter((line) => line.endsWith('\t[bpf]'))
      .map((line) => ({ start: parseHex(line.split(' ')[0]!), name: line.split(' ')[2]!.split('\t')[0]! }));
    expect(kallsyms.length).toBe(expected.programs.length);
    const report = readBpfSymbols(kernel.reader);
    expect(report.problems).toEqual([]);
    expect(report.symbols.map(({ start, name }) => ({ start, name }))).toEqual(expect.arrayContaining(kallsyms));
    const { programs } = readBpf(kernel.reader, kernel.owners);
    for (const program of programs) {
      const image = report.symbols.find((symbol) => symbol.start === program.image)!;
      expect(image.name).toBe(`bpf_prog_${program.tag}_${program.name}`);
      expect(Number(image.end - image.start)).toBeGreaterThanOrEqual(program.jitedLength);
    }
  });

  it('every map with its id, type, name and sizes', () => {
    const { maps } = readBpf(kernel.reader, kernel.owners);
    expect(maps).toMatchObject(
      expected.maps.map((map) => ({
        id: map.id,
        type: map.type,
        typeName: map.type_name,
        name: map.name,
        keySize: map.key_size,
        valueSize: map.value_size,
        maxEntries: map.max_entries,
        suspicious: false,
      })),
    );
  });

  it('a program claiming an absurd instruction count is read without its instructions, within 2 s, with a problem', () => {
    const clean = readBpf(kernel.reader, kernel.owners).programs;
    const victim = clean.find((program) => program.calls.length > 0)!;
    const overlay = new OverlayContext(kernel.context);
    const reader = new KernelReader(overlay.kernel.space, kernel.reader.profile);
    const length = new Uint8Array([0xff, 0xff, 0xff, 0x7f]);
    overlay.image.patchVirtual(overlay.kernel.space, victim.address + reader.offset('bpf_prog', 'len'), length);
    const started = performance.now();
    const report = readBpf(reader, ownersOf(reader));
    expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
    expect(report.problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `^bpf program 0x[0-9a-f]+ \\(id ${victim.id}\\) claims 2147483647 instructions in \\d+ pages: its instructions are not read$`,
        ),
      ),
    ]);
    expect(report.programs.map((program) => program.id)).toEqual(clean.map((program) => program.id));
    expect(report.programs.find((program) => program.id === victim.id)!.calls).toEqual([]);
  });
});

describe.each(otherSnapshots)('bpf of $name ($format)', ({ name, format }) => {
  let kernel: KernelFixture;
  beforeAll(async () => {
    kernel = await openKernel(name, format);
  });
  afterAll(() => kernel.close());

  it("no suspicious program and no problem, reading every process's open files", () => {
    const report = readBpf(kernel.reader, kernel.owners, { processes: processesOf(kernel.reader) });
    expect(report.problems).toEqual([]);
    expect(report.programs.filter((program) => program.suspicious)).toEqual([]);
  });
});
