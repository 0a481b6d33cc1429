import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAnalysis } from '../../src/analyses/check.js';
import { DumpContext } from '../../src/analyses/context.js';
import { rowObject } from '../../src/analyses/rowJson.js';
import { yarascanAnalysis } from '../../src/analyses/yarascan.js';
import { runBatchToEnd } from '../../src/batch/batch.js';
import { FolderSource } from '../../src/monitor/sources/index.js';
import { watch, type WatchAlert } from '../../src/monitor/watch.js';
import { buildDumpReport } from '../../src/report/build.js';
import { reportAlertedSnapshots, writeDiffReport, writeDumpReport } from '../../src/report/reports.js';
import { writeReport } from '../../src/report/html.js';
import type { DumpReport } from '../../src/report/model.js';
import { chromiumUnavailableReason, launchChromium, openReport, tableRows } from '../support/browser.js';
import { fixturePath, repoRoot, sharedFixtures, type FixtureFormat } from '../support/fixtures.js';

const unavailable = chromiumUnavailableReason();
if (unavailable) console.warn(`skipping the HTML report browser tests: ${unavailable}`);

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-report-cache-'));
const outDir = mkdtempSync(join(tmpdir(), 'vmscope-report-'));
/** Screenshots are kept for a reader of the test run (CI uploads .cache/artifacts). */
const artifacts = join(repoRoot, '.cache', 'artifacts');

const truth = (name: string) => JSON.parse(readFileSync(join(sharedFixtures, `${name}.truth.json`), 'utf8'));

