import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bpfAnalysis } from '../../src/analyses/bpf.js';
import { DumpContext } from '../../src/analyses/context.js';
import { credsAnalysis } from '../../src/analyses/creds.js';
import { dmesgAnalysis } from '../../src/analyses/dmesg.js';
import { ftraceAnalysis } from '../../src/analyses/ftrace.js';
import { idtAnalysis } from '../../src/analyses/idt.js';
import { infoAnalysis } from '../../src/analyses/info.js';
import { kernelTextAnalysis } from '../../src/analyses/kernelText.js';
import { kprobesAnalysis } from '../../src/analyses/kprobes.js';
import { netfilterAnalysis } from '../../src/analyses/netfilter.js';
import { procHooksAnalysis } from '../../src/analyses/procHooks.js';
import { codeOwnersProvider } from '../../src/analyses/providers/modules.js';
import { everyProcessProvider } from '../../src/analyses/providers/processes.js';
import type { Finding } from '../../src/analyses/findings.js';
import type { Analysis, AnalysisResult, Row } from '../../src/analyses/types.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import { hex, parseHex } from '../../src/util/hex.js';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';
import { consoleSection } from '../support/kernelFixture.js';
import { OverlayContext } from '../support/overlay.js';
import { materialized } from '../support/rows.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-tampering-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const HANG_GUARD_MS = 2000;

interface ModernTruth {
  module: { name: string };
  seq_ops_hooks: Array<{
    struct: string;
    field: string;
    orig: string;
    orig_symbol: string;
    new: string;
    new_symbol: string;
  }>;
  ftrace_hooks: Array<{ target: string; target_addr: string; ops: string; func: string; func_symbol: string }>;
  kprobes: Array<{ symbol: string; addr: string; kp: string; pre_handler: string; pre_handler_symbol: string }>;
  netfilter_hooks: Array<{
    hook: string;
    hook_symbol: string;
    pf: number;
    hooknum: number;
    priority: number;
    ops: string;
    net: string;
  }>;
  inline_hooks: Array<{
    function: string;
    function_addr: string;
    patch_at: string;
    new_bytes: string;
    target: string;
    target_symbol: string;
  }>;
  idt_hooks: Array<{
    vector: number;
    orig: string;
    orig_symbol: string;
    new: string;
    new_symbol: string;
    gate: string;
  }>;
  escalated: { pid: number; comm: string; cred_after: string; uid_after: number };
  enabled_functions: string[];
  kprobes_list: string[];
}
interface BpfTruth {
  programs: Array<{
    id: number;
    type_name: string;
    name: string;
    tag: string;
    holder_pid: number;
    fd: number;
    jited_len: number;
    xlated_len: number;
    attach: string;
    helper?: string;
    sock_inode?: number;
  }>;
  maps: Array<{
    id: number;
    type_name: string;
    name: string;
    holder_pid: number;
    fd: number;
    key_size: number;
    value_size: number;
    max_entries: number;
  }>;
}

const modern = truth('linux61-modern').modern as ModernTruth;
const bpf = truth('linux61-modern').bpf as BpfTruth;
const processes = truth('linux61-modern').processes as Array<{ pid: number; comm: string; kernel_thread: boolean }>;
const commOf = (pid: number) => processes.find((process) => process.pid === pid)!.comm;
const owner = modern.module.name;
const address = (text: string) => hex(parseHex(text));

/** The analyses of issue 14, with the options each is tried with. */
const HOOK_ANALYSES: ReadonlyArray<[Analysis, Record<string, unknown>]> = [
  [ftraceAnalysis, {}],
  [ftraceAnalysis, { sites: true }],
  [kprobesAnalysis, {}],
  [bpfAnalysis, {}],
  [bpfAnalysis, { maps: true }],
  [netfilterAnalysis, {}],
  [kernelTextAnalysis, {}],
  [idtAnalysis, {}],
  [procHooksAnalysis, {}],
  [credsAnalysis, {}],
  [dmesgAnalysis, {}],
];

