import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBpf } from '../../../src/os/linux/bpf.js';
import { enabledFunctions, readFtraceOps, readFtraceRecords, type FtraceOps } from '../../../src/os/linux/ftrace.js';
import { KernelReader } from '../../../src/os/linux/kernelReader.js';
import { parseHex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import { OverlayContext } from '../../support/overlay.js';
import { openKernel, otherSnapshots, ownersOf, type KernelFixture } from './kernelFixture.js';

interface ModernTruth {
  module: { name: string };
  ftrace_hooks: Array<{ target: string; target_addr: string; ops: string; func: string; func_symbol: string }>;
  enabled_functions: string[];
}

const HANG_GUARD_MS = 2000;
const modern = truth('linux61-modern').modern as ModernTruth;

/**
 * One tracefs enabled_functions line: `function (refs) R I D`, then for a site calling a
 * dedicated trampoline `\ttramp: ADDR (callback+0x0/0xSIZE [module]) ->callback…`.
 */
function parseEnabledLine(line: string) {
  const match =
    /^(\S+) \((\d+)\)( R| {2})( I| {2})( D| {2})(?:\ttramp: (0x[0-9a-f]+) \((\w+)\+0x0\/0x[0-9a-f]+(?: \[(\w+)\])?\) ->.*)?$/.exec(
      line,
    );
  if (!match) throw new Error(`unexpected enabled_functions line ${JSON.stringify(line)}`);
  const [, name, count, regs, ipmodify, direct, trampoline, callback, module] = match;
  return {
    function: name,
    refCount: Number(count),
    regs: regs === ' R',
    ipmodify: ipmodify === ' I',
    direct: direct === ' D',
    trampolines: trampoline
      ? [{ trampoline: parseHex(trampoline), callbackSymbol: callback, callbackOwner: module ?? 'kernel' }]
      : [],
  };
}

describe('ftrace of linux61-modern', () => {
  let kernel: KernelFixture;
  beforeAll(async () => {
    kernel = await openKernel('linux61-modern', 'elf');
  });
  afterAll(() => kernel.close());

  it("finds labkit2's ftrace_ops on its target, with its callback, and nothing else suspicious", () => {
    const report = readFtraceOps(kernel.reader, kernel.owners);
    expect(report.problems).toEqual([]);
    const [hook] = modern.ftrace_hooks;
    const ops = report.ops.find((found) => found.address === parseHex(hook!.ops));
    expect(ops).toMatchObject({
      callback: parseHex(hook!.func),
      callbackSymbol: hook!.func_symbol,
      callbackOwner: modern.module.name,
      targets: [{ ip: parseHex(hook!.target_addr), function: hook!.target, owner: 'kernel' }],
      tracesAll: false,
      suspicious: true,
    });
    expect(ops!.flagNames).toContain('ENABLED');
    expect(ops!.evidence).toContain(
      `calls ${hook!.func_symbol} (${modern.module.name}, outside kernel text) on ${hook!.target}`,
    );
    expect(report.ops.filter((found) => found.suspicious).map((found) => found.address)).toEqual(
      modern.ftrace_hooks.map((found) => parseHex(found.ops)),
    );
    // The kprobes' shared ftrace_ops is the kernel's own: listed, not a finding.
    const kernelOps = report.ops.filter((found: FtraceOps) => !found.suspicious);
    expect(kernelOps.map((found) => [found.callbackSymbol, found.callbackOwner])).toEqual([
      ['kprobe_ftrace_handler', 'kernel'],
    ]);
    expect(kernelOps[0]!.flagNames).toContain('SAVE_REGS');
  });

  it("enabled_functions equals the kernel's own tracefs view", () => {
    const ops = readFtraceOps(kernel.reader, kernel.owners);
    const records = readFtraceRecords(kernel.reader);
    expect(records.problems).toEqual([]);
    const report = enabledFunctions(kernel.reader, kernel.owners, ops.ops, records.records);
    expect(report.problems).toEqual([]);
    expect(report.functions).toMatchObject(modern.enabled_functions.map(parseEnabledLine));
    expect(report.functions.filter((found) => found.suspicious).map((found) => found.function)).toEqual(
      modern.ftrace_hooks.map((found) => found.target),
    );
  });

  it("each enabled site's call lands on a target the kernel's records account for", () => {
    const ops = readFtraceOps(kernel.reader, kernel.owners);
    const records = readFtraceRecords(kernel.reader);
    const { functions } = enabledFunctions(kernel.reader, kernel.owners, ops.ops, records.records);
    expect(functions.length).toBe(modern.enabled_functions.length);
    for (const site of functions) {
      const bytes = kernel.reader.bytes(site.ip, 5);
      expect(bytes[0]).toBe(0xe8); // call rel32
      const target = BigInt.asUintN(64, site.ip + 5n + BigInt(new DataView(bytes.buffer).getInt32(1, true)));
      expect(site.callTargets).toContain(target);
    }
  });

  it('an ftrace_ops_list made cyclic ends within 2 s with a problem, every ops still listed', () => {
    const clean = readFtraceOps(kernel.reader, kernel.owners).ops;
    expect(clean.length).toBeGreaterThanOrEqual(2);
    const overlay = new OverlayContext(kernel.context);
    const reader = new KernelReader(overlay.kernel.space, kernel.reader.profile);
    // The last ops links back to the first instead of ending at ftrace_list_end.
    overlay.patchKernelU64(clean.at(-1)!.address + reader.offset('ftrace_ops', 'next'), clean[0]!.address);
    const started = performance.now();
    const report = readFtraceOps(reader, ownersOf(reader));
    expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
    expect(report.problems).toEqual([
      expect.stringMatching(/^ftrace_ops_list: loops back to 0x[0-9a-f]+ without reaching ftrace_list_end$/),
    ]);
    expect(report.ops.map((found) => found.address)).toEqual(clean.map((found) => found.address));
  });

  it('records read again after one changed (a live guest enabling a site) show the change, the others as before', () => {
    const before = readFtraceRecords(kernel.reader).records;
    const { reader } = kernel;
    // The first record of the first block of records.
    const first = reader.pointerField(
      reader.u64(reader.profile.requireSymbol('ftrace_pages_start')),
      'ftrace_page',
      'records',
    );
    expect(reader.u64(first + reader.offset('dyn_ftrace', 'ip'))).toBe(before[0]!.ip);
    expect(before[0]!.enabled).toBe(false);
    const enabled = reader.profile.enumConstants('FTRACE_FL_').get('FTRACE_FL_ENABLED')!;
    const overlay = new OverlayContext(kernel.context);
    overlay.patchKernelU64(first + reader.offset('dyn_ftrace', 'flags'), before[0]!.flags | enabled);
    const after = readFtraceRecords(new KernelReader(overlay.kernel.space, reader.profile)).records;
    expect(after[0]).toMatchObject({ ip: before[0]!.ip, enabled: true, flags: before[0]!.flags | enabled });
    expect(after.slice(1)).toEqual(before.slice(1));
    expect(readFtraceRecords(reader).records).toEqual(before);
  });

  it("a direct-call target in module memory is suspicious; one in a BPF JIT image is BPF's", () => {
    const [hook] = modern.ftrace_hooks;
    // The kernel's own kprobe ops: not suspicious by its callback, so only the direct target can make it so.
    const kernelOps = readFtraceOps(kernel.reader, kernel.owners).ops.find((found) => !found.suspicious)!;
    const entryOf = (reader: KernelReader) => {
      const funcHash = reader.pointerField(kernelOps.address, 'ftrace_ops', 'func_hash');
      const filter = reader.pointerField(funcHash, 'ftrace_ops_hash', 'filter_hash');
      const buckets = reader.pointerField(filter, 'ftrace_hash', 'buckets');
      const size = 1n << reader.pointerField(filter, 'ftrace_hash', 'size_bits');
      for (let bucket = 0n; bucket < size; bucket++) {
        const node = reader.u64(buckets + 8n * bucket);
        if (node !== 0n) return node - reader.offset('ftrace_func_entry', 'hlist');
      }
      throw new Error('empty filter hash');
    };
    const image = readBpf(kernel.reader, kernel.owners).programs[0]!.image;
    const cases = [
      { direct: parseHex(hook!.func), owner: modern.module.name, symbol: hook!.func_symbol, suspicious: true },
      { direct: image, owner: 'bpf', symbol: expect.stringMatching(/^bpf_prog_[0-9a-f]{16}_\w+$/), suspicious: false },
    ];
    for (const { direct, owner, symbol, suspicious } of cases) {
      const overlay = new OverlayContext(kernel.context);
      const reader = new KernelReader(overlay.kernel.space, kernel.reader.profile);
      const entry = entryOf(reader);
      overlay.patchKernelU64(entry + reader.offset('ftrace_func_entry', 'direct'), direct);
      const report = readFtraceOps(reader, ownersOf(reader));
      expect(report.problems).toEqual([]);
      const ops = report.ops.find((found) => found.address === kernelOps.address)!;
      const patched = ops.targets.find((found) => found.ip === reader.pointerField(entry, 'ftrace_func_entry', 'ip'))!;
      expect(patched.direct).toMatchObject({ address: direct, owner, symbol });
      expect(ops.suspicious).toBe(suspicious);
      expect(ops.evidence).toContain(`${patched.function} (jumps to `);
    }
  });

  it('a forged filter hash size is refused with a problem', () => {
    const [hook] = modern.ftrace_hooks;
    const overlay = new OverlayContext(kernel.context);
    const reader = new KernelReader(overlay.kernel.space, kernel.reader.profile);
    const funcHash = reader.pointerField(parseHex(hook!.ops), 'ftrace_ops', 'func_hash');
    const filter = reader.pointerField(funcHash, 'ftrace_ops_hash', 'filter_hash');
    overlay.patchKernelU64(filter + reader.offset('ftrace_hash', 'size_bits'), 40n);
    const started = performance.now();
    const report = readFtraceOps(reader, ownersOf(reader));
    expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
    expect(report.problems).toEqual([
      expect.stringMatching(/filter hash 0x[0-9a-f]+ claims 1 entries in 1099511627776 buckets: not read/),
    ]);
  });
});

describe.each(otherSnapshots)('ftrace of $name ($format)', ({ name, format }) => {
  let kernel: KernelFixture;
  beforeAll(async () => {
    kernel = await openKernel(name, format);
  });
  afterAll(() => kernel.close());

  it('no suspicious ftrace_ops or enabled function, and no problem', () => {
    const ops = readFtraceOps(kernel.reader, kernel.owners);
    const records = readFtraceRecords(kernel.reader);
    const enabled = enabledFunctions(kernel.reader, kernel.owners, ops.ops, records.records);
    expect([...ops.problems, ...records.problems, ...enabled.problems]).toEqual([]);
    expect(ops.ops.filter((found) => found.suspicious)).toEqual([]);
    expect(enabled.functions.filter((found) => found.suspicious)).toEqual([]);
  });

  it("the dyn_ftrace records are the kernel's function entries, none enabled", () => {
    const { records } = readFtraceRecords(kernel.reader);
    // A distribution kernel has tens of thousands of traceable functions.
    expect(records.length).toBeGreaterThan(10_000);
    expect(new Set(records.map((record) => record.ip)).size).toBe(records.length);
    const foreign = records.filter((record) => kernel.owners.resolve(record.ip).owner === 'unknown');
    expect(foreign).toEqual([]);
    expect(records.filter((record) => record.enabled || record.refCount > 0)).toEqual([]);
  });
});
