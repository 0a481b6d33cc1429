import { hex } from '../../util/hex.js';
import type {
  SnapshotBpfProgram,
  SnapshotModule,
  SnapshotProcess,
  SnapshotSocket,
  SnapshotSummary,
} from '../snapshot.js';
import {
  clock,
  DAYS,
  type Action,
  type AllowedLocation,
  type AllowedPort,
  type BpfProgramMatcher,
  type Day,
  type ForbiddenVariable,
  type ModuleMatcher,
  type Policy,
  type PolicyCheck,
  type ProcessMatcher,
  type Severity,
  type TimeWindow,
} from './model.js';

export type ViolationKind =
  | 'unexpected_process'
  | 'too_many_processes'
  | 'missing_process'
  | 'forbidden_process'
  | 'unexpected_module'
  | 'hidden_process'
  | 'hidden_module'
  | 'syscall_hook'
  | KernelHookKind
  | 'cred_escalation'
  | 'unexpected_bpf_program'
  | 'signature_hit'
  | 'outside_time_fence'
  | 'unexpected_listener'
  | 'connection_outside_fence'
  | 'outside_geo_fence'
  /** No host metadata to judge a geo fence by: a fence fails closed. */
  | 'unknown_location'
  | 'clock_skew'
  | 'injected_code'
  | 'fileless_process'
  | 'forbidden_environment'
  | 'plugin_finding'
  /** The summary lacks what the check needs (taken without rules, no capture time): never a silent pass. */
  | 'not_evaluated';

/** The hooks `no_kernel_hooks` forbids: code of a module or unowned memory spliced into the kernel's paths. */
export const KERNEL_HOOK_KINDS = [
  'ftrace_hook',
  'kprobe',
  'netfilter_hook',
  'inline_hook',
  'idt_hook',
  'proc_hook',
] as const;
export type KernelHookKind = (typeof KERNEL_HOOK_KINDS)[number];
const isKernelHookKind = (kind: string): kind is KernelHookKind =>
  (KERNEL_HOOK_KINDS as readonly string[]).includes(kind);

/**
 * One problem, found by one rule. `pid` and `comm` name the process concerned; `name` names the
 * other thing concerned (module, `sys_call_table[217]`, signature rule, or the matcher of a count
 * rule); either may be null.
 */
export interface Violation {
  readonly rule: string;
  readonly severity: Severity;
  readonly action: Action;
  readonly kind: ViolationKind;
  readonly pid: number | null;
  readonly name: string | null;
  readonly comm: string | null;
  readonly detail: string;
  /** The process's start time (task_struct.start_time) when the violation is about one: with the pid, what makes it the same process in a later snapshot. */
  readonly startTime?: bigint;
}

type Finding = Omit<Violation, 'rule' | 'severity' | 'action'>;

/** Judges a summary: every rule's violations, in rule order. Pure: no I/O, no clock but the summary's. */
export function evaluatePolicy(policy: Policy, summary: SnapshotSummary): Violation[] {
  return policy.rules.flatMap((rule) =>
    findings(rule.check, summary).map((finding) => ({
      rule: rule.id,
      severity: rule.severity,
      action: rule.action,
      ...finding,
    })),
  );
}