/** tracefs prints `callback+0x0/0xSIZE [module]`; the reader's line leaves out symbol sizes and module names. */
const withoutSizes = (line: string) => line.replaceAll(/\+0x0\/0x[0-9a-f]+( \[\w+\])?/g, '');

describe('the tampering analyses on linux61-modern', () => {
  let context: DumpContext;
  const run = async (analysis: Analysis, options: Record<string, unknown> = {}): Promise<AnalysisResult> => {
    const result = await materialized(analysis.run(context, options));
    expect(result.warnings).toEqual([]);
    expect(result.partial).toBe(false);
    return result;
  };
  const suspicious = (rows: readonly Row[]) => rows.filter((row) => row.suspicious === true);
  beforeAll(() => {
    context = new DumpContext(fixturePath('linux61-modern', 'elf'), { cacheDir });
  });
  afterAll(() => context.close());

  it("ftrace: labkit2's ops on its target with its callback, and the kernel's kprobe ops beside it", async () => {
    const { rows } = await run(ftraceAnalysis);
    expect(suspicious(rows)).toEqual(
      modern.ftrace_hooks.map((hook) =>
        expect.objectContaining({
          ops: address(hook.ops),
          callback: address(hook.func),
          callback_symbol: hook.func_symbol,
          owner,
          targets: [hook.target],
        }),
      ),
    );
    expect(rows.filter((row) => row.suspicious === false).map((row) => [row.callback_symbol, row.owner])).toEqual([
      ['kprobe_ftrace_handler', 'kernel'],
    ]);
  });

  it("ftrace --sites: the kernel's enabled_functions, line for line", async () => {
    const { rows } = await run(ftraceAnalysis, { sites: true });
    expect(rows.map((row) => row.line)).toEqual(modern.enabled_functions.map(withoutSizes));
    expect(rows.filter((row) => row.suspicious).map((row) => row.function)).toEqual(
      modern.ftrace_hooks.map((hook) => hook.target),
    );
  });

  it("kprobes: the kernel's kprobes/list, labkit2's probe with its handler, the BPF event attributed", async () => {
    const { rows } = await run(kprobesAnalysis);
    expect(rows.map((row) => row.listing)).toEqual(modern.kprobes_list);
    expect(suspicious(rows)).toEqual(
      modern.kprobes.map((probe) =>
        expect.objectContaining({
          address: address(probe.addr),
          probe: `${probe.symbol}+0x0`,
          kprobe: address(probe.kp),
          handler: address(probe.pre_handler),
          handler_symbol: probe.pre_handler_symbol,
          owner,
        }),
      ),
    );
    const program = bpf.programs.find((found) => found.attach.startsWith('kprobe:'))!;
    expect(rows.find((row) => row.suspicious === false)).toMatchObject({
      probe: `${program.attach.slice('kprobe:'.length)}+0x0`,
      owner: 'kernel',
      programs: [`${program.name} (id ${program.id})`],
    });
  });

  it('bpf: ids, types, names, tags, sizes, holders, helpers and attach points; only lab_wuser suspicious', async () => {
    const { rows } = await run(bpfAnalysis);
    expect(rows).toEqual(
      bpf.programs.map((program) =>
        expect.objectContaining({
          id: program.id,
          type: program.type_name,
          name: program.name,
          tag: program.tag,
          jited_length: program.jited_len,
          xlated_length: program.xlated_len,
          helpers: program.helper ? [program.helper] : [],
          attach: [program.sock_inode === undefined ? program.attach : `socket:[${program.sock_inode}]`],
          holders: [`${program.holder_pid} ${commOf(program.holder_pid)} fd ${program.fd}`],
          owner: commOf(program.holder_pid),
          suspicious: program.helper === 'probe_write_user',
        }),
      ),
    );
    const maps = await run(bpfAnalysis, { maps: true });
    expect(maps.rows).toEqual(
      bpf.maps.map((map) =>
        expect.objectContaining({
          id: map.id,
          type: map.type_name,
          name: map.name,
          key_size: map.key_size,
          value_size: map.value_size,
          max_entries: map.max_entries,
          holders: [`${map.holder_pid} ${commOf(map.holder_pid)} fd ${map.fd}`],
        }),
      ),
    );
  });

  it("netfilter: labkit2's hook with its priority, function, ops and namespace", async () => {
    const { rows } = await run(netfilterAnalysis);
    expect(suspicious(rows)).toEqual(
      modern.netfilter_hooks.map((hook) =>
        expect.objectContaining({
          family: hook.pf === 2 ? 'ipv4' : String(hook.pf),
          hook: ['PRE_ROUTING', 'LOCAL_IN', 'FORWARD', 'LOCAL_OUT', 'POST_ROUTING'][hook.hooknum],
          priority: hook.priority,
          function: address(hook.hook),
          symbol: hook.hook_symbol,
          ops: address(hook.ops),
          net: address(hook.net),
          owner,
        }),
      ),
    );
  });

  it('kernel-text: the inline patch with its address, bytes and target; traced sites are not hooks', async () => {
    const { rows } = await run(kernelTextAnalysis);
    expect(suspicious(rows)).toEqual(
      modern.inline_hooks.map((hook) =>
        expect.objectContaining({
          function: hook.function,
          address: address(hook.function_addr),
          patch_at: address(hook.patch_at),
          bytes: hook.new_bytes,
          target: address(hook.target),
          target_symbol: hook.target_symbol,
          owner,
        }),
      ),
    );
    // Every enabled ftrace site shows as traced, not hooked.
    const traced = modern.enabled_functions.map((line) => line.split(' ')[0]);
    expect(rows.filter((row) => row.suspicious === false).map((row) => row.function)).toEqual(
      expect.arrayContaining(traced),
    );
  });

  it('idt: 256 gates, vector 128 repointed with the handler the kernel installs beside it', async () => {
    const { rows } = await run(idtAnalysis);
    expect(rows.map((row) => row.vector)).toEqual([...Array(256).keys()]);
    expect(suspicious(rows)).toEqual(
      modern.idt_hooks.map((hook) =>
        expect.objectContaining({
          vector: hook.vector,
          gate: address(hook.gate),
          handler: address(hook.new),
          symbol: hook.new_symbol,
          expected: address(hook.orig),
          expected_symbol: hook.orig_symbol,
          owner,
        }),
      ),
    );
  });

  it('proc-hooks: tcp4_seq_ops.show with both pointers', async () => {
    const { rows } = await run(procHooksAnalysis);
    expect(suspicious(rows)).toEqual(
      modern.seq_ops_hooks.map((hook) =>
        expect.objectContaining({
          structure: hook.struct,
          field: hook.field,
          pointer: address(hook.new),
          symbol: hook.new_symbol,
          expected: address(hook.orig),
          expected_symbol: hook.orig_symbol,
          owner,
        }),
      ),
    );
  });

  it("creds: the guest's uids for every process, and the escalated pid with init_task's cred", async () => {
    const { rows } = await run(credsAnalysis);
    const creds = truth('linux61-modern').creds as Record<string, { uid: number[]; gid: number[] }>;
    for (const [pid, ids] of Object.entries(creds)) {
      const row = rows.find((found) => found.pid === Number(pid));
      expect(row, `pid ${pid}`).toMatchObject({ uid: ids.uid[0], euid: ids.uid[1], gid: ids.gid[0], egid: ids.gid[1] });
    }
    const { escalated } = modern;
    expect(suspicious(rows)).toEqual([
      expect.objectContaining({
        pid: escalated.pid,
        comm: escalated.comm,
        uid: escalated.uid_after,
        cred: address(escalated.cred_after),
        real_cred: address(escalated.cred_after),
      }),
    ]);
    const one = await run(credsAnalysis, { pid: escalated.pid });
    expect(one.rows.map((row) => row.pid)).toEqual([escalated.pid]);
  });
});

