// End-to-end test of the browser console (/console/), in headless Chromium, against the service
// in PRODUCTION mode over HTTPS, under its real Content-Security-Policy.
//
//   node --test tests/browser/console.test.mjs        (or .ci/browser-tests for every browser test)
//
// Set-up: a throwaway self-signed certificate for 127.0.0.1 (openssl CLI) in a temporary
// directory, `$KYROS_BIN serve` (default target/debug/kyros) with ENVIRONMENT=production,
// TLS_CERT_FILE/TLS_KEY_FILE, a random SECRET_KEY and a first superuser, on a free loopback port.
// The browser context ignores the certificate error of that one local certificate but does NOT
// bypass CSP; every CSP violation (securitypolicyviolation events and console reports) fails the
// test. Node itself talks to the service as an agent with the certificate as its only CA.
//
// What a person does and sees, in order:
//   1. /console/ without a session lands on the login page; a wrong password shows the API's
//      message; the right one lands on the jobs page, live connection on.
//   2. Account: enrol TOTP (QR image rendered, secret read from the page, code computed here),
//      recovery codes shown, status on; log out; log in again through the code step (a wrong
//      code is refused on the page first).
//   3. API keys: create "agent-1" (jobs:read + jobs:claim), the secret is shown once.
//   4. Jobs: create a job in the form; follow it on its detail page and in a second tab's list
//      while node claims and completes it with the key: "running" and "completed" appear live,
//      with their events.
//  4b. A real `kyros agent` (the same binary, its own key made through the API) runs a job the
//      page shows: its name, the progress bar, the output lines as a terminal (stderr marked,
//      markup as text), the exit code and the run's heartbeats, all live; the output downloads
//      as a .txt; the agents page then shows the agent with its version and its completed run.
//   5. Agents lists the agent; Tasks creates and lists a task; Users lists the admin; the audit
//      log shows the MFA and key events, and its event filter works.
//   6. Revoking the key in the page makes the agent's next claim a 401.
//   7. Account: the current session is marked; a wrong current password is refused on the page;
//      the password change works and the console stays signed in (also after a reload).
//   8. Node ends every session of the account (bearer login with a recovery code, logout-all):
//      with no request of its own, the page learns it from the WebSocket's 1008 close and shows
//      the login page ("Your session has ended").
//   9. Sign in with a recovery code: back on the page that was open; log out; a console page
//      then shows the login page again.
//  10. Hammering the login form with wrong passwords ends in 429: the banner shows Retry-After
//      seconds counting down and the submit button is disabled.
// A full-page screenshot of every page goes to test-output/browser/console-<name>.png (and the
// real agent's job and agents pages to test-output/console-job-output.png, console-agents.png).
// Waits are waits for conditions (never timing assertions).

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import {
  KYROS_BIN, OUTPUT_DIR, SHOTS_DIR,
  assertPageSound, assertTools, baseEnv, startProductionService, consoleExpectations, diagnostics, launchBrowser,
  need, nodeRequest, pageApi, recordCsp, screenshot, sleep, spawnLogged, stepper, stopService,
  watchPage,
} from './harness.mjs';

const ADMIN = 'console-admin';
const ADMIN_EMAIL = 'console-admin@example.org';
const PASSWORD = crypto.randomBytes(18).toString('base64url');
const NEW_PASSWORD = crypto.randomBytes(18).toString('base64url');
const SECRET_KEY = crypto.randomBytes(32).toString('hex');
const RUN = crypto.randomBytes(3).toString('hex');
const KEY_NAME = 'agent-1';
const JOB_TITLE = `Render report ${RUN}`;
const TASK_TITLE = `Review the release notes ${RUN}`;
const AGENT_NAME = `builder-${RUN}`;
const AGENT_JOB_TITLE = `Build with a real agent ${RUN}`;
const IMG_LINE = '<img src=x onerror=alert(1)>';
// What the agent runs: stdout lines, a progress report (not output), markup, a stderr line.
const AGENT_SCRIPT = `echo start; echo "::progress::0.5 halfway"; echo "${IMG_LINE}"; echo oops >&2; sleep 2; echo done`;
const LIVE_MS = 10_000; // how long to wait for something to appear live

// ---------------------------------------------------------------------------------------------
// Shared state of the run.

const state = {
  tmpDir: null,
  cert: null,
  service: null,
  serviceLog: [],
  certFile: null,
  agent: null, // the `kyros agent` child process of step 4b
  agentLog: [],
  port: null,
  base: null, // https://127.0.0.1:<port>
  browser: null,
  context: null,
  page: null,
  pageLog: [],
  cspConsole: [], // console messages that report a CSP violation
  pageErrors: [], // uncaught exceptions in the pages
  started: Date.now(),
  // Filled by the steps:
  loggedIn: false,
  mfaSecret: null,
  mfaStep: null, // the TOTP step the server accepted last
  recoveryCodes: [],
  apiKey: null,
  jobId: null,
  revoked: false,
  loggedOut: false,
};

// ---------------------------------------------------------------------------------------------
// The harness (harness.mjs), bound to this run.

const report = () =>
  diagnostics({
    base: state.base,
    dir: state.tmpDir,
    page: state.page,
    pageLog: state.pageLog,
    extra: [['agent log', state.agentLog, 40]],
    serviceLog: state.serviceLog,
  });

