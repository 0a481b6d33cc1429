/**
 * Declarative policy: what a guest may run and what must hold in its kernel, written as a YAML
 * (or JSON) file and judged against a SnapshotSummary — never against a dump, so a watch loop can
 * judge every snapshot it keeps.
 *
 * ```yaml
 * version: 1                         # required; the only version there is
 * rules:                             # at least one
 *   - id: known-processes            # required, unique in the file; violations carry it
 *     severity: high                 # info | low | medium | high | critical
 *     action: alert                  # alert (default) | pause | exec (then `command: [argv...]`)
 *     description: free text         # optional, for the reader
 *     allowed_processes:             # exactly ONE check per rule, one of:
 *       - name: sshd                 #   a process matcher: `name` (exact comm) or `regex` (on comm),
 *       - regex: "^lab_worker_"      #   optionally `argv` (regex on argv joined with spaces)
 *         argv: "--queue jobs\\."
 *         max_count: 3
 *
 *   - { id: r2, severity: low, required_processes: [{ name: init, min_count: 1 }] }
 *   - { id: r3, severity: high, forbidden_processes: [{ regex: "^nc$" }, { name: sh, argv: "-i" }] }
 *   - { id: r4, severity: high, allowed_modules: [e1000, { regex: "^nf_" }] }
 *   - { id: r5, severity: critical, no_hidden_processes: true }
 *   - { id: r6, severity: critical, no_hidden_modules: true }
 *   - { id: r7, severity: critical, syscall_table_intact: true }
 *   - { id: r8, severity: high, signatures: { rules_file: rules/eicar.yar } }   # relative to this file
 *   - id: r9
 *     severity: medium
 *     time_fence:
 *       process: { name: backup }    # or `module: name`
 *       timezone: Europe/Berlin      # IANA name, required (no silent UTC)
 *       windows:
 *         - { days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00" }
 *         - { days: [sat], from: "22:00", to: "02:00" }   # crosses midnight: Sat 22:00 to Sun 02:00
 * ```
 *
 * Semantics, and why:
 * - Names compare exactly with `comm` (what task_struct holds: at most 15 bytes, so a long
 *   executable name is cut). Regexes are the rules' dialect (rules/searchRegex.ts: run in time linear
 *   in the guest's text, which an attacker writes), unanchored (write `^…$`), compiled
 *   at load so a bad one is an error with its line, not a silent non-match at 3 a.m.
 * - `argv` matches the cmdline joined with single spaces. A process whose argv is unreadable
 *   (null) never matches a matcher that has `argv`: an allow list then flags it (fail closed), a
 *   forbid list does not (it cannot prove the argv).
 * - Process checks judge the processes on the kernel's task list only. A process hidden from the
 *   list is judged by `no_hidden_processes` alone (and hidden modules by `no_hidden_modules`
 *   alone), so a hidden process is reported once, as hidden, not again as "not allowed".
 * - `allowed_processes`: every user process must match some entry; kernel threads are exempt
 *   (no policy can list every kworker). `max_count` bounds how many user processes match that
 *   entry (each entry is counted on its own; a process matching two entries counts for both).
 * - `required_processes` and `forbidden_processes` look at every listed process, kernel threads
 *   included (a forbidden name disguised as a kernel thread is still forbidden).
 * - `signatures`: the rules file is parsed and compiled at load (errors point into it); a hit
 *   belongs to this policy rule when its signature rule is defined in that file. Hits of one
 *   signature rule in one process are one violation. When the summary was taken without rules
 *   the check is not silently passed: it yields one `not_evaluated` violation.
 * - `time_fence`: the subject may be present only inside a window, judged at the summary's
 *   capture time in `timezone`, to the minute. Windows are [from, to): `to: "24:00"` means end
 *   of day; `from` later than `to` crosses midnight and belongs to the day it starts on (listed
 *   in `days`); `from` equal to `to` is refused as ambiguous. `days` defaults to every day.
 * - Actions are carried on each violation; `policy check` only reports them — running `exec`
 *   commands or pausing a guest is the watch loop's job.
 *
 * Every problem in a policy file is one PolicyError naming `file:line:column`, the path to the
 * offending node (`rules[2].allowed_processes[0].regex`) and what is wrong.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isAlias, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { compileSource } from '../rules/compile.js';
import { compileSearchRegex, SearchRegexError, type SearchRegex } from '../rules/searchRegex.js';
import { VmscopeError } from '../util/errors.js';
import type { SnapshotModule, SnapshotProcess, SnapshotSummary } from './snapshot.js';

// ---------------------------------------------------------------------------------------------
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
export type ModuleMatcher = { readonly name: string; readonly label: string } | { readonly regex: SearchRegex; readonly label: string };

export interface TimeWindow {
  readonly days: ReadonlySet<Day>;
  /** Minutes since local midnight; `to` may be 1440 (24:00). */
  readonly from: number;
  readonly to: number;
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
    };

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

