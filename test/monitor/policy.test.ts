import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { stringify } from 'yaml';
import { DumpContext } from '../../src/analyses/context.js';
import {
  evaluatePolicy,
  parsePolicy,
  PolicyError,
  policyRulesFiles,
  type Policy,
  type Violation,
} from '../../src/monitor/policy.js';
import type { SnapshotProcess, SnapshotSummary } from '../../src/monitor/snapshot.js';
import { summarizeSnapshot } from '../../src/monitor/summarize.js';
import { fixturePath, truth } from '../support/fixtures.js';
import { syntheticSummary } from '../support/summaries.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const work = mkdtempSync(join(tmpdir(), 'vmscope-policy-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The PolicyError a policy text gives (fails the test when it parses). */
function policyError(text: string, options: { baseDir?: string } = {}): PolicyError {
  try {
    parsePolicy(text, 'policy.yaml', { baseDir: work, ...options });
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyError);
    return error as PolicyError;
  }
  throw new Error('policy parsed, an error was expected');
}

const HEADER = 'version: 1\nrules:\n';

describe('loading a policy: one error per problem, at its line and column', () => {
  const cases: Array<{ what: string; body: string; line: number; column: number; message: RegExp }> = [
    {
      what: 'unknown key (a typo), reported once, not again as the missing key it was meant to be',
      body: '  - id: a\n    severity: high\n    no_hidden_processes: true\n  - id: b\n    severty: low\n    no_hidden_modules: true\n',
      line: 7,
      column: 5,
      message: /^policy\.yaml:7:5: rules\[1\]\.severty: unknown key "severty" \(expected one of: id, severity, action/,
    },
    {
      what: 'wrong type',
      body: '  - id: a\n    severity: high\n    allowed_processes:\n      - name: sshd\n        max_count: "two"\n',
      line: 7,
      column: 20,
      message: /^policy\.yaml:7:20: rules\[0\]\.allowed_processes\[0\]\.max_count: expected number, received string$/,
    },
    {
      what: 'bad regex',
      body: '  - id: a\n    severity: high\n    forbidden_processes:\n      - regex: "["\n',
      line: 6,
      column: 16,
      message:
        /^policy\.yaml:6:16: rules\[0\]\.forbidden_processes\[0\]\.regex: invalid regex \/\[\/: unterminated '\[' class \(at 0\)$/,
    },
    {
      what: 'bad time zone',
      body: '  - id: a\n    severity: low\n    time_fence:\n      process: { name: backup }\n      timezone: Mars/Olympus_Mons\n      windows: [{ from: "08:00", to: "18:00" }]\n',
      line: 7,
      column: 17,
      message: /^policy\.yaml:7:17: rules\[0\]\.time_fence\.timezone: unknown time zone "Mars\/Olympus_Mons"/,
    },
    {
      what: 'duplicate rule id',
      body: '  - id: same\n    severity: high\n    no_hidden_processes: true\n  - id: same\n    severity: low\n    no_hidden_modules: true\n',
      line: 6,
      column: 9,
      message: /^policy\.yaml:6:9: rules\[1\]\.id: duplicate rule id "same" \(first used by rules\[0\]\)$/,
    },
    {
      what: 'bad time 25:00',
      body: '  - id: a\n    severity: low\n    time_fence:\n      module: labkit\n      timezone: UTC\n      windows:\n        - days: [mon]\n          from: "25:00"\n          to: "26:00"\n',
      line: 10,
      column: 17,
      message: /^policy\.yaml:10:17: rules\[0\]\.time_fence\.windows\[0\]\.from: invalid time "25:00"/,
    },
  ];

  for (const { what, body, line, column, message } of cases) {
    it(what, () => {
      const error = policyError(HEADER + body);
      expect(error.message).toMatch(message);
      expect([error.line, error.column]).toEqual([line, column]);
      // 25:00 to 26:00 is two bad times: two problems, each once; every other case is one problem.
      expect(error.problems).toHaveLength(what === 'bad time 25:00' ? 2 : 1);
      expect(error.code).toBe('USAGE');
      expect(error.describe()).toBe(
        `policy.yaml:${line}:${column}: USAGE: ${error.message.replace(/^policy\.yaml:\d+:\d+: /, '')}${error.problems.length > 1 ? ' (and 1 more problem)' : ''}`,
      );
    });
  }

  it('a rule without a check, or with two, is refused at the rule / the second check', () => {
    expect(policyError(HEADER + '  - id: a\n    severity: high\n').message).toMatch(
      /^policy\.yaml:3:5: rules\[0\]: a rule needs one check: one of allowed_processes, /,
    );
    const two = policyError(
      HEADER + '  - id: a\n    severity: high\n    no_hidden_processes: true\n    syscall_table_intact: true\n',
    );
    expect(two.message).toMatch(
      /^policy\.yaml:6:27: rules\[0\]\.syscall_table_intact: a rule holds exactly one check and this one already has no_hidden_processes/,
    );
  });

  it('exec needs a command; a command needs exec', () => {
    expect(
      policyError(HEADER + '  - id: a\n    severity: high\n    action: exec\n    no_hidden_processes: true\n').message,
    ).toMatch(/^policy\.yaml:5:13: rules\[0\]\.action: action exec needs `command/);
    expect(
      policyError(HEADER + '  - id: a\n    severity: high\n    command: [logger, x]\n    no_hidden_processes: true\n')
        .message,
    ).toMatch(/^policy\.yaml:5:14: rules\[0\]\.command: command is only run by action exec/);
  });

  it('a missing key is reported at the map that lacks it; a check set to false is refused', () => {
    expect(policyError(HEADER + '  - id: a\n    no_hidden_processes: true\n').message).toBe(
      'policy.yaml:3:5: rules[0].severity: required key is missing',
    );
    expect(policyError(HEADER + '  - id: a\n    severity: high\n    no_hidden_processes: false\n').message).toMatch(
      /^policy\.yaml:5:26: rules\[0\]\.no_hidden_processes: no_hidden_processes can only be true/,
    );
    expect(policyError('version: 2\nrules: []\n').problems.map((problem) => problem.message)).toEqual([
      'unsupported policy version: this vmscope reads `version: 1`',
      'a policy needs at least one rule',
    ]);
  });

  it('YAML syntax errors and an empty file name their position too', () => {
    const syntax = policyError(HEADER + '  - id: a\n    severity: [high\n');
    expect(syntax.message).toMatch(/^policy\.yaml:\d+:\d+: YAML: /);
    expect(syntax.problems.length).toBeGreaterThan(0);
    expect(policyError('').message).toBe('policy.yaml:1:1: expected object, received null');
    expect(policyError('a: 1\na: 2\n').message).toMatch(/^policy\.yaml:2:1: YAML: Map keys must be unique/);
  });

  it('JSON policies are read the same way, with positions', () => {
    const json =
      '{\n  "version": 1,\n  "rules": [\n    {"id": "x", "severity": "high", "allowed_modules": ["e1000", {"regex": "(?<"}]}\n  ]\n}\n';
    expect(policyError(json).message).toMatch(
      /^policy\.yaml:4:76: rules\[0\]\.allowed_modules\[1\]\.regex: invalid regex/,
    );
    const good = parsePolicy(json.replace('(?<', '^nf_'), 'policy.json');
    expect(good.rules[0]!.check).toMatchObject({ kind: 'allowed_modules' });
  });

  it('signatures: the rules file is compiled at load, relative to the policy, and listed for the scanner', () => {
    writeFileSync(join(work, 'eicar.yar'), 'rule eicar { strings: $a = "EICAR-STANDARD" condition: $a }\n');
    writeFileSync(join(work, 'broken.yar'), 'rule broken { strings: $a = "x" condition: $b }\n');
    const policy = parsePolicy(
      HEADER + '  - id: sig\n    severity: high\n    signatures: { rules_file: eicar.yar }\n',
      join(work, 'p.yaml'),
    );
    expect(policyRulesFiles(policy)).toEqual([join(work, 'eicar.yar')]);
    expect(
      policyError(HEADER + '  - id: sig\n    severity: high\n    signatures: { rules_file: missing.yar }\n').message,
    ).toMatch(/^policy\.yaml:5:31: rules\[0\]\.signatures\.rules_file: cannot read rules file .*missing\.yar: ENOENT$/);
    expect(
      policyError(HEADER + '  - id: sig\n    severity: high\n    signatures: { rules_file: broken.yar }\n').message,
    ).toMatch(/^policy\.yaml:5:31: rules\[0\]\.signatures\.rules_file: rules file does not compile: .*broken\.yar:1:/);
  });

  it('random YAML-ish input never throws anything but a PolicyError', () => {
    const tokens = [
      'version',
      'rules',
      'id',
      'severity',
      'action',
      'command',
      'exec',
      'high',
      'allowed_processes',
      'required_processes',
      'forbidden_processes',
      'allowed_modules',
      'no_hidden_processes',
      'time_fence',
      'signatures',
      'rules_file',
      'name',
      'regex',
      'argv',
      'max_count',
      'min_count',
      'process',
      'module',
      'timezone',
      'windows',
      'days',
      'from',
      'to',
      'mon',
      'UTC',
      'Asia/Kolkata',
      '25:00',
      '08:00',
      '24:00',
      '1',
      '-1',
      '0x10',
      'true',
      'false',
      'null',
      '~',
      ':',
      ': ',
      ' ',
      '  ',
      '\n',
      '\n  ',
      '- ',
      '{',
      '}',
      '[',
      ']',
      ',',
      '"',
      "'",
      '&a ',
      '*a',
      '!!binary ',
      '!!str ',
      '!custom ',
      '#',
      '?',
      '|',
      '>',
      '\t',
      '<<: ',
      '__proto__',
      'constructor',
      '---\n',
      '...\n',
      '%YAML 1.2\n',
      '(',
      '[^',
      '\\',
      '\u0000',
      '\uFEFF',
      'é',
    ];
    const yamlish = fc.array(fc.constantFrom(...tokens), { maxLength: 60 }).map((parts) => parts.join(''));
    const keys = [
      'id',
      'severity',
      'action',
      'command',
      'allowed_processes',
      'no_hidden_modules',
      'time_fence',
      'signatures',
      'name',
      'regex',
      'windows',
      'timezone',
      'from',
    ];
    const structured = fc
      .array(fc.dictionary(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 3 })), { maxLength: 3 })
      .map((rules) => stringify({ version: 1, rules }));
    fc.assert(
      fc.property(fc.oneof(yamlish, structured, fc.string()), (text) => {
        try {
          parsePolicy(text, 'fuzz.yaml', { baseDir: work });
        } catch (error) {
          if (!(error instanceof PolicyError)) throw error;
          expect(error.message).toMatch(/^fuzz\.yaml:\d+:\d+: /);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------

function process(pid: number, comm: string, cmdline: string[] | null, kernelThread = false): SnapshotProcess {
  return { pid, ppid: 1, comm, cmdline, startTime: BigInt(pid) * 1000n, kernelThread };
}

function summary(parts: Partial<SnapshotSummary> = {}): SnapshotSummary {
  return syntheticSummary({ capturedAt: new Date('2026-11-24T10:48:40Z'), ...parts });
}

const policy = (rules: unknown[]): Policy =>
  parsePolicy(stringify({ version: 1, rules }), 'synthetic.yaml', { baseDir: work });
const brief = (violations: Violation[]) =>
  violations.map(({ rule, kind, pid, name, comm }) => ({ rule, kind, pid, name, comm }));

describe('evaluatePolicy on synthetic summaries', () => {
  it('an argv crafted against a backtracking regex is judged at once: policy regexes cannot backtrack', () => {
    // As a JavaScript RegExp, /^(\w+\s?)*$/ on 40 word characters and a '!' takes on the order of 2^40 steps.
    const crafted = summary({ processes: [process(300, 'lab_web', ['a'.repeat(40) + '!'])] });
    const forbid = policy([
      { id: 'no-words', severity: 'low', forbidden_processes: [{ regex: '^lab_', argv: '^(\\w+\\s?)*$' }] },
    ]);
    expect(evaluatePolicy(forbid, crafted)).toEqual([]);
    const plain = summary({ processes: [process(301, 'lab_web', ['only', 'words'])] });
    expect(evaluatePolicy(forbid, plain).map((violation) => violation.pid)).toEqual([301]);
  });

  const population = summary({
    processes: [
      process(1, 'init', ['/bin/sh', '/init']),
      process(2, 'kthreadd', null, true),
      process(10, 'worker', ['/bin/worker', '--queue', 'high']),
      process(11, 'worker', ['/bin/worker', '--queue', 'low']),
      process(12, 'worker', ['/bin/worker', '--queue', 'low']),
      process(20, 'nc', ['nc', '-l', '-p', '4444']),
      process(21, 'sh', ['sh', '-i']),
      process(22, 'sh', null),
    ],
  });

  it('allowed_processes: every user process not matched is one violation; kernel threads are exempt; max_count bounds each entry', () => {
    const violations = evaluatePolicy(
      policy([
        {
          id: 'allow',
          severity: 'high',
          allowed_processes: [{ name: 'init' }, { regex: '^work', max_count: 2 }, { name: 'sh', argv: '^sh -i$' }],
        },
      ]),
      population,
    );
    expect(brief(violations)).toEqual([
      { rule: 'allow', kind: 'unexpected_process', pid: 20, name: null, comm: 'nc' },
      // Unreadable argv cannot prove `-i`: an allow list fails closed.
      { rule: 'allow', kind: 'unexpected_process', pid: 22, name: null, comm: 'sh' },
      { rule: 'allow', kind: 'too_many_processes', pid: null, name: '/^work/', comm: null },
    ]);
    expect(violations[1]!.detail).toContain('argv unreadable');
    expect(violations[2]!.detail).toBe('3 processes match /^work/ (pids 10, 11, 12), at most 2 allowed');
    expect(violations.every((violation) => violation.severity === 'high' && violation.action === 'alert')).toBe(true);
  });

  it('argv narrows a matcher: joined with spaces, unanchored', () => {
    const violations = evaluatePolicy(
      policy([
        {
          id: 'allow',
          severity: 'low',
          allowed_processes: [{ name: 'init' }, { name: 'worker', argv: '--queue low' }, { regex: '^(nc|sh)$' }],
        },
      ]),
      population,
    );
    expect(brief(violations)).toEqual([
      { rule: 'allow', kind: 'unexpected_process', pid: 10, name: null, comm: 'worker' },
    ]);
  });

  it('required_processes: min_count (default 1), counted over every listed process', () => {
    const violations = evaluatePolicy(
      policy([
        {
          id: 'need',
          severity: 'medium',
          required_processes: [
            { name: 'init' },
            { name: 'kthreadd' },
            { name: 'worker', min_count: 4 },
            { name: 'sshd' },
            { name: 'worker', argv: 'high', min_count: 1 },
          ],
        },
      ]),
      population,
    );
    expect(brief(violations)).toEqual([
      { rule: 'need', kind: 'missing_process', pid: null, name: 'worker', comm: null },
      { rule: 'need', kind: 'missing_process', pid: null, name: 'sshd', comm: null },
    ]);
    expect(violations[0]!.detail).toBe('at least 4 processes matching worker required; only 3 (pids 10, 11, 12)');
    expect(violations[1]!.detail).toBe('at least 1 process matching sshd required; none is running');
  });

  it('forbidden_processes: each matching process once, even when it matches several entries', () => {
    const violations = evaluatePolicy(
      policy([
        {
          id: 'deny',
          severity: 'critical',
          action: 'pause',
          forbidden_processes: [{ regex: '^nc$' }, { name: 'nc', argv: '-l' }, { name: 'sh', argv: '-i' }],
        },
      ]),
      population,
    );
    expect(brief(violations)).toEqual([
      { rule: 'deny', kind: 'forbidden_process', pid: 20, name: null, comm: 'nc' },
      { rule: 'deny', kind: 'forbidden_process', pid: 21, name: null, comm: 'sh' },
    ]);
    expect(violations.every((violation) => violation.action === 'pause')).toBe(true);
  });

  it('hidden processes and modules are judged only by no_hidden_*: once each, not again by the allow lists', () => {
    const hidden = summary({
      processes: [process(1, 'init', ['/init'])],
      hiddenProcesses: [process(66, 'evil', ['/evil'])],
      modules: [{ name: 'e1000', address: 0xffffffffc0000000n }],
      hiddenModules: [{ name: 'rootkit', address: 0xffffffffc0100000n }],
    });
    const violations = evaluatePolicy(
      policy([
        { id: 'p', severity: 'high', allowed_processes: [{ name: 'init' }] },
        { id: 'm', severity: 'high', allowed_modules: ['e1000'] },
        { id: 'hp', severity: 'critical', no_hidden_processes: true },
        { id: 'hm', severity: 'critical', no_hidden_modules: true },
      ]),
      hidden,
    );
    expect(brief(violations)).toEqual([
      { rule: 'hp', kind: 'hidden_process', pid: 66, name: null, comm: 'evil' },
      { rule: 'hm', kind: 'hidden_module', pid: null, name: 'rootkit', comm: null },
    ]);
    expect(
      brief(evaluatePolicy(policy([{ id: 'm', severity: 'low', allowed_modules: [{ regex: '^nf_' }] }]), hidden)),
    ).toEqual([{ rule: 'm', kind: 'unexpected_module', pid: null, name: 'e1000', comm: null }]);
  });

  it('syscall_table_intact: each hooked entry once, named by table and index', () => {
    const violations = evaluatePolicy(
      policy([{ id: 'sct', severity: 'critical', syscall_table_intact: true }]),
      summary({
        syscalls: [
          {
            table: 'sys_call_table',
            index: 0,
            name: 'read',
            value: 0xffffffff81000000n,
            symbol: '__x64_sys_read',
            hooked: false,
          },
          {
            table: 'sys_call_table',
            index: 217,
            name: 'getdents64',
            value: 0xffffffffc05b0000n,
            symbol: null,
            hooked: true,
          },
        ],
      }),
    );
    expect(brief(violations)).toEqual([
      { rule: 'sct', kind: 'syscall_hook', pid: null, name: 'sys_call_table[217]', comm: null },
    ]);
    expect(violations[0]!.detail).toContain('0xffffffffc05b0000');
  });

  it("signatures: hits of the file's rules, one per (rule, holder); a summary without rules is reported, not passed", () => {
    writeFileSync(join(work, 'sigs.yar'), 'rule eicar { strings: $a = "EICAR" $b = "X5O!P" condition: any of them }\n');
    const sigPolicy = policy([{ id: 'sig', severity: 'high', signatures: { rules_file: 'sigs.yar' } }]);
    expect(brief(evaluatePolicy(sigPolicy, summary()))).toEqual([
      { rule: 'sig', kind: 'not_evaluated', pid: null, name: join(work, 'sigs.yar'), comm: null },
    ]);
    const hits = summary({
      signatures: [
        { rule: 'eicar', string: '$a', pid: 115, comm: 'lab_av_sample' },
        { rule: 'eicar', string: '$b', pid: 115, comm: 'lab_av_sample' },
        { rule: 'eicar', string: '$a', pid: null, comm: null },
        { rule: 'other_file_rule', string: '$x', pid: 1, comm: 'init' },
      ],
    });
    const violations = evaluatePolicy(sigPolicy, hits);
    expect(brief(violations)).toEqual([
      { rule: 'sig', kind: 'signature_hit', pid: 115, name: 'eicar', comm: 'lab_av_sample' },
      { rule: 'sig', kind: 'signature_hit', pid: null, name: 'eicar', comm: null },
    ]);
    expect(violations[0]!.detail).toBe('signature eicar ($a, $b) in pid 115 lab_av_sample');
    expect(evaluatePolicy(sigPolicy, summary({ signatures: [] }))).toEqual([]);
  });

  it("time fences: in the rule's time zone, [from, to), windows across midnight belong to the day they start", () => {
    // 2026-11-24 is a Tuesday; 23:30 UTC is Wednesday 05:00 in Kolkata (UTC+5:30).
    const at = (iso: string) =>
      summary({
        capturedAt: new Date(iso),
        processes: [process(7, 'backup', ['/usr/bin/backup'])],
        modules: [{ name: 'usb_storage', address: 1n }],
      });
    const fence = (windows: unknown[], timezone = 'Asia/Kolkata', subject: object = { process: { name: 'backup' } }) =>
      policy([{ id: 'fence', severity: 'medium', time_fence: { ...subject, timezone, windows } }]);
    const judge = (windows: unknown[], iso: string, timezone?: string) =>
      evaluatePolicy(fence(windows, timezone), at(iso)).length;

    expect(judge([{ days: ['tue'], from: '22:00', to: '06:00' }], '2026-11-24T23:30:00Z')).toBe(0); // Wed 05:00 local, Tue's night window
    expect(judge([{ days: ['wed'], from: '22:00', to: '06:00' }], '2026-11-24T23:30:00Z')).toBe(1); // Wed's window starts Wed 22:00
    expect(judge([{ days: ['tue'], from: '22:00', to: '06:00' }], '2026-11-24T23:30:00Z', 'UTC')).toBe(0); // Tue 23:30 UTC
    expect(judge([{ days: ['tue'], from: '23:00', to: '23:30' }], '2026-11-24T23:30:00Z', 'UTC')).toBe(1); // `to` is exclusive
    expect(judge([{ from: '00:00', to: '24:00' }], '2026-11-24T23:30:00Z')).toBe(0); // every day, all day
    expect(
      judge(
        [
          { days: ['sat', 'sun'], from: '00:00', to: '24:00' },
          { days: ['wed'], from: '04:59', to: '05:01' },
        ],
        '2026-11-24T23:30:00Z',
      ),
    ).toBe(0);

    const moduleFence = evaluatePolicy(
      fence([{ days: ['mon'], from: '09:00', to: '10:00' }], 'Europe/Berlin', { module: 'usb_storage' }),
      at('2026-11-24T10:48:40Z'),
    );
    expect(brief(moduleFence)).toEqual([
      { rule: 'fence', kind: 'outside_time_fence', pid: null, name: 'usb_storage', comm: null },
    ]);
    expect(moduleFence[0]!.detail).toBe(
      'module usb_storage is loaded at 2026-11-24 tue 11:48 Europe/Berlin (guest-clock), outside mon 09:00-10:00',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The real snapshots: a policy written from the guest's own truth.

interface PolicyTruth {
  capture: { captured_at_utc: string };
  processes: Array<{ pid: number; comm: string; kernel_thread: boolean; in_task_list: boolean; hidden?: boolean }>;
  rootkit?: {
    hidden_process: { pid: number; comm: string };
    module: { name: string };
    syscall_hook: { index: number };
  };
}

/** Allow the truth's user processes by name, and no hiding or hooking. */
function truthPolicy(name: string, leaveOut: readonly string[] = []): Policy {
  const expected = truth(name) as unknown as PolicyTruth;
  const names = [
    ...new Set(expected.processes.filter((process) => !process.kernel_thread).map((process) => process.comm)),
  ].filter((comm) => !leaveOut.includes(comm));
  return policy([
    { id: 'known-processes', severity: 'high', allowed_processes: names.map((comm) => ({ name: comm })) },
    { id: 'no-hidden-processes', severity: 'critical', no_hidden_processes: true },
    { id: 'no-hidden-modules', severity: 'critical', no_hidden_modules: true },
    {
      id: 'syscalls',
      severity: 'critical',
      action: 'exec',
      command: ['logger', 'syscall hook'],
      syscall_table_intact: true,
    },
  ]);
}

const summaries = new Map<string, SnapshotSummary>();
const cacheDir = join(work, 'profiles');

describe.each(['linux61-rootkit', 'linux61-clean'])('policy on %s', (name) => {
  const expected = truth(name) as unknown as PolicyTruth;
  beforeAll(async () => {
    const context = new DumpContext(fixturePath(name, 'lime'), { cacheDir });
    try {
      summaries.set(name, await summarizeSnapshot(context));
    } finally {
      context.close();
    }
  });

  it("a policy allowing the truth's user processes flags exactly what the rootkit did, each once", () => {
    const violations = evaluatePolicy(truthPolicy(name), summaries.get(name)!);
    if (!expected.rootkit) {
      expect(violations).toEqual([]);
      return;
    }
    expect(brief(violations)).toEqual([
      {
        rule: 'no-hidden-processes',
        kind: 'hidden_process',
        pid: expected.rootkit.hidden_process.pid,
        name: null,
        comm: 'lab_hideme',
      },
      { rule: 'no-hidden-modules', kind: 'hidden_module', pid: null, name: 'labkit', comm: null },
      {
        rule: 'syscalls',
        kind: 'syscall_hook',
        pid: null,
        name: `sys_call_table[${expected.rootkit.syscall_hook.index}]`,
        comm: null,
      },
    ]);
    expect(violations[2]).toMatchObject({ severity: 'critical', action: 'exec' });
    // Not allowing the hidden process changes nothing: it is not on the task list the allow list judges.
    expect(brief(evaluatePolicy(truthPolicy(name, ['lab_hideme']), summaries.get(name)!))).toEqual(brief(violations));
  });

  it('the allow list is not vacuous: leaving a running process out flags it', () => {
    const violations = evaluatePolicy(truthPolicy(name, ['lab_secret']), summaries.get(name)!);
    const secret = expected.processes.find((process) => process.comm === 'lab_secret')!;
    expect(brief(violations).filter((violation) => violation.rule === 'known-processes')).toEqual([
      { rule: 'known-processes', kind: 'unexpected_process', pid: secret.pid, name: null, comm: 'lab_secret' },
    ]);
  });

  it('a time fence (Asia/Kolkata) excluding the capture time flags the fenced process; one including it flags nothing', () => {
    const summary = summaries.get(name)!;
    const secret = expected.processes.find((process) => process.comm === 'lab_secret')!;
    // Kolkata is UTC+5:30 all year: the local wall clock of the capture, computed without Intl.
    const capture = new Date(Date.parse(expected.capture.captured_at_utc));
    const local = new Date(capture.getTime() + 330 * 60_000);
    const day = (['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const)[local.getUTCDay()]!;
    const minutes = local.getUTCHours() * 60 + local.getUTCMinutes();
    const utcMinutes = capture.getUTCHours() * 60 + capture.getUTCMinutes();
    const clock = (m: number) =>
      `${String(Math.floor((((m % 1440) + 1440) % 1440) / 60)).padStart(2, '0')}:${String((((m % 1440) + 1440) % 1440) % 60).padStart(2, '0')}`;
    const fenced = (from: number, to: number) =>
      evaluatePolicy(
        policy([
          {
            id: 'secret-hours',
            severity: 'medium',
            time_fence: {
              process: { name: 'lab_secret' },
              timezone: 'Asia/Kolkata',
              windows: [{ days: [day], from: clock(from), to: clock(to) }],
            },
          },
        ]),
        summary,
      );
    // An hour around the capture's Kolkata time: inside.
    expect(fenced(minutes - 30, minutes + 30)).toEqual([]);
    // An hour around the capture's UTC time, read in Kolkata: outside (it would be inside if the zone were ignored).
    const outside = fenced(utcMinutes - 30, utcMinutes + 30);
    expect(brief(outside)).toEqual([
      { rule: 'secret-hours', kind: 'outside_time_fence', pid: secret.pid, name: null, comm: 'lab_secret' },
    ]);
    expect(outside[0]!.detail).toContain('Asia/Kolkata');
  });
});

describe('vmscope policy check', () => {
  /** main() in-process (the bundle in dist/ is built by npm test, not here), stdout and stderr captured. */
  async function vmscope(...args: string[]) {
    const { main } = await import('../../src/cli/main.js');
    const out: string[] = [];
    const err: string[] = [];
    const stdout = vi
      .spyOn(globalThis.process.stdout, 'write')
      .mockImplementation((chunk) => (out.push(String(chunk)), true));
    const stderr = vi
      .spyOn(globalThis.process.stderr, 'write')
      .mockImplementation((chunk) => (err.push(String(chunk)), true));
    try {
      const code = await main(args);
      return { code, stdout: out.join(''), stderr: err.join('') };
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
  }

  it('a bad policy: exit 2 and one line naming file:line:column, before the dump is even opened', async () => {
    const path = join(work, 'bad.yaml');
    writeFileSync(path, HEADER + '  - id: a\n    severity: high\n    forbidden_processes:\n      - regex: "(?"\n');
    const { code, stdout, stderr } = await vmscope(
      'policy',
      'check',
      '--policy',
      path,
      join(work, 'no-such-dump.elf'),
      '--json',
    );
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toBe(
      `vmscope: ${path}:6:16: USAGE: rules[0].forbidden_processes[0].regex: invalid regex /(?/: unsupported group syntax '(?' (at 0)\n`,
    );
  });

  it('--json on the rootkit snapshot: the three violations as rows, exit 1; --policy is required', async () => {
    const path = join(work, 'rootkit.yaml');
    const expected = truth('linux61-rootkit') as unknown as PolicyTruth;
    const names = [
      ...new Set(expected.processes.filter((process) => !process.kernel_thread).map((process) => process.comm)),
    ];
    writeFileSync(
      path,
      stringify({
        version: 1,
        rules: [
          { id: 'known', severity: 'high', allowed_processes: names.map((comm) => ({ name: comm })) },
          { id: 'hidden', severity: 'critical', no_hidden_processes: true },
          { id: 'modules', severity: 'critical', no_hidden_modules: true },
          { id: 'syscalls', severity: 'critical', syscall_table_intact: true },
        ],
      }),
    );
    const { code, stdout } = await vmscope(
      'policy',
      'check',
      '--policy',
      path,
      fixturePath('linux61-rootkit', 'lime'),
      '--json',
      '--cache-dir',
      cacheDir,
    );
    expect(code).toBe(1);
    const rows = JSON.parse(stdout) as Array<Record<string, unknown>>;
    expect(rows.map((row) => [row.rule, row.kind, row.pid, row.name, row.comm])).toEqual([
      ['hidden', 'hidden_process', expected.rootkit!.hidden_process.pid, null, 'lab_hideme'],
      ['modules', 'hidden_module', null, 'labkit', null],
      ['syscalls', 'syscall_hook', null, 'sys_call_table[217]', null],
    ]);
    expect(Object.keys(rows[0]!)).toEqual(['rule', 'severity', 'action', 'kind', 'pid', 'name', 'comm', 'detail']);
    expect((await vmscope('policy', 'check', fixturePath('linux61-rootkit', 'lime'))).code).toBe(2);
  });
  it("a signatures rule flags the process holding a rule's hit (the bundled CLI, rules scanned on the pool)", () => {
    const expected = truth('linux61-clean') as unknown as {
      markers: Array<{ kind: string; value: string; holder_pid: number; holder_comm: string }>;
    };
    const eicar = expected.markers.find((marker) => marker.kind === 'eicar')!;
    writeFileSync(
      join(work, 'eicar-only.yar'),
      `rule eicar_test_file { strings: $e = "${eicar.value.replace(/[\\"]/g, (c) => `\\${c}`)}" condition: $e }`,
    );
    const path = join(work, 'signatures.yaml');
    writeFileSync(
      path,
      stringify({ version: 1, rules: [{ id: 'av', severity: 'high', signatures: { rules_file: 'eicar-only.yar' } }] }),
    );
    const cli = spawnSync(
      globalThis.process.execPath,
      [
        resolve(repoRoot, 'bin/vmscope.js'),
        'policy',
        'check',
        '--policy',
        path,
        fixturePath('linux61-clean', 'lime'),
        '--json',
        '--cache-dir',
        cacheDir,
      ],
      { encoding: 'utf8' },
    );
    expect(cli.status, cli.stderr).toBe(1);
    const rows = JSON.parse(cli.stdout) as Array<Record<string, unknown>>;
    expect(rows.every((row) => row.rule === 'av')).toBe(true);
    expect(rows.map((row) => `${row.pid} ${row.comm}`)).toContain(`${eicar.holder_pid} ${eicar.holder_comm}`);
  });
});
