import type { DumpReport, ReportFinding, ReportProcess } from '../model.js';
import { memoryMap, networkGraph } from './charts.js';
import { el, section, warningsSection } from './dom.js';
import { virtualTable } from './virtualTable.js';

/** Findings about processes; every other kind is a kernel hook or a hidden module. */
const PROCESS_FINDINGS = new Set(['hidden_process', 'injected_code', 'fileless_process']);

/** The report of one dump: verdict first, then each view to drill into. */
export function dumpView(report: DumpReport): HTMLElement[] {
  return [
    verdict(report),
    processTree(report.processes),
    section(
      'environment',
      'Environment',
      virtualTable(
        report.environments.flatMap(({ pid, variables }) => variables.map((variable) => ({ pid, variable }))),
        [
          { title: 'PID', value: (row) => row.pid, width: '6em' },
          { title: 'Variable', value: (row) => row.variable, width: '1fr' },
        ],
        { name: 'environment' },
      ),
    ),
    section(
      'network',
      'Network',
      networkGraph(report.sockets),
      virtualTable(
        report.sockets,
        [
          { title: 'PID', value: (row) => row.pid, width: '6em' },
          { title: 'Command', value: (row) => row.comm, width: '10em' },
          { title: 'Proto', value: (row) => row.proto, width: '5em' },
          { title: 'Local', value: (row) => row.local, width: 'minmax(10em, 1fr)' },
          { title: 'Remote', value: (row) => row.remote, width: 'minmax(10em, 1fr)' },
          { title: 'State', value: (row) => row.state, width: '9em' },
          { title: 'Inode', value: (row) => row.inode, width: '7em' },
        ],
        { name: 'sockets' },
      ),
    ),
    section(
      'modules',
      'Modules and hooks',
      virtualTable(
        report.modules,
        [
          { title: 'Name', value: (row) => row.name, width: 'minmax(10em, 1fr)' },
          { title: 'struct module', value: (row) => row.address, width: '13em' },
          { title: 'Listed', value: (row) => (row.hidden ? 'HIDDEN' : 'listed'), width: '7em' },
        ],
        { name: 'modules', rowClass: (row) => (row.hidden ? 'alarm' : undefined) },
      ),
      el('h3', {}, 'Hooks'),
      findingsTable(
        (report.findings ?? []).filter(
          (finding) => !PROCESS_FINDINGS.has(finding.kind) && finding.kind !== 'hidden_module',
        ),
        'hooks',
      ),
    ),
    ...(report.signatures === null
      ? []
      : [
          section(
            'signatures',
            'YARA hits',
            virtualTable(
              report.signatures,
              [
                { title: 'Rule', value: (row) => row.rule, width: '1fr' },
                { title: 'String', value: (row) => row.string, width: '8em' },
                { title: 'Physical', value: (row) => row.physical, width: '9em' },
                { title: 'Owner', value: (row) => row.owner, width: '7em' },
                { title: 'PID', value: (row) => row.pid, width: '5em' },
                { title: 'Command', value: (row) => row.comm, width: '10em' },
                { title: 'Virtual', value: (row) => row.virtual, width: '11em' },
              ],
              { name: 'signatures' },
            ),
          ),
        ]),
    ...(report.memory === null ? [] : [section('memory-map', 'Physical memory', memoryMap(report.memory))]),
    section(
      'carved',
      'Carved tasks',
      virtualTable(
        report.carvedTasks,
        [
          { title: 'PID', value: (row) => row.pid, width: '6em' },
          { title: 'Command', value: (row) => row.comm, width: '1fr' },
          { title: 'Physical', value: (row) => row.physical, width: '10em' },
          { title: 'Life', value: (row) => row.life, width: '6em' },
          { title: 'Hidden', value: (row) => (row.hidden ? 'HIDDEN' : ''), width: '6em' },
        ],
        { name: 'carved', rowClass: (row) => (row.hidden ? 'alarm' : undefined) },
      ),
    ),
    section(
      'timeline',
      'Timeline',
      virtualTable(
        report.timeline,
        [
          { title: 'Seconds after boot', value: (row) => Number(row.seconds.toFixed(6)), width: '10em' },
          { title: 'Kind', value: (row) => row.kind, width: '8em' },
          { title: 'Event', value: (row) => row.text, width: '1fr' },
        ],
        { name: 'timeline', visibleRows: 20 },
      ),
    ),
    warningsSection(report.warnings),
  ];
}