// ---------------------------------------------------------------------------------------------
// Errors.

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
    super('USAGE', `${file}:${first.line}:${first.column}: ${first.path ? `${first.path}: ` : ''}${first.message}`, file);
    this.name = 'PolicyError';
    this.line = first.line;
    this.column = first.column;
    this.path = first.path;
    this.problems = problems.length > 0 ? problems : [first];
  }

  /** `file:line:column: USAGE: path: what is wrong` — the position where the CLI contract puts the offset. */
  override describe(): string {
    const problem = this.problems[0]!;
    const more = this.problems.length > 1 ? ` (and ${this.problems.length - 1} more problem${this.problems.length > 2 ? 's' : ''})` : '';
    return `${this.file}:${problem.line}:${problem.column}: ${this.code}: ${problem.path ? `${problem.path}: ` : ''}${problem.message}${more}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Schema. Built per parse because `signatures.rules_file` resolves against the policy's folder.

const CHECK_KEYS = [
  'allowed_processes',
  'required_processes',
  'forbidden_processes',
  'allowed_modules',
  'no_hidden_processes',
  'no_hidden_modules',
  'syscall_table_intact',
  'signatures',
  'time_fence',
] as const satisfies readonly CheckKind[];

/** A strict object whose unknown-key error lists the keys it does take (the likely typo fix). */
function strict<Shape extends z.ZodRawShape>(shape: Shape) {
  const known = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown key (expected one of: ${known})` : undefined),
  });
}

const nonEmpty = (what: string) => z.string().min(1, `${what} must not be empty`);

const regexSchema = nonEmpty('a regex').transform((source, context) => {
  try {
    return compileSearchRegex(source);
  } catch (error) {
    if (!(error instanceof SearchRegexError)) throw error;
    context.addIssue({ code: 'custom', message: `invalid regex /${source}/: ${error.message}` });
    return z.NEVER;
  }
});

const matcherShape = { name: nonEmpty('a process name').optional(), regex: regexSchema.optional(), argv: regexSchema.optional() };

/** A process matcher takes `name` xor `regex` (plus optional `argv`). */
function oneCommMatcher(value: { name?: string | undefined; regex?: SearchRegex | undefined }, context: z.RefinementCtx): void {
  if ((value.name === undefined) === (value.regex === undefined)) {
    context.addIssue({ code: 'custom', message: 'a process matcher takes exactly one of `name` (exact comm) or `regex` (on comm)' });
  }
}

function matcherLabel(value: { name?: string | undefined; regex?: SearchRegex | undefined; argv?: SearchRegex | undefined }): string {
  const comm = value.name ?? String(value.regex);
  return value.argv ? `${comm} argv ${String(value.argv)}` : comm;
}

function toProcessMatcher(value: { name?: string | undefined; regex?: SearchRegex | undefined; argv?: SearchRegex | undefined }): ProcessMatcher {
  return {
    ...(value.name !== undefined ? { name: value.name } : {}),
    ...(value.regex !== undefined ? { regex: value.regex } : {}),
    ...(value.argv !== undefined ? { argv: value.argv } : {}),
    label: matcherLabel(value),
  };
}

const processMatcher = strict(matcherShape).superRefine(oneCommMatcher).transform(toProcessMatcher);
const allowedProcess = strict({ ...matcherShape, max_count: z.int().min(0).optional() }).superRefine(oneCommMatcher).transform(
  (value): AllowedProcess => ({ ...toProcessMatcher(value), ...(value.max_count !== undefined ? { maxCount: value.max_count } : {}) }),
);
const requiredProcess = strict({ ...matcherShape, min_count: z.int().min(1).default(1) }).superRefine(oneCommMatcher).transform(
  (value): RequiredProcess => ({ ...toProcessMatcher(value), minCount: value.min_count }),
);

