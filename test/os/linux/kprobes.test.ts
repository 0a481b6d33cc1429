import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelReader } from '../../../src/os/linux/kernelReader.js';
import { kprobeAttachPoints, readKprobes } from '../../../src/os/linux/kprobes.js';
import { parseHex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import { OverlayContext } from '../../support/overlay.js';
import { openKernel, otherSnapshots, ownersOf, type KernelFixture } from './kernelFixture.js';

interface ModernTruth {
  module: { name: string };
  kprobes: Array<{ symbol: string; addr: string; kp: string; pre_handler: string; pre_handler_symbol: string }>;
  kprobes_list: string[];
}
interface BpfTruth {
  programs: Array<{ id: number; name: string; attach: string }>;
}

const HANG_GUARD_MS = 2000;
const modern = truth('linux61-modern').modern as ModernTruth;
const bpf = truth('linux61-modern').bpf as BpfTruth;

describe('kprobes of linux61-modern', () => {
  let kernel: KernelFixture;
  beforeAll(async () => {
    kernel = await openKernel('linux61-modern', 'elf');
  });
  afterAll(() => kernel.close());

  it("finds labkit2's kprobe at its address with its pre-handler, and nothing else suspicious", () => {
    const report = readKprobes(kernel.reader, kernel.owners);
    expect(report.problems).toEqual([]);
    const [hook] = modern.kprobes;
    const probe = report.kprobes.find((found) => found.address === parseHex(hook!.kp));
    expect(probe).toMatchObject({
      probed: parseHex(hook!.addr),
      function: hook!.symbol,
      offset: 0n,
      kind: 'k',
      preHandler: { address: parseHex(hook!.pre_handler), symbol: hook!.pre_handler_symbol, owner: modern.module.name },
      postHandler: undefined,
      traceEvent: undefined,
      suspicious: true,
    });
    expect(probe!.evidence).toContain(
      `handled outside kernel text by ${hook!.pre_handler_symbol} (${modern.module.name})`,
    );
    expect(report.kprobes.filter((found) => found.suspicious).map((found) => found.address)).toEqual(
      modern.kprobes.map((found) => parseHex(found.kp)),
    );
  });

  it("lists what the kernel's kprobes/list shows", () => {
    const { kprobes } = readKprobes(kernel.reader, kernel.owners);
    expect(kprobes.map((found) => found.listing)).toEqual(modern.kprobes_list);
    expect(kprobes.every((found) => found.ftrace)).toBe(true);
  });

  it("attributes the kernel's own kprobe event to the BPF program it runs, without a finding", () => {
    const { kprobes } = readKprobes(kernel.reader, kernel.owners);
    const attached = bpf.programs.filter((program) => program.attach.startsWith('kprobe:'));
    expect(attached.length).toBeGreaterThan(0);
    for (const program of attached) {
      const target = program.attach.slice('kprobe:'.length);
      const probe = kprobes.find((found) => found.function === target);
      expect(probe).toMatchObject({ suspicious: false, preHandler: { symbol: 'kprobe_dispatcher', owner: 'kernel' } });
      expect(probe!.traceEvent!.programs.map(({ id, name }) => ({ id, name }))).toEqual([
        { id: program.id, name: program.name },
      ]);
      expect(kprobeAttachPoints(kprobes).get(probe!.traceEvent!.programs[0]!.address)).toEqual([program.attach]);
    }
  });

  it('an aggregate kprobe is expanded to the probes it holds, which take its flags', () => {
    const clean = readKprobes(kernel.reader, kernel.owners).kprobes;
    const aggregate = parseHex(modern.kprobes[0]!.kp);
    const member = clean.find((found) => found.address !== aggregate)!;
    const overlay = new OverlayContext(kernel.context);
    const reader = new KernelReader(overlay.kernel.space, kernel.reader.profile);
    const field = (probe: bigint, name: string) => probe + reader.offset('kprobe', name);
    // labkit2's kprobe becomes an aggregate holding the other one, which leaves its own bucket.
    const table = reader.profile.requireSymbol('kprobe_table');
    let bucket = table;
    // Read through the base context: the overlay's space keeps what it read before the patches.
    while (kernel.reader.u64(bucket) !== field(member.address, 'hlist')) {
      bucket += 8n;
      if (bucket - table > 1n << 16n) throw new Error('the kprobe is at no bucket head');
    }
    overlay.patchKernelU64(bucket, kernel.reader.u64(field(member.address, 'hlist')));
    overlay.patchKernelU64(field(aggregate, 'pre_handler'), reader.profile.requireSymbol('aggr_pre_handler'));
    overlay.patchKernelU64(field(aggregate, 'list'), field(member.address, 'list'));
    overlay.patchKernelU64(field(member.address, 'list'), field(aggregate, 'list'));
    overlay.image.patchVirtual(overlay.kernel.space, field(member.address, 'flags'), new Uint8Array(4));
    overlay.image.patchVirtual(overlay.kernel.space, field(aggregate, 'flags'), new Uint8Array([8 | 4, 0, 0, 0]));
    const report = readKprobes(reader, ownersOf(reader));
    expect(report.problems).toEqual([]);
    expect(report.kprobes).toMatchObject([
      { address: member.address, aggregate, flagNames: ['OPTIMIZED', 'FTRACE'], suspicious: false },
    ]);
    expect(report.kprobes[0]!.listing).toBe(`${member.listing.replace(/ \[FTRACE\]$/, '')} [OPTIMIZED][FTRACE]`);
  });

  it('a kprobe_table chain made cyclic ends within 2 s with a problem, every kprobe still listed', () => {
    const clean = readKprobes(kernel.reader, kernel.owners).kprobes;
    const overlay = new OverlayContext(kernel.context);
    const reader = new KernelReader(overlay.kernel.space, kernel.reader.profile);
    // The labkit2 kprobe's hlist link points back at itself.
    const probe = parseHex(modern.kprobes[0]!.kp);
    overlay.patchKernelU64(
      probe + reader.offset('kprobe', 'hlist') + reader.offset('hlist_node', 'next'),
      probe + reader.offset('kprobe', 'hlist'),
    );
    const started = performance.now();
    const report = readKprobes(reader, ownersOf(reader));
    expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
    expect(report.problems).toEqual([expect.stringMatching(/^kprobe_table\[\d+\]: hlist loops back to 0x[0-9a-f]+$/)]);
    expect(report.kprobes.map((found) => found.address).sort()).toEqual(clean.map((found) => found.address).sort());
  });
});

describe.each(otherSnapshots)('kprobes of $name ($format)', ({ name, format }) => {
  let kernel: KernelFixture;
  beforeAll(async () => {
    kernel = await openKernel(name, format);
  });
  afterAll(() => kernel.close());

  it('no suspicious kprobe and no problem', () => {
    const report = readKprobes(kernel.reader, kernel.owners);
    expect(report.problems).toEqual([]);
    expect(report.kprobes.filter((found) => found.suspicious)).toEqual([]);
  });
});
