import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { compileSource } from '../../rules/compile.js';
import { compileSearchRegex, SearchRegexError, type SearchRegex } from '../../rules/searchRegex.js';
import { VmscopeError } from '../../util/errors.js';
import {
  ACTIONS,
  clock,
  DAYS,
  SEVERITIES,
  type AllowedLocation,
  type AllowedPort,
  type AllowedProcess,
  type BpfProgramMatcher,
  type CheckKind,
  type ForbiddenVariable,
  type ModuleMatcher,
  type PolicyCheck,
  type PolicyRule,
  type ProcessMatcher,
  type RequiredProcess,
  type TimeWindow,
} from './model.js';

// Schema. Built per parse because `signatures.rules_file` resolves against the policy's folder.

const CHECK_KEYS = [
  'allowed_processes',
  'required_processes',
  'forbidden_processes',
  'allowed_modules',
  'no_hidden_processes',
  'no_hidden_modules',
  'syscall_table_intact',
  'no_kernel_hooks',
  'allowed_bpf_programs',
  'no_privilege_escalation',
  'signatures',
  'time_fence',
  'listening_ports',
  'network_fence',
  'geo_fence',
  'max_clock_skew',
  'no_injected_code',
  'no_fileless_processes',
  'forbidden_environment',
  'plugin_findings',
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

const matcherShape = {
  name: nonEmpty('a process name').optional(),
  regex: regexSchema.optional(),
  argv: regexSchema.optional(),
};

/** A process matcher takes `name` xor `regex` (plus optional `argv`). */
function oneCommMatcher(
  value: { name?: string | undefined; regex?: SearchRegex | undefined },
  context: z.RefinementCtx,
): void {
  if ((value.name === undefined) === (value.regex === undefined)) {
    context.addIssue({
      code: 'custom',
      message: 'a process matcher takes exactly one of `name` (exact comm) or `regex` (on comm)',
    });
  }
}

function matcherLabel(value: {
  name?: string | undefined;
  regex?: SearchRegex | undefined;
  argv?: SearchRegex | undefined;
}): string {
  const comm = value.name ?? String(value.regex);
  return value.argv ? `${comm} argv ${String(value.argv)}` : comm;
}

function toProcessMatcher(value: {
  name?: string | undefined;
  regex?: SearchRegex | undefined;
  argv?: SearchRegex | undefined;
}): ProcessMatcher {
  return {
    ...(value.name !== undefined ? { name: value.name } : {}),
    ...(value.regex !== undefined ? { regex: value.regex } : {}),
    ...(value.argv !== undefined ? { argv: value.argv } : {}),
    label: matcherLabel(value),
  };
}

const processMatcher = strict(matcherShape).superRefine(oneCommMatcher).transform(toProcessMatcher);
const allowedProcess = strict({ ...matcherShape, max_count: z.int().min(0).optional() })
  .superRefine(oneCommMatcher)
  .transform((value): AllowedProcess => ({
    ...toProcessMatcher(value),
    ...(value.max_count !== undefined ? { maxCount: value.max_count } : {}),
  }));
const requiredProcess = strict({ ...matcherShape, min_count: z.int().min(1).default(1) })
  .superRefine(oneCommMatcher)
  .transform((value): RequiredProcess => ({ ...toProcessMatcher(value), minCount: value.min_count }));

const bpfProgramMatcher = strict({
  name: nonEmpty('a program name').optional(),
  regex: regexSchema.optional(),
  type: nonEmpty('a program type').optional(),
  helpers: z.array(nonEmpty('a helper name')).optional(),
})
  .superRefine((value, context) => {
    if (value.name !== undefined && value.regex !== undefined)
      context.addIssue({ code: 'custom', message: 'a program matcher takes `name` (exact) or `regex`, not both' });
    if (Object.values(value).every((part) => part === undefined))
      context.addIssue({
        code: 'custom',
        message: 'a program matcher needs at least one of name, regex, type, helpers',
      });
  })
  .transform((value): BpfProgramMatcher => {
    const parts = [
      value.name ?? (value.regex ? String(value.regex) : undefined),
      value.type && `type ${value.type}`,
      value.helpers && `helpers [${value.helpers.join(', ')}]`,
    ];
    return {
      ...(value.name !== undefined ? { name: value.name } : {}),
      ...(value.regex !== undefined ? { regex: value.regex } : {}),
      ...(value.type !== undefined ? { type: value.type } : {}),
      ...(value.helpers !== undefined ? { helpers: new Set(value.helpers) } : {}),
      label: parts.filter((part) => part !== undefined).join(' '),
    };
  });

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
    const valid =
      match !== null && Number(match[2]) < 60 && (minutes < 24 * 60 || (allowEndOfDay && minutes === 24 * 60));
    if (valid) return minutes;
    context.addIssue({
      code: 'custom',
      message: `invalid time "${text}": expected HH:MM from 00:00 to 23:59${allowEndOfDay ? ' (or 24:00 for end of day)' : ''}`,
    });
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
      context.addIssue({
        code: 'custom',
        path: ['to'],
        message:
          'from and to are equal: an empty (or whole-day?) window; write from "00:00" to "24:00" for a whole day',
      });
    }
  })
  .transform((value): TimeWindow => ({
    days: new Set(value.days ?? DAYS),
    from: value.from,
    to: value.to,
    label: `${value.days ? value.days.join(',') : 'daily'} ${clock(value.from)}-${clock(value.to)}`,
  }));

