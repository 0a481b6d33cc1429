import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { moduleListProvider } from '../../src/analyses/providers/modules.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { processAddressSpace, readArguments } from '../../src/os/linux/processSpace.js';
import { buildDumpReport } from '../../src/report/build.js';
import { writeReport } from '../../src/report/html.js';
import { chromiumUnavailableReason, launchChromium, openReport, tableRows } from '../support/browser.js';
import { fixturePath } from '../support/fixtures.js';
import { OverlayContext } from '../support/overlay.js';

const unavailable = chromiumUnavailableReason();
if (unavailable) console.warn(`skipping the HTML report XSS test: ${unavailable}`);

/** 15 characters and the NUL: all a task's comm holds. */
const COMM = '<script>alert(1';
/** Each would set window.__pwned and log "pwned" if the page ever parsed guest text as HTML. */
const ARGV = [
  `<img src=x onerror="window.__pwned='argv-img';console.log('pwned')">`,
  `<script>window.__pwned='argv-script';console.log('pwned')</script>`,
  `javascript:window.__pwned='argv-link'`,
];
const ENVIRONMENT = `XSS=<a href="javascript:window.__pwned='env'">x</a>`;
/** struct module's name is char[56]. */
const MODULE_NAME = `<img src=x onerror=window.__pwned='mod'>`;

const text = (value: string) => new TextEncoder().encode(value);
const nulTerminated = (value: string) => text(`${value}\0`);

describe.skipIf(unavailable !== undefined)('guest strings in the HTML report', () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-xss-cache-'));
  const outDir = mkdtempSync(join(tmpdir(), 'vmscope-xss-'));
  let chromium: Awaited<ReturnType<typeof launchChromium>>;
  let base: DumpContext;
  let reportPath: string;
  let target: { pid: number };

  beforeAll(async () => {
    chromium = await launchChromium();
    // A copy of linux61-modern in memory (an overlay): the payloads go where the guest keeps these strings.
    base = new DumpContext(fixturePath('linux61-modern', 'elf'), { cacheDir });
    const reader = await base.get(readerProvider);
    const space = base.kernel.space;
    const overlay = new OverlayContext(base);
    const task = (await base.get(taskListProvider)).tasks.find((found) => found.comm === 'lab_longargs')!;
    target = task;
    overlay.image.patchVirtual(space, task.task + reader.offset('task_struct', 'comm'), nulTerminated(COMM));

    const userSpace = processAddressSpace(base.kernel, reader, task.mm);
    const field = (name: string) => reader.u64(task.mm + reader.offset('mm_struct', name));
    // After argv[0], so the process keeps its name.
    const argv0 = readArguments(base.kernel, reader, task).argv[0]!;
    const argv = text(ARGV.join('\0'));
    const argvAt = field('arg_start') + BigInt(text(argv0).length + 1);
    expect(argvAt + BigInt(argv.length)).toBeLessThan(field('arg_end'));
    overlay.image.patchVirtual(userSpace, argvAt, argv);
    const environment = nulTerminated(ENVIRONMENT);
    expect(field('env_start') + BigInt(environment.length)).toBeLessThanOrEqual(field('env_end'));
    overlay.image.patchVirtual(userSpace, field('env_start'), environment);

    const module = (await base.get(moduleListProvider)).modules[0]!;
    overlay.image.patchVirtual(space, module.address + reader.offset('module', 'name'), nulTerminated(MODULE_NAME));

    reportPath = join(outDir, 'planted.html');
    writeReport(reportPath, await buildDumpReport(overlay));
  });

  afterAll(async () => {
    await chromium?.close();
    base?.close();
    rmSync(outDir, { recursive: true, force: true });
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it('shows <script>, <img onerror> and javascript: strings from comm, argv, environment and a module name literally, running none', async () => {
    const { page, log } = await openReport(chromium.browser, reportPath);

    const processes = (await tableRows(page, 'processes', String(target.pid))).filter(
      (cells) => cells[0] === String(target.pid),
    );
    expect(processes).toHaveLength(1);
    expect(processes[0]![1]).toBe(COMM);
    expect(processes[0]![5]).toContain(ARGV.join(' '));
    const environment = await tableRows(page, 'environment', 'XSS=');
    expect(environment).toContainEqual([String(target.pid), ENVIRONMENT]);
    expect((await tableRows(page, 'modules')).map(([name]) => name)).toContain(MODULE_NAME);
    // The visible text, not only the cells' titles.
    await page.locator('[data-table="processes"] input[type=search]').fill(COMM);
    await expect.poll(() => page.locator('[data-table="processes"] .body .cell', { hasText: COMM }).count()).toBe(1);

    const planted = await page.evaluate(() => ({
      pwned: (window as unknown as { __pwned?: string }).__pwned,
      images: document.querySelectorAll('img').length,
      links: document.querySelectorAll('a').length,
      scripts: document.querySelectorAll('script').length,
      handlers: Array.from(document.querySelectorAll('*')).filter((element) =>
        Array.from(element.attributes).some((attribute) => attribute.name.startsWith('on')),
      ).length,
    }));
    // Two scripts: the embedded data (application/json) and the page's own.
    expect(planted).toEqual({ pwned: undefined, images: 0, links: 0, scripts: 2, handlers: 0 });
    expect(log.messages.filter((message) => message.includes('pwned'))).toEqual([]);
    expect(log.errors).toEqual([]);
    expect(await page.evaluate(() => (window as unknown as { __violations: string[] }).__violations)).toEqual([]);
    await page.close();
  });

  it('would block them even if the page parsed one as HTML: the CSP forbids inline handlers and scripts', async () => {
    const { page } = await openReport(chromium.browser, reportPath);
    // What a page bug (innerHTML of a guest string) would do; the CSP is the second wall.
    await page.evaluate((markup) => {
      const box = document.createElement('div');
      box.innerHTML = markup;
      document.body.append(box);
    }, ARGV.join(' '));
    await expect
      .poll(() => page.evaluate(() => (window as unknown as { __violations: string[] }).__violations.length))
      .toBeGreaterThan(0);
    const violations = await page.evaluate(() => (window as unknown as { __violations: string[] }).__violations);
    expect(violations.every((violation) => /^(script-src|img-src)/.test(violation))).toBe(true);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: string }).__pwned)).toBeUndefined();
    await page.close();
  });
});