/** `vmscope check --json` as a user runs it (the bundled CLI). */
function check(path: string): { code: number | null; findings: Finding[]; stderr: string } {
  const result = spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), 'check', path, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, VMSCOPE_CACHE_DIR: cacheDir },
  });
  return {
    code: result.status,
    findings: JSON.parse(result.stdout || '[]') as Finding[],
    stderr: result.stderr,
  };
}

const HOOK_KINDS = [
  'ftrace_hook',
  'kprobe',
  'bpf_program',
  'netfilter_hook',
  'inline_hook',
  'idt_hook',
  'proc_hook',
  'cred_escalation',
];

describe('vmscope check on linux61-modern', () => {
  it('reports each of the eight techniques once, owned by labkit2 (lab_bpf, lab_escalated), and nothing else', () => {
    const { code, findings, stderr } = check(fixturePath('linux61-modern', 'elf'));
    expect(stderr).toBe('');
    expect(code).toBe(1);
    // The process-state findings of the same guest (processContext.test.ts checks them in detail).
    const processKinds = ['fileless_process', 'fileless_process', 'injected_code', 'injected_code'];
    const isProcessKind = (kind: unknown) => processKinds.includes(String(kind));
    expect(findings.filter((finding) => !isProcessKind(finding.kind)).map((finding) => finding.kind)).toEqual(
      HOOK_KINDS,
    );
    expect(
      findings
        .filter((finding) => isProcessKind(finding.kind))
        .map((finding) => finding.kind)
        .sort(),
    ).toEqual(processKinds);
    const byKind = new Map(findings.map((finding) => [finding.kind, finding]));
    const wuser = bpf.programs.find((program) => program.helper === 'probe_write_user')!;
    expect(byKind.get('ftrace_hook')).toMatchObject({ subject: modern.ftrace_hooks[0]!.target, owner });
    expect(byKind.get('kprobe')).toMatchObject({ subject: modern.kprobes[0]!.symbol, owner });
    expect(byKind.get('bpf_program')).toMatchObject({
      subject: `${wuser.name} (id ${wuser.id})`,
      owner: commOf(wuser.holder_pid),
    });
    expect(byKind.get('netfilter_hook')).toMatchObject({ subject: expect.stringMatching(/^ipv4 PRE_ROUTING /), owner });
    expect(byKind.get('inline_hook')).toMatchObject({ subject: modern.inline_hooks[0]!.function, owner });
    expect(byKind.get('idt_hook')).toMatchObject({ subject: `vector ${modern.idt_hooks[0]!.vector}`, owner });
    const seq = modern.seq_ops_hooks[0]!;
    expect(byKind.get('proc_hook')).toMatchObject({ subject: `${seq.struct}.${seq.field}`, owner });
    expect(byKind.get('cred_escalation')).toMatchObject({
      subject: `pid ${modern.escalated.pid} ${modern.escalated.comm}`,
      owner: modern.escalated.comm,
    });
    // The evidence names the hook's code and the tampered object.
    expect(byKind.get('ftrace_hook')!.detail).toContain(modern.ftrace_hooks[0]!.func_symbol);
    expect(byKind.get('kprobe')!.detail).toContain(modern.kprobes[0]!.pre_handler_symbol);
    expect(byKind.get('inline_hook')!.detail).toContain(modern.inline_hooks[0]!.target_symbol);
    expect(byKind.get('idt_hook')!.detail).toContain(modern.idt_hooks[0]!.new_symbol);
    expect(byKind.get('cred_escalation')!.detail).toContain(address(modern.escalated.cred_after));
    const text = JSON.stringify(findings);
    for (const benign of [...bpf.programs.filter((program) => !program.helper), ...bpf.maps])
      expect(text).not.toContain(benign.name);
  });
});

