/*
 * Headless Chromium for the dashboard tests: Debian's `chromium`, driven by playwright-core
 * (never a downloaded browser). A missing browser fails the test with what to install.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';

export const CHROMIUM = process.env.RUNYARD_TEST_CHROMIUM ?? '/usr/bin/chromium';
export const SCREENSHOTS = join(import.meta.dirname, '../../test-artifacts/screenshots');

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(`the dashboard tests need Chromium at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (.ci/run does), or set RUNYARD_TEST_CHROMIUM`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  });
}

/** Collects what the page logs as errors and uncaught exceptions; tests assert it stays empty. */
export function watchConsole(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`uncaught: ${err.message}`));
  page.on('console', (msg) => {
    // Failed requests are logged by Chromium as console errors; the tests provoke some (401, 409).
    if (msg.type() === 'error' && !/Failed to load resource|net::ERR_/.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  return problems;
}

/** Saves test-artifacts/screenshots/<name>.png: the whole page, or what is in view (modal dialogs). */
export async function screenshot(page: Page, name: string, opts: { fullPage?: boolean } = {}): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: opts.fullPage ?? true, animations: 'disabled' });
  return path;
}

/** Presses Tab until `target` has focus (at most `max` times); fails naming what had focus instead. */
export async function tabTo(page: Page, target: Locator, max = 40, key: 'Tab' | 'Shift+Tab' = 'Tab'): Promise<void> {
  const seen: string[] = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(key);
    if (await target.evaluate((el) => el === document.activeElement).catch(() => false)) return;
    seen.push(
      await page.evaluate(() => {
        const el = document.activeElement;
        return el ? `${el.tagName.toLowerCase()} "${(el.getAttribute('aria-label') ?? el.textContent ?? '').trim().slice(0, 30)}"` : 'nothing';
      }),
    );
  }
  throw new Error(`${target} not reached with ${max} × ${key}; focus went through: ${seen.join(' → ')}`);
}

/** Waits (Playwright's auto-waiting) until an element of `locator` shows text matching `pattern`. */
export async function waitForText(locator: Locator, pattern: RegExp, timeout = 15_000): Promise<void> {
  await locator.filter({ hasText: pattern }).first().waitFor({ state: 'visible', timeout });
}
