/*
 * Issue 19 in Chromium: no page of the dashboard is wider than a 390 px phone; the "Cancelling…"
 * note goes once the job has ended instead of staying over the page; a job that waits because no
 * runner can be started says why on its page and on the overview. A real server; jobs are run by
 * a FakeRunner (the runner protocol over HTTP); the container pool points at an engine socket
 * that does not exist.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startTestServer, waitFor, type TestServer } from './helpers/server.js';
import { launchBrowser, screenshot, waitForText, watchConsole } from './helpers/browser.js';
import { FakeRunner } from './helpers/cli.js';

describe('newcomer: dashboard', () => {
  let t: TestServer;
  let browser: Browser;
  let runner: FakeRunner;
  const sockDir = mkdtempSync(join(tmpdir(), 'runyard-no-engine-'));

  before(async () => {
    browser = await launchBrowser();
    process.env.RUNYARD_CONTAINER_HOST = `unix://${join(sockDir, 'engine.sock')}`;
    try {
      t = await startTestServer({
        loops: false,
        config: {
          pools: [
            { name: 'local', provider: 'process', maxRunners: 0 },
            { name: 'fake-runners-with-a-long-pool-name', provider: 'process', maxRunners: 0, maxJobsPerRunner: 4 },
            { name: 'boxes', provider: 'container', image: 'runyard-runner:missing', maxRunners: 1 },
          ],
        },
      });
    } finally {
      delete process.env.RUNYARD_CONTAINER_HOST;
    }
    runner = await FakeRunner.register(t, 'fake-runners-with-a-long-pool-name', 'a-runner-with-a-rather-long-name-0123456789');
  });
  after(async () => {
    await browser?.close();
    await t?.close();
    rmSync(sockDir, { recursive: true, force: true });
  });

  async function signedIn(width: number, height: number): Promise<{ page: Page; problems: string[] }> {
    const page = await (await browser.newContext({ viewport: { width, height }, colorScheme: 'light' })).newPage();
    const problems = watchConsole(page);
    await page.goto(t.url + '/');
    const token = page.getByLabel('Admin token');
    await token.fill(t.token);
    await token.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    return { page, problems };
  }

  const submit = async (spec: Record<string, unknown>) => {
    const r = await t.api('POST', '/api/v1/jobs', spec);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.job.id as number;
  };

  test('10. every page fits a 390 px wide phone: nothing scrolls sideways but the tables themselves', async () => {
    const long = await submit({ pool: 'fake-runners-with-a-long-pool-name', command: `echo ${'a-very-long-argument-'.repeat(12)}`, labels: ['gpu', 'linux'] });
    const j = await runner.claimOne();
    await runner.start(j);
    await runner.log(j, 1, [['o', 'x'.repeat(300)]]);
    const { page, problems } = await signedIn(390, 844);
    const pages: [string, string][] = [
      ['#/', 'Overview'],
      ['#/jobs', 'Jobs'],
      [`#/jobs/${long}`, `Job #${long}`],
      ['#/runners', 'Runners'],
      ['#/pools', 'Pools'],
    ];
    for (const [hash, title] of pages) {
      await page.goto(`${t.url}/${hash}`);
      await page.getByRole('heading', { level: 1, name: title }).waitFor();
      await page.locator('[aria-busy="true"]').first().waitFor({ state: 'detached', timeout: 10_000 }).catch(() => {});
      if (hash === '#/jobs' || hash === '#/runners') await page.locator('tbody tr').first().waitFor();
      if (hash.startsWith('#/jobs/')) await waitForText(page.getByTestId('log-count'), /^1 line$/);
      const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
      await screenshot(page, `newcomer-390-${title.toLowerCase().replace(/\W+/g, '-')}`);
      assert.ok(widths.scroll <= widths.client, `${hash} is ${widths.scroll}px wide in a ${widths.client}px viewport`);
    }
    assert.deepEqual(problems, []);
    await runner.result(j, 0);
  });

  test('10. the "Cancelling…" note goes once the job has ended; it does not stay over the page', async () => {
    const id = await submit({ pool: 'fake-runners-with-a-long-pool-name', command: 'sleep 1000' });
    const j = await runner.claimOne();
    await runner.start(j);
    const { page, problems } = await signedIn(1360, 860);
    await page.goto(`${t.url}/#/jobs/${id}`);
    await page.getByRole('heading', { level: 1, name: `Job #${id}` }).waitFor();
    await waitForText(page.getByTestId('job-state'), /^running$/);
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await page.getByTestId('confirm-dialog').getByRole('button', { name: 'Cancel job' }).click();
    const note = page.getByTestId('toast-success').filter({ hasText: `Cancelling job #${id}` });
    await note.waitFor();
    await screenshot(page, 'newcomer-cancelling-toast', { fullPage: false });
    // the runner stops the job; the page hears of it and shows the job cancelled
    await runner.result(j, null, { outcome: 'cancelled' });
    await waitForText(page.getByTestId('job-state'), /^cancelled$/);
    // the same render that shows the end takes the note down
    assert.equal(await note.count(), 0, 'the Cancelling… note is gone once the job is cancelled');
    assert.deepEqual(problems, []);
  });

  test('3. a job that waits because no runner can be started says why, on its page and on the overview', async () => {
    const id = await submit({ pool: 'boxes', command: 'make' });
    await t.server.scheduler.pass(Date.now());
    const { page, problems } = await signedIn(1360, 860);
    await waitForText(page.getByTestId('waiting-boxes'), /runners cannot be started: container engine unreachable at /);
    await screenshot(page, 'newcomer-overview-waiting');
    // a pool with nothing waiting shows no reason
    assert.equal(await page.getByTestId('waiting-local').count(), 0);
    await page.goto(`${t.url}/#/jobs/${id}`);
    await waitForText(page.getByTestId('job-waiting'), /^Waiting: runners cannot be started: container engine unreachable at .*engine\.sock/);
    await screenshot(page, 'newcomer-job-waiting');
    await waitFor('the job still queued', async () => (await t.api('GET', `/api/v1/jobs/${id}`)).body.job.state === 'queued');
    assert.deepEqual(problems, []);
  });
});
