import type { Command } from 'commander';
import type { ContextOptions } from '../analyses/context.js';
import type { Analysis, AnalysisResult, Column } from '../analyses/types.js';
import { evaluatePolicy, loadPolicy, policyPluginNames, policyRulesFiles, type Policy } from '../monitor/policy.js';
import { pluginAnalysis } from '../plugins/analysis.js';
import { loadPluginDirectory } from '../plugins/load.js';
import { VmscopeError } from '../util/errors.js';
import { readHostMetadata } from '../monitor/hostMetadata.js';
import { isPartialSummary, summarizeDump, type SummarizeOptions } from '../monitor/summarize.js';
import { createProgress } from './progress.js';

type Progress = ReturnType<typeof createProgress>;

export const policyColumns: readonly Column[] = [
  { key: 'rule', kind: 'text', title: 'Rule' },
  { key: 'severity', kind: 'text', title: 'Severity' },
  { key: 'action', kind: 'text', title: 'Action' },
  { key: 'kind', kind: 'text', title: 'Kind' },
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'detail', kind: 'text', title: 'Detail' },
];

/**
 * `policy check`: one row per violation; exit 1 when there is any (or the summary is partial,
 * since then a violation may be missing), 0 when the dump complies. The policy is loaded before
 * the dump is opened so a bad policy fails in milliseconds, not after a summary.
 */
export async function runPolicyCheck(
  policy: Policy,
  dumpPath: string,
  options: ContextOptions = {},
  summarizeOptions: Omit<SummarizeOptions, 'rulesFiles'> = {},
): Promise<AnalysisResult> {
  const summary = await summarizeDump(dumpPath, options, { ...summarizeOptions, rulesFiles: policyRulesFiles(policy) });
  const violations = evaluatePolicy(policy, summary);
  return {
    columns: policyColumns,
    rows: violations.map((violation) => ({ ...violation })),
    single: false,
    partial: isPartialSummary(summary),
    warnings: summary.warnings,
    exitCode: violations.length > 0 ? 1 : undefined,
  };
}

/** The plugins a policy names, from `--plugin <dir>`, loaded before the dump is opened: a missing one is a usage error. */
export function policyPlugins(names: readonly string[], directory: string | undefined): Analysis[] {
  if (names.length === 0) return [];
  if (directory === undefined)
    throw new VmscopeError('USAGE', `the policy's plugin_findings rules need --plugin <dir> (for ${names.join(', ')})`);
  const plugins = loadPluginDirectory(directory);
  return names.map((name) => {
    const plugin = plugins.find((candidate) => candidate.manifest.name === name);
    if (!plugin) throw new VmscopeError('USAGE', `plugin ${name} is not in ${directory}`, directory);
    return pluginAnalysis(plugin);
  });
}

/** What main.ts shares with its commands: common options, how a dump is opened, how a result is printed. */
export interface CommandHelpers<Options> {
  readonly withCommonOptions: (command: Command) => Command;
  readonly contextOptions: (options: Options, progress: Progress) => ContextOptions;
  readonly printResult: (result: AnalysisResult, options: Options) => Promise<number>;
  readonly setExitCode: (code: number) => void;
}

const POLICY_HELP = `The dump is summarized (task list with argv, hidden processes, modules, hidden modules, the
syscall table, the guest's clock) and every rule of the policy judges the summary. A policy is
YAML or JSON:

  version: 1
  rules:
    - id: known-processes
      severity: high                      # info | low | medium | high | critical
      action: alert                       # alert (default) | pause | exec + command: [argv...]
      allowed_processes:                  # one check per rule
        - { name: sshd }
        - { regex: "^lab_worker_", argv: "--queue", max_count: 3 }
    - { id: hidden, severity: critical, no_hidden_processes: true }
    - { id: modules, severity: critical, no_hidden_modules: true }
    - { id: syscalls, severity: critical, syscall_table_intact: true }
    - id: backup-hours
      severity: medium
      time_fence:
        process: { name: backup }
        timezone: Europe/Berlin
        windows: [{ days: [sat, sun], from: "22:00", to: "04:00" }]

    - { id: ports, severity: high, listening_ports: { allow: [{ port: 8080 }, { port: 5353, proto: udp }] } }
    - id: office-hours-traffic
      severity: high
      network_fence:                      # established connections only inside the windows
        timezone: Europe/Berlin
        windows: [{ days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00" }]
    - { id: where, severity: critical, geo_fence: { allow: [{ region: eu-central }, { postal_code: "10115" }] } }
    - { id: clock, severity: high, max_clock_skew: 300s }
    - { id: injected, severity: critical, no_injected_code: true }
    - { id: fileless, severity: critical, no_fileless_processes: true }
    - { id: preload, severity: high, forbidden_environment: [{ name: LD_PRELOAD }] }
    - { id: miners, severity: critical, plugin_findings: [cryptominer] }   # with --plugin DIR

Other checks: required_processes, forbidden_processes, allowed_modules, signatures
(rules_file relative to the policy). geo_fence judges the host metadata given with
--host-metadata (none: a violation); max_clock_skew compares the guest's clock with the dump
file's modification time (watch --qmp: the time the dump was asked for). check only reports each violation with its rule's action;
it runs no command and pauses nothing.
Exit code 1 when any rule is violated (or the dump was read only in part), 0 when none is,
2 when the policy or the dump cannot be used (the error names file:line:column).

Examples:
  vmscope policy check --policy guest-policy.yaml guest.elf
  vmscope policy check --policy guest-policy.json guest.elf --json | jq '.[] | select(.severity == "critical")'`;

/** Adds `policy check --policy FILE DUMP` to the program. */
export function registerPolicyCommand<Options extends { progress: boolean }>(
  program: Command,
  helpers: CommandHelpers<Options>,
): void {
  const policy = program.command('policy').description('judge dumps against a declarative policy (YAML or JSON)');
  helpers
    .withCommonOptions(
      policy
        .command('check')
        .description('judge one dump against a policy: one row per violation')
        .argument('<dump>', 'memory dump file (raw, LiME or ELF core)')
        .requiredOption('--policy <file>', 'the policy file (YAML or JSON)')
        .option(
          '--host-metadata <file>',
          "the host's location for geo_fence rules: JSON with region, postal_code, timezone",
        )
        .option('--plugin <dir>', 'where the WASI plugins named by plugin_findings rules are (docs/plugins.md)')
        .addHelpText('after', `\n${POLICY_HELP}\n`),
    )
    .action(async (dump: string, options: Options & { policy: string; hostMetadata?: string; plugin?: string }) => {
      const loaded = loadPolicy(options.policy);
      const findingAnalyses = policyPlugins(policyPluginNames(loaded), options.plugin);
      // A bad metadata file is the user's mistake: said now, not as a geo-fence violation after the summary.
      if (options.hostMetadata !== undefined) readHostMetadata(options.hostMetadata);
      const progress = createProgress(options.progress);
      try {
        const result = await runPolicyCheck(loaded, dump, helpers.contextOptions(options, progress), {
          ...(options.hostMetadata !== undefined ? { hostMetadataFile: options.hostMetadata } : {}),
          ...(findingAnalyses.length > 0 ? { findingAnalyses } : {}),
        });
        progress.stop();
        helpers.setExitCode(await helpers.printResult(result, options));
      } finally {
        progress.stop();
      }
    });
}
