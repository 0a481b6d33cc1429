import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelReader } from '../../../src/os/linux/kernelReader.js';
import { readNetfilterHooks } from '../../../src/os/linux/netfilter.js';
import { parseHex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import { OverlayContext } from '../../support/overlay.js';
import { openKernel, otherSnapshots, ownersOf, type KernelFixture } from './kernelFixture.js';

interface ModernTruth {
  module: { name: string };
  netfilter_hooks: Array<{
    hook: string;
    hook_symbol: string;
    pf: number;
    hooknum: number;
    priority: number;
    ops: string;
    net: string;
  }>;
}

const HANG_GUARD_MS = 2000;
const modern = truth('linux61-modern').modern as ModernTruth;

describe('netfilter hooks of linux61-modern', () => {
  let kernel: KernelFixture;
  beforeAll(async () => {
    kernel = await openKernel('linux61-modern', 'elf');
  });
  afterAll(() => kernel.close());

  it("finds labkit2's hook with its family, hook point, priority and function, and nothing else suspicious", () => {
    const report = readNetfilterHooks(kernel.reader, kernel.owners);
    expect(report.problems).toEqual([]);
    const suspicious = report.hooks.filter((hook) => hook.suspicious);
    expect(suspicious).toMatchObject(
      modern.netfilter_hooks.map((hook) => ({
        net: parseHex(hook.net),
        pf: hook.pf,
        hooknum: hook.hooknum,
        priority: hook.priority,
        function: parseHex(hook.hook),
        symbol: hook.hook_symbol,
        owner: modern.module.name,
        ops: parseHex(hook.ops),
      })),
    );
    // IPv4 PRE_ROUTING, first to run at INT_MIN.
    expect(suspicious[0]).toMatchObject({ family: 'ipv4', hookName: 'PRE_ROUTING', position: 0 });
    expect(report.hooks.filter((hook) => !hook.suspicious).every((hook) => hook.owner === 'kernel')).toBe(true);
  });

  it('an entry whose function is not the one its ops registered is suspicious, even in kernel text', () => {
    const clean = readNetfilterHooks(kernel.reader, kernel.owners).hooks;
    const victim = clean.find((hook) => !hook.suspicious)!;
    const overlay = new OverlayContext(kernel.context);
    const reader = new KernelReader(overlay.kernel.space, kernel.reader.profile);
    const array =
      victim.net +
      reader.offset('net', 'nf') +
      reader.offset('netns_nf', `hooks_${victim.family}`) +
      BigInt(victim.hooknum * 8);
    const entry =
      reader.u64(array) +
      reader.offset('nf_hook_entries', 'hooks') +
      BigInt(victim.position * reader.profile.sizeOf('nf_hook_entry'));
    const other = reader.profile.requireSymbol('kprobe_dispatcher');
    overlay.patchKernelU64(entry + reader.offset('nf_hook_entry', 'hook'), other);
    const report = readNetfilterHooks(reader, ownersOf(reader));
    expect(report.problems).toEqual([]);
    const swapped = report.hooks.find((hook) => hook.ops === victim.ops)!;
    expect(swapped).toMatchObject({ function: other, symbol: 'kprobe_dispatcher', owner: 'kernel', suspicious: true });
    expect(swapped.evidence).toContain(`replaces ${victim.symbol} its ops registered`);
  });

  it('a hook point claiming an absurd number of hooks is refused within 2 s with a problem', () => {
    const [hook] = modern.netfilter_hooks;
    const overlay = new OverlayContext(kernel.context);
    const reader = new KernelReader(overlay.kernel.space, kernel.reader.profile);
    const array =
      parseHex(hook!.net) +
      reader.offset('net', 'nf') +
      reader.offset('netns_nf', 'hooks_ipv4') +
      BigInt(hook!.hooknum * 8);
    const entries = reader.u64(array);
    overlay.image.patchVirtual(
      overlay.kernel.space,
      entries + reader.offset('nf_hook_entries', 'num_hook_entries'),
      new Uint8Array([0xff, 0xff]),
    );
    const started = performance.now();
    const report = readNetfilterHooks(reader, ownersOf(reader));
    expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
    expect(report.problems).toEqual([
      expect.stringMatching(
        /^ipv4 PRE_ROUTING of net 0x[0-9a-f]+: nf_hook_entries 0x[0-9a-f]+ claims 65535 hooks \(the kernel allows 1024\): not read$/,
      ),
    ]);
    expect(report.hooks.filter((found) => found.suspicious)).toEqual([]);
  });
});

describe.each(otherSnapshots)('netfilter hooks of $name ($format)', ({ name, format }) => {
  let kernel: KernelFixture;
  beforeAll(async () => {
    kernel = await openKernel(name, format);
  });
  afterAll(() => kernel.close());

  it("the kernel's own hooks (AppArmor's) in kernel text, none suspicious, no problem", () => {
    const report = readNetfilterHooks(kernel.reader, kernel.owners);
    expect(report.problems).toEqual([]);
    expect(report.hooks.filter((hook) => hook.suspicious)).toEqual([]);
    expect(report.hooks.length).toBeGreaterThan(0);
    expect(
      report.hooks.every((hook) => hook.owner === 'kernel' && hook.symbol !== undefined && hook.priority !== undefined),
    ).toBe(true);
  });
});
