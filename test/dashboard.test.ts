/*
 * The web dashboard in headless Chromium against a real server whose scheduler starts real
 * `runyard agent` processes (build first: `npx tsc -p . && node scripts/copy-assets.mjs`).
 * Every page is screenshotted into test-artifacts/screenshots/ for review.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { launchBrowser, screenshot, tabTo, waitForText, watchConsole } from './helpers/browser.js';
import { openSse } from './helpers/http.js';
import { createToken } from '../src/store/queries/tokens.js';
import { parseAnsi, stripAnsi } from '../src/web/assets/lib/ansi.js';

const SLOW_JOB = 'for i in $(seq 1 150); do echo "line $i"; sleep 0.2; done';
const FINAL = ['succeeded', 'failed', 'cancelled', 'timed_out'];

describe('dashboard', () => {
  let t: TestServer;
  let browser: Browser;
  let page: Page;
  let problems: string[];
  /** a second admin token, used by the browser, so revoking it mid-session is real */
  let operator: { id: string; secret: string };

  const jobOf = async (id: number) => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job;
  const finished = (id: number, timeoutMs = 30_000) =>
    waitFor(`job ${id} to finish`, async () => {
      const j = await jobOf(id);
      return FINAL.includes(j.state) ? j : undefined;
    }, timeoutMs);
  const submit = async (spec: Record<string, unknown>) => {
    const r = await t.api('POST', '/api/v1/jobs', spec);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.job.id as number;
  };
  const nav = (name: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });
  const heading = (text: string) => page.getByRole('heading', { level: 1, name: text });

  before(async () => {
    assert.ok(existsSync(join(import.meta.dirname, '../dist/bin/cli.js')), 'the scheduler starts agents from dist/: run `npx tsc -p . && node scripts/copy-assets.mjs` first');
    browser = await launchBrowser();
    t = await startTestServer({ config: { pools: [{ name: 'local', maxJobsPerRunner: 2 }, { name: 'parked', maxRunners: 0 }] } });
    const { token, secret } = await createToken(t.server.db, Date.now(), { kind: 'admin', description: 'dashboard test operator' });
    operator = { id: token.id, secret };
    const context = await browser.newContext({ viewport: { width: 1360, height: 860 }, colorScheme: 'light', acceptDownloads: true });
    page = await context.newPage();
    problems = watchConsole(page);
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  test('the page and its files are served without a token; the API still needs one', async () => {
    const index = await fetch(t.url + '/');
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type') ?? '', /text\/html/);
    assert.match(index.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await index.text();
    assert.match(html, /assets\/app\.js/);
    const js = await fetch(t.url + '/assets/app.js');
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    const again = await fetch(t.url + '/assets/app.js', { headers: { 'if-none-match': js.headers.get('etag')! } });
    assert.equal(again.status, 304, 'unchanged files are revalidated, not resent');
    for (const path of ['/assets/..%2f..%2fpackage.json', '/assets/%2e%2e/router.ts', '/assets/nope.js', '/assets/%E0%A4%A'])
      assert.equal((await fetch(t.url + path)).status, 404, path);
    assert.equal((await t.api('GET', '/api/v1/stats', undefined, { token: null })).status, 401);
    assert.equal((await t.api('GET', '/api/v1/stream', undefined, { token: null })).status, 401);
    assert.equal((await fetch(t.url + '/healthz')).status, 200, '/healthz is unchanged');
  });

  test('sign in: a wrong token is refused with the API message; the admin token opens the overview', async () => {
    await page.goto(t.url + '/');
    const token = page.getByLabel('Admin token');
    await token.waitFor();
    await screenshot(page, '01-sign-in');
    await token.fill('ryd_adm_not-a-real-token-000000');
    await token.press('Enter');
    await waitForText(page.locator('#login-error'), /not accepted: invalid, revoked or expired token/);
    assert.equal(await token.evaluate((el) => el === document.activeElement), true, 'focus returns to the token field');
    await screenshot(page, '02-sign-in-error');
    await token.fill(operator.secret);
    await token.press('Enter');
    await heading('Overview').waitFor();
    await waitForText(page.locator('#live'), /^Live$/);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('runyard.token')), operator.secret, 'the token is kept for this tab only');
  });

  test('a fresh server shows empty states, and the main navigation works with the keyboard', async () => {
    await waitForText(page.locator('.card'), /No jobs finished in the last hour/);
    await waitForText(page.locator('.card'), /No runners are live/);
    await screenshot(page, '03-overview-empty');

    // Onwards from where focus is, round past the end of the page: skip link, brand, navigation.
    await tabTo(page, nav('Jobs'), 25);
    await page.keyboard.press('Enter');
    await heading('Jobs').waitFor();
    assert.match(page.url(), /#\/jobs$/);
    await waitForText(page.locator('.empty'), /No jobs yet/);
    await screenshot(page, '04-jobs-empty');

    await tabTo(page, nav('Runners'), 20, 'Shift+Tab');
    await page.keyboard.press('Enter');
    await heading('Runners').waitFor();
    await waitForText(page.locator('.empty'), /No runners are live/);
    await screenshot(page, '05-runners-empty');
  });

  test('a submitted job starts a runner that appears live; its logs stream; it is cancelled from the UI by keyboard', async () => {
    // The runners page is open: the runner must appear without a reload.
    const id = await submit({ command: SLOW_JOB });
    const rows = page.getByTestId('runners-table').locator('tbody tr');
    await rows.first().waitFor({ timeout: 20_000 });
    await waitForText(rows.first(), /local/);
    await waitForText(rows.first().locator('.badge'), /starting|idle|busy/);
    await waitForText(rows.first().locator('.badge'), /busy/, 20_000);
    await rows.first().getByRole('link', { name: `#${id}`, exact: true }).waitFor();
    await screenshot(page, '06-runners-live');

    // To the job: the link in the runner's row.
    await rows.first().getByRole('link', { name: `#${id}`, exact: true }).click();
    await heading(`Job #${id}`).waitFor();
    const log = page.getByTestId('log-view');
    await waitForText(log.locator('.log-msg'), /^line 3$/, 20_000);
    assert.equal((await jobOf(id)).state, 'running', 'lines are shown while the job runs');
    const seenEarly = Number((await page.getByTestId('log-count').textContent())!.replace(/\D/g, ''));
    await waitForText(log.locator('.log-msg'), /^line 8$/);
    const seenLater = Number((await page.getByTestId('log-count').textContent())!.replace(/\D/g, ''));
    assert.ok(seenLater > seenEarly, `more lines arrived without a reload (${seenEarly} then ${seenLater})`);
    await waitForText(page.getByTestId('log-status'), /Streaming live/);
    await screenshot(page, '07-job-running-logs');

    // Keyboard only: from the heading (focused on navigation) to the cancel button, confirm.
    const cancel = page.getByRole('button', { name: 'Cancel job' });
    await tabTo(page, cancel, 10);
    await page.keyboard.press('Enter');
    const dialog = page.getByTestId('confirm-dialog');
    await dialog.waitFor();
    assert.equal(await dialog.getByRole('button', { name: 'Keep running' }).evaluate((el) => el === document.activeElement), true, 'focus starts on the safe choice');
    await screenshot(page, '08-job-cancel-confirm', { fullPage: false });
    await page.keyboard.press('Tab');
    assert.equal(await dialog.getByRole('button', { name: 'Cancel job' }).evaluate((el) => el === document.activeElement), true);
    await page.keyboard.press('Enter');

    await waitForText(page.locator('.page-subtitle .badge'), /^cancelled$/, 20_000);
    await waitForText(page.getByTestId('log-status'), /Complete · cancelled/);
    await waitForText(page.locator('.timeline'), /cancel requested/);
    const job = await jobOf(id);
    assert.equal(job.state, 'cancelled');
    const lines = (await t.api('GET', `/api/v1/jobs/${id}/logs?limit=5000`)).body.lines.filter((l: any) => /^line \d+$/.test(l.m));
    assert.ok(lines.length < 150, `the job was stopped early (${lines.length} of 150 lines)`);
    assert.equal(await page.getByRole('button', { name: 'Retry' }).isVisible(), true, 'a cancelled job can be retried');
    await screenshot(page, '09-job-cancelled');
  });

  test('finished jobs: ANSI colours, payload and output, download; overview chart, pools, runners and jobs pages', async () => {
    const ok = await submit({
      commands: [`printf '\\033[32mgreen ok\\033[0m and \\033[1;31mbold red\\033[0m\\n'`, 'echo "to stderr" >&2', 'echo \'{"result": 42, "items": ["a", "b"]}\' > "$RUNYARD_OUTPUT"'],
      payload: { hello: 'world', n: 7 },
    });
    const bad = await submit({ command: 'echo failing on purpose; exit 3' });
    assert.equal((await finished(ok)).state, 'succeeded');
    assert.equal((await finished(bad)).state, 'failed');

    await page.goto(`${t.url}/#/jobs/${ok}`);
    await heading(`Job #${ok}`).waitFor();
    await waitForText(page.locator('.log-msg .ansi-fg2'), /^green ok$/);
    await waitForText(page.locator('.log-msg .ansi-fg1.ansi-bold'), /^bold red$/);
    await waitForText(page.locator('.log-stderr .log-msg'), /to stderr/);
    assert.equal(await page.locator('.log-msg', { hasText: '\x1b' }).count(), 0, 'no raw escape codes are shown');
    await waitForText(page.getByTestId('job-output'), /"result": 42/);
    await waitForText(page.getByTestId('job-payload'), /"hello": "world"/);
    await waitForText(page.getByTestId('log-status'), /Complete · succeeded \(exit 0\)/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('log-download').click()]);
    const text = readFileSync((await download.path())!, 'utf8');
    assert.match(text, /stdout green ok and bold red/);
    assert.match(text, /stderr to stderr/);
    assert.doesNotMatch(text, /\x1b/);
    await screenshot(page, '10-job-succeeded');

    // A long log: only the rows in view exist; the keyboard scrolls it.
    const long = await submit({ command: "seq -f 'row %g' 1 20000" });
    assert.equal((await finished(long)).state, 'succeeded');
    await page.goto(`${t.url}/#/jobs/${long}`);
    const log = page.getByTestId('log-view');
    await waitForText(page.getByTestId('log-count'), /^20,00[0-9] lines$/, 20_000);
    await waitForText(log.locator('.log-msg'), /^row 20000$/);
    const rendered = await log.locator('.log-line').count();
    assert.ok(rendered > 10 && rendered < 200, `a virtualised view (${rendered} rows in the DOM for 20,000 lines)`);
    await log.focus();
    await page.keyboard.press('Home');
    await waitForText(log.locator('.log-msg'), /^row 1$/);
    assert.equal(await page.getByRole('button', { name: 'Follow' }).getAttribute('aria-pressed'), 'false', 'scrolling up stops following');
    await page.keyboard.press('End');
    await waitForText(log.locator('.log-msg'), /^row 20000$/);
    await waitForText(page.locator('button[aria-pressed="true"]'), /^Follow$/);

    await nav('Overview').click();
    await heading('Overview').waitFor();
    await page.locator('figure.chart').waitFor();
    await waitForText(page.locator('.tile-rate'), /[1-9]\d* in the last hour/);
    await screenshot(page, '11-overview');

    await nav('Pools').click();
    const local = page.getByTestId('pool-local');
    await waitForText(local.locator('.events'), /started/);
    await waitForText(page.getByTestId('pool-parked'), /No live runners/);
    await screenshot(page, '12-pools');

    await nav('Jobs').click();
    await page.getByTestId('jobs-table').waitFor();
    await page.getByLabel('State').selectOption('failed');
    // the failed job is in the unfiltered table too: wait for the filtered rows, not for its number
    const states = () => page.getByTestId('jobs-table').locator('tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.state));
    await waitFor('the jobs table filtered to failed', async () => ((await states()).every((s) => s === 'failed') ? true : undefined));
    await waitForText(page.getByTestId('jobs-table').locator('tbody'), new RegExp(`#${bad}`));
    assert.deepEqual(await states(), ['failed']);
    await page.getByLabel('State').selectOption('');
    await waitForText(page.getByTestId('jobs-table').locator('tbody'), new RegExp(`#${ok}`));
    await screenshot(page, '13-jobs');

    // Runner actions: disable and enable (no confirmation), terminate (confirmed).
    await nav('Runners').click();
    const row = page.getByTestId('runners-table').locator('tbody tr').first();
    await row.waitFor();
    await screenshot(page, '14-runners');
    await row.getByRole('button', { name: /^Disable runner/ }).click();
    await waitForText(row.locator('.badge'), /disabled/);
    await row.getByRole('button', { name: /^Enable runner/ }).click();
    await waitForText(row.locator('.badge'), /idle|busy/);
    await row.getByRole('button', { name: /^Terminate runner/ }).click();
    await page.getByTestId('confirm-dialog').getByRole('button', { name: 'Terminate runner' }).click();
    await waitForText(page.locator('.empty'), /No runners are live/, 20_000);
  });

  test('API errors are shown: a stale cancel gets 409; a revoked token ends the session with a message', async () => {
    // A job in a pool that never starts runners stays queued.
    const id = await submit({ pool: 'parked', command: 'echo never runs' });
    // Cut the live updates so the page goes stale, as when another operator acts meanwhile.
    await page.route('**/api/v1/stream', (route) => route.abort());
    await page.goto(`${t.url}/#/jobs?pool=parked`);
    await page.reload();
    await waitForText(page.locator('#live'), /Reconnecting/);
    const row = page.locator(`tr[data-job="${id}"]`);
    await waitForText(row.locator('.badge'), /queued/);
    assert.equal((await t.api('POST', `/api/v1/jobs/${id}/cancel`)).status, 200);
    await row.getByRole('button', { name: `Cancel job ${id}` }).click();
    await page.getByTestId('confirm-dialog').getByRole('button', { name: 'Cancel job' }).click();
    await waitForText(page.getByTestId('toast-error'), new RegExp(`Could not cancel job #${id}: job ${id} is already cancelled \\(HTTP 409 conflict\\)`));
    await waitForText(row.locator('.badge'), /cancelled/);
    await screenshot(page, '15-error-409');
    await page.unroute('**/api/v1/stream');
    await waitForText(page.locator('#live'), /^Live$/, 20_000);

    // A job that does not exist: the page says so instead of staying blank.
    await page.goto(`${t.url}/#/jobs/999999`);
    await waitForText(page.locator('.error-panel'), /Could not load job #999999.*job 999999 not found \(HTTP 404 not_found\)/);

    // The token is revoked while the page is open: the next call ends the session, visibly.
    const revoked = await t.api('DELETE', `/api/v1/tokens/${operator.id}`);
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    await nav('Runners').click();
    await waitForText(page.getByTestId('login-notice'), /Your session ended: the server rejected the token \(invalid, revoked or expired token\)/);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('runyard.token')), null, 'the rejected token is forgotten');
    await screenshot(page, '16-session-ended');
    // Signing in again returns to where the user was going.
    await page.getByLabel('Admin token').fill(t.token);
    await page.getByLabel('Admin token').press('Enter');
    await heading('Runners').waitFor();
    assert.deepEqual(problems, [], 'no script errors in the page');
  });

  test('ANSI parsing: colours carry across runs, other escapes are dropped', () => {
    const { runs, end } = parseAnsi('a\x1b[1;32mb\x1b[38;5;208mc\x1b[48;2;1;2;3md\x1b[0me\x1b[2K\x1b]0;title\x07f\x1b[31m');
    assert.deepEqual(runs.map((r) => r.text), ['a', 'b', 'c', 'd', 'e', 'f']);
    assert.equal(runs[1]!.style.fg, 2);
    assert.equal(runs[1]!.style.bold, true);
    assert.equal(runs[2]!.style.fg, 'rgb(255,135,0)');
    assert.equal(runs[3]!.style.bg, 'rgb(1,2,3)');
    assert.equal(runs[4]!.style.fg, null);
    assert.equal(end.fg, 1, 'the style left at the end of a line starts the next one');
    assert.equal(stripAnsi('\x1b[31mred\x1b[0m \x1b[?25lplain'), 'red plain');
  });

  test('stats and the fleet stream report what happened', async () => {
    const stats = (await t.api('GET', '/api/v1/stats')).body;
    assert.equal(stats.throughput.buckets.length, 60);
    assert.ok(stats.throughput.lastHour >= 4, `finished jobs are counted (${stats.throughput.lastHour})`);
    const byState = stats.throughput.buckets.reduce((s: Record<string, number>, b: any) => {
      for (const k of FINAL) s[k] = (s[k] ?? 0) + b[k];
      return s;
    }, {});
    assert.ok(byState.succeeded >= 1 && byState.failed >= 1 && byState.cancelled >= 2, JSON.stringify(byState));
    assert.deepEqual(stats.pools.map((p: any) => p.name).sort(), ['local', 'parked']);
    const scaling = (await t.api('GET', '/api/v1/stats/scaling?pool=local')).body.events;
    assert.ok(scaling.some((e: any) => e.kind === 'runner' && e.toState === 'starting'), 'the scale-up is a scale event');

    const stream = await openSse(`${t.url}/api/v1/stream`, t.token);
    try {
      assert.equal(stream.status, 200);
      assert.equal((await stream.next()).event, 'ready');
      const id = await submit({ pool: 'parked', command: 'true' });
      const seen = await stream.until('jobs', 5000);
      assert.ok(JSON.parse(seen[seen.length - 1]!.data).ids.includes(id), 'the new job is announced');
    } finally {
      stream.close();
    }
  });
});
