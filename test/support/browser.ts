import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium package: the report tests drive the system browser, never a downloaded one. */
export const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests cannot run here, or undefined when they can. */
export function chromiumUnavailableReason(): string | undefined {
  return existsSync(CHROMIUM)
    ? undefined
    : `${CHROMIUM} is absent (install Debian's chromium package: apt-get install chromium)`;
}

/** A headless chromium with a fresh profile and nothing that reaches the network on its own. */
export async function launchChromium(): Promise<{ browser: BrowserContext; close: () => Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'vmscope-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1400, height: 2400 },
  });
  return {
    browser,
    close: async () => {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** What a page said while it was open: console errors, uncaught exceptions, CSP violations. */
export interface PageLog {
  readonly errors: string[];
  readonly messages: string[];
}

/** Open a report file, recording what it logs; CSP violations are kept on `window.__violations`. */
export async function openReport(browser: BrowserContext, path: string): Promise<{ page: Page; log: PageLog }> {
  const page = await browser.newPage();
  const log: PageLog = { errors: [], messages: [] };
  page.on('console', (message) => {
    log.messages.push(message.text());
    if (message.type() === 'error') log.errors.push(message.text());
  });
  page.on('pageerror', (error) => log.errors.push(error.message));
  // Runs before the page's own script (from the browser's side, so the page's CSP does not apply).
  await page.addInitScript(() => {
    const seen: string[] = [];
    Object.assign(window, { __violations: seen });
    document.addEventListener('securitypolicyviolation', (event) =>
      seen.push(`${event.violatedDirective} ${event.blockedURI}`),
    );
  });
  await page.goto(`file://${path}`);
  await page.waitForFunction(() => document.querySelector('main') !== null);
  return { page, log };
}

/**
 * Every row of a virtualized table as its cells' full texts (the cells' titles): the table keeps
 * only visible rows in the DOM, so the viewport is scrolled through.
 */
export async function tableRows(page: Page, table: string, filter = ''): Promise<string[][]> {
  const root = page.locator(`[data-table="${table}"]`);
  await root.locator('input[type=search]').fill(filter);
  return root.evaluate(async (element) => {
    const viewport = element.querySelector<HTMLElement>('.viewport')!;
    const rows = new Map<string, string[]>();
    for (let top = 0; ; top += viewport.clientHeight) {
      viewport.scrollTop = top;
      viewport.dispatchEvent(new Event('scroll'));
      await new Promise((resolve) => requestAnimationFrame(resolve));
      for (const row of Array.from(element.querySelectorAll('.body .row'))) {
        const cells = Array.from(row.querySelectorAll('.cell')).map((cell) => cell.getAttribute('title') ?? '');
        rows.set(`${(row as HTMLElement).dataset.index}`, cells);
      }
      if (top + viewport.clientHeight >= viewport.scrollHeight) break;
    }
    return [...rows.values()];
  });
}