/** Every snapshot, each in one of its formats. */
const SNAPSHOTS = snapshotNames().map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);
const OTHER_SNAPSHOTS = SNAPSHOTS.filter(({ name }) => name !== 'linux61-modern');

describe.each(OTHER_SNAPSHOTS)('the tampering analyses on $name ($format)', ({ name, format }) => {
  let context: DumpContext;
  beforeAll(() => {
    context = new DumpContext(fixturePath(name, format), { cacheDir });
  });
  afterAll(() => context.close());

  it.each(
    HOOK_ANALYSES.map(
      ([analysis, options]) => [`${analysis.name} ${JSON.stringify(options)}`, analysis, options] as const,
    ),
  )('%s runs without warnings and flags nothing', async (_, analysis, options) => {
    const result = await materialized(analysis.run(context, options));
    expect(result.warnings).toEqual([]);
    expect(result.partial).toBe(false);
    expect(result.rows.filter((row) => row.suspicious === true)).toEqual([]);
  });

  it('check adds no finding of the new kinds', () => {
    const { findings, stderr } = check(fixturePath(name, format));
    expect(stderr).toBe('');
    expect(findings.filter((finding) => HOOK_KINDS.includes(finding.kind))).toEqual([]);
    // The 2005-era rootkit's own findings stay as they were (check.test.ts asserts them).
    const rootkit = truth(name).mode === 'rootkit';
    expect(findings.map((finding) => finding.kind).sort()).toEqual(
      rootkit ? ['hidden_module', 'hidden_process', 'syscall_hook'] : [],
    );
  });
});