const moduleRegexObject = strict({ regex: regexSchema });
/**
 * A module name or `{regex}`. Decided by the value's type rather than z.union, whose failure is
 * one vague "invalid input" instead of the one problem the entry has.
 */
const moduleMatcher = z.unknown().transform((value, context): ModuleMatcher => {
  if (typeof value === 'string') {
    if (value.length > 0) return { name: value, label: value };
    context.addIssue({ code: 'custom', message: 'a module name must not be empty' });
    return z.NEVER;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    context.addIssue({ code: 'custom', message: 'expected a module name or { regex: "..." }' });
    return z.NEVER;
  }
  const parsed = moduleRegexObject.safeParse(value);
  if (parsed.success) return { regex: parsed.data.regex, label: String(parsed.data.regex) };
  for (const issue of parsed.error.issues) context.addIssue({ ...issue });
  return z.NEVER;
});

const TIME = /^(\d{1,2}):(\d{2})$/;
function timeSchema(allowEndOfDay: boolean) {
  return z.string().transform((text, context) => {
    const match = TIME.exec(text);
    const minutes = match ? Number(match[1]) * 60 + Number(match[2]) : NaN;
    const valid = match !== null && Number(match[2]) < 60 && (minutes < 24 * 60 || (allowEndOfDay && minutes === 24 * 60));
    if (valid) return minutes;
    context.addIssue({ code: 'custom', message: `invalid time "${text}": expected HH:MM from 00:00 to 23:59${allowEndOfDay ? ' (or 24:00 for end of day)' : ''}` });
    return z.NEVER;
  });
}

const windowSchema = strict({
  days: z.array(z.enum(DAYS)).min(1, 'days must list at least one day (or be left out for every day)').optional(),
  from: timeSchema(false),
  to: timeSchema(true),
})
  .superRefine((value, context) => {
    if (value.from === value.to) {
      context.addIssue({ code: 'custom', path: ['to'], message: 'from and to are equal: an empty (or whole-day?) window; write from "00:00" to "24:00" for a whole day' });
    }
  })
  .transform(
    (value): TimeWindow => ({
      days: new Set(value.days ?? DAYS),
      from: value.from,
      to: value.to,
      label: `${value.days ? value.days.join(',') : 'daily'} ${clock(value.from)}-${clock(value.to)}`,
    }),
  );

const timeZoneSchema = nonEmpty('a time zone').superRefine((zone, context) => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    context.addIssue({ code: 'custom', message: `unknown time zone "${zone}" (expected an IANA name such as Europe/Berlin or UTC)` });
  }
});

const timeFenceSchema = strict({
  process: processMatcher.optional(),
  module: nonEmpty('a module name').optional(),
  timezone: timeZoneSchema,
  windows: z.array(windowSchema).min(1, 'a time fence needs at least one window'),
}).superRefine((value, context) => {
  if ((value.process === undefined) === (value.module === undefined)) {
    context.addIssue({ code: 'custom', message: 'a time fence names exactly one subject: `process: {name|regex}` or `module: name`' });
  }
});

const mustBeTrue = (key: string) =>
  z.literal(true, { error: `${key} can only be true (remove the rule to turn the check off)` });

function signaturesSchema(baseDir: string) {
  return strict({ rules_file: nonEmpty('rules_file') }).transform((value, context) => {
    const rulesFile = resolve(baseDir, value.rules_file);
    let source: string;
    try {
      source = readFileSync(rulesFile, 'utf8');
    } catch (error) {
      context.addIssue({ code: 'custom', path: ['rules_file'], message: `cannot read rules file ${rulesFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` });
      return z.NEVER;
    }
    try {
      // Compiled now (not only parsed) so a rule the scanner would refuse fails here, at load.
      const compiled = compileSource(source, rulesFile);
      return { rulesFile, ruleNames: new Set(compiled.rules.map((rule) => rule.name)) };
    } catch (error) {
      const text = error instanceof VmscopeError ? error.message : String(error);
      context.addIssue({ code: 'custom', path: ['rules_file'], message: `rules file does not compile: ${text}` });
      return z.NEVER;
    }
  });
}

