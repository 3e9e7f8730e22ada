// End-to-end test of "sign in with an identity provider" in the console, in headless Chromium,
// through the login page of a real OpenID Provider (the certified `oidc-provider` package, started
// here from tests/browser/oidc-op.mjs on loopback; see that file).
//
//   node --test tests/browser/oidc.test.mjs        (or .ci/browser-tests for every browser test)
//
// The service runs in ENVIRONMENT=local (an http:// issuer on 127.0.0.1 is allowed only there)
// with the production Content-Security-Policy (KYROS_CONTENT_SECURITY_POLICY, less
// upgrade-insecure-requests); every CSP violation fails the test.
//
// What a person does and sees:
//   1. The console's login page shows "Sign in with Corp SSO"; clicking it goes to the provider's
//      login page; signing in there comes back to the console, signed in as a new account (the
//      provider allows creating accounts), with no code left in the address bar.
//   2. The account page lists the linked identity as the account's only way to sign in.
//   3. An administrator signed in with a password links an identity of the provider from the
//      account page (a wrong password is refused on the page first): the provider asks for a
//      login again (prompt=login, though
//      the browser still has the first person's session there), and the identity is listed.
// Screenshots go to test-output/browser/oidc-<name>.png.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  baseEnv, cspViolations as violations, freePort, launchBrowser, recordCsp, screenshot, startService, stepper, stopService,
  waitForHealth, watchPage,
} from './harness.mjs';
import { startProvider } from './oidc-op.mjs';

const ADMIN = 'oidc-admin';
const PASSWORD = crypto.randomBytes(18).toString('base64url');
const SECRET_KEY = crypto.randomBytes(32).toString('hex');
const CLIENT_SECRET = crypto.randomBytes(24).toString('base64url');
const PAT_PASSWORD = crypto.randomBytes(12).toString('base64url');
const QUINN_PASSWORD = crypto.randomBytes(12).toString('base64url');
const WAIT_MS = 15_000;

const state = { dir: null, op: null, service: null, log: [], base: null, browser: null, context: null, page: null, pageLog: [] };

const step = stepper({
  diagnostics: () => `\npage log:\n  ${state.pageLog.join('\n  ')}\nservice log:\n  ${state.log.slice(-40).join('\n  ')}`,
});

const shot = (name) => screenshot(state.page, `oidc-${name}`);

const cspViolations = () => violations(state.page);