function findings(check: PolicyCheck, summary: SnapshotSummary): Finding[] {
  const userProcesses = summary.processes.filter((process) => !process.kernelThread);
  switch (check.kind) {
    case 'allowed_processes': {
      const unexpected = userProcesses
        .filter((process) => !check.entries.some((entry) => matchesProcess(entry, process)))
        .map((process) =>
          processFinding(
            'unexpected_process',
            process,
            `${describeProcess(process)} is not allowed by any entry${process.cmdline === null ? ' (argv unreadable)' : ''}`,
          ),
        );
      const crowded = check.entries.flatMap((entry) => {
        if (entry.maxCount === undefined) return [];
        const matching = userProcesses.filter((process) => matchesProcess(entry, process));
        if (matching.length <= entry.maxCount) return [];
        return [
          otherFinding(
            'too_many_processes',
            entry.label,
            `${matching.length} processes match ${entry.label} (pids ${pids(matching)}), at most ${entry.maxCount} allowed`,
          ),
        ];
      });
      return [...unexpected, ...crowded];
    }
    case 'required_processes':
      return check.entries.flatMap((entry) => {
        const matching = summary.processes.filter((process) => matchesProcess(entry, process));
        if (matching.length >= entry.minCount) return [];
        const found = matching.length === 0 ? 'none is running' : `only ${matching.length} (pids ${pids(matching)})`;
        return [
          otherFinding(
            'missing_process',
            entry.label,
            `at least ${entry.minCount} process${entry.minCount > 1 ? 'es' : ''} matching ${entry.label} required; ${found}`,
          ),
        ];
      });
    case 'forbidden_processes':
      return summary.processes.flatMap((process) => {
        const entry = check.entries.find((candidate) => matchesProcess(candidate, process));
        return entry
          ? [
              processFinding(
                'forbidden_process',
                process,
                `${describeProcess(process)} matches forbidden ${entry.label}`,
              ),
            ]
          : [];
      });
    case 'allowed_modules':
      return summary.modules
        .filter((module) => !check.entries.some((entry) => matchesModule(entry, module)))
        .map((module) =>
          otherFinding(
            'unexpected_module',
            module.name,
            `module ${module.name} (struct module ${hex(module.address)}) is not allowed`,
          ),
        );
    case 'no_hidden_processes':
      return summary.hiddenProcesses.map((process) =>
        processFinding(
          'hidden_process',
          process,
          `${describeProcess(process)} is alive but missing from the kernel's task list`,
        ),
      );
    case 'no_hidden_modules':
      return summary.hiddenModules.map((module) =>
        otherFinding(
          'hidden_module',
          module.name,
          `module ${module.name} (struct module ${hex(module.address)}) is loaded but missing from the module list`,
        ),
      );
    case 'syscall_table_intact':
      // Table entries and dispatcher jumps alike: `table[index]` names which (the same index is another syscall in each).
      return summary.syscalls
        .filter((syscall) => syscall.hooked)
        .map((syscall) => {
          const entry = `${syscall.table}[${syscall.index}]`;
          const target = syscall.symbol ?? "outside the kernel's symbols";
          return otherFinding(
            'syscall_hook',
            entry,
            `${entry}${syscall.name ? ` (${syscall.name})` : ''} points to ${hex(syscall.value)} (${target}), not where the kernel's own dispatch says`,
          );
        });
    case 'no_kernel_hooks':
      return summary.kernelHooks.flatMap((hook) =>
        isKernelHookKind(hook.kind)
          ? [otherFinding(hook.kind, hook.subject, `${hook.subject}, owned by ${hook.owner}: ${hook.detail}`)]
          : [],
      );
    case 'no_privilege_escalation':
      return summary.kernelHooks
        .filter((hook) => hook.kind === 'cred_escalation')
        .map((hook) => otherFinding('cred_escalation', hook.subject, `${hook.subject}: ${hook.detail}`));
    case 'allowed_bpf_programs':
      return summary.bpfPrograms
        .filter((program) => !check.entries.some((entry) => matchesBpfProgram(entry, program)))
        .map((program) =>
          otherFinding(
            'unexpected_bpf_program',
            program.name,
            `bpf program ${program.name || '(unnamed)'} (id ${program.id}, ${program.type}) calling ${program.helpers.join(', ') || 'no helper'}, held by ${program.holders.join(', ') || 'no process'}, is not allowed`,
          ),
        );
    case 'signatures':
      return signatureFindings(check.rulesFile, check.ruleNames, summary);
    case 'plugin_findings':
      return pluginFindings(check.plugins, summary);
    case 'time_fence':
      return timeFenceFindings(check, summary);
    case 'listening_ports':
      return summary.sockets
        .filter(isListening)
        .filter((socket) => !check.allow.some((entry) => allowsPort(entry, socket)))
        .map((socket) => ({
          kind: 'unexpected_listener' as const,
          pid: socket.pid,
          name: `${baseProto(socket)}/${socket.localPort}`,
          comm: socket.comm,
          detail: `${describeHolder(socket)} ${socket.state === 'LISTEN' ? 'listens' : 'is bound'} on ${baseProto(socket)} ${endpoint(socket.localAddress, socket.localPort)}, a port the policy does not allow`,
        }));
    case 'network_fence':
      return networkFenceFindings(check, summary);
    case 'geo_fence':
      return geoFenceFindings(check.allow, summary);
    case 'max_clock_skew':
      return clockSkewFindings(check.seconds, summary);
    case 'no_injected_code':
      return summary.executableRegions
        .filter((region) => region.injected)
        .map((region) => ({
          kind: 'injected_code' as const,
          pid: region.pid,
          name: `${hex(region.start)}-${hex(region.end)}`,
          comm: region.comm,
          detail: `pid ${region.pid} ${region.comm} has ${region.perms} memory ${hex(region.start)}-${hex(region.end)} backed by no file (injected code, or a JIT compiler's)`,
          startTime: region.startTime,
        }));
    case 'no_fileless_processes':
      return summary.filelessProcesses.map((process) => ({
        kind: 'fileless_process' as const,
        pid: process.pid,
        name: process.exe,
        comm: process.comm,
        detail: `pid ${process.pid} ${process.comm} runs from ${process.kind === 'memfd' ? 'a memfd' : process.kind === 'deleted_file' ? 'a deleted file' : 'a pseudo file'}: ${process.exe}`,
        startTime: process.startTime,
      }));
    case 'forbidden_environment':
      return summary.environments.flatMap((process) =>
        check.entries.flatMap((entry) =>
          process.variables
            .filter((variable) => matchesVariable(entry, variable))
            .map((variable) => ({
              kind: 'forbidden_environment' as const,
              pid: process.pid,
              name: entry.name,
              comm: process.comm,
              detail: `pid ${process.pid} ${process.comm} has ${variable} in its environment (forbidden: ${entry.label})`,
              startTime: process.startTime,
            })),
        ),
      );
  }
}