/** Taint flags as the kernel names them, lowest bit first (include/linux/panic.h), for the bits the fixtures set. */
const TAINT_NAMES: Record<number, string> = { 12: 'O OOT_MODULE', 13: 'E UNSIGNED_MODULE' };

describe.each(SNAPSHOTS)('info of $name ($format)', ({ name, format }) => {
  it("decodes the taint flags the guest's /proc/sys/kernel/tainted showed", async () => {
    const context = new DumpContext(fixturePath(name, format), { cacheDir });
    try {
      const result = await infoAnalysis.run(context, {});
      expect(result.warnings).toEqual([]);
      const mask = Number(consoleSection(name, 'tainted')[0]!.trim());
      const bits = [...Array(32).keys()].filter((bit) => (mask >> bit) & 1);
      expect(result.rows[0]!.taint).toEqual(bits.map((bit) => TAINT_NAMES[bit] ?? `unexpected bit ${bit}`));
    } finally {
      context.close();
    }
  });
});

describe.each(SNAPSHOTS)('dmesg of $name ($format)', ({ name, format }) => {
  it("holds the guest's own dmesg and the lines the truth quotes: same text, order and timestamps", async () => {
    const context = new DumpContext(fixturePath(name, format), { cacheDir });
    try {
      const result = await dmesgAnalysis.run(context, {});
      expect(result.warnings).toEqual([]);
      const lines = result.rows.map((row) => row.line as string);
      const printed = consoleSection(name, 'dmesg');
      const start = lines.indexOf(printed[0]!);
      expect(start).toBeGreaterThanOrEqual(0);
      expect(lines.slice(start, start + printed.length)).toEqual(printed);
      const facts = truth(name) as Record<string, { dmesg?: string[] } | undefined>;
      const quoted = ['bpf', 'modern', 'rootkit'].flatMap((key) => facts[key]?.dmesg ?? []);
      let from = 0;
      for (const line of quoted) {
        const at = lines.indexOf(line, from);
        expect(at, line).toBeGreaterThanOrEqual(from);
        from = at + 1;
      }
    } finally {
      context.close();
    }
  });
});