function verdict(report: DumpReport): HTMLElement {
  const findings = report.findings;
  const headline =
    findings === null
      ? `${report.alerts?.length ?? 0} alerts`
      : findings.length === 0
        ? 'No tampering found'
        : `${findings.length} findings`;
  const facts: Array<[string, string]> = [
    ['Kernel', report.kernel.banner],
    ['Captured', `${report.kernel.capturedAt} (${report.kernel.capturedAtSource})`],
    ['Source', `${report.source.path}${report.source.format ? ` (${report.source.format})` : ''}`],
  ];
  return section(
    'verdict',
    'Verdict',
    el('p', { class: findings?.length === 0 ? 'headline clean' : 'headline alarm' }, headline),
    el('dl', {}, ...facts.flatMap(([term, value]) => [el('dt', {}, term), el('dd', {}, value)])),
    findings === null ? null : findingsTable(findings, 'findings'),
    report.alerts === null
      ? null
      : virtualTable(
          report.alerts,
          [
            { title: 'Type', value: (row) => row.type, width: '7em' },
            { title: 'Kind', value: (row) => row.kind, width: '10em' },
            { title: 'Rule', value: (row) => row.rule, width: '10em' },
            { title: 'Severity', value: (row) => row.severity, width: '6em' },
            { title: 'PID', value: (row) => row.pid, width: '5em' },
            { title: 'Command', value: (row) => row.comm, width: '9em' },
            { title: 'Detail', value: (row) => row.detail, width: '1fr' },
          ],
          { name: 'alerts' },
        ),
  );
}

function findingsTable(findings: readonly ReportFinding[], name: string): HTMLElement {
  return virtualTable(
    findings,
    [
      { title: 'Kind', value: (row) => row.kind, width: '9em' },
      { title: 'Severity', value: (row) => row.severity, width: '6em' },
      { title: 'Subject', value: (row) => row.subject, width: 'minmax(10em, 1fr)' },
      { title: 'Owner', value: (row) => row.owner, width: '10em' },
      { title: 'Evidence', value: (row) => row.detail, width: 'minmax(12em, 3fr)' },
    ],
    { name, visibleRows: 25, rowClass: (row) => row.severity },
  );
}

interface TreeRow {
  readonly process: ReportProcess;
  readonly depth: number;
}

/** Processes in tree order (children under their parent, by pid); a process whose parent is unknown is a root. */
function treeOrder(processes: readonly ReportProcess[]): TreeRow[] {
  const byPid = new Set(processes.map((process) => process.pid));
  const children = new Map<number, ReportProcess[]>();
  const roots: ReportProcess[] = [];
  for (const process of [...processes].sort((a, b) => a.pid - b.pid)) {
    if (process.ppid !== process.pid && byPid.has(process.ppid)) {
      const siblings = children.get(process.ppid) ?? [];
      siblings.push(process);
      children.set(process.ppid, siblings);
    } else roots.push(process);
  }
  const rows: TreeRow[] = [];
  const visited = new Set<ReportProcess>();
  // Iterative, and each process once: a guest can make a parent cycle.
  const pending: TreeRow[] = roots.reverse().map((process) => ({ process, depth: 0 }));
  for (let row = pending.pop(); row !== undefined; row = pending.pop()) {
    if (visited.has(row.process)) continue;
    visited.add(row.process);
    rows.push(row);
    const depth = row.depth + 1;
    for (const child of [...(children.get(row.process.pid) ?? [])].reverse()) pending.push({ process: child, depth });
  }
  for (const process of processes) if (!visited.has(process)) rows.push({ process, depth: 0 });
  return rows;
}

function flags(process: ReportProcess): string {
  return [
    process.hidden ? 'HIDDEN' : '',
    process.fileless === null ? '' : `FILELESS ${process.fileless}`,
    process.injectedRegions > 0 ? `INJECTED ×${process.injectedRegions}` : '',
    process.kernelThread ? 'kthread' : '',
  ]
    .filter(Boolean)
    .join(' ');
}

function processTree(processes: readonly ReportProcess[]): HTMLElement {
  return section(
    'process-tree',
    'Processes',
    virtualTable(
      treeOrder(processes),
      [
        { title: 'PID', value: (row) => row.process.pid, width: '8em' },
        { title: 'Command', value: (row) => row.process.comm, width: '11em' },
        { title: 'Flags', value: (row) => flags(row.process), width: 'minmax(8em, 1fr)' },
        { title: 'PPID', value: (row) => row.process.ppid, width: '5em' },
        { title: 'Started (s)', value: (row) => Number(row.process.startSeconds.toFixed(3)), width: '7em' },
        {
          title: 'Command line',
          value: (row) => (row.process.cmdline ? row.process.cmdline.join(' ') : ''),
          width: 'minmax(10em, 2fr)',
        },
      ],
      {
        name: 'processes',
        visibleRows: 25,
        depth: (row) => row.depth,
        rowClass: (row) =>
          row.process.hidden
            ? 'hidden-task alarm'
            : row.process.fileless !== null || row.process.injectedRegions > 0
              ? 'flagged'
              : undefined,
      },
    ),
  );
}
