// End-to-end test of the console as people work in it all day, in headless Chromium, against the
// service in PRODUCTION mode over HTTPS under its real Content-Security-Policy, with the DEFAULT
// rate-limit settings (no RATE_LIMIT_* or KYROS_*_RATE_LIMIT_* variable is set here).
//
//   node --test tests/browser/console-work.test.mjs    (or .ci/browser-tests for every browser test)
//
// At both widths, 1 280 px (a laptop) and 390 px (a phone), where it makes sense:
//   1. Sign in; node gets an API key (to act as an agent) and a second user, vera, is made.
//   2. No silent data loss: a task edited in two tabs — the second save opens the conflict dialog
//      with both versions ("Keep theirs" keeps theirs, "Overwrite with mine" overwrites).
//   3. Length limits: the counter shows the limit before submit; a 3 000-character description
//      (job) and a 10 001-character one (task) are refused with a message, nothing is sent, and
//      nothing is cut.
//   4. A role change asks first ("Make vera an admin?" [Change role] [Keep role]); keeping leaves
//      the role; a change based on a stale version shows the conflict; Reset MFA and Unlock are
//      offered only when they mean something.
//   5. The overview's counts, oldest pending job and chart (SVG bars and the table) are the
//      numbers of GET /api/v1/jobs/overview, after jobs were completed and failed by an agent.
//   6. Search, sort, status and owner filters of the jobs list give the rows the API gives, with
//      its total (X-Total-Count); bulk cancel asks first; "Run again" makes a new job.
//   7. Deleting a job an agent is running warns; another viewer's page shows it deleted, live.
//   8. No table overflows its container and the page does not scroll sideways, on every page at
//      both widths (from element boxes); a screenshot of each page at each width goes to
//      test-output/console-<page>-<width>.png.
//   9. Two minutes of ordinary clicking at a human pace meets no 429 and the session's
//      RateLimit-Remaining never falls below 90 % of its limit; a flood of requests from the page
//      does meet 429 (and the console shows the countdown banner).
// Every page is checked for CSP violations, script errors, style attributes and unlabelled inputs.
// Waits are waits for conditions (never timing assertions).

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import {
  OUTPUT_DIR, SHOTS_DIR,
  assertPageSound, assertTools, startProductionService, consoleExpectations, diagnostics, launchBrowser,
  need, nodeRequest, pageApi, recordCsp, screenshot, sleep, stepper, stopService, watchPage,
} from './harness.mjs';

const ADMIN = 'work-admin';
const PASSWORD = crypto.randomBytes(18).toString('base64url');
const VERA = 'vera';
const VERA_PASSWORD = crypto.randomBytes(18).toString('base64url');
const SECRET_KEY = crypto.randomBytes(32).toString('hex');
const RUN = crypto.randomBytes(3).toString('hex');
const LABEL = `lane-${RUN}`; // the jobs node's agent runs require this label (and come first)
const WIDTHS = [1280, 390];
const LIVE_MS = 10_000;
const ORDINARY_USE_MS = 120_000;

const state = {
  tmpDir: null,
  cert: null,
  service: null,
  serviceLog: [],
  port: null,
  base: null,
  browser: null,
  context: null,
  page: null,
  pageLog: [],
  cspConsole: [],
  pageErrors: [],
  // Every counted answer the pages got: [{url, status, limit, remaining}] (RateLimit-* headers).
  answers: [],
  started: Date.now(),
  loggedIn: false,
  apiKey: null,
  veraId: null,
};

// ---------------------------------------------------------------------------------------------
// The harness (harness.mjs), bound to this run.

const report = () =>
  diagnostics({ base: state.base, dir: state.tmpDir, page: state.page, pageLog: state.pageLog, serviceLog: state.serviceLog, serviceLines: 60 });

/** A full-page screenshot to test-output/console-<name>.png (or to `dir`). */
const shot = (name, page = state.page, dir = OUTPUT_DIR) => screenshot(page, `console-${name}`, { dir, log: state.pageLog });

const step = stepper({
  timeout: 120_000,
  diagnostics: report,
  failureShot: async (name) => {
    if (state.page) await shot(`failed-${name.slice(0, 2).replace(/\W/g, '')}`, state.page, SHOTS_DIR);
  },
});

/** An HTTPS request from node (an agent or a script), trusting only the run's certificate. */
const request = (method, urlPath, opts) => nodeRequest({ base: state.base, ca: state.cert }, method, urlPath, opts);

/** As the agent (node, with the API key). */
const agent = (method, urlPath, body) => request(method, urlPath, { headers: { 'X-API-Key': state.apiKey }, body });

/** Watches a page; every counted answer (RateLimit-* headers) and every 429 goes to state.answers. */
const watch = (page, label) =>
  watchPage(page, label, state, {
    consoleErrors: true,
    onResponse: (r) => {
      const h = r.headers();
      if (h['ratelimit-limit'] !== undefined) {
        state.answers.push({ url: `${r.request().method()} ${new URL(r.url()).pathname}`, status: r.status(), limit: Number(h['ratelimit-limit']), remaining: Number(h['ratelimit-remaining']), at: Date.now() });
      } else if (r.status() === 429) {
        state.answers.push({ url: r.url(), status: 429, limit: NaN, remaining: NaN, at: Date.now() });
      }
    },
  });

/** No CSP violation, script error, style attribute or unlabelled input; one h1. */
const assertSound = (where, page = state.page) => assertPageSound(page, where, state);