function ruleSchema(baseDir: string) {
  return strict({
    id: nonEmpty('a rule id'),
    severity: z.enum(SEVERITIES),
    action: z.enum(ACTIONS).default('alert'),
    command: z.array(z.string()).min(1, 'command must hold at least the program to run').optional(),
    description: z.string().optional(),
    allowed_processes: z.array(allowedProcess).optional(),
    required_processes: z.array(requiredProcess).min(1, 'required_processes must list at least one process').optional(),
    forbidden_processes: z.array(processMatcher).min(1, 'forbidden_processes must list at least one process').optional(),
    allowed_modules: z.array(moduleMatcher).optional(),
    no_hidden_processes: mustBeTrue('no_hidden_processes').optional(),
    no_hidden_modules: mustBeTrue('no_hidden_modules').optional(),
    syscall_table_intact: mustBeTrue('syscall_table_intact').optional(),
    signatures: signaturesSchema(baseDir).optional(),
    time_fence: timeFenceSchema.optional(),
  })
    .superRefine((rule, context) => {
      const present = CHECK_KEYS.filter((key) => rule[key] !== undefined);
      if (present.length === 0) {
        context.addIssue({ code: 'custom', message: `a rule needs one check: one of ${CHECK_KEYS.join(', ')}` });
      }
      for (const extra of present.slice(1)) {
        context.addIssue({ code: 'custom', path: [extra], message: `a rule holds exactly one check and this one already has ${present[0]}: make it a rule of its own` });
      }
      if (rule.action === 'exec' && rule.command === undefined) {
        context.addIssue({ code: 'custom', path: ['action'], message: 'action exec needs `command: [program, args...]`' });
      }
      if (rule.action !== 'exec' && rule.command !== undefined) {
        context.addIssue({ code: 'custom', path: ['command'], message: `command is only run by action exec (this rule's action is ${rule.action})` });
      }
    })
    .transform((rule): PolicyRule => ({
      id: rule.id,
      severity: rule.severity,
      action: rule.action,
      ...(rule.command !== undefined ? { command: rule.command } : {}),
      ...(rule.description !== undefined ? { description: rule.description } : {}),
      check: toCheck(rule),
    }));
}

/** A validated rule's check keys (zod's output, of which the refinement lets exactly one through). */
interface RawChecks {
  allowed_processes?: AllowedProcess[] | undefined;
  required_processes?: RequiredProcess[] | undefined;
  forbidden_processes?: ProcessMatcher[] | undefined;
  allowed_modules?: ModuleMatcher[] | undefined;
  no_hidden_processes?: true | undefined;
  no_hidden_modules?: true | undefined;
  syscall_table_intact?: true | undefined;
  signatures?: { rulesFile: string; ruleNames: ReadonlySet<string> } | undefined;
  time_fence?: { process?: ProcessMatcher | undefined; module?: string | undefined; timezone: string; windows: TimeWindow[] } | undefined;
}

function toCheck(rule: RawChecks): PolicyCheck {
  if (rule.allowed_processes) return { kind: 'allowed_processes', entries: rule.allowed_processes };
  if (rule.required_processes) return { kind: 'required_processes', entries: rule.required_processes };
  if (rule.forbidden_processes) return { kind: 'forbidden_processes', entries: rule.forbidden_processes };
  if (rule.allowed_modules) return { kind: 'allowed_modules', entries: rule.allowed_modules };
  if (rule.no_hidden_processes) return { kind: 'no_hidden_processes' };
  if (rule.no_hidden_modules) return { kind: 'no_hidden_modules' };
  if (rule.syscall_table_intact) return { kind: 'syscall_table_intact' };
  if (rule.signatures) return { kind: 'signatures', ...rule.signatures };
  if (rule.time_fence) {
    const fence = rule.time_fence;
    const subject = fence.process ? { process: fence.process } : { module: fence.module! };
    return { kind: 'time_fence', subject, windows: fence.windows, timeZone: fence.timezone };
  }
  // The refinement above guarantees one check; reaching here is a bug, not bad input.
  throw new Error('policy rule without a check passed validation');
}

