import type { ReportData } from '../model.js';
import { diffView } from './diffView.js';
import { el } from './dom.js';
import { dumpView } from './dumpView.js';
import { indexView } from './indexView.js';

/** The data the writer embedded (JSON in a non-executable script element; `<` escaped so it cannot end it). */
const data = JSON.parse(document.getElementById('report-data')?.textContent ?? 'null') as ReportData;

function page(report: ReportData): { title: string; sections: HTMLElement[] } {
  switch (report.type) {
    case 'dump':
      return { title: `vmscope report: ${report.source.path}`, sections: dumpView(report) };
    case 'diff':
      return { title: `vmscope diff: ${report.before.path} → ${report.after.path}`, sections: diffView(report) };
    case 'index':
      return { title: 'vmscope batch reports', sections: indexView(report) };
  }
}

const { title, sections } = page(data);
document.title = title;
document.body.append(
  el('header', {}, el('h1', {}, title), el('p', { class: 'generated' }, `generated ${data.generatedAt}`)),
  el('main', {}, ...sections),
);
