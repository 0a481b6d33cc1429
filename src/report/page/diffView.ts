import type { DiffReport } from '../model.js';
import { el, section, warningsSection } from './dom.js';
import { virtualTable } from './virtualTable.js';

/** What changed between two snapshots: a count per kind and change, the processes, then every change. */
export function diffView(report: DiffReport): HTMLElement[] {
  const counts = new Map<string, number>();
  for (const row of report.rows)
    counts.set(`${row.kind} ${row.change}`, (counts.get(`${row.kind} ${row.change}`) ?? 0) + 1);
  const table = (name: string, rows: DiffReport['rows']) =>
    virtualTable(
      rows,
      [
        { title: 'Kind', value: (row) => row.kind, width: '9em' },
        { title: 'Change', value: (row) => row.change, width: '7em' },
        { title: 'PID', value: (row) => row.pid, width: '5em' },
        { title: 'Name', value: (row) => row.name, width: '10em' },
        { title: 'Command', value: (row) => row.comm, width: '10em' },
        { title: 'Detail', value: (row) => row.detail, width: '1fr' },
      ],
      { name, visibleRows: 25 },
    );
  return [
    section(
      'verdict',
      'What changed',
      el(
        'p',
        { class: report.rows.length === 0 ? 'headline clean' : 'headline alarm' },
        `${report.rows.length} changes`,
      ),
      el(
        'dl',
        {},
        el('dt', {}, 'Kernel'),
        el('dd', {}, report.after.banner),
        el('dt', {}, 'Before'),
        el('dd', {}, `${report.before.path} (${report.before.capturedAt})`),
        el('dt', {}, 'After'),
        el('dd', {}, `${report.after.path} (${report.after.capturedAt})`),
      ),
      el('ul', {}, ...[...counts].map(([what, count]) => el('li', {}, `${what}: ${count}`))),
    ),
    section(
      'diff-processes',
      'Processes',
      table(
        'diff-processes',
        report.rows.filter((row) => row.kind === 'process'),
      ),
    ),
    section('diff-all', 'Every change', table('diff-all', report.rows)),
    warningsSection(report.warnings),
  ];
}