describe.skipIf(unavailable !== undefined)('the HTML report in headless chromium', () => {
  let chromium: Awaited<ReturnType<typeof launchChromium>>;

  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    chromium = await launchChromium();
  });

  afterAll(async () => {
    await chromium?.close();
    rmSync(outDir, { recursive: true, force: true });
    rmSync(cacheDir, { recursive: true, force: true });
  });

  /** check's findings as `check --json` prints them, from a context of its own. */
  async function checkJson(dump: string): Promise<Array<Record<string, unknown>>> {
    const context = new DumpContext(dump, { cacheDir });
    try {
      const result = await checkAnalysis.run(context);
      return result.rows.map((row) => rowObject(row, result.columns));
    } finally {
      context.close();
    }
  }

  const fixtures: Array<{ name: string; format: FixtureFormat }> = [
    { name: 'linux61-modern', format: 'elf' },
    { name: 'linux61-rootkit', format: 'lime' },
  ];

  it.each(fixtures)(
    'renders $name: no console error, every finding of check, hidden processes marked in the tree',
    async ({ name, format }) => {
      const dump = fixturePath(name, format);
      const output = join(outDir, `${name}.html`);
      const report = await writeDumpReport(dump, output, { cacheDir });
      const { page, log } = await openReport(chromium.browser, output);
      await page.screenshot({ path: join(artifacts, `report-${name}.png`), fullPage: true });

      const expected = await checkJson(dump);
      expect(expected.length).toBeGreaterThan(0);
      const shown = await tableRows(page, 'findings');
      expect(
        shown.map(([kind, severity, subject, owner, detail]) => ({ kind, severity, subject, owner, detail })),
      ).toEqual(expected);

      const hidden = expected.filter((finding) => finding.kind === 'hidden_process');
      if (name === 'linux61-rootkit') {
        const { pid, comm } = truth(name).rootkit.hidden_process;
        expect(hidden.map((finding) => finding.subject)).toEqual([`pid ${pid} ${comm}`]);
      }
      for (const finding of hidden) {
        const [, pid, comm] = /^pid (\d+) (.*)$/.exec(String(finding.subject))!;
        const rows = (await tableRows(page, 'processes', comm)).filter((cells) => cells[0] === pid);
        expect(rows).toHaveLength(1);
        expect(rows[0]![2]).toContain('HIDDEN');
        const marked = await page.locator(`[data-table="processes"] .row.hidden-task`).count();
        expect(marked).toBe(1);
      }
      // check's fileless and injected processes are flagged in the tree, and no other process is.
      const flagged = { fileless_process: 'FILELESS', injected_code: 'INJECTED' } as const;
      for (const [kind, flag] of Object.entries(flagged)) {
        const subjects = new Set(expected.filter((finding) => finding.kind === kind).map((finding) => finding.subject));
        const rows = await tableRows(page, 'processes', flag);
        expect(
          new Set(rows.filter((cells) => cells[2]!.includes(flag)).map((cells) => `pid ${cells[0]} ${cells[1]}`)),
        ).toEqual(subjects);
      }
      if (name === 'linux61-modern') expect(report.processes.some((process) => process.fileless !== null)).toBe(true);

      expect(log.errors).toEqual([]);
      expect(await page.evaluate(() => (window as unknown as { __violations: string[] }).__violations)).toEqual([]);
      await page.close();
    },
  );

  it('with --rules: every hit with its owner, and each on the physical memory map', async () => {
    const dump = fixturePath('linux61-rootkit', 'lime');
    const markers = truth('linux61-rootkit').markers as Array<{
      kind: string;
      value: string;
      holder_pid: number;
      holder_comm: string;
    }>;
    const rules = join(outDir, 'markers.yar');
    const yaraText = (value: string) => `"${value.replace(/[\\"]/g, (char) => `\\${char}`)}"`;
    writeFileSync(
      rules,
      markers
        .map((marker) => `rule ${marker.kind} { strings: $s = ${yaraText(marker.value)} condition: $s }`)
        .join('\n'),
    );
    const output = join(outDir, 'rules.html');
    await writeDumpReport(dump, output, { cacheDir }, { rulesFile: rules });

    const context = new DumpContext(dump, { cacheDir });
    let expected: string[][];
    try {
      const scan = await yarascanAnalysis.run(context, { rules, threads: 1 });
      const text = (value: unknown) => (value === null ? '' : String(value));
      expected = Array.from(scan.rows, (row) =>
        [row.rule, row.string, row.physical, row.owner, row.pid, row.comm, row.virtual].map(text),
      );
    } finally {
      context.close();
    }
    const { page, log } = await openReport(chromium.browser, output);
    const shown = await tableRows(page, 'signatures');
    expect(shown).toEqual(expected);
    for (const marker of markers)
      expect(shown).toContainEqual(
        expect.arrayContaining([marker.kind, 'process', String(marker.holder_pid), marker.holder_comm]),
      );
    const placed = expected.filter((row) => row[2] !== '').length;
    expect(placed).toBeGreaterThan(0);
    expect(await page.locator('svg.memory-map line[data-kind="signature"]').count()).toBe(placed);
    expect(log.errors).toEqual([]);
    await page.close();
  });

  it('the diff report of linux61-t0 → linux61-t1 shows exactly the ended and the started process', async () => {
    const output = join(outDir, 'diff.html');
    await writeDiffReport(fixturePath('linux61-t0', 'elf'), fixturePath('linux61-t1', 'elf'), output, { cacheDir });
    const { page, log } = await openReport(chromium.browser, output);
    await page.screenshot({ path: join(artifacts, 'report-diff-linux61-t0-t1.png'), fullPage: true });
    const { killed, started } = truth('linux61-t1').diff;
    const rows = await tableRows(page, 'diff-processes');
    expect(rows.map(([kind, change, pid, , comm]) => ({ kind, change, pid, comm }))).toEqual([
      { kind: 'process', change: 'ended', pid: String(killed.pid), comm: killed.comm },
      { kind: 'process', change: 'started', pid: String(started.pid), comm: started.comm },
    ]);
    expect(log.errors).toEqual([]);
    await page.close();
  });

  it('batch --report writes one report per dump and an index linking them', async () => {
    const out = join(outDir, 'batch');
    const dump = fixturePath('linux61-rootkit', 'lime');
    const summary = await runBatchToEnd({
      dumps: [dump],
      analyses: ['check'],
      outDir: out,
      cacheDir,
      jobs: 1,
      report: true,
    });
    const [result] = summary.dumps;
    expect(result!.report).toBe(join(out, basename(result!.output!).replace(/\.ndjson$/, '.html')));

    const { page, log } = await openReport(chromium.browser, join(out, 'index.html'));
    await page.getByRole('link', { name: basename(result!.report!) }).click();
    await page.waitForURL(`file://${result!.report!}`);
    await page.waitForSelector('[data-table="findings"]');
    const shown = await tableRows(page, 'findings');
    expect(
      shown.map(([kind, severity, subject, owner, detail]) => ({ kind, severity, subject, owner, detail })),
    ).toEqual(result!.findings);
    expect(log.errors).toEqual([]);
    await page.close();
  });

  it('watch --report-dir writes the report of each snapshot that raised an alert, showing its alerts', async () => {
    const folder = join(outDir, 'watched');
    const reports = join(outDir, 'watch-reports');
    mkdirSync(folder);
    symlinkSync(fixturePath('linux61-t0', 'elf'), join(folder, '1-t0.elf'));
    const source = new FolderSource(folder, { pollMs: 50, settleMs: 100, includeExisting: true });
    const stop = new AbortController();
    let snapshots = 0;
    const alerts: WatchAlert[] = [];
    const onSnapshotDone = () => {
      if (++snapshots === 1) symlinkSync(fixturePath('linux61-t1', 'elf'), join(folder, '2-t1.elf'));
      else stop.abort();
    };
    // No policy: the first snapshot raises nothing (no report), the second its changes.
    for await (const alert of watch({
      source,
      signal: stop.signal,
      contextOptions: { cacheDir },
      onSnapshotDone,
      onSnapshotJudged: reportAlertedSnapshots(reports),
    }))
      alerts.push(alert);
    const written = readdirSync(reports);
    expect(written).toHaveLength(1);
    expect(written[0]).toMatch(/-2-t1\.elf\.html$/);
    expect(alerts.length).toBeGreaterThan(0);

    const { page, log } = await openReport(chromium.browser, join(reports, written[0]!));
    const rows = await tableRows(page, 'alerts');
    expect(rows.map(([type, kind, , , pid, comm, detail]) => ({ type, kind, pid, comm, detail }))).toEqual(
      alerts.map(({ type, kind, pid, comm, detail }) => ({
        type,
        kind,
        pid: pid === null ? '' : String(pid),
        comm: comm ?? '',
        detail,
      })),
    );
    expect(log.errors).toEqual([]);
    await page.close();
  });

  it('keeps only the visible rows of a 100k-row table in the DOM, and still sorts and filters it', async () => {
    const dump = fixturePath('linux61-rootkit', 'lime');
    const context = new DumpContext(dump, { cacheDir });
    let report: DumpReport;
    try {
      report = await buildDumpReport(context);
    } finally {
      context.close();
    }
    // The real timeline repeated to 100k events: the page cannot tell them from a long kernel log.
    const events = Array.from({ length: 100_000 }, (_, index) => {
      const event = report.timeline[index % report.timeline.length]!;
      return { ...event, seconds: event.seconds + Math.floor(index / report.timeline.length) * 1000 };
    });
    const output = join(outDir, 'large.html');
    writeReport(output, { ...report, timeline: events });
    const { page, log } = await openReport(chromium.browser, output);
    const table = page.locator('[data-table="timeline"]');
    await expect.poll(() => table.locator('.count').textContent()).toBe('100000 of 100000');
    expect(await table.locator('.body .row').count()).toBeLessThan(60);

    await table.locator('.row.head .cell', { hasText: 'Seconds after boot' }).click();
    await table.locator('.row.head .cell', { hasText: 'Seconds after boot' }).click();
    const latest = Math.max(...events.map((event) => event.seconds));
    expect(Number(await table.locator('.body .row').first().locator('.cell').first().getAttribute('title'))).toBe(
      Number(latest.toFixed(6)),
    );

    const needle = report.timeline.find((event) => event.kind === 'process_start')!.text;
    await table.locator('input[type=search]').fill(needle);
    const matching = events.filter((event) => event.text.toLowerCase().includes(needle.toLowerCase())).length;
    expect(await table.locator('.count').textContent()).toBe(`${matching} of 100000`);
    expect(await table.locator('.body .row').count()).toBeLessThanOrEqual(Math.min(matching, 60));
    expect(log.errors).toEqual([]);
    await page.close();
  });
});