const { expectText, expectVisible, expectLive } = consoleExpectations(() => state.page, LIVE_MS);

// ---------------------------------------------------------------------------------------------
// The console.

/** Opens a console page by its address and waits for its heading. */
async function open(urlPath, heading, page = state.page) {
  await page.goto(`${state.base}${urlPath}`);
  await expectText('main h1', heading, `the page ${urlPath}`, { page });
}

async function setWidth(width, page = state.page) {
  await page.setViewportSize({ width, height: width < 600 ? 844 : 800 });
}

/**
 * Nothing is wider than its box: every table (or card list) fits its scrolling frame, every frame
 * fits its card, and the document does not scroll sideways. Returns the measurements.
 */
async function assertNoOverflow(where, page = state.page) {
  const m = await page.evaluate(() => {
    const out = { doc: document.documentElement.scrollWidth, viewport: window.innerWidth, tables: [], clipped: [] };
    for (const table of document.querySelectorAll('main table')) {
      if (!table.getClientRects().length) continue; // hidden (e.g. a closed <details>)
      const wrap = table.closest('.table-wrap') ?? table.parentElement;
      out.tables.push({ id: table.closest('[id]')?.id ?? table.className, table: table.scrollWidth, wrap: wrap.clientWidth, wrapScroll: wrap.scrollWidth, card: wrap.parentElement.clientWidth });
    }
    // Buttons must be whole: inside the viewport and inside their card.
    for (const b of document.querySelectorAll('main button')) {
      const r = b.getBoundingClientRect();
      if (!r.width) continue;
      const card = b.closest('.card, .page-head, .table-wrap')?.getBoundingClientRect();
      if (r.right > window.innerWidth + 0.5 || (card && (r.right > card.right + 0.5 || r.left < card.left - 0.5))) out.clipped.push(`${b.textContent.trim()} (${Math.round(r.left)}–${Math.round(r.right)})`);
    }
    return out;
  });
  assert.ok(m.doc <= m.viewport, `${where}: the page scrolls sideways (${m.doc} > ${m.viewport} px)`);
  for (const t of m.tables) {
    assert.ok(t.table <= t.wrap + 1 && t.wrapScroll <= t.wrap + 1, `${where}: table ${t.id} overflows its frame (${t.table} > ${t.wrap} px)`);
    assert.ok(t.wrap <= t.card + 1, `${where}: the frame of table ${t.id} is wider than its container (${t.wrap} > ${t.card} px)`);
  }
  assert.deepEqual(m.clipped, [], `${where}: buttons cut off`);
  return m;
}

// ---------------------------------------------------------------------------------------------

