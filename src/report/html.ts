import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { reportScript, reportStyle } from './generated/pageAssets.js';
import type { ReportData } from './model.js';

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/**
 * JSON that can sit inside a script element: `<` as \u003c, so no guest string can close the
 * element or open a comment; U+2028/U+2029 escaped as well, though JSON.parse accepts them.
 */
export function embeddedJson(data: unknown): string {
  return JSON.stringify(data)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/**
 * One self-contained page: the data as JSON in a non-executable script element, the bundled
 * script and style inline, and a Content-Security-Policy that lets only those two run (by their
 * hashes): no other script, no eval, no inline handler, no network at all.
 */
export function renderReportHtml(data: ReportData): string {
  const policy = [
    "default-src 'none'",
    `script-src ${sha256(reportScript)}`,
    `style-src ${sha256(reportStyle)}`,
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vmscope report</title>
<style>${reportStyle}</style>
</head>
<body>
<script type="application/json" id="report-data">${embeddedJson(data)}</script>
<script>${reportScript}</script>
</body>
</html>
`;
}

export function writeReport(path: string, data: ReportData): void {
  writeFileSync(path, renderReportHtml(data));
}