const timeZoneSchema = nonEmpty('a time zone').superRefine((zone, context) => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    context.addIssue({
      code: 'custom',
      message: `unknown time zone "${zone}" (expected an IANA name such as Europe/Berlin or UTC)`,
    });
  }
});

const timeFenceSchema = strict({
  process: processMatcher.optional(),
  module: nonEmpty('a module name').optional(),
  timezone: timeZoneSchema,
  windows: z.array(windowSchema).min(1, 'a time fence needs at least one window'),
}).superRefine((value, context) => {
  if ((value.process === undefined) === (value.module === undefined)) {
    context.addIssue({
      code: 'custom',
      message: 'a time fence names exactly one subject: `process: {name|regex}` or `module: name`',
    });
  }
});

const allowedPort = strict({
  port: z.int('a port is a whole number').min(1, 'a port is from 1 to 65535').max(65535, 'a port is from 1 to 65535'),
  proto: z.enum(['tcp', 'udp']).optional(),
}).transform((value): AllowedPort => ({
  port: value.port,
  ...(value.proto ? { proto: value.proto } : {}),
  label: `${value.port}${value.proto ? `/${value.proto}` : ''}`,
}));

const listeningPortsSchema = strict({ allow: z.array(allowedPort) });

const networkFenceSchema = strict({
  process: processMatcher.optional(),
  timezone: timeZoneSchema,
  windows: z.array(windowSchema).min(1, 'a network fence needs at least one window'),
});

const allowedLocation = strict({
  region: nonEmpty('a region').optional(),
  postal_code: nonEmpty('a postal code').optional(),
  timezone: timeZoneSchema.optional(),
})
  .superRefine((value, context) => {
    if (value.region === undefined && value.postal_code === undefined && value.timezone === undefined)
      context.addIssue({ code: 'custom', message: 'a location names at least one of region, postal_code, timezone' });
  })
  .transform((value): AllowedLocation => ({
    ...(value.region !== undefined ? { region: value.region } : {}),
    ...(value.postal_code !== undefined ? { postalCode: value.postal_code } : {}),
    ...(value.timezone !== undefined ? { timezone: value.timezone } : {}),
    label: Object.entries(value)
      .map(([key, text]) => `${key} ${text}`)
      .join(', '),
  }));

const geoFenceSchema = strict({ allow: z.array(allowedLocation).min(1, 'a geo fence allows at least one location') });