describe('the console at work (production mode, HTTPS, real CSP, default rate limits)', { timeout: 900_000 }, () => {
  before(async () => {
    try {
      assertTools();
      // No rate-limit setting: the production defaults of every limit apply.
      const served = await startProductionService({
        prefix: 'kyros-console-work-',
        secret: SECRET_KEY,
        admin: ADMIN,
        email: `${ADMIN}@example.org`,
        password: PASSWORD,
        log: state.serviceLog,
      });
      Object.assign(state, { tmpDir: served.tmpDir, cert: served.cert, port: served.port, base: served.base, service: served.service });
      for (const k of Object.keys(served.env)) assert.doesNotMatch(k, /RATE_LIMIT/, 'this test runs with the default rate limits');

      state.browser = await launchBrowser();
      // A fixed zone and language, so that the time texts are known: every time shows its zone.
      state.context = await state.browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 }, timezoneId: 'UTC', locale: 'en-US' });
      await recordCsp(state.context);
      state.page = watch(await state.context.newPage(), 'console');
    } catch (err) {
      console.error(`\nset-up failed: ${err?.stack ?? err}${report()}`);
      throw err;
    }
  });

  after(async () => {
    await state.browser?.close().catch(() => {});
    await stopService(state.service);
    if (state.tmpDir) fs.rmSync(state.tmpDir, { recursive: true, force: true });
    console.log(`console work test: ${((Date.now() - state.started) / 1000).toFixed(1)} s in all`);
  });

  step('1. sign in; an API key for node as the agent; a second user', async () => {
    const page = state.page;
    await page.goto(`${state.base}/console/`);
    await expectVisible('#login-username', 'the login form');
    await page.fill('#login-username', ADMIN);
    await page.fill('#login-password', PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectText('main h1', 'Jobs', 'the jobs page after login');
    await expectLive();
    state.loggedIn = true;
    const key = await pageApi(state.page, 'POST', '/api/v1/api-keys', { name: `agent-${RUN}`, scopes: ['jobs:read', 'jobs:write', 'jobs:claim'] });
    assert.equal(key.status, 201, `API key: ${key.text}`);
    state.apiKey = key.json.key;
    const vera = await pageApi(state.page, 'POST', '/api/v1/admin/users', { username: VERA, email: 'vera@example.org', password: VERA_PASSWORD, role: 'user' });
    assert.equal(vera.status, 201, `vera: ${vera.text}`);
    state.veraId = vera.json.id;
    await assertSound('the jobs page');
  });

  step('2. a task edited in two tabs: the second save shows both versions instead of overwriting', async () => {
    need(state.loggedIn, 'login');
    for (const width of WIDTHS) {
      const a = state.page;
      await setWidth(width, a);
      const title = `Plan the launch ${width} ${RUN}`;
      const made = await pageApi(state.page, 'POST', '/api/v1/collab/tasks', { title, description: 'first draft' });
      assert.equal(made.status, 201, made.text);
      const id = made.json.id;
      const b = watch(await state.context.newPage(), `tab-b-${width}`);
      try {
        await setWidth(width, b);
        for (const page of [a, b]) {
          await open('/console/tasks', 'Tasks', page);
          const row = page.locator(`#tasks-body tr[data-task-id="${id}"]`);
          await row.waitFor({ timeout: LIVE_MS });
          await row.getByRole('button', { name: `Edit task ${title}` }).click();
          await expectVisible('#task-edit-form', 'the editor', { page });
        }
        // Tab A saves first.
        await a.fill('#task-edit-description', `A's version ${width}`);
        await a.getByRole('button', { name: 'Save task' }).click();
        await expectText('#notice', 'saved', 'tab A saved', { page: a });
        // Tab B was opened on the first draft: its save is based on that version.
        await expectText('#task-edit-note', /changed this task meanwhile/, 'tab B is told live that the task changed', { page: b });
        await b.fill('#task-edit-description', `B's version ${width}`);
        await b.getByRole('button', { name: 'Save task' }).click();
        const dialog = await expectVisible('#conflict-dialog', 'the conflict dialog', { page: b });
        await expectText('#conflict-dialog .conflict-mine', `B's version ${width}`, 'your version in the dialog', { page: b });
        await expectText('#conflict-dialog .conflict-theirs', `A's version ${width}`, 'the current version in the dialog', { page: b });
        const buttons = await dialog.locator('button').allInnerTexts();
        assert.deepEqual(buttons.map((t) => t.trim()), ['Overwrite with mine', 'Keep theirs'], 'the two choices');
        // Nothing was overwritten before the choice.
        let now = await pageApi(state.page, 'GET', `/api/v1/collab/tasks/${id}`);
        assert.equal(now.json.description, `A's version ${width}`, 'the first save was overwritten without asking');
        await shot(`task-conflict-${width}`, b);
        const box = await dialog.evaluate((d) => ({ right: d.getBoundingClientRect().right, scroll: d.scrollWidth, client: d.clientWidth, vw: window.innerWidth }));
        assert.ok(box.right <= box.vw && box.scroll <= box.client + 1, `the dialog does not fit at ${width} px: ${JSON.stringify(box)}`);
        await assertSound(`the conflict dialog at ${width} px`, b);
        if (width === 1280) {
          await dialog.getByRole('button', { name: 'Keep theirs' }).click();
          await b.locator('#conflict-dialog').waitFor({ state: 'detached' });
          await expectText('#notice', 'Kept the other version', 'keep theirs', { page: b });
          now = await pageApi(state.page, 'GET', `/api/v1/collab/tasks/${id}`);
          assert.equal(now.json.description, `A's version ${width}`, 'Keep theirs changed the task');
        } else {
          await dialog.getByRole('button', { name: 'Overwrite with mine' }).click();
          await expectText('#notice', 'saved', 'overwrite with mine', { page: b });
          now = await pageApi(state.page, 'GET', `/api/v1/collab/tasks/${id}`);
          assert.equal(now.json.description, `B's version ${width}`, 'Overwrite with mine did not save');
        }
      } finally {
        await b.close().catch(() => {});
      }
    }
    await setWidth(1280);
  });

  step('3. length limits are shown before submit and a longer text is refused with a message', async () => {
    need(state.loggedIn, 'login');
    const page = state.page;
    for (const width of WIDTHS) {
      await setWidth(width);
      const posts = [];
      const onRequest = (r) => {
        if (r.method() === 'POST' && /\/api\/v1\/(jobs|collab\/tasks)$/.test(new URL(r.url()).pathname)) posts.push(r.url());
      };
      page.on('request', onRequest);
      try {
        await open('/console/jobs', 'Jobs');
        await expectText('#job-description-count', /^0 \/ 1,024$/, 'the counter before typing');
        await expectText('#job-title-count', /^0 \/ 255$/, 'the title counter');
        const long = 'word '.repeat(600); // 3 000 characters, pasted at once
        await page.fill('#job-title', `Too long ${width} ${RUN}`);
        await page.fill('#job-description', long);
        await expectText('#job-description-count', '3,000 / 1,024', 'the counter after the paste');
        assert.equal((await page.inputValue('#job-description')).length, 3000, 'the pasted text was cut');
        await page.getByRole('button', { name: 'Create job' }).click();
        await expectText('#job-form [role="alert"]', /too long/i, 'the form error');
        await expectText('#job-description-error', /3,000 characters, at most 1,024/, 'the message on the field');
        assert.equal(await page.getAttribute('#job-description', 'aria-invalid'), 'true', 'the field is not marked invalid');
        assert.equal((await page.inputValue('#job-description')).length, 3000, 'the text was cut on submit');
        await shot(`jobs-too-long-${width}`);
        await assertSound(`the refused job at ${width} px`);

        await open('/console/tasks', 'Tasks');
        await expectText('#task-description-count', '0 / 10,000', 'the task counter');
        await page.fill('#task-title', `Too long ${width} ${RUN}`);
        await page.fill('#task-description', 'x'.repeat(10_001));
        await page.getByRole('button', { name: 'Add task' }).click();
        await expectText('#task-description-error', /10,001 characters, at most 10,000/, 'the task message');
        assert.deepEqual(posts, [], 'a text over the limit was sent');
        // Shortened to the limit, it is accepted.
        await page.fill('#task-description', 'x'.repeat(10_000));
        await page.getByRole('button', { name: 'Add task' }).click();
        await expectText('#notice', 'added', 'the task at the limit');
      } finally {
        page.off('request', onRequest);
      }
    }
    await setWidth(1280);
  });

  step('4. a role change asks first; a stale change shows the conflict; MFA reset and unlock only when they apply', async () => {
    need(state.loggedIn, 'login');
    const veraId = need(state.veraId, 'vera');
    const page = state.page;
    const role = async () => (await pageApi(state.page, 'GET', '/api/v1/admin/users')).json.items.find((u) => u.id === veraId).role;
    for (const width of WIDTHS) {
      await setWidth(width);
      await open('/console/admin/users', 'Users');
      const row = page.locator(`#users-body tr[data-username="${VERA}"]`);
      await row.waitFor({ timeout: LIVE_MS });
      assert.equal(await row.getByRole('button', { name: /Reset two-step verification/ }).count(), 0, 'Reset MFA offered for a user without MFA');
      assert.equal(await row.getByRole('button', { name: /^Unlock/ }).count(), 0, 'Unlock offered for a user who is not locked');
      const before = await role();
      const target = before === 'admin' ? 'moderator' : 'admin';
      await row.locator('select').selectOption(target);
      const dialog = await expectVisible('#role-dialog', 'the role confirmation');
      if (target === 'admin') await expectText('#role-dialog h2', `Make ${VERA} an admin?`, 'the question');
      const buttons = (await dialog.locator('button').allInnerTexts()).map((t) => t.trim());
      assert.deepEqual(buttons, ['Change role', 'Keep role'], 'the two choices');
      assert.ok(!buttons.every((t) => /^Cancel/.test(t)), 'both buttons say Cancel');
      await shot(`users-role-confirm-${width}`);
      await dialog.getByRole('button', { name: 'Keep role' }).click();
      await page.locator('#role-dialog').waitFor({ state: 'detached' });
      assert.equal(await row.locator('select').inputValue(), before, 'the select did not go back');
      assert.equal(await role(), before, 'keeping the role changed it');
    }
    // Confirmed, it changes (at 390 px).
    await page.locator(`#users-body tr[data-username="${VERA}"] select`).selectOption('moderator');
    await page.locator('#role-dialog').getByRole('button', { name: 'Change role' }).click();
    await expectText('#notice', `${VERA} is now a moderator`, 'the role change');
    assert.equal(await role(), 'moderator', 'the confirmed change');
    // Someone else changes vera after the page drew her: the change shows the conflict.
    await setWidth(1280);
    await open('/console/admin/users', 'Users');
    await page.locator(`#users-body tr[data-username="${VERA}"]`).waitFor();
    const list = await pageApi(state.page, 'GET', '/api/v1/admin/users');
    const etag = list.json.items.find((u) => u.id === veraId).etag;
    const other = await pageApi(state.page, 'PATCH', `/api/v1/admin/users/${veraId}`, { role: 'user' }, { ifMatch: etag });
    assert.equal(other.status, 200, `the other admin's change: ${other.text}`);
    await page.locator(`#users-body tr[data-username="${VERA}"] select`).selectOption('admin');
    await page.locator('#role-dialog').getByRole('button', { name: 'Change role' }).click();
    await expectVisible('#conflict-dialog', 'the conflict of a stale role change');
    await expectText('#conflict-dialog .conflict-mine', 'admin', 'my role');
    await expectText('#conflict-dialog .conflict-theirs', 'user', 'their role');
    await page.locator('#conflict-dialog').getByRole('button', { name: 'Keep theirs' }).click();
    await expectText('#notice', 'Kept the current version', 'kept theirs');
    assert.equal(await role(), 'user', 'the stale change went through');
    await assertSound('the users page');
  });

  step('5. the overview shows the counts, the oldest pending job and a chart that match the API', async () => {
    need(state.apiKey, 'API key');
    const page = state.page;
    // Node submits and runs jobs as an agent: 3 completed, 2 failed, 2 left pending.
    const ids = [];
    for (let i = 0; i < 7; i++) {
      const r = await agent('POST', '/api/v1/jobs', { title: `Overview ${i} ${RUN}`, priority: 1000, requires: [LABEL] });
      assert.equal(r.status, 201, r.text);
      ids.push(r.json.id);
    }
    for (let i = 0; i < 5; i++) {
      const claim = await agent('POST', '/api/v1/agents/claim', { name: `node-${RUN}`, labels: [LABEL] });
      assert.equal(claim.status, 200, `claim: ${claim.text}`);
      const endPath = i < 3 ? 'complete' : 'fail';
      const body = i < 3 ? { lease_token: claim.json.lease_token, result: { ok: true } } : { lease_token: claim.json.lease_token, error: 'broken on purpose', exit_code: 2 };
      const done = await agent('POST', `/api/v1/agents/jobs/${claim.json.id}/${endPath}`, body);
      assert.equal(done.status, 200, `${endPath}: ${done.text}`);
    }
    for (const width of WIDTHS) {
      await setWidth(width);
      await open('/console/overview', 'Overview');
      await page.locator('#overview-chart-svg rect.chart-bar').first().waitFor({ state: 'attached', timeout: LIVE_MS });
      const api = await pageApi(state.page, 'GET', '/api/v1/jobs/overview?hours=24&bucket_secs=3600');
      assert.equal(api.status, 200, api.text);
      const shown = await page.evaluate(() => ({
        counts: Object.fromEntries([...document.querySelectorAll('#overview-counts li[data-status]')].map((li) => [li.dataset.status, Number(li.querySelector('.figure-value').dataset.value)])),
        countTexts: Object.fromEntries([...document.querySelectorAll('#overview-counts li[data-status]')].map((li) => [li.dataset.status, li.querySelector('.figure-value').textContent])),
        total: Number(document.querySelector('#overview-total').dataset.total),
        oldest: document.querySelector('#overview-oldest-link')?.dataset.jobId ?? null,
        waiting: document.querySelector('#overview-waiting')?.textContent ?? null,
        bars: [...document.querySelectorAll('#overview-chart-svg rect.chart-bar')].map((r) => [r.dataset.at, r.dataset.series, Number(r.dataset.value), Number(r.getAttribute('height'))]),
        cells: [...document.querySelectorAll('#overview-chart-table tbody td')].map((td) => [td.closest('tr').dataset.at, td.dataset.series, Number(td.dataset.value)]),
        role: document.querySelector('#overview-chart-svg').getAttribute('role'),
        label: document.querySelector('#overview-chart-svg title')?.textContent ?? '',
        ticks: [...document.querySelectorAll('#overview-chart-svg .chart-tick')].length,
        legend: [...document.querySelectorAll('.chart-legend li')].map((li) => li.textContent),
      }));
      const o = api.json;
      assert.deepEqual(shown.counts, o.counts, 'the counts per status');
      for (const [st, n] of Object.entries(o.counts)) assert.equal(shown.countTexts[st], String(n), `the figure of ${st}`);
      assert.equal(shown.total, o.total, 'the total');
      assert.equal(shown.oldest, o.oldest_pending?.id ?? null, 'the oldest pending job');
      assert.ok(shown.waiting && /\d+ (s|min|h|d)/.test(shown.waiting), `the waiting time: ${shown.waiting}`);
      const want = o.series.flatMap((b) => ['submitted', 'completed', 'failed'].map((k) => [b.at, k, b[k]]));
      assert.deepEqual(shown.bars.map(([at, k, v]) => [at, k, v]), want, 'the bars are the API series');
      assert.deepEqual(shown.cells, want, 'the table is the API series');
      // Taller bars for larger numbers.
      const heights = new Map(shown.bars.map(([at, k, v, hgt]) => [`${at}|${k}`, [v, hgt]]));
      for (const [v1, h1] of heights.values()) for (const [v2, h2] of heights.values()) if (v1 > v2) assert.ok(h1 > h2, 'bar heights do not follow the values');
      const sums = Object.fromEntries(['submitted', 'completed', 'failed'].map((k) => [k, o.series.reduce((a, b) => a + b[k], 0)]));
      assert.ok(sums.submitted >= 7 && sums.completed >= 3 && sums.failed >= 2, `the series counted the jobs: ${JSON.stringify(sums)}`);
      assert.equal(shown.role, 'img', 'the chart is an image to assistive technology');
      assert.match(shown.label, /per hour/, 'the chart title');
      assert.ok(shown.ticks > 5, 'axis labels');
      assert.deepEqual(shown.legend, ['Submitted', 'Completed', 'Failed'], 'the legend');
      await assertNoOverflow(`the overview at ${width} px`);
      await shot(`overview-${width}`);
      await assertSound(`the overview at ${width} px`);
    }
    await setWidth(1280);
  });

  step('6. search, sort and filters of the jobs list give the API rows and total; bulk cancel asks; run again', async () => {
    need(state.apiKey, 'API key');
    const page = state.page;
    const tag = `find-${RUN}`;
    for (const [title, priority] of [[`${tag} alpha`, 3], [`${tag} bravo`, 9], [`${tag} charlie`, -2], [`${tag} delta`, 5]]) {
      const r = await agent('POST', '/api/v1/jobs', { title, priority, requires: [`never-${RUN}`] });
      assert.equal(r.status, 201, r.text);
    }
    /** The rows shown and the list the API gives for the same query. */
    const compare = async (apiQuery, what) => {
      const api = await pageApi(state.page, 'GET', `/api/v1/jobs?${apiQuery}&total=true&limit=50`);
      assert.equal(api.status, 200, `${what}: ${api.text}`);
      const want = api.json.map((j) => j.id);
      try {
        await page.waitForFunction((ids) => JSON.stringify([...document.querySelectorAll('#jobs-body tr[data-job-id]')].map((tr) => tr.dataset.jobId)) === JSON.stringify(ids), want, { timeout: LIVE_MS });
      } catch {
        const got = await page.locator('#jobs-body tr[data-job-id]').evaluateAll((trs) => trs.map((tr) => tr.dataset.jobId));
        assert.deepEqual(got, want, `${what}: the rows differ from the API's`);
      }
      const total = Number(api.headers['x-total-count']);
      await expectText('#jobs-total', new RegExp(`^${total.toLocaleString('en-US')} jobs?$`), `${what}: the total`);
      return api.json;
    };
    for (const width of WIDTHS) {
      await setWidth(width);
      await open('/console/jobs', 'Jobs');
      await page.fill('#job-search', tag);
      await page.getByRole('button', { name: 'Apply' }).click();
      await page.waitForURL(/\?q=find-/);
      const found = await compare(`q=${tag}`, 'the search');
      assert.equal(found.length, 4, 'the search found the four jobs');
      if (width === 1280) {
        // Sorting by a column header.
        await page.locator('th[data-sort="priority"] button').click();
        await page.waitForURL(/sort=priority&order=desc/);
        assert.equal(await page.getAttribute('th[data-sort="priority"]', 'aria-sort'), 'descending');
        const byPriority = await compare(`q=${tag}&sort=priority&order=desc`, 'priority, highest first');
        assert.deepEqual(byPriority.map((j) => j.priority), [9, 5, 3, -2]);
        await page.locator('th[data-sort="priority"] button').click();
        await page.waitForURL(/sort=priority&order=asc/);
        await compare(`q=${tag}&sort=priority&order=asc`, 'priority, lowest first');
        await page.locator('th[data-sort="title"] button').click();
        await compare(`q=${tag}&sort=title&order=asc`, 'title A–Z');
        // The owner column and filter (an admin sees everybody's jobs).
        await expectText(`#jobs-body tr[data-job-id="${found[0].id}"] .job-owner`, ADMIN, 'the owner column');
        await page.fill('#job-filter-owner', VERA);
        await page.getByRole('button', { name: 'Apply' }).click();
        await page.waitForURL(/owner=vera/);
        await compare(`q=${tag}&owner=${VERA}&sort=title&order=asc`, 'the owner filter');
        await expectText('#jobs-body', 'No jobs match', 'no job of vera');
        await page.fill('#job-filter-owner', ADMIN);
        await page.getByRole('button', { name: 'Apply' }).click();
        await compare(`q=${tag}&owner=${ADMIN}&sort=title&order=asc`, 'the owner filter (admin)');
      } else {
        // On a phone: the sort select; each job a card with its labelled fields.
        await page.locator('#job-sort').selectOption('priority:desc');
        await page.waitForURL(/sort=priority&order=desc/);
        await compare(`q=${tag}&sort=priority&order=desc`, 'the sort select');
        const card = page.locator('#jobs-body tr[data-job-id]').first();
        for (const label of ['Title', 'Status', 'Progress', 'Owner', 'Created']) {
          const cell = card.locator(`td[data-label="${label}"]`);
          assert.ok(await cell.isVisible(), `the card shows ${label}`);
          const before = await cell.evaluate((td) => getComputedStyle(td, '::before').content);
          assert.equal(before, `"${label}"`, `the card labels ${label}`);
        }
        await shot(`jobs-cards-${width}`);
      }
      // The status filter.
      await page.locator('#job-filter-status').selectOption('cancelled');
      await page.waitForURL(/status=cancelled/);
      await compare(`q=${tag}&status=cancelled${width === 1280 ? `&owner=${ADMIN}&sort=title&order=asc` : '&sort=priority&order=desc'}`, 'the status filter');
      await assertNoOverflow(`the filtered jobs list at ${width} px`);
      await assertSound(`the filtered jobs list at ${width} px`);
    }
    // Bulk cancel of two pending jobs: asked first, with clear verbs.
    await setWidth(1280);
    await open(`/console/jobs?q=${tag}&sort=title&order=asc`, 'Jobs');
    await compare(`q=${tag}&sort=title&order=asc`, 'the list before the bulk cancel');
    const rows = page.locator('#jobs-body tr[data-job-id]');
    const pick = [await rows.nth(0).getAttribute('data-job-id'), await rows.nth(1).getAttribute('data-job-id')];
    await rows.nth(0).locator('input.job-select').check();
    await rows.nth(1).locator('input.job-select').check();
    await expectText('#jobs-bulk-count', '2 jobs selected', 'the selection');
    await page.locator('#jobs-bulk-cancel').click();
    const dialog = await expectVisible('#bulk-cancel-dialog', 'the bulk cancel confirmation');
    assert.deepEqual((await dialog.locator('button').allInnerTexts()).map((t) => t.trim()), ['Cancel 2 jobs', 'Keep jobs']);
    await shot('jobs-bulk-cancel-1280');
    await dialog.getByRole('button', { name: 'Keep jobs' }).click();
    for (const id of pick) assert.equal((await pageApi(state.page, 'GET', `/api/v1/jobs/${id}`)).json.status, 'pending', 'Keep jobs cancelled a job');
    await page.locator('#jobs-bulk-cancel').click();
    await page.locator('#bulk-cancel-dialog').getByRole('button', { name: 'Cancel 2 jobs' }).click();
    await expectText('#notice', '2 jobs cancelled', 'the bulk cancel');
    for (const id of pick) assert.equal((await pageApi(state.page, 'GET', `/api/v1/jobs/${id}`)).json.status, 'cancelled', 'the bulk cancel did not cancel');
    // Run again: a new job with the same input.
    const again = page.locator(`#jobs-body tr[data-job-id="${pick[0]}"]`);
    await expectText(`#jobs-body tr[data-job-id="${pick[0]}"] .job-status`, 'cancelled', 'the cancelled row');
    const name = (await again.locator('td.cell-title').innerText()).trim();
    await again.getByRole('button', { name: `Run job ${name} again` }).click();
    await expectText('#notice', 'submitted again', 'run again');
    const same = await pageApi(state.page, 'GET', `/api/v1/jobs?q=${encodeURIComponent(name)}&total=true`);
    assert.equal(Number(same.headers['x-total-count']), 2, `run again made no new job: ${same.text}`);
    assert.deepEqual(new Set(same.json.map((j) => j.status)), new Set(['cancelled', 'pending']));
    await assertSound('the jobs list after bulk actions');
  });

  step('7. deleting a job an agent runs warns; the other viewer sees it deleted live', async () => {
    need(state.apiKey, 'API key');
    const page = state.page;
    // Its own label and the highest priority: the claim takes this job and no other.
    const made = await agent('POST', '/api/v1/jobs', { title: `Held by an agent ${RUN}`, priority: 1000, requires: [`hold-${RUN}`] });
    assert.equal(made.status, 201, made.text);
    const id = made.json.id;
    const claim = await agent('POST', '/api/v1/agents/claim', { name: `node-${RUN}`, labels: [`hold-${RUN}`] });
    assert.equal(claim.json?.id, id, `the agent claimed another job: ${claim.text}`);
    const viewer = watch(await state.context.newPage(), 'viewer');
    try {
      for (const p of [page, viewer]) {
        await open(`/console/jobs/${id}`, `Held by an agent ${RUN}`, p);
        await expectText('#job-status', 'running', 'running', { page: p });
        await expectLive(p);
      }
      // The run as the events call it, and its retries.
      await expectText('#job-run', /^Run 1$/, 'the run number');
      await expectText('#job-retries', /^0$/, 'the retries');
      await page.getByRole('button', { name: `Delete job Held by an agent ${RUN}` }).click();
      await expectText('#job-actions .confirm-question', "An agent is running this job; deleting it stops the agent's work", 'the warning');
      const choices = await page.locator('#job-actions .confirm:has(.confirm-question) button').allInnerTexts();
      assert.deepEqual(choices.map((t) => t.trim()), ['Delete job', 'Keep job'], 'the two choices');
      await assertNoOverflow('the job page with the delete question');
      await shot('job-delete-warning-1280');
      await page.getByRole('button', { name: 'Delete job', exact: true }).click();
      await expectText('#notice', 'deleted', 'deleted');
      await expectText('#job-deleted', 'This job was deleted', 'the other viewer is told, live', { page: viewer });
      const enabled = await viewer.locator('main #job-actions button:enabled').count();
      assert.equal(enabled, 0, "the deleted job's buttons still work");
      await shot('job-deleted-viewer-1280', viewer);
      await assertSound('the deleted job, other viewer', viewer);
      // The agent's report of a deleted job is refused.
      const done = await agent('POST', `/api/v1/agents/jobs/${id}/complete`, { lease_token: claim.json.lease_token });
      assert.equal(done.status, 404, `complete after delete: ${done.text}`);
    } finally {
      await viewer.close().catch(() => {});
    }
  });

  step('8. no table overflows at 1280 or 390 px on any page; a screenshot of each', async () => {
    need(state.loggedIn, 'login');
    const page = state.page;
    // vera locked (wrong passwords) so that the users list shows the "Locked" badge and Unlock.
    const lockVera = async () => {
      for (let i = 0; i < 6; i++) await request('POST', '/auth/login', { body: { username: VERA, password: 'wrong-password' } });
    };
    const some = await pageApi(state.page, 'GET', '/api/v1/jobs?limit=1');
    const jobId = need(some.json?.[0]?.id, 'a job');
    const pages = [
      ['overview', '/console/overview', 'Overview', '#overview-chart-svg'],
      ['jobs', '/console/jobs', 'Jobs', '#jobs-body tr[data-job-id]'],
      ['job', `/console/jobs/${jobId}`, /./, '#job-events li'],
      ['tasks', '/console/tasks', 'Tasks', '#tasks-body tr[data-task-id]'],
      ['agents', '/console/agents', 'Agents', '#agents-body tr[data-agent-id]'],
      ['keys', '/console/keys', 'API keys', '#keys-body tr[data-key-id]'],
      ['account', '/console/account', 'Account', '#sessions-body tr[data-session-id]'],
      ['users', '/console/admin/users', 'Users', `#users-body tr[data-username="${VERA}"][data-locked="true"]`],
      ['audit', '/console/admin/audit', 'Audit log', '#audit-body tr[data-audit-id]'],
    ];
    for (const width of WIDTHS) {
      await setWidth(width);
      await lockVera();
      for (const [name, url, heading, ready] of pages) {
        await open(url, heading);
        await page.locator(ready).first().waitFor({ state: 'attached', timeout: LIVE_MS });
        if (name === 'users') {
          const row = page.locator(`#users-body tr[data-username="${VERA}"]`);
          await expectText(`#users-body tr[data-username="${VERA}"] .user-status`, 'Locked', 'the locked badge');
          assert.equal(await row.getByRole('button', { name: `Unlock ${VERA}` }).count(), 1, 'Unlock for a locked user');
        }
        if (name === 'keys') await expectText('#keys-total', /\d+ keys? · \d+ active/, 'the keys total');
        if (name === 'agents') await expectText('#agents-summary', /\d+ agents?/, 'the agents total');
        if (name === 'users') await expectText('#users-total', /\d+ users/, 'the users total');
        if (name === 'audit') await expectText('#audit-count', /entr(y|ies) shown/, 'the audit total');
        // Every time names its zone.
        const times = await page.locator('main time').allInnerTexts();
        for (const t of times.filter((x) => /\d:\d\d/.test(x))) assert.match(t, /UTC/, `${name}: a time without its zone: ${t}`);
        const m = await assertNoOverflow(`${name} at ${width} px`);
        if (width === 390 && m.tables.length) {
          const cards = await page.evaluate(() => [...document.querySelectorAll('main table.cards-narrow tbody tr')].filter((tr) => tr.getClientRects().length).map((tr) => getComputedStyle(tr).display));
          assert.ok(cards.every((d) => d === 'block'), `${name}: the rows are not cards at 390 px`);
        }
        await shot(`${name}-${width}`);
        await assertSound(`${name} at ${width} px`);
      }
    }
    await setWidth(1280);
  }, 240_000);

  step('9. two minutes of ordinary use meet no 429 (default limits); a flood does', async () => {
    need(state.loggedIn, 'login');
    const page = state.page;
    const from = state.answers.length;
    const started = Date.now();
    let actions = 0;
    // A person's pace: an action, then a pause of 2 to 4 seconds to read.
    const pause = () => sleep(2000 + Math.random() * 2000);
    const nav = async (name, heading) => {
      await page.locator('nav[aria-label="Main"]').getByRole('link', { name, exact: true }).click();
      await expectText('main h1', heading, `navigate to ${name}`);
      actions += 1;
      await pause();
    };
    let n = 0;
    while (Date.now() - started < ORDINARY_USE_MS) {
      // The second minute on a phone.
      await setWidth(Date.now() - started < ORDINARY_USE_MS / 2 ? 1280 : 390);
      await nav('Overview', 'Overview');
      await nav('Jobs', 'Jobs');
      n += 1;
      await page.fill('#job-title', `Ordinary work ${n} ${RUN}`);
      await page.getByRole('button', { name: 'Create job' }).click();
      await expectText('#notice', 'created', 'a job created');
      actions += 1;
      await pause();
      await page.locator('#job-filter-status').selectOption('pending');
      await page.waitForURL(/status=pending/);
      actions += 1;
      await pause();
      await page.locator('#jobs-body tr[data-job-id] a').first().click();
      await expectText('#job-status', /\w/, 'a job page');
      actions += 1;
      await pause();
      await nav('Tasks', 'Tasks');
      await nav('Agents', 'Agents');
    }
    const answers = state.answers.slice(from);
    const limited = answers.filter((a) => a.status === 429);
    assert.deepEqual(limited, [], 'ordinary use met the rate limiter');
    const worst = answers.reduce((w, a) => (a.remaining / a.limit < w.remaining / w.limit ? a : w), { remaining: 1, limit: 1 });
    assert.ok(answers.length > 50, `too few answers were watched: ${answers.length}`);
    // Under the session budget (1 200 per 5 minutes: 4 a second, 1 200 at once) a person at this
    // pace spends no more than the budget refills: what is left at the end is what was left at
    // the start (the earlier steps' scripted work may have used some), give or take one page
    // view's calls, and it never dips by more than a tenth of the budget. So an hour of it would
    // pass the same way.
    const first = answers[0];
    const last = answers[answers.length - 1];
    assert.ok(last.remaining >= first.remaining - 0.02 * first.limit, `the budget drains under ordinary use: ${first.remaining} → ${last.remaining} of ${first.limit}`);
    assert.ok(worst.remaining >= first.remaining - 0.1 * first.limit, `RateLimit-Remaining fell to ${worst.remaining} of ${worst.limit} (${worst.url}) from ${first.remaining}`);
    console.log(`ordinary use: ${actions} actions, ${answers.length} counted requests in ${((Date.now() - started) / 1000).toFixed(0)} s; remaining ${first.remaining} → ${last.remaining}, lowest ${worst.remaining} of ${worst.limit}`);
    await setWidth(1280);

    // A flood from the same page (a script with the cookie) meets 429.
    await open('/console/jobs', 'Jobs');
    const flood = await page.evaluate(async () => {
      let served = 0;
      let limited = null;
      const one = async () => {
        const res = await fetch('/auth/user', { credentials: 'same-origin', cache: 'no-store' });
        await res.arrayBuffer();
        if (res.status === 429) limited ??= { after: served, retryAfter: res.headers.get('Retry-After') };
        else served += 1;
      };
      while (!limited && served < 20_000) await Promise.all(Array.from({ length: 64 }, one));
      return { served, limited };
    });
    assert.ok(flood.limited, `a flood of ${flood.served} requests never met 429`);
    assert.ok(Number(flood.limited.retryAfter) >= 1, `Retry-After: ${flood.limited.retryAfter}`);
    console.log(`flood: 429 after ${flood.limited.after} requests (Retry-After ${flood.limited.retryAfter} s)`);
    // The console then shows the countdown and holds its forms. The budget refills 4 a second,
    // so the script keeps flooding (in the page, for a few seconds) while the console asks.
    await page.evaluate(() => {
      const until = Date.now() + 4000;
      const more = async () => {
        while (Date.now() < until) {
          await Promise.all(Array.from({ length: 16 }, () => fetch('/auth/user', { credentials: 'same-origin', cache: 'no-store' }).then((r) => r.arrayBuffer()).catch(() => null)));
        }
      };
      more();
    });
    await sleep(300);
    await page.getByRole('button', { name: 'Refresh' }).first().click();
    await expectText('#rate-limit-banner', /Too many requests — try again in \d+ s/, 'the banner');
    assert.equal(await page.locator('#job-form button[type="submit"]').isDisabled(), true, 'the form is not held');
    await shot('rate-limited-1280');
    state.pageErrors.length = 0; // the flood's 429s are logged as failed loads by design
  }, 300_000);
});
