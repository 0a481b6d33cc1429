import type { IndexReport } from '../model.js';
import { el, section } from './dom.js';

/** A report file name as the batch writes it (`<dump name>-<hash>.html`): anything else is not linked. */
const REPORT_FILE = /^[A-Za-z0-9._-]+\.html$/;

/** A batch's index: every dump with its counts, linked to its report. */
export function indexView(report: IndexReport): HTMLElement[] {
  const withFindings = report.dumps.filter((dump) => dump.findings > 0).length;
  return [
    section(
      'verdict',
      'Dumps',
      el(
        'p',
        { class: withFindings === 0 ? 'headline clean' : 'headline alarm' },
        `${report.dumps.length} dumps, ${withFindings} with findings`,
      ),
      el(
        'table',
        { class: 'index' },
        el('tr', {}, ...['Dump', 'Kernel', 'Findings', 'Hits', 'Report / error'].map((title) => el('th', {}, title))),
        ...report.dumps.map((dump) =>
          el(
            'tr',
            { class: dump.findings > 0 || dump.error ? 'alarm' : '' },
            el('td', {}, dump.path),
            el('td', {}, dump.kernel ?? ''),
            el('td', {}, dump.findings),
            el('td', {}, dump.hits),
            el(
              'td',
              {},
              dump.report !== null && REPORT_FILE.test(dump.report)
                ? el('a', { href: dump.report }, dump.report)
                : (dump.error ?? ''),
            ),
          ),
        ),
      ),
    ),
  ];
}