/** A TCP socket in LISTEN, or a UDP socket bound to a port and connected to none. */
function isListening(socket: SnapshotSocket): boolean {
  if (baseProto(socket) === 'tcp') return socket.state === 'LISTEN';
  return baseProto(socket) === 'udp' && socket.state === 'UNCONN' && socket.localPort !== 0;
}

/** `tcp6` → `tcp`: a port rule is about the port, over either IP version. */
const baseProto = (socket: SnapshotSocket) => socket.proto.replace(/6$/, '');

function allowsPort(entry: AllowedPort, socket: SnapshotSocket): boolean {
  return entry.port === socket.localPort && (entry.proto === undefined || entry.proto === baseProto(socket));
}

const endpoint = (address: string, port: number) =>
  address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
const describeHolder = (socket: SnapshotSocket) =>
  socket.pid === null ? 'a socket no process holds' : `pid ${socket.pid} ${socket.comm ?? '?'}`;

/**
 * Established connections outside the fence's windows, at the capture time. One violation per
 * socket: a connection between two processes of the guest (loopback) is reported at both ends,
 * each naming its own process, so an allow-listed peer does not hide the other.
 */
function networkFenceFindings(
  check: Extract<PolicyCheck, { kind: 'network_fence' }>,
  summary: SnapshotSummary,
): Finding[] {
  const local = localTime(summary.capturedAt, check.timeZone);
  if (local === undefined)
    return [
      otherFinding('not_evaluated', 'network', 'the summary has no valid capture time to judge the network fence at'),
    ];
  if (check.windows.some((window) => insideWindow(window, local))) return [];
  const when = `${local.text} ${check.timeZone} (${summary.capturedAtSource})`;
  const windows = check.windows.map((window) => window.label).join('; ');
  const processes = new Map(summary.processes.map((process) => [process.pid, process]));
  const { process: matcher } = check;
  return summary.sockets
    .filter((socket) => socket.state === 'ESTABLISHED')
    .filter((socket) => {
      if (matcher === undefined) return true;
      const holder = socket.pid === null ? undefined : processes.get(socket.pid);
      return holder !== undefined && matchesProcess(matcher, holder);
    })
    .map((socket) => {
      const holder = socket.pid === null ? undefined : processes.get(socket.pid);
      const connection = `${baseProto(socket)} ${endpoint(socket.localAddress, socket.localPort)} ↔ ${endpoint(socket.remoteAddress, socket.remotePort)}`;
      return {
        kind: 'connection_outside_fence' as const,
        pid: socket.pid,
        name: connection,
        comm: socket.comm,
        detail: `${describeHolder(socket)} has an established connection ${connection} at ${when}, outside ${windows}`,
        ...(holder ? { startTime: holder.startTime } : {}),
      };
    });
}