const SKEW_UNITS = { s: 1, m: 60, h: 3600 } as const;
/** `300s`, `5m`, `1h`, or a number of seconds. */
const clockSkewSchema = z.union([z.number(), z.string()]).transform((value, context) => {
  const match = typeof value === 'string' ? /^(\d+(?:\.\d+)?)\s*([smh])$/.exec(value.trim()) : null;
  const seconds =
    typeof value === 'number'
      ? value
      : match
        ? Number(match[1]) * SKEW_UNITS[match[2] as keyof typeof SKEW_UNITS]
        : NaN;
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  context.addIssue({
    code: 'custom',
    message: `invalid clock skew ${JSON.stringify(value)}: expected seconds, or a number with s, m or h (300s, 5m, 1h)`,
  });
  return z.NEVER;
});

const forbiddenVariable = strict({
  name: nonEmpty('a variable name'),
  value_regex: regexSchema.optional(),
}).transform((value): ForbiddenVariable => ({
  name: value.name,
  ...(value.value_regex !== undefined ? { valueRegex: value.value_regex } : {}),
  label: value.value_regex !== undefined ? `${value.name}=${String(value.value_regex)}` : value.name,
}));

const mustBeTrue = (key: string) =>
  z.literal(true, { error: `${key} can only be true (remove the rule to turn the check off)` });