/** A full-page screenshot to test-output/browser/console-<name>.png (or to `dir`). */
const shot = (name, page = state.page, dir = SHOTS_DIR) => screenshot(page, `console-${name}`, { dir, log: state.pageLog });

/** A test step that prints the diagnostics (and a screenshot of the failure) when it fails. */
const step = stepper({
  diagnostics: report,
  failureShot: async (name) => {
    if (state.page) await shot(`failed-${name.slice(0, 2).replace(/\W/g, '')}`);
  },
});

/** An HTTPS request from node to the service that trusts only the run's own certificate. */
const request = (method, urlPath, opts) => nodeRequest({ base: state.base, ca: state.cert }, method, urlPath, opts);

const watch = (page, label) => watchPage(page, label, state);

/**
 * The page as it stands is sound: no CSP violation so far (neither as an event in the document
 * nor as a console report), no uncaught exception, no inline style attribute, one <main> with one
 * h1, and every form control with a label.
 */
const assertNoCsp = (where, page = state.page) => assertPageSound(page, where, state, { main: true });

const { expectText, expectVisible, expectUrl, expectLive } = consoleExpectations(() => state.page, LIVE_MS);

// ---------------------------------------------------------------------------------------------
// Helpers: TOTP.

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`not base32: ${c}`);
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 TOTP (HMAC-SHA1, 6 digits) of a 30-second step. */
function totp(key, stepNumber) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(stepNumber));
  const mac = crypto.createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

const nowStep = () => Math.floor(Date.now() / 1000 / 30);

// ---------------------------------------------------------------------------------------------
// Helpers: the console.

/** The page's heading and document title. */
async function expectPage(heading, what, page = state.page) {
  await expectText('main h1', heading, what, { page });
  const title = await page.title();
  assert.match(title, /Kyros Console$/, `${what}: document.title ${JSON.stringify(title)}`);
}

async function openNav(name, urlPattern, heading) {
  const link = state.page.locator('nav[aria-label="Main"]').getByRole('link', { name, exact: true });
  await link.click();
  await expectUrl(urlPattern, `navigate to ${name}`);
  await expectPage(heading, `the ${name} page`);
  assert.equal(await link.getAttribute('aria-current'), 'page', `the ${name} nav link is not marked aria-current`);
}

async function login(username, password) {
  await expectVisible('#login-username', 'the login form');
  await state.page.fill('#login-username', username);
  await state.page.fill('#login-password', password);
  await state.page.getByRole('button', { name: 'Sign in' }).click();
}

// ---------------------------------------------------------------------------------------------