/** The host must be at one allowed location; no metadata is a violation (fail closed). */
function geoFenceFindings(allow: readonly AllowedLocation[], summary: SnapshotSummary): Finding[] {
  const { host } = summary;
  if (host === null)
    return [
      otherFinding(
        'unknown_location',
        'host',
        `the host's location is unknown (${summary.hostProblem ?? 'no host metadata was given: --host-metadata FILE'}): a geo fence cannot pass without it`,
      ),
    ];
  const matches = (entry: AllowedLocation) =>
    (entry.region === undefined || entry.region === host.region) &&
    (entry.postalCode === undefined || entry.postalCode === host.postal_code) &&
    (entry.timezone === undefined || entry.timezone === host.timezone);
  if (allow.some(matches)) return [];
  const where = Object.entries(host)
    .map(([key, value]) => `${key} ${String(value)}`)
    .join(', ');
  return [
    otherFinding(
      'outside_geo_fence',
      'host',
      `the host is at ${where || 'an empty location'}, none of the allowed: ${allow.map((entry) => entry.label).join('; ')}`,
    ),
  ];
}

/** The guest's clock against the host's capture time: a guest that lies about time defeats time fences. An unreadable guest clock fails closed. */
function clockSkewFindings(maxSeconds: number, summary: SnapshotSummary): Finding[] {
  const host = summary.hostCapturedAt.toISOString();
  if (summary.guestClock === null)
    return [
      otherFinding(
        'clock_skew',
        'clock',
        `the guest's clock is unreadable or implausible; the host captured at ${host}`,
      ),
    ];
  const skew = (summary.guestClock.getTime() - summary.hostCapturedAt.getTime()) / 1000;
  if (Math.abs(skew) <= maxSeconds) return [];
  return [
    otherFinding(
      'clock_skew',
      'clock',
      `the guest's clock says ${summary.guestClock.toISOString()}, the host captured at ${host}: ${Math.abs(skew).toFixed(0)} s ${skew < 0 ? 'behind' : 'ahead'}, more than the ${maxSeconds} s allowed`,
    ),
  ];
}

function matchesVariable(entry: ForbiddenVariable, variable: string): boolean {
  const equals = variable.indexOf('=');
  const name = equals < 0 ? variable : variable.slice(0, equals);
  if (name !== entry.name) return false;
  return entry.valueRegex === undefined || (equals >= 0 && entry.valueRegex.test(variable.slice(equals + 1)));
}

/** Each finding of the named plugins; a plugin that did not run is not_evaluated, never a silent pass. */
function pluginFindings(plugins: readonly string[], summary: SnapshotSummary): Finding[] {
  const ran = new Set(summary.analysisFindings?.ran ?? []);
  return plugins.flatMap((plugin): Finding[] =>
    ran.has(plugin)
      ? summary
          .analysisFindings!.findings.filter((finding) => finding.analysis === plugin)
          .map((finding) => ({
            kind: 'plugin_finding' as const,
            pid: finding.pid,
            name: `${plugin}:${finding.kind}`,
            comm: null,
            detail: `plugin ${plugin} (${finding.severity}): ${finding.subject}: ${finding.detail}`,
          }))
      : [
          otherFinding(
            'not_evaluated',
            plugin,
            `plugin ${plugin} did not run on this dump (give its directory with --plugin; a plugin that failed is in the warnings)`,
          ),
        ],
  );
}

function signatureFindings(rulesFile: string, ruleNames: ReadonlySet<string>, summary: SnapshotSummary): Finding[] {
  if (summary.signatures === undefined) {
    return [
      otherFinding(
        'not_evaluated',
        rulesFile,
        `the summary was taken without signature rules; take it with ${rulesFile} (policyRulesFiles) to judge this rule`,
      ),
    ];
  }
  // One violation per (signature rule, holder): many strings or copies of one sample are one problem.
  const groups = new Map<string, { rule: string; pid: number | null; comm: string | null; strings: Set<string> }>();
  for (const hit of summary.signatures) {
    if (!ruleNames.has(hit.rule)) continue;
    const key = `${hit.rule}\0${hit.pid ?? ''}`;
    const group = groups.get(key) ?? { rule: hit.rule, pid: hit.pid, comm: hit.comm, strings: new Set<string>() };
    group.strings.add(hit.string);
    groups.set(key, group);
  }
  return [...groups.values()].map((group) => ({
    kind: 'signature_hit' as const,
    pid: group.pid,
    name: group.rule,
    comm: group.comm,
    detail: `signature ${group.rule} (${[...group.strings].join(', ')}) in ${group.pid === null ? 'kernel or unowned memory' : `pid ${group.pid} ${group.comm ?? '?'}`}`,
  }));
}

