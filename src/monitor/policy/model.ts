import type { SearchRegex } from '../../rules/searchRegex.js';
import { VmscopeError } from '../../util/errors.js';

// The policy as the program holds it (regexes compiled, defaults applied, one check per rule).

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];
export const ACTIONS = ['alert', 'exec', 'pause'] as const;
export type Action = (typeof ACTIONS)[number];
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Day = (typeof DAYS)[number];

/** Matches a process by comm (exact `name` or `regex`), optionally also by argv. */
export interface ProcessMatcher {
  readonly name?: string;
  readonly regex?: SearchRegex;
  readonly argv?: SearchRegex;
  /** How the matcher reads in a violation: `lab_db`, `/^lab_/`, `/^lab_/ argv /--port/`. */
  readonly label: string;
}

export interface AllowedProcess extends ProcessMatcher {
  readonly maxCount?: number;
}

export interface RequiredProcess extends ProcessMatcher {
  readonly minCount: number;
}

/** A module name, exact or by regex. */
export type ModuleMatcher =
  { readonly name: string; readonly label: string } | { readonly regex: SearchRegex; readonly label: string };

/**
 * An eBPF program a policy allows: by name (exact or regex), type, and the helpers it may call
 * (a program calling a helper not listed does not match). Unset parts match anything.
 */
export interface BpfProgramMatcher {
  readonly name?: string;
  readonly regex?: SearchRegex;
  readonly type?: string;
  readonly helpers?: ReadonlySet<string>;
  readonly label: string;
}

export interface TimeWindow {
  readonly days: ReadonlySet<Day>;
  /** Minutes since local midnight; `to` may be 1440 (24:00). */
  readonly from: number;
  readonly to: number;
  readonly label: string;
}

/** A listening (TCP) or bound (UDP) port a guest may have open; no proto: either. */
export interface AllowedPort {
  readonly port: number;
  readonly proto?: 'tcp' | 'udp';
  readonly label: string;
}

/** A host location a guest may run at: every key given must equal the host metadata's. */
export interface AllowedLocation {
  readonly region?: string;
  readonly postalCode?: string;
  readonly timezone?: string;
  readonly label: string;
}

/** An environment variable no process may have: by exact name, optionally only with a value matching a regex. */
export interface ForbiddenVariable {
  readonly name: string;
  readonly valueRegex?: SearchRegex;
  readonly label: string;
}

export type PolicyCheck =
  | { readonly kind: 'allowed_processes'; readonly entries: readonly AllowedProcess[] }
  | { readonly kind: 'required_processes'; readonly entries: readonly RequiredProcess[] }
  | { readonly kind: 'forbidden_processes'; readonly entries: readonly ProcessMatcher[] }
  | { readonly kind: 'allowed_modules'; readonly entries: readonly ModuleMatcher[] }
  | { readonly kind: 'no_hidden_processes' }
  | { readonly kind: 'no_hidden_modules' }
  | { readonly kind: 'syscall_table_intact' }
  | { readonly kind: 'no_kernel_hooks' }
  | { readonly kind: 'allowed_bpf_programs'; readonly entries: readonly BpfProgramMatcher[] }
  | { readonly kind: 'no_privilege_escalation' }
  | {
      readonly kind: 'signatures';
      /** Absolute path of the rules file. */
      readonly rulesFile: string;
      /** The signature rules that file defines: the hits this policy rule owns. */
      readonly ruleNames: ReadonlySet<string>;
    }
  | {
      readonly kind: 'time_fence';
      readonly subject: { readonly process: ProcessMatcher } | { readonly module: string };
      readonly windows: readonly TimeWindow[];
      readonly timeZone: string;
    }
  | { readonly kind: 'listening_ports'; readonly allow: readonly AllowedPort[] }
  | {
      readonly kind: 'network_fence';
      /** Only connections of the processes it matches; every connection when absent. */
      readonly process?: ProcessMatcher;
      readonly windows: readonly TimeWindow[];
      readonly timeZone: string;
    }
  | { readonly kind: 'geo_fence'; readonly allow: readonly AllowedLocation[] }
  | { readonly kind: 'max_clock_skew'; readonly seconds: number }
  | { readonly kind: 'no_injected_code' }
  | { readonly kind: 'no_fileless_processes' }
  | { readonly kind: 'forbidden_environment'; readonly entries: readonly ForbiddenVariable[] }
  /** Every finding of these plugins (WASI analyses whose rows are findings) is a violation. */
  | { readonly kind: 'plugin_findings'; readonly plugins: readonly string[] };

export type CheckKind = PolicyCheck['kind'];

export interface PolicyRule {
  readonly id: string;
  readonly severity: Severity;
  readonly action: Action;
  /** argv to run, for action `exec` only. */
  readonly command?: readonly string[];
  readonly description?: string;
  readonly check: PolicyCheck;
}

export interface Policy {
  /** The file it was read from (or the name given to parsePolicy). */
  readonly file: string;
  readonly version: 1;
  readonly rules: readonly PolicyRule[];
}

/** One problem in a policy file, located at the node that causes it. */
export interface PolicyProblem {
  /** 1-based. */
  readonly line: number;
  readonly column: number;
  /** `rules[2].allowed_processes[0].regex`; empty for the document itself. */
  readonly path: string;
  readonly message: string;
}

/**
 * A policy file that cannot be used. The message is the first problem in document order, as
 * `file:line:column: path: what is wrong`; `problems` holds them all (one per problem: a typo'd
 * key is reported as unknown, not again as the required key it was meant to be).
 */
export class PolicyError extends VmscopeError {
  readonly line: number;
  readonly column: number;
  readonly path: string;
  readonly problems: readonly PolicyProblem[];

  constructor(file: string, problems: readonly PolicyProblem[]) {
    const first = problems[0] ?? { line: 1, column: 1, path: '', message: 'invalid policy' };
    super(
      'USAGE',
      `${file}:${first.line}:${first.column}: ${first.path ? `${first.path}: ` : ''}${first.message}`,
      file,
    );
    this.name = 'PolicyError';
    this.line = first.line;
    this.column = first.column;
    this.path = first.path;
    this.problems = problems.length > 0 ? problems : [first];
  }

  /** `file:line:column: USAGE: path: what is wrong` — the position where the CLI contract puts the offset. */
  override describe(): string {
    const problem = this.problems[0]!;
    const more =
      this.problems.length > 1
        ? ` (and ${this.problems.length - 1} more problem${this.problems.length > 2 ? 's' : ''})`
        : '';
    return `${this.file}:${problem.line}:${problem.column}: ${this.code}: ${problem.path ? `${problem.path}: ` : ''}${problem.message}${more}`;
  }
}

/** Minutes since midnight as HH:MM. */
export function clock(minutes: number): string {
  return `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
}