describe('browser console (production mode, HTTPS, real CSP)', { timeout: 240_000 }, () => {
  before(async () => {
    try {
      assertTools();
      // The TOTP helper against RFC 6238's SHA-1 vector (T = 59 s): a wrong helper would make the
      // MFA steps fail for the wrong reason.
      assert.equal(totp(Buffer.from('12345678901234567890'), 1), '287082', 'TOTP helper');
      assert.equal(base32Decode('MZXW6YTBOI').toString(), 'foobar', 'base32 helper');

      const served = await startProductionService({
        prefix: 'kyros-console-',
        secret: SECRET_KEY,
        admin: ADMIN,
        email: ADMIN_EMAIL,
        password: PASSWORD,
        // About a dozen logins, codes and password checks happen within seconds; the last step
        // then exhausts this budget on purpose.
        extra: { AUTH_RATE_LIMIT_REQUESTS: '20' },
        log: state.serviceLog,
      });
      Object.assign(state, {
        tmpDir: served.tmpDir,
        cert: served.cert,
        certFile: served.certFile,
        port: served.port,
        base: served.base,
        service: served.service,
      });

      state.browser = await launchBrowser();
      state.context = await state.browser.newContext({
        ignoreHTTPSErrors: true, // the run's own self-signed certificate; CSP is NOT bypassed
        viewport: { width: 1280, height: 800 },
      });
      await recordCsp(state.context);
      state.page = watch(await state.context.newPage(), 'console');
    } catch (err) {
      console.error(`\nset-up failed: ${err?.stack ?? err}${report()}`);
      throw err;
    }
  });

  after(async () => {
    await stopService(state.agent);
    await state.browser?.close().catch(() => {});
    await stopService(state.service);
    if (state.tmpDir) fs.rmSync(state.tmpDir, { recursive: true, force: true });
    console.log(`console test: ${((Date.now() - state.started) / 1000).toFixed(1)} s in all`);
  });

  step('1. /console/ without a session shows the login page; signing in lands on the jobs', async () => {
    const page = state.page;
    const res = await page.goto(`${state.base}/console/`);
    assert.equal(res?.status(), 200, 'GET /console/');
    const csp = res.headers()['content-security-policy'] ?? '';
    assert.match(csp, /script-src 'self';/, `the console is not served with the production CSP: ${csp}`);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `the console CSP allows inline code: ${csp}`);
    await expectUrl(/\/console\/login\?next=%2Fconsole%2F/, 'unauthenticated visit');
    await expectPage('Sign in to Kyros', 'login page');
    // The assets are under the content hash of the whole set (the modules import each other
    // relatively, so they share it).
    const script = await page.locator('script[type="module"]').getAttribute('src');
    const bundle = /^\/console\/assets\/([0-9a-f]{12})\/main\.js$/.exec(script ?? '')?.[1];
    assert.ok(bundle, `script src ${script}`);
    const css = await page.locator('link[rel="stylesheet"]').getAttribute('href');
    assert.equal(css, `/console/assets/${bundle}/console.css`, `stylesheet href ${css}`);
    const modules = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname).filter((p) => p.endsWith('.js')));
    assert.ok(modules.length > 5 && modules.every((p) => p.startsWith(`/console/assets/${bundle}/`)), `modules loaded: ${modules}`);
    assert.ok(await page.locator('.skip-link[href="#main"]').count(), 'no skip link');
    assert.equal(await page.locator('#nav').isVisible(), false, 'the navigation is shown before login');
    // The stylesheet applied (no inline styles allowed: the skip link is moved off screen by CSS).
    const skipTop = await page.locator('.skip-link').evaluate((el) => el.getBoundingClientRect().top);
    assert.ok(skipTop < 0, `the skip link is not hidden off screen (top ${skipTop}): the stylesheet did not apply`);
    await shot('login');

    await login(ADMIN, `${PASSWORD}-wrong`);
    await expectText('#login-form [role="alert"]', 'Incorrect username or password', 'wrong password');
    await assertNoCsp('the login page');

    await login(ADMIN, PASSWORD);
    await expectUrl(/\/console\/jobs$/, 'after login');
    await expectPage('Jobs', 'jobs page after login');
    await expectText('#whoami-name', ADMIN, 'signed-in user in the header');
    await expectText('#whoami-role', 'admin', 'role in the header');
    await expectLive();
    const cookies = await state.context.cookies(state.base);
    const session = cookies.find((c) => c.name === 'kyros_session');
    assert.ok(session?.httpOnly && session?.secure, `kyros_session must be HttpOnly and Secure: ${JSON.stringify(session)}`);
    const storage = await page.evaluate(() => localStorage.length + sessionStorage.length);
    assert.equal(storage, 0, 'the console stored something in local/session storage');
    assert.equal(await page.locator('#nav [data-admin]').first().isVisible(), true, 'admin entries hidden for an admin');
    state.loggedIn = true;
    await assertNoCsp('the jobs page');
  });

  step('2. enrol two-step verification, log out, log in again with a TOTP code', async () => {
    need(state.loggedIn, 'login');
    const page = state.page;
    await openNav('Account', /\/console\/account$/, 'Account');
    await expectText('#mfa-status', /is off/, 'MFA status before enrolment');
    await page.locator('#mfa-enroll').click();
    await expectVisible('#mfa-qr', 'QR code');
    // The data: URL image really decoded under the CSP (img-src 'self' data:).
    await page.waitForFunction(() => {
      const img = document.querySelector('#mfa-qr');
      return img && img.complete && img.naturalWidth > 0;
    }, null, { timeout: LIVE_MS });
    const secret = (await page.locator('#mfa-secret').innerText()).replace(/\s+/g, '');
    assert.match(secret, /^[A-Z2-7]{16,}$/, `MFA secret on the page: ${secret}`);
    state.mfaSecret = secret;
    await shot('account-mfa-enrol');
    const key = base32Decode(secret);
    const stepNow = nowStep();
    await page.fill('#mfa-confirm-code', totp(key, stepNow));
    await page.locator('#mfa-confirm-form button[type="submit"]').click();
    await expectVisible('#recovery-codes', 'recovery codes');
    assert.equal(await page.locator('#recovery-codes li').count(), 10, 'number of recovery codes shown');
    const firstCode = await page.locator('#recovery-codes li').first().innerText();
    assert.match(firstCode, /^[0-9a-f]{5}-[0-9a-f]{5}$/, `recovery code format: ${firstCode}`);
    state.recoveryCodes = await page.locator('#recovery-codes li').allInnerTexts();
    await expectText('#mfa-status', /is on/, 'MFA status after confirmation');
    state.mfaStep = stepNow;
    await shot('account-mfa');
    await assertNoCsp('the account page (MFA enrolment)');

    await page.locator('#logout-button').click();
    await expectUrl(/\/console\/login$/, 'after logout');
    await expectText('#notice', 'You have been signed out', 'logout notice');
    await login(ADMIN, PASSWORD);
    await expectPage('Two-step verification', 'the code step');
    const codeInput = await expectVisible('#mfa-code', 'the code input');
    assert.equal(await codeInput.getAttribute('inputmode'), 'numeric', 'code input inputmode');
    assert.equal(await codeInput.getAttribute('autocomplete'), 'one-time-code', 'code input autocomplete');
    assert.equal(await page.locator('label[for="mfa-code"]').count(), 1, 'the code input has no label');
    await expectVisible('#use-recovery', 'the recovery-code option');
    await shot('login-mfa');

    // A wrong code first: refused with the API's message, still on the code step.
    const valid = new Set([-1, 0, 1, 2].map((d) => totp(key, stepNow + d)));
    let wrong = '123456';
    while (valid.has(wrong)) wrong = String((Number(wrong) + 1) % 1_000_000).padStart(6, '0');
    await page.fill('#mfa-code', wrong);
    await page.getByRole('button', { name: 'Verify' }).click();
    await expectText('#mfa-form [role="alert"]', 'Invalid verification code', 'wrong code');

    // The confirmation consumed its step: use a later one (the server accepts one step of skew).
    const loginStep = Math.max(state.mfaStep + 1, nowStep());
    await page.fill('#mfa-code', totp(key, loginStep));
    await page.getByRole('button', { name: 'Verify' }).click();
    await expectUrl(/\/console\/jobs$/, 'after the code step');
    await expectPage('Jobs', 'jobs page after the MFA login');
    state.mfaStep = loginStep;
    await expectLive();
    await assertNoCsp('the MFA login');
  });

  step('3. create an API key for an agent: the secret is shown once', async () => {
    need(state.loggedIn, 'login');
    const page = state.page;
    await openNav('API keys', /\/console\/keys$/, 'API keys');
    await page.fill('#key-name', KEY_NAME);
    await page.check('#scope-jobs-read');
    await page.check('#scope-jobs-claim');
    await page.getByRole('button', { name: 'Create key' }).click();
    const secretEl = await expectVisible('#new-key-secret', 'the new key');
    const key = (await secretEl.innerText()).trim();
    assert.match(key, /^kyr_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/, `key shown: ${key}`);
    state.apiKey = key;
    const row = `#keys-body tr[data-key-name="${KEY_NAME}"]`;
    await expectText(`${row} .key-status`, 'active', 'the new key in the list');
    await expectText(row, 'jobs:claim', 'the key scopes in the list');
    assert.ok(!page.url().includes(key), 'the key is in the URL');
    await shot('keys');
    await page.getByRole('button', { name: 'I have stored it' }).click();
    await page.locator('#new-key').waitFor({ state: 'hidden' });
    const body = await page.evaluate(() => document.body.textContent);
    assert.ok(!body.includes(key), 'the key secret is still in the page after it was dismissed');
    await assertNoCsp('the API keys page');
  });

  step('4. create a job and follow it live while an agent claims and completes it', async () => {
    need(state.loggedIn, 'login');
    const apiKey = need(state.apiKey, 'API key');
    const page = state.page;
    await openNav('Jobs', /\/console\/jobs$/, 'Jobs');
    await page.fill('#job-title', JOB_TITLE);
    await page.fill('#job-description', 'Created by the console end-to-end test.');
    await page.fill('#job-priority', '5');
    await page.fill('#job-metadata', '{"suite": "console"}');
    await page.getByRole('button', { name: 'Create job' }).click();
    await expectText('#notice', 'created', 'job created notice');
    const row = page.locator('#jobs-body tr[data-job-id]').filter({ hasText: JOB_TITLE });
    await row.first().waitFor({ state: 'visible', timeout: LIVE_MS });
    const jobId = await row.first().getAttribute('data-job-id');
    assert.match(jobId ?? '', /^[0-9a-f-]{36}$/, `job id: ${jobId}`);
    state.jobId = jobId;
    const rowSel = `#jobs-body tr[data-job-id="${jobId}"]`;
    await expectText(`${rowSel} .job-status`, 'pending', 'the new job in the list');
    await shot('jobs');

    // A second tab keeps the list open, to see it change live.
    const listPage = watch(await state.context.newPage(), 'jobs-list-tab');
    try {
      await listPage.goto(`${state.base}/console/jobs`);
      await expectPage('Jobs', 'second tab', listPage);
      await expectText(`${rowSel} .job-status`, 'pending', 'job in the second tab', { page: listPage });
      await expectLive(listPage);

      await page.locator(`${rowSel} a`).click();
      await expectUrl(new RegExp(`/console/jobs/${jobId}$`), 'job detail');
      await expectText('main h1', JOB_TITLE, 'job detail heading');
      await expectText('#job-status', 'pending', 'job detail status');
      await expectVisible('#job-events li[data-event="job_created"]', 'job_created in the event history');
      assert.match(await page.title(), new RegExp(`${JOB_TITLE}.*Kyros Console`), 'job detail title');
      await expectLive();

      // The agent (node, with the key; not the browser) claims the job.
      const claim = await request('POST', '/api/v1/agents/claim', { headers: { 'X-API-Key': apiKey } });
      assert.equal(claim.status, 200, `claim: ${claim.status} ${claim.text}`);
      assert.equal(claim.json?.id, jobId, `the agent claimed another job: ${claim.text}`);
      assert.equal(claim.json?.status, 'running', `claimed job status: ${claim.text}`);

      await expectText('#job-status', 'running', 'job detail shows running live (no reload)');
      await expectVisible('#job-events li[data-event="job_claimed"]', 'job_claimed appears live in the events');
      await expectText(`${rowSel} .job-status`, 'running', 'the list in the second tab shows running live', { page: listPage });
      await shot('job-running');

      const done = await request('POST', `/api/v1/agents/jobs/${jobId}/complete`, {
        headers: { 'X-API-Key': apiKey },
        body: { result: { pages: 42, ok: true }, lease_token: claim.json?.lease_token },
      });
      assert.equal(done.status, 200, `complete: ${done.status} ${done.text}`);
      assert.equal(done.json?.status, 'completed', `completed job: ${done.text}`);

      await expectText('#job-status', 'completed', 'job detail shows completed live');
      await expectVisible('#job-events li[data-event="job_completed"]', 'job_completed appears live in the events');
      await expectText('#job-result', '42', 'the result on the detail page');
      await expectText(`${rowSel} .job-status`, 'completed', 'the list in the second tab shows completed live', { page: listPage });
      const order = await page.locator('#job-events li').evaluateAll((lis) => lis.map((li) => li.dataset.event));
      assert.deepEqual(order, ['job_created', 'job_claimed', 'job_completed'], `event list: ${order}`);
      assert.equal(await page.evaluate(() => performance.getEntriesByType('navigation').length), 1, 'the page reloaded');
      await shot('job-detail');
      await assertNoCsp('the jobs list tab', listPage);
    } finally {
      await listPage.close().catch(() => {});
    }
    await assertNoCsp('the job detail page');

    // A second job, cancelled from the list (PUT …/status with the CSRF header, after a confirmation).
    await page.locator('main a', { hasText: 'All jobs' }).click();
    await expectPage('Jobs', 'back to the jobs list');
    const cancelTitle = `Cancel me ${RUN}`;
    await page.fill('#job-title', cancelTitle);
    await page.getByRole('button', { name: 'Create job' }).click();
    const cancelRow = page.locator('#jobs-body tr[data-job-id]').filter({ hasText: cancelTitle });
    await cancelRow.locator('.job-status', { hasText: 'pending' }).waitFor({ timeout: LIVE_MS });
    await cancelRow.getByRole('button', { name: `Cancel job ${cancelTitle}` }).click();
    await cancelRow.getByRole('button', { name: 'Cancel job', exact: true }).click();
    await cancelRow.locator('.job-status', { hasText: 'cancelled' }).waitFor({ timeout: LIVE_MS });
    await expectText('#notice', 'cancelled', 'cancellation notice');
    await assertNoCsp('the jobs page (cancel)');
  });

  step('4b. a real kyros agent runs a job: agent, progress, output, exit code live; then the agents page', async () => {
    need(state.loggedIn, 'login');
    const page = state.page;
    const version = /(\d+\.\d+\.\d+\S*)/.exec(execFileSync(KYROS_BIN, ['--version'], { encoding: 'utf8' }))?.[1];
    assert.ok(version, 'kyros --version');

    // The admin makes the agent's key and submits the job through the API (the page's session).
    await openNav('Jobs', /\/console\/jobs$/, 'Jobs');
    const key = await pageApi(state.page, 'POST', '/api/v1/api-keys', { name: `agent-${RUN}`, scopes: ['jobs:read', 'jobs:claim'] });
    assert.equal(key.status, 201, `create the agent's key: ${key.status} ${key.text}`);
    assert.ok(key.json?.key, `no key in ${key.text}`);
    const created = await pageApi(state.page, 'POST', '/api/v1/jobs', { title: AGENT_JOB_TITLE, requires: ['linux'] });
    assert.equal(created.status, 201, `submit the job: ${created.status} ${created.text}`);
    const jobId = created.json?.id;
    assert.match(jobId ?? '', /^[0-9a-f-]{36}$/, `job id: ${created.text}`);

    // The job page, before any agent runs.
    await page.locator('#jobs-body tr[data-job-id]').filter({ hasText: AGENT_JOB_TITLE }).locator('a').click();
    await expectUrl(new RegExp(`/console/jobs/${jobId}$`), 'the agent job page');
    await expectText('main h1', AGENT_JOB_TITLE, 'the agent job heading');
    await expectText('#job-status', 'pending', 'pending before the agent starts');
    await expectText('#job-requires', 'linux', 'the required labels');
    await expectText('#job-output-empty', 'No output yet', 'the empty output panel');
    await expectLive();
    // Marks the document (a reload would lose it) and records every lease end and heartbeat the
    // page shows, to see them change live.
    await page.evaluate(() => {
      window.__sameDocument = true;
      window.__leases = new Set();
      window.__beats = new Set();
      const card = document.querySelector('#job-run-card');
      const note = () => {
        const lease = document.querySelector('#job-lease time')?.getAttribute('datetime');
        const beat = document.querySelector('#job-heartbeat time')?.getAttribute('datetime');
        if (lease) window.__leases.add(lease);
        if (beat) window.__beats.add(beat);
      };
      new MutationObserver(note).observe(card, { subtree: true, childList: true, characterData: true, attributes: true });
    });

    // The real agent, from the same binary.
    const agentArgs = ['agent', '--server', state.base, '--name', AGENT_NAME, '--labels', 'linux', '--poll-secs', '0.2', '--heartbeat-secs', '0.5', '--', 'sh', '-c', AGENT_SCRIPT];
    state.agent = spawnLogged(KYROS_BIN, agentArgs, {
      cwd: state.tmpDir,
      env: {
        ...baseEnv(state.tmpDir),
        KYROS_AGENT_KEY: key.json.key,
        SSL_CERT_FILE: state.certFile, // the run's own certificate is the agent's only CA
        LOG_LEVEL: 'info',
      },
      log: state.agentLog,
      name: 'agent',
    });
    try {
      await expectText('#job-agent', AGENT_NAME, 'the agent by name, live');
      await expectText('#job-run', 'Run 1', 'the run number');
      // The progress bar at 50 % with the message.
      try {
        await page.waitForFunction(() => document.querySelector('#job-progress')?.value === 0.5 && /50%.*halfway/.test(document.querySelector('#job-progress-text')?.textContent ?? ''), null, { timeout: LIVE_MS });
      } catch {
        assert.fail(`progress: ${await page.locator('#job-run-card').innerText()}`);
      }
      assert.equal(await page.locator('#job-progress').getAttribute('value'), '0.5', 'the progress element value');
      assert.equal(await page.locator('#job-progress').getAttribute('aria-labelledby'), 'job-progress-label', 'the progress bar has no label');

      // The output: every line, in order, as text; stderr marked; the progress report not output.
      await expectText('#job-output .term-line', /^\s*done\s*$/, 'the last output line, live');
      const lines = await page.locator('#job-output .term-line').evaluateAll((els) =>
        els.map((el) => ({ stream: el.dataset.stream, cls: el.className, seq: Number(el.dataset.seq), text: el.querySelector('.term-text').textContent })),
      );
      const stdout = lines.filter((l) => l.stream === 'stdout').map((l) => l.text);
      const stderr = lines.filter((l) => l.stream === 'stderr');
      assert.deepEqual(stdout, ['start', IMG_LINE, 'done'], `stdout lines: ${JSON.stringify(lines)}`);
      assert.deepEqual(stderr.map((l) => l.text), ['oops'], `stderr lines: ${JSON.stringify(lines)}`);
      assert.match(stderr[0].cls, /\bterm-stderr\b/, 'the stderr line is not marked');
      assert.deepEqual(lines.map((l) => l.seq), lines.map((l) => l.seq).toSorted((a, b) => a - b), 'lines out of sequence');
      assert.equal(new Set(lines.map((l) => l.seq)).size, lines.length, 'a line shown twice');
      assert.equal(await page.locator('#job-output img, main img').count(), 0, 'markup of the output became an element');
      const colours = await page.locator('#job-output .term-line').evaluateAll((els) => els.map((el) => getComputedStyle(el.querySelector('.term-text')).color));
      const stderrIndex = lines.findIndex((l) => l.stream === 'stderr');
      const stdoutIndex = lines.findIndex((l) => l.stream === 'stdout');
      assert.notEqual(colours[stderrIndex], colours[stdoutIndex], 'stderr has the colour of stdout');
      const panel = await page.locator('#job-output').evaluate((el) => ({ font: getComputedStyle(el).fontFamily, bg: getComputedStyle(el).backgroundColor }));
      assert.match(panel.font, /mono/i, `the output panel font: ${panel.font}`);
      assert.equal(await page.locator('#job-output-follow').isChecked(), true, 'Follow is on by default');

      // The end of the run, live: completed, exit code 0, the result's output tail.
      await expectText('#job-status', 'completed', 'completed, live');
      await expectText('#job-exit-code', /^0$/, 'the exit code');
      await expectText('#job-result .term-line', 'done', 'the result: the last lines of the output');
      assert.equal(await page.locator('#job-result img').count(), 0, 'markup of the result became an element');
      await expectText('#job-duration', /\d+ s/, 'the run duration');
      await expectVisible('#job-events li[data-event="job_claimed"]', 'job_claimed in the events');
      await expectVisible('#job-events li[data-event="job_completed"]', 'job_completed in the events');
      assert.equal(await page.locator('#job-events li[data-event="job_output"], #job-events li[data-event="job_progress"]').count(), 0, 'heartbeats and output in the event list');
      const seen = await page.evaluate(() => ({ leases: [...window.__leases], beats: [...window.__beats], same: window.__sameDocument === true }));
      assert.ok(seen.same, 'the page reloaded');
      assert.ok(seen.leases.length >= 2, `the lease end did not change live: ${JSON.stringify(seen.leases)}`);
      assert.ok(seen.beats.length >= 2, `the last heartbeat did not change live: ${JSON.stringify(seen.beats)}`);

      // The whole output as a file.
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: LIVE_MS }), page.locator('#job-output-download').click()]);
      assert.match(download.suggestedFilename(), /\.txt$/, `download name ${download.suggestedFilename()}`);
      const saved = fs.readFileSync(await download.path(), 'utf8');
      assert.deepEqual(saved.split('\n').filter((l) => l !== 'oops'), ['start', IMG_LINE, 'done', ''], `downloaded output: ${JSON.stringify(saved)}`);
      assert.ok(saved.split('\n').includes('oops'), `downloaded output without stderr: ${JSON.stringify(saved)}`);

      await page.locator('#job-output').scrollIntoViewIfNeeded();
      await shot('job-output', page, OUTPUT_DIR);
      await assertNoCsp('the job page with a real agent');

      // The agents page: the agent with its version, labels and completed run.
      await openNav('Agents', /\/console\/agents$/, 'Agents');
      const row = `#agents-body tr[data-agent-name="${AGENT_NAME}"]`;
      await expectText(row, AGENT_NAME, 'the agent on the agents page');
      await expectText(`${row} .agent-about`, version, 'the agent version');
      await expectText(`${row} .agent-runs-count`, '1 completed', 'the completed run');
      await expectText(`${row} .agent-rate`, '100%', 'the success rate');
      await expectText(`${row} .agent-labels`, 'linux', 'the agent labels');
      await expectText(`${row} .agent-health`, /idle|active/, 'the agent is online');
      await expectText(`${row} .agent-seen`, /ago|just now/, 'last seen');
      await shot('agents', page, OUTPUT_DIR);
      await assertNoCsp('the agents page with a real agent');
    } finally {
      await stopService(state.agent);
    }
  });

  step('5. agents, tasks, users and the audit log', async () => {
    need(state.loggedIn, 'login');
    need(state.apiKey, 'API key');
    const page = state.page;

    await openNav('Agents', /\/console\/agents$/, 'Agents');
    const agentRow = page.locator('#agents-body tr[data-agent-id]').filter({ hasText: KEY_NAME });
    await agentRow.first().waitFor({ state: 'visible', timeout: LIVE_MS });
    await expectText('#agents-body tr[data-agent-id]', /idle|active/, 'the agent is online');
    await shot('agents');
    await assertNoCsp('the agents page');

    await openNav('Tasks', /\/console\/tasks$/, 'Tasks');
    await page.fill('#task-title', TASK_TITLE);
    await page.fill('#task-description', 'Check the wording before Friday.');
    await page.getByRole('button', { name: 'Add task' }).click();
    await expectText('#tasks-body tr[data-task-id]', TASK_TITLE, 'the new task in the list');
    await shot('tasks');
    await assertNoCsp('the tasks page');

    await openNav('Users', /\/console\/admin\/users$/, 'Users');
    const me = `#users-body tr[data-username="${ADMIN}"]`;
    await expectText(me, '(you)', 'the admin in the user list');
    assert.equal(await page.locator(`${me} select`).inputValue(), 'admin', 'the admin role');
    assert.equal(await page.locator(`${me} select`).isDisabled(), true, 'an admin can change their own role in the UI');
    await shot('admin-users');
    await assertNoCsp('the users page');

    await openNav('Audit log', /\/console\/admin\/audit$/, 'Audit log');
    // Audit rows are written in the background: refresh until they are there.
    const deadline = Date.now() + LIVE_MS;
    while (!(await page.locator('#audit-body tr[data-event="mfa.enabled"]').count())) {
      assert.ok(Date.now() < deadline, 'mfa.enabled did not appear in the audit log');
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.locator('#audit-body tr').first().waitFor();
      await sleep(200);
    }
    await expectVisible('#audit-body tr[data-event="apikey.created"]', 'apikey.created in the audit log');
    await shot('admin-audit');

    // The event filter lists the events the service knows (GET /api/v1/admin/audit/events).
    await page.locator('#audit-event[data-source="service"]').waitFor({ state: 'attached', timeout: LIVE_MS });
    await page.locator('#audit-event').selectOption('apikey.created');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expectUrl(/\/console\/admin\/audit\?event=apikey\.created$/, 'audit filter in the URL');
    await expectText('#audit-body tr[data-event]', 'apikey.created', 'filtered audit log');
    const events = await page.locator('#audit-body tr[data-audit-id]').evaluateAll((rows) => rows.map((r) => r.dataset.event));
    assert.ok(events.length >= 1, 'no rows after filtering');
    assert.deepEqual([...new Set(events)], ['apikey.created'], `the filter let other events through: ${events}`);
    await expectText('#audit-body tr[data-event]', KEY_NAME, 'the audit details name the key');
    await shot('admin-audit-filtered');
    await assertNoCsp('the audit page');
  });

  step('6. revoking the key in the page locks the agent out', async () => {
    need(state.loggedIn, 'login');
    const apiKey = need(state.apiKey, 'API key');
    const page = state.page;
    await openNav('API keys', /\/console\/keys$/, 'API keys');
    const row = `#keys-body tr[data-key-name="${KEY_NAME}"]`;
    await expectText(`${row} .key-status`, 'active', 'the key before revocation');
    await page.locator(row).getByRole('button', { name: `Revoke key ${KEY_NAME}` }).click();
    await page.locator(row).getByRole('button', { name: 'Revoke key', exact: true }).click();
    await expectText(`${row} .key-status`, 'revoked', 'the key after revocation');
    await expectText('#notice', 'revoked', 'revocation notice');
    const claim = await request('POST', '/api/v1/agents/claim', { headers: { 'X-API-Key': apiKey } });
    assert.equal(claim.status, 401, `claim with the revoked key: ${claim.status} ${claim.text}`);
    state.revoked = true;
    await shot('keys-revoked');
    await assertNoCsp('the API keys page (revocation)');
  });

  step('7. sessions list and password change (the console stays signed in)', async () => {
    need(state.loggedIn, 'login');
    const page = state.page;
    await openNav('Account', /\/console\/account$/, 'Account');
    await expectText('#sessions-body tr[data-current="true"]', 'This session', 'the current session is marked');
    assert.equal(await page.locator('#sessions-body tr[data-current="true"]').count(), 1, 'current sessions');

    // A wrong current password: the API's 403 message next to the form.
    await page.fill('#pw-current', `${PASSWORD}-nope`);
    await page.fill('#pw-new', NEW_PASSWORD);
    await page.fill('#pw-confirm', NEW_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    await expectText('#password-form [role="alert"]', 'The current password is incorrect', 'wrong current password');

    await page.fill('#pw-current', PASSWORD);
    await page.fill('#pw-new', NEW_PASSWORD);
    await page.fill('#pw-confirm', NEW_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    await expectText('#notice', 'Password changed', 'password changed notice');
    await expectText('#sessions-body tr[data-current="true"]', 'This session', 'a current session after the change');
    assert.equal(await page.locator('#sessions-body tr').count(), 1, 'other sessions survived the password change');
    await expectLive();
    await shot('account');

    // Still signed in after a reload (the new session cookie works).
    await page.reload();
    await expectUrl(/\/console\/account$/, 'reload after the password change');
    await expectPage('Account', 'account page after reload');
    await expectText('#mfa-status', /is on/, 'MFA still on');
    await expectLive();
    await assertNoCsp('the account page');
  });

  step('8. the session revoked elsewhere: the live connection closes (1008) and the console shows the login', async () => {
    need(state.loggedIn, 'login');
    const recovery = need(state.recoveryCodes[0], 'recovery codes');
    const page = state.page;
    await expectLive();
    // Node signs in as the same admin with a bearer token (password + recovery code) and ends
    // every session of the account. The page makes no request of its own meanwhile: only the
    // WebSocket's close (1008) can tell it.
    const first = await request('POST', '/auth/login', { body: { username: ADMIN, password: NEW_PASSWORD } });
    assert.equal(first.status, 200, `bearer login: ${first.status} ${first.text}`);
    assert.equal(first.json?.mfa_required, true, `bearer login without MFA challenge: ${first.text}`);
    const verified = await request('POST', '/auth/mfa/verify', { body: { mfa_token: first.json.mfa_token, recovery_code: recovery } });
    assert.equal(verified.status, 200, `MFA verify with a recovery code: ${verified.status} ${verified.text}`);
    const token = verified.json?.access_token;
    assert.ok(token, `no access token: ${verified.text}`);
    const all = await request('POST', '/auth/logout-all', { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(all.status, 200, `logout-all: ${all.status} ${all.text}`);
    try {
      await page.waitForURL(/\/console\/login\?next=%2Fconsole%2Faccount$/, { timeout: 20_000 });
    } catch {
      assert.fail(`the console did not notice the revoked session (URL ${page.url()}, connection ${await page.locator('#conn-text').innerText()})`);
    }
    await expectText('#notice', 'Your session has ended', 'session ended notice');
    await expectPage('Sign in to Kyros', 'login page after the revocation');
    assert.equal(await page.locator('#nav').isVisible(), false, 'navigation visible after the revocation');
    state.loggedIn = false;
    await shot('session-ended');
    await assertNoCsp('the login page after the revocation');
  });

  step('9. sign in with a recovery code (back to the page asked for), then log out', async () => {
    const recovery = need(state.recoveryCodes[1], 'recovery codes');
    const page = state.page;
    await login(ADMIN, NEW_PASSWORD);
    await expectVisible('#mfa-code', 'the code step');
    await page.locator('#use-recovery').click();
    await expectVisible('#mfa-recovery', 'the recovery code input');
    assert.equal(await page.locator('label[for="mfa-recovery"]').count(), 1, 'the recovery code input has no label');
    await page.fill('#mfa-recovery', recovery);
    await page.getByRole('button', { name: 'Verify' }).click();
    await expectUrl(/\/console\/account$/, 'after the recovery-code login (the "next" page)');
    await expectPage('Account', 'account page after the recovery-code login');
    await expectText('#mfa-status', /8 recovery codes left/, 'recovery codes left (one used by node, one here)');
    await expectLive();

    await page.locator('#logout-button').click();
    await expectUrl(/\/console\/login$/, 'after logout');
    await expectPage('Sign in to Kyros', 'login page after logout');
    assert.equal(await page.locator('#nav').isVisible(), false, 'navigation visible after logout');
    const names = (await state.context.cookies(state.base)).map((c) => c.name);
    assert.ok(!names.includes('kyros_session'), `the session cookie is still there: ${names}`);
    await page.goto(`${state.base}/console/tasks`);
    await expectUrl(/\/console\/login\?next=%2Fconsole%2Ftasks$/, 'a console page after logout');
    await expectPage('Sign in to Kyros', 'login page for /console/tasks');
    state.loggedOut = true;
    await assertNoCsp('the login page after logout');
  });

  step('10. too many logins: the banner counts down Retry-After and the button is disabled', async () => {
    need(state.loggedOut, 'logout');
    const page = state.page;
    const banner = page.locator('#rate-limit-banner');
    const submit = page.locator('#login-form button[type="submit"]');
    let limited = false;
    for (let i = 0; i < 30 && !limited; i++) {
      await page.fill('#login-username', `nobody-${RUN}`);
      await page.fill('#login-password', 'not-the-password');
      await submit.click();
      // Each answer ends with either the form's error or the banner.
      await page.waitForFunction(() => {
        const form = document.querySelector('#login-form');
        return form && !form.hasAttribute('aria-busy');
      }, null, { timeout: LIVE_MS });
      limited = await banner.isVisible();
    }
    assert.ok(limited, 'the login endpoint never answered 429');
    const text = await banner.innerText();
    const m = /Too many requests — try again in (\d+) s/.exec(text);
    assert.ok(m, `banner text: ${JSON.stringify(text)}`);
    const first = Number(m[1]);
    assert.ok(first >= 1, `Retry-After seconds in the banner: ${first}`);
    assert.equal(await banner.getAttribute('role'), 'alert', 'the banner is not an alert');
    assert.equal(await submit.isDisabled(), true, 'the submit button is enabled while rate-limited');
    await expectText('#login-form [role="alert"]', /Too many requests/, 'the form error');
    await shot('rate-limit');
    if (first > 1) {
      // The countdown is live.
      await page.waitForFunction((n) => Number(document.querySelector('#rate-limit-seconds')?.textContent) < n, first, { timeout: 5_000 });
    }
    await assertNoCsp('the rate-limited login page');
  });
});