function policySchema(baseDir: string) {
  return strict({
    version: z.literal(1, { error: 'unsupported policy version: this vmscope reads `version: 1`' }),
    rules: z
      .array(ruleSchema(baseDir))
      .min(1, 'a policy needs at least one rule')
      .superRefine((rules, context) => {
        const seen = new Map<string, number>();
        rules.forEach((rule, index) => {
          const first = seen.get(rule.id);
          if (first === undefined) seen.set(rule.id, index);
          else context.addIssue({ code: 'custom', path: [index, 'id'], message: `duplicate rule id "${rule.id}" (first used by rules[${first}])` });
        });
      }),
  });
}

// ---------------------------------------------------------------------------------------------
// Loading: YAML (JSON is YAML) → document with positions → zod → located problems.

export interface ParseOptions {
  /** Where `signatures.rules_file` paths are relative to (default: the policy file's folder). */
  readonly baseDir?: string;
}

/** Reads and validates a policy file; throws PolicyError (or VmscopeError when unreadable). */
export function loadPolicy(path: string): Policy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new VmscopeError('UNREADABLE_FILE', `cannot read policy: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, path);
  }
  return parsePolicy(text, path);
}

/** Validates policy text; `file` names it in errors. Throws PolicyError, and nothing else, on bad input. */
export function parsePolicy(text: string, file = '<policy>', options: ParseOptions = {}): Policy {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };

  if (document.errors.length > 0) {
    // yaml's own messages already say what is wrong; its position is the offending token.
    throw new PolicyError(
      file,
      document.errors.map((error) => ({ ...at(error.pos[0]), path: '', message: `YAML: ${error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}` })),
    );
  }

  let value: unknown;
  try {
    value = document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // toJS refuses alias bombs (ReferenceError) and the like: still the user's input.
    throw new PolicyError(file, [{ ...at(0), path: '', message: `YAML: ${error instanceof Error ? error.message : String(error)}` }]);
  }

  const result = policySchema(options.baseDir ?? dirname(resolve(file))).safeParse(value);
  if (!result.success) throw new PolicyError(file, problemsOf(result.error.issues, value, document, at));
  return { file, version: result.data.version, rules: result.data.rules };
}

/** The absolute paths of every rules file the policy's `signatures` rules use, each once. */
export function policyRulesFiles(policy: Policy): string[] {
  const files = policy.rules.flatMap((rule) => (rule.check.kind === 'signatures' ? [rule.check.rulesFile] : []));
  return [...new Set(files)];
}

type Segment = PropertyKey;

function problemsOf(issues: readonly z.core.$ZodIssue[], value: unknown, document: Document, at: (offset: number) => { line: number; column: number }): PolicyProblem[] {
  // A typo'd key shows up twice — unknown, and the required key it was meant to be missing — so
  // missing-key issues in an object that also has unknown keys are left out: one problem, one error.
  const withUnknownKeys = new Set(issues.filter((issue) => issue.code === 'unrecognized_keys').map((issue) => pathKey(issue.path)));
  const located: Array<PolicyProblem & { offset: number }> = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const path = [...issue.path, key];
        located.push({ offset: locate(document, path, true), path: pathText(path), message: `unknown key "${key}" ${issue.message.replace(/^unknown key /, '')}`, line: 0, column: 0 });
      }
      continue;
    }
    const missing = isMissingKey(value, issue.path);
    if (missing && withUnknownKeys.has(pathKey(issue.path.slice(0, -1)))) continue;
    const message = missing ? 'required key is missing' : lowerFirst(issue.message);
    located.push({ offset: locate(document, issue.path, false), path: pathText(issue.path), message, line: 0, column: 0 });
  }
  return located
    .sort((a, b) => a.offset - b.offset)
    .map(({ offset, path, message }) => ({ ...at(offset), path, message }));
}

/** Whether `path` names a key its object lacks (zod words that per type: "expected string", "expected one of"). */
function isMissingKey(value: unknown, path: readonly Segment[]): boolean {
  if (path.length === 0 || typeof path[path.length - 1] !== 'string') return false;
  let parent: unknown = value;
  for (const segment of path.slice(0, -1)) {
    if (parent === null || typeof parent !== 'object') return false;
    parent = (parent as Record<PropertyKey, unknown>)[segment];
  }
  return parent !== null && typeof parent === 'object' && !Array.isArray(parent) && !Object.hasOwn(parent, path[path.length - 1]!);
}

/**
 * The source offset of the node at `path`, or of its nearest existing ancestor (a missing key
 * is reported at the map that lacks it). `atKey` points at the key itself (unknown keys).
 */
function locate(document: Document, path: readonly Segment[], atKey: boolean): number {
  let node: unknown = document.contents;
  let offset = startOf(node) ?? 0;
  for (const [index, segment] of path.entries()) {
    // Below an alias the nodes are the anchor's, elsewhere in the file: the alias is the spot that put them here.
    if (isAlias(node)) break;
    let next: unknown;
    if (isMap(node)) {
      const pair = node.items.find((item) => keyText(item.key) === String(segment));
      if (!pair) break;
      if (atKey && index === path.length - 1) return startOf(pair.key) ?? offset;
      // `key:` with no value still has a position: its key's.
      next = isNode(pair.value) ? pair.value : pair.key;
    } else if (isSeq(node) && typeof segment === 'number') {
      next = node.items[segment];
    }
    const start = startOf(next);
    if (start === undefined) break;
    node = next;
    offset = start;
  }
  return offset;
}

function startOf(node: unknown): number | undefined {
  return isNode(node) && node.range ? node.range[0] : undefined;
}

function keyText(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

function pathText(path: readonly Segment[]): string {
  return path.map((segment, i) => (typeof segment === 'number' ? `[${segment}]` : `${i === 0 ? '' : '.'}${String(segment)}`)).join('');
}

function pathKey(path: readonly Segment[]): string {
  return JSON.stringify(path.map(String));
}

function lowerFirst(text: string): string {
  // zod's "Invalid input: expected string, received number" reads better after a path as "expected string, received number".
  return text.replace(/^Invalid (input|option): /, '').replace(/^./, (c) => c.toLowerCase());
}

function clock(minutes: number): string {
  return `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

export type ViolationKind =
  | 'unexpected_process'
  | 'too_many_processes'
  | 'missing_process'
  | 'forbidden_process'
  | 'unexpected_module'
  | 'hidden_process'
  | 'hidden_module'
  | 'syscall_hook'
  | 'signature_hit'
  | 'outside_time_fence'
  /** The summary lacks what the check needs (taken without rules, no capture time): never a silent pass. */
  | 'not_evaluated';

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
}

