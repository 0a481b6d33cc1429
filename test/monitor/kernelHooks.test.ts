import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { checkAnalysis } from '../../src/analyses/check.js';
import { DumpContext } from '../../src/analyses/context.js';
import { diffSnapshots } from '../../src/monitor/diff.js';
import { evaluatePolicy, parsePolicy, PolicyError, type Policy, type Violation } from '../../src/monitor/policy.js';
import type { SnapshotBpfProgram, SnapshotKernelHook, SnapshotSummary } from '../../src/monitor/snapshot.js';
import { summarizeSnapshot } from '../../src/monitor/summarize.js';
import { fixturePath, truth } from '../support/fixtures.js';
import { syntheticSummary } from '../support/summaries.js';

const work = mkdtempSync(join(tmpdir(), 'vmscope-hooks-policy-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const HEADER = 'version: 1\nrules:\n';

function policyError(text: string): PolicyError {
  try {
    parsePolicy(text, 'policy.yaml', { baseDir: work });
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyError);
    return error as PolicyError;
  }
  throw new Error('policy parsed, an error was expected');
}

const policy = (rules: unknown[]): Policy =>
  parsePolicy(stringify({ version: 1, rules }), 'synthetic.yaml', { baseDir: work });
const brief = (violations: Violation[]) =>
  violations.map(({ rule, kind, pid, name, comm }) => ({ rule, kind, pid, name, comm }));

describe('kernel hook rules: malformed ones are one error at their line and column', () => {
  const cases: Array<{ what: string; body: string; message: RegExp }> = [
    {
      what: 'no_kernel_hooks set to false',
      body: '  - id: a\n    severity: high\n    no_kernel_hooks: false\n',
      message: /^policy\.yaml:5:22: rules\[0\]\.no_kernel_hooks: no_kernel_hooks can only be true/,
    },
    {
      what: 'no_privilege_escalation set to a string',
      body: '  - id: a\n    severity: high\n    no_privilege_escalation: "yes"\n',
      message: /^policy\.yaml:5:30: rules\[0\]\.no_privilege_escalation: no_privilege_escalation can only be true/,
    },
    {
      what: 'a program matcher with a typo',
      body: '  - id: a\n    severity: high\n    allowed_bpf_programs:\n      - name: tracer\n        helper: [trace_printk]\n',
      message:
        /^policy\.yaml:7:9: rules\[0\]\.allowed_bpf_programs\[0\]\.helper: unknown key "helper" \(expected one of: name, regex, type, helpers\)$/,
    },
    {
      what: 'a program matcher with both name and regex',
      body: '  - id: a\n    severity: high\n    allowed_bpf_programs:\n      - { name: tracer, regex: "^t" }\n',
      message:
        /^policy\.yaml:6:9: rules\[0\]\.allowed_bpf_programs\[0\]: a program matcher takes `name` \(exact\) or `regex`, not both$/,
    },
    {
      what: 'an empty program matcher',
      body: '  - id: a\n    severity: high\n    allowed_bpf_programs:\n      - {}\n',
      message:
        /^policy\.yaml:6:9: rules\[0\]\.allowed_bpf_programs\[0\]: a program matcher needs at least one of name, regex, type, helpers$/,
    },
    {
      what: 'a helper list that is not a list of names',
      body: '  - id: a\n    severity: high\n    allowed_bpf_programs:\n      - type: kprobe\n        helpers: [""]\n',
      message:
        /^policy\.yaml:7:19: rules\[0\]\.allowed_bpf_programs\[0\]\.helpers\[0\]: a helper name must not be empty$/,
    },
  ];
  for (const { what, body, message } of cases) {
    it(what, () => {
      const error = policyError(HEADER + body);
      expect(error.message).toMatch(message);
      expect(error.problems).toHaveLength(1);
    });
  }
});

const hook = (kind: string, subject: string, owner = 'rootkit'): SnapshotKernelHook => ({
  kind,
  subject,
  owner,
  detail: `evidence for ${subject}`,
});
const program = (id: number, name: string, type: string, helpers: string[]): SnapshotBpfProgram => ({
  id,
  name,
  type,
  helpers,
  holders: ['loader'],
});

describe('kernel hook rules on synthetic summaries', () => {
  const hooked = syntheticSummary({
    kernelHooks: [
      hook('ftrace_hook', '__x64_sys_getdents64'),
      hook('kprobe', 'do_sys_openat2'),
      hook('bpf_program', 'evil (id 3)', 'loader'),
      hook('netfilter_hook', 'ipv4 PRE_ROUTING (net 4026531840)'),
      hook('inline_hook', '__x64_sys_acct'),
      hook('idt_hook', 'vector 128'),
      hook('proc_hook', 'tcp4_seq_ops.show'),
      hook('cred_escalation', 'pid 131 lab_escalated', 'lab_escalated'),
    ],
    bpfPrograms: [
      program(1, 'filter', 'socket_filter', []),
      program(2, 'tracer_open', 'kprobe', ['map_lookup_elem']),
      program(3, 'evil', 'kprobe', ['probe_write_user']),
    ],
  });

  it('no_kernel_hooks: each ftrace, kprobe, netfilter, inline, IDT and /proc hook once, by kind and subject', () => {
    const violations = evaluatePolicy(policy([{ id: 'h', severity: 'critical', no_kernel_hooks: true }]), hooked);
    expect(brief(violations)).toEqual(
      [
        ['ftrace_hook', '__x64_sys_getdents64'],
        ['kprobe', 'do_sys_openat2'],
        ['netfilter_hook', 'ipv4 PRE_ROUTING (net 4026531840)'],
        ['inline_hook', '__x64_sys_acct'],
        ['idt_hook', 'vector 128'],
        ['proc_hook', 'tcp4_seq_ops.show'],
      ].map(([kind, name]) => ({ rule: 'h', kind, pid: null, name, comm: null })),
    );
    expect(violations[0]!.detail).toBe('__x64_sys_getdents64, owned by rootkit: evidence for __x64_sys_getdents64');
  });

  it('no_privilege_escalation: each stolen credential once', () => {
    const violations = evaluatePolicy(
      policy([{ id: 'p', severity: 'critical', no_privilege_escalation: true }]),
      hooked,
    );
    expect(brief(violations)).toEqual([
      { rule: 'p', kind: 'cred_escalation', pid: null, name: 'pid 131 lab_escalated', comm: null },
    ]);
  });

  it('allowed_bpf_programs: by name or regex, type and helpers (each called helper must be allowed)', () => {
    const judge = (entries: unknown[]) =>
      evaluatePolicy(policy([{ id: 'b', severity: 'high', allowed_bpf_programs: entries }]), hooked).map(
        (violation) => violation.name,
      );
    expect(judge([{ type: 'socket_filter', helpers: [] }])).toEqual(['tracer_open', 'evil']);
    expect(judge([{ type: 'socket_filter' }, { regex: '^tracer_', helpers: ['map_lookup_elem'] }])).toEqual(['evil']);
    expect(judge([{ type: 'kprobe', helpers: ['map_lookup_elem'] }, { name: 'filter' }])).toEqual(['evil']);
    expect(judge([{ type: 'kprobe' }, { type: 'socket_filter' }])).toEqual([]);
    const [violation] = evaluatePolicy(
      policy([{ id: 'b', severity: 'high', allowed_bpf_programs: [{ helpers: ['map_lookup_elem'] }] }]),
      hooked,
    ).filter((found) => found.name === 'evil');
    expect(violation!.detail).toBe(
      'bpf program evil (id 3, kprobe) calling probe_write_user, held by loader, is not allowed',
    );
  });

  it('diff: each kind of hook appearing and disappearing, matched by kind and subject', () => {
    const before = syntheticSummary({
      kernelHooks: [hook('idt_hook', 'vector 128'), hook('kprobe', 'do_sys_openat2')],
    });
    const after = syntheticSummary({
      kernelHooks: [hook('kprobe', 'do_sys_openat2', 'another_owner'), hook('proc_hook', 'tcp4_seq_ops.show')],
    });
    expect(diffSnapshots(before, after).map((row) => [row.kind, row.change, row.name])).toEqual([
      ['idt_hook', 'disappeared', 'vector 128'],
      ['proc_hook', 'appeared', 'tcp4_seq_ops.show'],
    ]);
    const all = diffSnapshots(syntheticSummary(), hooked);
    expect(all.map((row) => [row.kind, row.change])).toEqual(
      [
        'ftrace_hook',
        'kprobe',
        'bpf_program',
        'netfilter_hook',
        'inline_hook',
        'idt_hook',
        'proc_hook',
        'cred_escalation',
      ].map((kind) => [kind, 'appeared']),
    );
    expect(diffSnapshots(hooked, syntheticSummary()).every((row) => row.change === 'disappeared')).toBe(true);
  });
});

describe('kernel hooks in the summaries of linux61-modern and linux61-clean', () => {
  const summaries = new Map<string, SnapshotSummary>();
  let checkRows: ReadonlyArray<Record<string, unknown>> = [];
  beforeAll(async () => {
    for (const name of ['linux61-modern', 'linux61-clean']) {
      const context = new DumpContext(fixturePath(name, 'elf'), { cacheDir: work });
      try {
        summaries.set(name, await summarizeSnapshot(context));
        if (name === 'linux61-modern') checkRows = (await checkAnalysis.run(context)).rows;
      } finally {
        context.close();
      }
    }
  });

  it("the summary's kernel hooks are check's findings (one code path), and its programs the loaded ones", () => {
    const modern = summaries.get('linux61-modern')!;
    // check also reports the guest's injected code and fileless processes: not kernel hooks.
    const hookRows = checkRows.filter((row) => !['injected_code', 'fileless_process'].includes(String(row.kind)));
    expect(modern.kernelHooks).toEqual(
      hookRows.map(({ kind, subject, owner, detail }) => ({ kind, subject, owner, detail })),
    );
    expect(modern.kernelHooks).toHaveLength(8);
    const programs = (
      truth('linux61-modern').bpf as {
        programs: Array<{ id: number; name: string; type_name: string; helper?: string }>;
      }
    ).programs;
    expect(modern.bpfPrograms).toEqual(
      programs.map((found) =>
        expect.objectContaining({
          id: found.id,
          name: found.name,
          type: found.type_name,
          helpers: found.helper ? [found.helper] : [],
        }),
      ),
    );
    expect(summaries.get('linux61-clean')!.kernelHooks).toEqual([]);
  });

  it('a policy of the three rules flags each technique once on linux61-modern and nothing on linux61-clean', () => {
    const rules = policy([
      { id: 'hooks', severity: 'critical', no_kernel_hooks: true },
      { id: 'creds', severity: 'critical', no_privilege_escalation: true },
      { id: 'bpf', severity: 'high', allowed_bpf_programs: [{ type: 'socket_filter', helpers: [] }] },
    ]);
    const modern = truth('linux61-modern').modern as { escalated: { pid: number; comm: string } };
    expect(
      brief(evaluatePolicy(rules, summaries.get('linux61-modern')!)).map(({ rule, kind, name }) => [rule, kind, name]),
    ).toEqual([
      ['hooks', 'ftrace_hook', '__x64_sys_getdents64'],
      ['hooks', 'kprobe', 'do_sys_openat2'],
      ['hooks', 'netfilter_hook', expect.stringMatching(/^ipv4 PRE_ROUTING /)],
      ['hooks', 'inline_hook', '__x64_sys_acct'],
      ['hooks', 'idt_hook', 'vector 128'],
      ['hooks', 'proc_hook', 'tcp4_seq_ops.show'],
      ['creds', 'cred_escalation', `pid ${modern.escalated.pid} ${modern.escalated.comm}`],
      ['bpf', 'unexpected_bpf_program', 'lab_wuser'],
    ]);
    expect(evaluatePolicy(rules, summaries.get('linux61-clean')!)).toEqual([]);
  });

  it('diff from the clean snapshot to the modern one shows each technique appearing once', () => {
    const rows = diffSnapshots(summaries.get('linux61-clean')!, summaries.get('linux61-modern')!).filter(
      (row) =>
        ![
          'process',
          'module',
          'hidden_process',
          'hidden_module',
          'syscall',
          'signature',
          'socket',
          'executable_region',
        ].includes(row.kind),
    );
    expect(rows.map((row) => [row.kind, row.change])).toEqual(
      [
        'ftrace_hook',
        'kprobe',
        'bpf_program',
        'netfilter_hook',
        'inline_hook',
        'idt_hook',
        'proc_hook',
        'cred_escalation',
      ].map((kind) => [kind, 'appeared']),
    );
  });
});