function signaturesSchema(baseDir: string) {
  return strict({ rules_file: nonEmpty('rules_file') }).transform((value, context) => {
    const rulesFile = resolve(baseDir, value.rules_file);
    let source: string;
    try {
      source = readFileSync(rulesFile, 'utf8');
    } catch (error) {
      context.addIssue({
        code: 'custom',
        path: ['rules_file'],
        message: `cannot read rules file ${rulesFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      });
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
    forbidden_processes: z
      .array(processMatcher)
      .min(1, 'forbidden_processes must list at least one process')
      .optional(),
    allowed_modules: z.array(moduleMatcher).optional(),
    no_hidden_processes: mustBeTrue('no_hidden_processes').optional(),
    no_hidden_modules: mustBeTrue('no_hidden_modules').optional(),
    syscall_table_intact: mustBeTrue('syscall_table_intact').optional(),
    no_kernel_hooks: mustBeTrue('no_kernel_hooks').optional(),
    allowed_bpf_programs: z.array(bpfProgramMatcher).optional(),
    no_privilege_escalation: mustBeTrue('no_privilege_escalation').optional(),
    signatures: signaturesSchema(baseDir).optional(),
    time_fence: timeFenceSchema.optional(),
    listening_ports: listeningPortsSchema.optional(),
    network_fence: networkFenceSchema.optional(),
    geo_fence: geoFenceSchema.optional(),
    max_clock_skew: clockSkewSchema.optional(),
    no_injected_code: mustBeTrue('no_injected_code').optional(),
    no_fileless_processes: mustBeTrue('no_fileless_processes').optional(),
    forbidden_environment: z
      .array(forbiddenVariable)
      .min(1, 'forbidden_environment must list at least one variable')
      .optional(),
    plugin_findings: z
      .array(nonEmpty('a plugin name'))
      .min(1, 'plugin_findings must list at least one plugin')
      .optional(),
  })
    .superRefine((rule, context) => {
      const present = CHECK_KEYS.filter((key) => rule[key] !== undefined);
      if (present.length === 0) {
        context.addIssue({ code: 'custom', message: `a rule needs one check: one of ${CHECK_KEYS.join(', ')}` });
      }
      for (const extra of present.slice(1)) {
        context.addIssue({
          code: 'custom',
          path: [extra],
          message: `a rule holds exactly one check and this one already has ${present[0]}: make it a rule of its own`,
        });
      }
      if (rule.action === 'exec' && rule.command === undefined) {
        context.addIssue({
          code: 'custom',
          path: ['action'],
          message: 'action exec needs `command: [program, args...]`',
        });
      }
      if (rule.action !== 'exec' && rule.command !== undefined) {
        context.addIssue({
          code: 'custom',
          path: ['command'],
          message: `command is only run by action exec (this rule's action is ${rule.action})`,
        });
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
  no_kernel_hooks?: true | undefined;
  allowed_bpf_programs?: BpfProgramMatcher[] | undefined;
  no_privilege_escalation?: true | undefined;
  signatures?: { rulesFile: string; ruleNames: ReadonlySet<string> } | undefined;
  time_fence?:
    | { process?: ProcessMatcher | undefined; module?: string | undefined; timezone: string; windows: TimeWindow[] }
    | undefined;
  listening_ports?: { allow: AllowedPort[] } | undefined;
  network_fence?: { process?: ProcessMatcher | undefined; timezone: string; windows: TimeWindow[] } | undefined;
  geo_fence?: { allow: AllowedLocation[] } | undefined;
  max_clock_skew?: number | undefined;
  no_injected_code?: true | undefined;
  no_fileless_processes?: true | undefined;
  forbidden_environment?: ForbiddenVariable[] | undefined;
  plugin_findings?: string[] | undefined;
}

function toCheck(rule: RawChecks): PolicyCheck {
  if (rule.allowed_processes) return { kind: 'allowed_processes', entries: rule.allowed_processes };
  if (rule.required_processes) return { kind: 'required_processes', entries: rule.required_processes };
  if (rule.forbidden_processes) return { kind: 'forbidden_processes', entries: rule.forbidden_processes };
  if (rule.allowed_modules) return { kind: 'allowed_modules', entries: rule.allowed_modules };
  if (rule.no_hidden_processes) return { kind: 'no_hidden_processes' };
  if (rule.no_hidden_modules) return { kind: 'no_hidden_modules' };
  if (rule.syscall_table_intact) return { kind: 'syscall_table_intact' };
  if (rule.no_kernel_hooks) return { kind: 'no_kernel_hooks' };
  if (rule.allowed_bpf_programs) return { kind: 'allowed_bpf_programs', entries: rule.allowed_bpf_programs };
  if (rule.no_privilege_escalation) return { kind: 'no_privilege_escalation' };
  if (rule.signatures) return { kind: 'signatures', ...rule.signatures };
  if (rule.time_fence) {
    const fence = rule.time_fence;
    const subject = fence.process ? { process: fence.process } : { module: fence.module! };
    return { kind: 'time_fence', subject, windows: fence.windows, timeZone: fence.timezone };
  }
  if (rule.listening_ports) return { kind: 'listening_ports', allow: rule.listening_ports.allow };
  if (rule.network_fence) {
    const fence = rule.network_fence;
    return {
      kind: 'network_fence',
      ...(fence.process ? { process: fence.process } : {}),
      windows: fence.windows,
      timeZone: fence.timezone,
    };
  }
  if (rule.geo_fence) return { kind: 'geo_fence', allow: rule.geo_fence.allow };
  if (rule.max_clock_skew !== undefined) return { kind: 'max_clock_skew', seconds: rule.max_clock_skew };
  if (rule.no_injected_code) return { kind: 'no_injected_code' };
  if (rule.no_fileless_processes) return { kind: 'no_fileless_processes' };
  if (rule.forbidden_environment) return { kind: 'forbidden_environment', entries: rule.forbidden_environment };
  if (rule.plugin_findings) return { kind: 'plugin_findings', plugins: rule.plugin_findings };
  // The refinement above guarantees one check; reaching here is a bug, not bad input.
  throw new Error('policy rule without a check passed validation');
}

export function policySchema(baseDir: string) {
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
          else
            context.addIssue({
              code: 'custom',
              path: [index, 'id'],
              message: `duplicate rule id "${rule.id}" (first used by rules[${first}])`,
            });
        });
      }),
  });
}