type Finding = Omit<Violation, 'rule' | 'severity' | 'action'>;

/** Judges a summary: every rule's violations, in rule order. Pure: no I/O, no clock but the summary's. */
export function evaluatePolicy(policy: Policy, summary: SnapshotSummary): Violation[] {
  return policy.rules.flatMap((rule) =>
    findings(rule.check, summary).map((finding) => ({ rule: rule.id, severity: rule.severity, action: rule.action, ...finding })),
  );
}

function findings(check: PolicyCheck, summary: SnapshotSummary): Finding[] {
  const userProcesses = summary.processes.filter((process) => !process.kernelThread);
  switch (check.kind) {
    case 'allowed_processes': {
      const unexpected = userProcesses
        .filter((process) => !check.entries.some((entry) => matchesProcess(entry, process)))
        .map((process) =>
          processFinding('unexpected_process', process, `${describeProcess(process)} is not allowed by any entry${process.cmdline === null ? ' (argv unreadable)' : ''}`),
        );
      const crowded = check.entries.flatMap((entry) => {
        if (entry.maxCount === undefined) return [];
        const matching = userProcesses.filter((process) => matchesProcess(entry, process));
        if (matching.length <= entry.maxCount) return [];
        return [otherFinding('too_many_processes', entry.label, `${matching.length} processes match ${entry.label} (pids ${pids(matching)}), at most ${entry.maxCount} allowed`)];
      });
      return [...unexpected, ...crowded];
    }
    case 'required_processes':
      return check.entries.flatMap((entry) => {
        const matching = summary.processes.filter((process) => matchesProcess(entry, process));
        if (matching.length >= entry.minCount) return [];
        const found = matching.length === 0 ? 'none is running' : `only ${matching.length} (pids ${pids(matching)})`;
        return [otherFinding('missing_process', entry.label, `at least ${entry.minCount} process${entry.minCount > 1 ? 'es' : ''} matching ${entry.label} required; ${found}`)];
      });
    case 'forbidden_processes':
      return summary.processes.flatMap((process) => {
        const entry = check.entries.find((candidate) => matchesProcess(candidate, process));
        return entry ? [processFinding('forbidden_process', process, `${describeProcess(process)} matches forbidden ${entry.label}`)] : [];
      });
    case 'allowed_modules':
      return summary.modules
        .filter((module) => !check.entries.some((entry) => matchesModule(entry, module)))
        .map((module) => otherFinding('unexpected_module', module.name, `module ${module.name} (struct module ${hex(module.address)}) is not allowed`));
    case 'no_hidden_processes':
      return summary.hiddenProcesses.map((process) =>
        processFinding('hidden_process', process, `${describeProcess(process)} is alive but missing from the kernel's task list`),
      );
    case 'no_hidden_modules':
      return summary.hiddenModules.map((module) =>
        otherFinding('hidden_module', module.name, `module ${module.name} (struct module ${hex(module.address)}) is loaded but missing from the module list`),
      );
    case 'syscall_table_intact':
      // Table entries and dispatcher jumps alike: `table[index]` names which (the same index is another syscall in each).
      return summary.syscalls
        .filter((syscall) => syscall.hooked)
        .map((syscall) => {
          const entry = `${syscall.table}[${syscall.index}]`;
          const target = syscall.symbol ?? "outside the kernel's symbols";
          return otherFinding('syscall_hook', entry, `${entry}${syscall.name ? ` (${syscall.name})` : ''} points to ${hex(syscall.value)} (${target}), not where the kernel's own dispatch says`);
        });
    case 'signatures':
      return signatureFindings(check.rulesFile, check.ruleNames, summary);
    case 'time_fence':
      return timeFenceFindings(check, summary);
  }
}