describe('sign in with an identity provider in the console', () => {
  before(async () => {
    state.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kyros-oidc-'));
    const port = await freePort();
    state.base = `http://127.0.0.1:${port}`;
    const redirect = `${state.base}/console/login`;
    state.op = await startProvider({
      clients: [{ client_id: 'kyros-console', client_secret: CLIENT_SECRET, redirect_uris: [redirect] }],
      users: [
        { id: 'pat', password: PAT_PASSWORD, email: 'pat@corp.example', email_verified: true, username: 'pat' },
        { id: 'quinn', password: QUINN_PASSWORD, email: 'quinn@corp.example', email_verified: true, username: 'quinn' },
      ],
    });
    const env = {
      ...baseEnv(state.dir),
      KYROS_BIND: `127.0.0.1:${port}`,
      KYROS_DATA_DIR: state.dir,
      SECRET_KEY,
      FIRST_SUPERUSER: ADMIN,
      FIRST_SUPERUSER_PASSWORD: PASSWORD,
      FIRST_SUPERUSER_EMAIL: 'oidc-admin@example.org',
      LOG_LEVEL: 'WARNING',
      ENVIRONMENT: 'local',
      OIDC_PROVIDERS: 'corp',
      OIDC_CORP_ISSUER: state.op.issuer,
      OIDC_CORP_CLIENT_ID: 'kyros-console',
      OIDC_CORP_CLIENT_SECRET: CLIENT_SECRET,
      OIDC_CORP_AUTO_CREATE: 'true',
      OIDC_CORP_ALLOWED_DOMAINS: 'corp.example',
      OIDC_CORP_DISPLAY_NAME: 'Corp SSO',
      OAUTH2_REDIRECT_URIS: redirect,
      // The production policy (src/security/headers.rs) without upgrade-insecure-requests, which
      // would send this plain-HTTP loopback console to https://.
      KYROS_CONTENT_SECURITY_POLICY:
        "default-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; frame-ancestors 'none'; " +
        "base-uri 'self'; form-action 'self'; script-src 'self'; style-src 'self'; object-src 'none'",
    };
    state.service = startService({ cwd: state.dir, env, log: state.log });
    try {
      await waitForHealth({ base: state.base }, state.service);
    } catch (err) {
      throw new Error(`${err.message}; service log:\n  ${state.log.slice(-30).join('\n  ')}`);
    }
    state.browser = await launchBrowser();
    state.context = await state.browser.newContext({ viewport: { width: 1280, height: 800 } });
    // Every CSP violation of every document is collected (and must stay empty).
    await recordCsp(state.context);
    state.page = watchPage(await state.context.newPage(), 'console', state);
  });

  after(async () => {
    await state.browser?.close();
    await stopService(state.service);
    await state.op?.close();
  });

  step('a new person signs in through the provider login page', async () => {
    const page = state.page;
    await page.goto(`${state.base}/console/login`);
    const button = page.locator('#oidc-corp');
    await button.waitFor({ timeout: WAIT_MS });
    assert.equal((await button.textContent()).trim(), 'Sign in with Corp SSO');
    assert.deepEqual(await cspViolations(), []);
    await shot('login-page');
    await button.click();
    await page.waitForURL((u) => u.href.startsWith(`${state.op.issuer}/interaction/`), { timeout: WAIT_MS });
    await shot('provider-login');
    await page.fill('#op-login-name', 'pat');
    await page.fill('#op-password', PAT_PASSWORD);
    await page.click('#op-submit');
    await page.waitForURL((u) => u.href.startsWith(`${state.base}/console/jobs`), { timeout: WAIT_MS });
    await page.locator('#whoami-name').waitFor({ timeout: WAIT_MS });
    assert.equal(await page.locator('#whoami-name').textContent(), 'pat');
    assert.ok(!page.url().includes('code='), `no code in the address bar: ${page.url()}`);
    assert.deepEqual(await cspViolations(), []);
    await shot('signed-in');
  });

  step('the account page lists the linked identity', async () => {
    const page = state.page;
    await page.goto(`${state.base}/console/account`);
    const row = page.locator('#identities-body tr');
    await row.first().waitFor({ timeout: WAIT_MS });
    const text = await row.first().textContent();
    assert.match(text, /Corp SSO/);
    assert.match(text, /pat@corp\.example/);
    assert.match(text, /only way to sign in/);
    assert.deepEqual(await cspViolations(), []);
    await shot('account-identity');
    await page.click('#logout-button');
    await page.locator('#login-username').waitFor({ timeout: WAIT_MS });
  });

  step('a signed-in administrator links an identity from the account page', async () => {
    const page = state.page;
    await page.fill('#login-username', ADMIN);
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-form button[type=submit]');
    await page.locator('#whoami-name').waitFor({ timeout: WAIT_MS });
    await page.goto(`${state.base}/console/account`);
    // The password is asked again before linking.
    const link = page.locator('#link-submit');
    await link.waitFor({ timeout: WAIT_MS });
    await page.fill('#link-password', 'not the password');
    await link.click();
    await page.locator('#link-form .form-error:not([hidden])').waitFor({ timeout: WAIT_MS });
    await page.fill('#link-password', PASSWORD);
    await link.click();
    await page.waitForURL((u) => u.href.startsWith(`${state.op.issuer}/interaction/`), { timeout: WAIT_MS });
    await page.fill('#op-login-name', 'quinn');
    await page.fill('#op-password', QUINN_PASSWORD);
    await page.click('#op-submit');
    await page.waitForURL((u) => u.href.startsWith(`${state.base}/console/account`), { timeout: WAIT_MS, waitUntil: 'commit' });
    const row = page.locator('#identities-body tr');
    await page.waitForFunction(() => /quinn@corp\.example/.test(document.querySelector('#identities-body')?.textContent ?? ''), null, { timeout: WAIT_MS });
    assert.match(await row.first().textContent(), /Unlink/);
    assert.equal(await page.locator('#whoami-name').textContent(), ADMIN);
    assert.ok(!page.url().includes('code='), page.url());
    assert.deepEqual(await cspViolations(), []);
    await shot('account-linked');
  });
});