describe('hostile copies of linux61-modern: each analysis ends within 2 s, partial, with a warning', () => {
  let base: DumpContext;
  let reader: KernelReader;
  beforeAll(async () => {
    base = new DumpContext(fixturePath('linux61-modern', 'elf'), { cacheDir });
    reader = new KernelReader(base.kernel.space, await base.profile());
  });
  afterAll(() => base.close());

  /** An overlay of the fixture with the module search and process list already done (they are not under test). */
  async function hostile(patch: (overlay: OverlayContext) => void): Promise<OverlayContext> {
    const overlay = new OverlayContext(base);
    patch(overlay);
    await overlay.get(codeOwnersProvider);
    await overlay.get(everyProcessProvider);
    return overlay;
  }

  async function expectPartial(overlay: OverlayContext, analysis: Analysis, warning: RegExp): Promise<void> {
    const started = performance.now();
    const result = await analysis.run(overlay, {});
    expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
    expect(result.partial).toBe(true);
    expect(result.warnings).toEqual([expect.stringMatching(warning)]);
    expect(result.rows.length).toBeGreaterThan(0);
  }

  it('an ftrace_ops_list made cyclic', async () => {
    const ops = parseHex(modern.ftrace_hooks[0]!.ops);
    const overlay = await hostile((context) => context.patchKernelU64(ops + reader.offset('ftrace_ops', 'next'), ops));
    await expectPartial(overlay, ftraceAnalysis, /^ftrace_ops_list: loops back to /);
  });

  it('a kprobe_table chain made cyclic', async () => {
    const link = parseHex(modern.kprobes[0]!.kp) + reader.offset('kprobe', 'hlist');
    const overlay = await hostile((context) =>
      context.patchKernelU64(link + reader.offset('hlist_node', 'next'), link),
    );
    await expectPartial(overlay, kprobesAnalysis, /^kprobe_table\[\d+\]: hlist loops back to /);
  });

  it('a BPF program whose instruction count is absurd', async () => {
    const program = (await bpfAnalysis.run(base, {})).rows.find((row) => row.suspicious === true)!;
    const overlay = await hostile((context) =>
      context.image.patchVirtual(
        context.kernel.space,
        parseHex(program.address as string) + reader.offset('bpf_prog', 'len'),
        new Uint8Array([0xff, 0xff, 0xff, 0x7f]),
      ),
    );
    await expectPartial(overlay, bpfAnalysis, /claims 2147483647 instructions/);
  });

  it('an IDT gate pointing to unmapped memory', async () => {
    const { profile } = reader;
    const nowhere = base.kernel.pageOffsetBase + (1n << 44n);
    const gate = profile.requireSymbol('idt_table') + BigInt(14 * profile.sizeOf('gate_struct'));
    const bytes = reader.bytes(gate, profile.sizeOf('gate_struct'));
    const view = new DataView(bytes.buffer);
    view.setUint16(profile.offsetOf('gate_struct', 'offset_low'), Number(nowhere & 0xffffn), true);
    view.setUint16(profile.offsetOf('gate_struct', 'offset_middle'), Number((nowhere >> 16n) & 0xffffn), true);
    view.setUint32(profile.offsetOf('gate_struct', 'offset_high'), Number(nowhere >> 32n), true);
    const overlay = await hostile((context) => context.image.patchVirtual(context.kernel.space, gate, bytes));
    await expectPartial(overlay, idtAnalysis, /^IDT gate 14: handler 0x[0-9a-f]+ is not mapped$/);
  });

  it('a prb ring whose descriptors point outside the data ring', async () => {
    const ring = reader.u64(reader.profile.requireSymbol('prb'));
    const descRing = ring + reader.offset('printk_ringbuffer', 'desc_ring');
    const dataRing = ring + reader.offset('printk_ringbuffer', 'text_data_ring');
    const descs = reader.pointerField(descRing, 'prb_desc_ring', 'descs');
    const count = 1n << BigInt(reader.u32Field(descRing, 'prb_desc_ring', 'count_bits'));
    const tailId = reader.u64(descRing + reader.offset('prb_desc_ring', 'tail_id'));
    const headLpos = reader.u64(dataRing + reader.offset('prb_data_ring', 'head_lpos'));
    const lpos = reader.offset('prb_desc', 'text_blk_lpos');
    const descriptor = descs + ((tailId + 11n) & (count - 1n)) * BigInt(reader.profile.sizeOf('prb_desc'));
    const overlay = await hostile((context) => {
      context.patchKernelU64(descriptor + lpos + reader.offset('prb_data_blk_lpos', 'begin'), headLpos + 0x100000n);
      context.patchKernelU64(descriptor + lpos + reader.offset('prb_data_blk_lpos', 'next'), headLpos + 0x100040n);
    });
    await expectPartial(overlay, dmesgAnalysis, /^printk record 0x[0-9a-f]+: /);
  });
});