function signatureFindings(rulesFile: string, ruleNames: ReadonlySet<string>, summary: SnapshotSummary): Finding[] {
  if (summary.signatures === undefined) {
    return [otherFinding('not_evaluated', rulesFile, `the summary was taken without signature rules; take it with ${rulesFile} (policyRulesFiles) to judge this rule`)];
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
  if (local === undefined) return [otherFinding('not_evaluated', subjectLabel, 'the summary has no valid capture time to judge the time fence at')];
  if (check.windows.some((window) => insideWindow(window, local))) return [];

  const when = `${local.text} ${check.timeZone} (${summary.capturedAtSource})`;
  const windows = check.windows.map((window) => window.label).join('; ');
  if ('process' in check.subject) {
    const matcher = check.subject.process;
    return summary.processes
      .filter((process) => matchesProcess(matcher, process))
      .map((process) => processFinding('outside_time_fence', process, `${describeProcess(process)} is running at ${when}, outside ${windows}`));
  }
  const name = check.subject.module;
  return summary.modules
    .filter((module) => module.name === name)
    .map((module) => otherFinding('outside_time_fence', module.name, `module ${module.name} is loaded at ${when}, outside ${windows}`));
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
  if (window.from < window.to) return window.days.has(local.day) && local.minutes >= window.from && local.minutes < window.to;
  const yesterday = DAYS[(DAYS.indexOf(local.day) + DAYS.length - 1) % DAYS.length]!;
  return (window.days.has(local.day) && local.minutes >= window.from) || (window.days.has(yesterday) && local.minutes < window.to);
}

function matchesProcess(matcher: ProcessMatcher, process: SnapshotProcess): boolean {
  const commMatches = matcher.name !== undefined ? process.comm === matcher.name : matcher.regex !== undefined && matcher.regex.test(process.comm);
  if (!commMatches) return false;
  if (matcher.argv === undefined) return true;
  return process.cmdline !== null && matcher.argv.test(process.cmdline.join(' '));
}

function matchesModule(matcher: ModuleMatcher, module: SnapshotModule): boolean {
  return 'name' in matcher ? module.name === matcher.name : matcher.regex.test(module.name);
}

function processFinding(kind: ViolationKind, process: SnapshotProcess, detail: string): Finding {
  return { kind, pid: process.pid, name: null, comm: process.comm, detail };
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

function hex(value: bigint): string {
  return '0x' + BigInt.asUintN(64, value).toString(16);
}
