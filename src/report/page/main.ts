import type { ReportData } from '../model.js';
import { diffView } from './diffView.js';
import { el } from './dom.js';
import { dumpView } from './dumpView.js';

/** The data the writer embedded (JSON in a non-executable script element; `<` escaped so it cannot end it). */
const data = JSON.parse(document.getElementById('report-data')?.textContent ?? 'null') as ReportData;
const title =
  data.type === 'dump'
    ? `vmscope report: ${data.source.path}`
    : `vmscope diff: ${data.before.path} → ${data.after.path}`;
document.title = title;
document.body.append(
  el('header', {}, el('h1', {}, title), el('p', { class: 'generated' }, `generated ${data.generatedAt}`)),
  el('main', {}, ...(data.type === 'dump' ? dumpView(data) : diffView(data))),
);