function timeFenceFindings(check: Extract<PolicyCheck, { kind: 'time_fence' }>, summary: SnapshotSummary): Finding[] {
  const subjectLabel = 'process' in check.subject ? check.subject.process.label : check.subject.module;
  const local = localTime(summary.capturedAt, check.timeZone);
  if (local === undefined)
    return [
      otherFinding('not_evaluated', subjectLabel, 'the summary has no valid capture time to judge the time fence at'),
    ];
  if (check.windows.some((window) => insideWindow(window, local))) return [];

  const when = `${local.text} ${check.timeZone} (${summary.capturedAtSource})`;
  const windows = check.windows.map((window) => window.label).join('; ');
  if ('process' in check.subject) {
    const matcher = check.subject.process;
    return summary.processes
      .filter((process) => matchesProcess(matcher, process))
      .map((process) =>
        processFinding(
          'outside_time_fence',
          process,
          `${describeProcess(process)} is running at ${when}, outside ${windows}`,
        ),
      );
  }
  const name = check.subject.module;
  return summary.modules
    .filter((module) => module.name === name)
    .map((module) =>
      otherFinding('outside_time_fence', module.name, `module ${module.name} is loaded at ${when}, outside ${windows}`),
    );
}

interface LocalTime {
  readonly day: Day;
  readonly minutes: number;
  readonly text: string;
}

/** The capture instant as a wall clock in `timeZone` (Intl does the zone rules, DST included). */
function localTime(instant: Date, timeZone: string): LocalTime | undefined {
  if (Number.isNaN(instant.getTime())) return undefined;
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    weekday: 'short',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
  }).formatToParts(instant);
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.find((candidate) => candidate.type === type)?.value ?? '';
  const day = part('weekday').toLowerCase().slice(0, 3) as Day;
  const minutes = Number(part('hour')) * 60 + Number(part('minute'));
  return { day, minutes, text: `${part('year')}-${part('month')}-${part('day')} ${day} ${clock(minutes)}` };
}

/** [from, to) on a listed day; a window crossing midnight continues into the next day's early hours. */
function insideWindow(window: TimeWindow, local: LocalTime): boolean {
  if (window.from < window.to)
    return window.days.has(local.day) && local.minutes >= window.from && local.minutes < window.to;
  const yesterday = DAYS[(DAYS.indexOf(local.day) + DAYS.length - 1) % DAYS.length]!;
  return (
    (window.days.has(local.day) && local.minutes >= window.from) ||
    (window.days.has(yesterday) && local.minutes < window.to)
  );
}

function matchesProcess(matcher: ProcessMatcher, process: SnapshotProcess): boolean {
  const commMatches =
    matcher.name !== undefined
      ? process.comm === matcher.name
      : matcher.regex !== undefined && matcher.regex.test(process.comm);
  if (!commMatches) return false;
  if (matcher.argv === undefined) return true;
  return process.cmdline !== null && matcher.argv.test(process.cmdline.join(' '));
}

function matchesModule(matcher: ModuleMatcher, module: SnapshotModule): boolean {
  return 'name' in matcher ? module.name === matcher.name : matcher.regex.test(module.name);
}

/** Name, type and helpers as the matcher says; every helper the program calls must be among the allowed ones. */
function matchesBpfProgram(matcher: BpfProgramMatcher, program: SnapshotBpfProgram): boolean {
  if (matcher.name !== undefined && program.name !== matcher.name) return false;
  if (matcher.regex !== undefined && !matcher.regex.test(program.name)) return false;
  if (matcher.type !== undefined && program.type !== matcher.type) return false;
  const { helpers } = matcher;
  return helpers === undefined || program.helpers.every((helper) => helpers.has(helper));
}

function processFinding(kind: ViolationKind, process: SnapshotProcess, detail: string): Finding {
  return { kind, pid: process.pid, name: null, comm: process.comm, detail, startTime: process.startTime };
}

function otherFinding(kind: ViolationKind, name: string, detail: string): Finding {
  return { kind, pid: null, name, comm: null, detail };
}

function describeProcess(process: SnapshotProcess): string {
  return `pid ${process.pid} ${process.comm}${process.kernelThread ? ' (kernel thread)' : ''}`;
}

function pids(processes: readonly SnapshotProcess[]): string {
  return processes.map((process) => process.pid).join(', ');
}
