// End-to-end test of the browser cookie session and its CSRF protection, in headless Chromium.
//
//   node --test tests/browser/          (or .ci/browser-tests, which also installs what it needs)
//
// Starts `$KYROS_BIN serve` (default target/debug/kyros) on a free loopback port with a fresh data
// directory, and a tiny "foreign origin" HTTP server on another free port. Then, in Chromium:
//   - the same-origin flow: log in with POST /auth/session, the csrf_token / HttpOnly kyros_session
//     cookies, the session list, refusal of a cookie-only DELETE, GET /auth/csrf, revoking another
//     session with the X-CSRF-Token header;
//   - attacks from a foreign page in the same browser context (so the browser holds the session
//     cookie), from two foreign origins:
//       http://127.0.0.1:<foreignPort>  same SITE as the service (cookies are not port-scoped, so
//                                       SameSite=Strict cookies are sent and document.cookie even
//                                       shows the real csrf_token), but a different ORIGIN;
//       http://localhost:<foreignPort>  a different site;
//   - afterwards nothing was revoked, created or replaced.
// Screenshots go to test-output/browser/ (for people; not asserted). Console messages, page errors
// and the service's log are printed when a step fails.
//
// Only 127.0.0.1 / localhost are ever contacted.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import {
  assertTools, baseEnv, diagnostics, freePort, launchBrowser, need, screenshot, startService, stepper, stopService,
  waitForHealth, watchPage,
} from './harness.mjs';

const ADMIN = 'browser-admin@example.org';
const PASSWORD = crypto.randomBytes(18).toString('base64url'); // 24 chars
const SECRET_KEY = crypto.randomBytes(32).toString('hex'); // 64 hex chars

// ---------------------------------------------------------------------------------------------
// Shared state of the run.

const state = {
  dataDir: null,
  service: null, // child process
  serviceLog: [], // stdout/stderr lines of the service
  port: null,
  base: null, // http://127.0.0.1:<port>
  foreignServer: null,
  foreignPort: null,
  browser: null,
  context: null, // the victim's browser context
  page: null, // same-origin page of the victim
  pageLog: [], // console messages, page errors, failed requests of every page
  // Filled by the steps:
  token: null,
  currentId: null,
  sessionCookie: null,
};

// ---------------------------------------------------------------------------------------------
// The harness (harness.mjs), bound to this run.

const report = () =>
  diagnostics({ base: state.base, dir: state.dataDir, pageLog: state.pageLog, pageLines: 500, serviceLog: state.serviceLog });

/** A test step that prints the diagnostics when it fails. */
const step = stepper({ diagnostics: report });

const watch = (page, label) => watchPage(page, label, state);

/**
 * A screenshot to test-output/browser/<name>.png, with what the step saw (`note`) shown on top of
 * the page (the service's own documents are bare JSON).
 */
const shot = (page, name, note) => screenshot(page, name, { note, log: state.pageLog });

// ---------------------------------------------------------------------------------------------
// Helpers.

const htmlEscape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

/** The foreign origin: an attacker page, and a page with an auto-posting login form. */
function foreignHandler(req, res) {
  const url = new URL(req.url, 'http://x');
  const page = (title, body, extraHead = '') =>
    `<!doctype html><html><head><meta charset="utf-8"><title>${htmlEscape(title)}</title>${extraHead}` +
    `<style>body{font:14px sans-serif;margin:2em;background:#fff4f4}pre{white-space:pre-wrap}</style>` +
    `</head><body><h1>${htmlEscape(title)}</h1>${body}</body></html>`;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  if (url.pathname === '/') {
    res.end(page('Foreign origin (attacker page)', '<p id="where"></p><pre id="log"></pre>' +
      '<script>document.getElementById("where").textContent = location.origin;</script>'));
  } else if (url.pathname === '/login-csrf') {
    // enctype=text/plain sends "name=value\r\n": with the name below the body is valid JSON
    // ({"username":…,"password":…,"pad":"="}), the classic way to post JSON from a form.
    const name = JSON.stringify({ username: ADMIN, password: PASSWORD }).slice(0, -1) + ',"pad":"';
    const form =
      `<form method="POST" action="${htmlEscape(`${state.base}/auth/session`)}" enctype="text/plain">` +
      `<input type="hidden" name="${htmlEscape(name)}" value='"}'>` +
      `<button type="submit">log in</button></form>` +
      `<script>window.addEventListener("load", () => document.forms[0].submit());</script>`;
    res.end(page('Foreign origin: auto-posting login form', form));
  } else {
    res.statusCode = 404;
    res.end(page('not found', ''));
  }
}

async function newContext() {
  const context = await state.browser.newContext({
    // A Content-Security-Policy of the service (e.g. default-src 'none' on its JSON answers) must
    // not stop page.evaluate's fetch in the /health document; CSP is not what is tested here.
    bypassCSP: true,
    viewport: { width: 1000, height: 700 },
  });
  // No context.route() here: with request interception on, Playwright answers CORS preflights
  // itself (Access-Control-Allow-* for everything), and the cross-origin DELETE below would reach
  // the service unchecked by the browser. Loopback-only is ensured by --host-resolver-rules.
  return context;
}


/**
 * fetch() inside the page. Answers {ok:true,type,status,headers,text,json} or, when the promise
 * rejects (CORS refusal, network error), {ok:false,name,error}.
 */
function pageFetch(page, url, init = {}) {
  return page.evaluate(
    async ({ url, init }) => {
      try {
        const r = await fetch(url, init);
        const text = r.type === 'opaque' ? null : await r.text();
        let json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {}
        return { ok: true, type: r.type, status: r.status, headers: Object.fromEntries(r.headers), text, json };
      } catch (e) {
        return { ok: false, name: e?.name, error: String(e) };
      }
    },
    { url, init },
  );
}

/** The cookies that the page's JavaScript sees, as a map (values URI-decoded). */
async function pageCookies(page) {
  const raw = await page.evaluate(() => document.cookie);
  const map = {};
  for (const part of raw.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const k = part.slice(0, i).trim();
    let v = part.slice(i + 1).trim();
    try {
      v = decodeURIComponent(v);
    } catch {}
    map[k] = v;
  }
  return { raw, map };
}

const show = (res) => JSON.stringify(res).slice(0, 600);

async function listSessions(page) {
  const res = await pageFetch(page, `${state.base}/auth/sessions`, { credentials: 'same-origin' });
  assert.equal(res.ok, true, `GET /auth/sessions failed in the page: ${show(res)}`);
  assert.equal(res.status, 200, `GET /auth/sessions: ${show(res)}`);
  assert.ok(Array.isArray(res.json?.sessions), `GET /auth/sessions body has no sessions list: ${show(res)}`);
  return res.json.sessions;
}

async function logAttack(page, line) {
  await page.evaluate((l) => {
    const el = document.getElementById('log');
    if (el) el.textContent += l + '\n';
  }, line).catch(() => {});
}

// ---------------------------------------------------------------------------------------------

describe('browser cookie session and CSRF protection', { timeout: 300_000 }, () => {
  before(async () => {
    try {
      assertTools();

      state.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kyros-browser-'));
      state.port = await freePort();
      state.base = `http://127.0.0.1:${state.port}`;
      // A minimal environment, and the data dir as working directory, so that neither the
      // caller's settings (DATABASE_URL, REDIS_URL, …) nor a .env file of the repository apply.
      const env = {
        ...baseEnv(state.dataDir),
        KYROS_BIND: `127.0.0.1:${state.port}`,
        KYROS_DATA_DIR: state.dataDir,
        SECRET_KEY,
        FIRST_SUPERUSER: ADMIN,
        FIRST_SUPERUSER_PASSWORD: PASSWORD,
        LOG_LEVEL: 'WARNING',
        // This run logs in several times within seconds; keep the login budget out of its way.
        AUTH_RATE_LIMIT_REQUESTS: '100',
        ENVIRONMENT: 'local',
      };
      state.service = startService({ cwd: state.dataDir, env, log: state.serviceLog });
      await waitForHealth({ base: state.base }, state.service);

      state.foreignPort = await freePort();
      state.foreignServer = http.createServer(foreignHandler);
      await new Promise((r, j) => state.foreignServer.once('error', j).listen(state.foreignPort, '127.0.0.1', r));

      // Nothing but localhost and 127.0.0.1 resolves.
      state.browser = await launchBrowser();
      state.context = await newContext();
      state.page = watch(await state.context.newPage(), 'same-origin');
      const nav = await state.page.goto(`${state.base}/health`);
      assert.equal(nav?.status(), 200, 'the same-origin page /health did not load');
    } catch (err) {
      console.error(`\nset-up failed: ${err?.stack ?? err}${report()}`);
      throw err;
    }
  });

  after(async () => {
    await state.browser?.close().catch(() => {});
    await new Promise((r) => (state.foreignServer ? state.foreignServer.close(r) : r()));
    await stopService(state.service);
    if (state.dataDir) fs.rmSync(state.dataDir, { recursive: true, force: true });
  });

  // ----- same-origin flow ------------------------------------------------------------------

  step('a wrong password gets 401 and no cookie', async () => {
    const res = await pageFetch(state.page, `${state.base}/auth/session`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: ADMIN, password: `${PASSWORD}-wrong` }),
    });
    assert.equal(res.ok, true, show(res));
    assert.equal(res.status, 401, `POST /auth/session with a wrong password: ${show(res)}`);
    const names = (await state.context.cookies(state.base)).map((c) => c.name);
    assert.ok(!names.includes('kyros_session'), `a failed login set a session cookie: ${names}`);
  });

  step('a. POST /auth/session logs in and hands out the CSRF token', async () => {
    const res = await pageFetch(state.page, `${state.base}/auth/session`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: ADMIN, password: PASSWORD }),
    });
    assert.equal(res.ok, true, show(res));
    assert.equal(res.status, 200, `POST /auth/session: ${show(res)}`);
    assert.equal(typeof res.json?.csrf_token, 'string', `no csrf_token in ${show(res)}`);
    assert.ok(res.json.csrf_token.length >= 16, `csrf_token is too short: ${res.json.csrf_token}`);
    assert.equal(res.json?.user?.username, ADMIN, `user.username: ${show(res)}`);
    assert.equal(res.headers['x-csrf-token'], res.json.csrf_token, 'header X-CSRF-Token != body csrf_token');
    state.token = res.json.csrf_token;

    const cookies = await state.context.cookies(state.base);
    const session = cookies.find((c) => c.name === 'kyros_session');
    const csrf = cookies.find((c) => c.name === 'csrf_token');
    assert.ok(session, `no kyros_session cookie; cookies: ${cookies.map((c) => c.name)}`);
    assert.ok(csrf, `no csrf_token cookie; cookies: ${cookies.map((c) => c.name)}`);
    assert.equal(session.httpOnly, true, 'kyros_session must be HttpOnly');
    assert.equal(session.sameSite, 'Strict', 'kyros_session must be SameSite=Strict');
    assert.equal(session.path, '/', 'kyros_session Path');
    assert.equal(csrf.httpOnly, false, 'csrf_token must be readable by JavaScript');
    assert.equal(csrf.sameSite, 'Strict', 'csrf_token must be SameSite=Strict');
    assert.equal(csrf.path, '/', 'csrf_token Path');
    state.sessionCookie = session.value;
    await shot(state.page, '01-same-origin-logged-in', `POST /auth/session -> ${res.status}\n${JSON.stringify(res.json, null, 2)}`);
  });

  step('b. document.cookie shows csrf_token but not the HttpOnly kyros_session', async () => {
    const token = need(state.token, 'login');
    const { raw, map } = await pageCookies(state.page);
    assert.equal(map.csrf_token, token, `document.cookie: ${raw}`);
    assert.ok(!raw.includes('kyros_session'), `kyros_session is visible to JavaScript: ${raw}`);
  });

  step('c. GET /auth/sessions lists exactly the current session', async () => {
    need(state.token, 'login');
    const sessions = await listSessions(state.page);
    assert.equal(sessions.length, 1, `sessions: ${JSON.stringify(sessions)}`);
    const [s] = sessions;
    assert.equal(s.current, true, `current: ${JSON.stringify(s)}`);
    assert.ok(s.id !== undefined && s.id !== null && String(s.id) !== '', `no id: ${JSON.stringify(s)}`);
    for (const k of ['created_at', 'last_seen_at', 'expires_at']) {
      assert.ok(k in s, `session entry without ${k}: ${JSON.stringify(s)}`);
    }
    state.currentId = String(s.id);
  });

  step('d. DELETE /auth/sessions/{id} with the cookie alone is refused (403 Invalid CSRF token)', async () => {
    const id = need(state.currentId, 'session list');
    const res = await pageFetch(state.page, `${state.base}/auth/sessions/${encodeURIComponent(id)}`, {
      method: 'DELETE',
      credentials: 'same-origin',
    });
    assert.equal(res.ok, true, show(res));
    assert.equal(res.status, 403, `DELETE without X-CSRF-Token: ${show(res)}`);
    assert.equal(res.json?.detail, 'Invalid CSRF token', show(res));
    assert.equal(typeof res.json?.error, 'object', `error object missing: ${show(res)}`);
    // And a wrong token is no better than none.
    const wrong = await pageFetch(state.page, `${state.base}/auth/sessions/${encodeURIComponent(id)}`, {
      method: 'DELETE',
      credentials: 'same-origin',
      headers: { 'X-CSRF-Token': crypto.randomBytes(24).toString('base64url') },
    });
    assert.equal(wrong.status, 403, `DELETE with a wrong X-CSRF-Token: ${show(wrong)}`);
    assert.equal(wrong.json?.detail, 'Invalid CSRF token', show(wrong));
    const sessions = await listSessions(state.page);
    assert.ok(sessions.some((s) => String(s.id) === id && s.current), 'the session was revoked anyway');
  });

  step('e. GET /auth/csrf answers the token and sets the cookie', async () => {
    need(state.token, 'login');
    const res = await pageFetch(state.page, `${state.base}/auth/csrf`, { credentials: 'same-origin' });
    assert.equal(res.ok, true, show(res));
    assert.equal(res.status, 200, `GET /auth/csrf: ${show(res)}`);
    assert.equal(typeof res.json?.csrf_token, 'string', show(res));
    assert.equal(res.headers['x-csrf-token'], res.json.csrf_token, 'header X-CSRF-Token != body csrf_token');
    const { raw, map } = await pageCookies(state.page);
    assert.equal(map.csrf_token, res.json.csrf_token, `document.cookie after GET /auth/csrf: ${raw}`);
    state.token = res.json.csrf_token;
  });

  step('f. another session is revoked with X-CSRF-Token from document.cookie (204)', async () => {
    const currentId = need(state.currentId, 'session list');
    // The second session: another browser context (another "device").
    const other = await newContext();
    try {
      const otherPage = watch(await other.newPage(), 'second-device');
      await otherPage.goto(`${state.base}/health`);
      const login = await pageFetch(otherPage, `${state.base}/auth/session`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username: ADMIN, password: PASSWORD }),
      });
      assert.equal(login.status, 200, `second login: ${show(login)}`);
      await shot(otherPage, '02-second-device-logged-in', `second device: POST /auth/session -> ${login.status}`);

      const before = await listSessions(state.page);
      assert.equal(before.length, 2, `sessions after the second login: ${JSON.stringify(before)}`);
      assert.equal(before.filter((s) => s.current).length, 1, `current flags: ${JSON.stringify(before)}`);
      const mine = before.find((s) => s.current);
      assert.equal(String(mine.id), currentId, 'the current session changed');
      const otherId = String(before.find((s) => !s.current).id);

      const { map } = await pageCookies(state.page);
      const res = await pageFetch(state.page, `${state.base}/auth/sessions/${encodeURIComponent(otherId)}`, {
        method: 'DELETE',
        credentials: 'same-origin',
        headers: { 'X-CSRF-Token': map.csrf_token ?? '' },
      });
      assert.equal(res.ok, true, show(res));
      assert.equal(res.status, 204, `DELETE /auth/sessions/{other} with the token: ${show(res)}`);

      const afterList = await listSessions(state.page);
      assert.deepEqual(afterList.map((s) => String(s.id)), [currentId], `sessions: ${JSON.stringify(afterList)}`);
      // The revoked device is logged out.
      const dead = await pageFetch(otherPage, `${state.base}/auth/sessions`, { credentials: 'same-origin' });
      assert.equal(dead.status, 401, `the revoked session still works: ${show(dead)}`);
    } finally {
      await other.close().catch(() => {});
    }
    await shot(state.page, '03-same-origin-after-revoke', JSON.stringify(await listSessions(state.page), null, 2));
  });

  // ----- attacks from foreign origins ------------------------------------------------------

  const attacks = [
    { label: 'same-site-other-port', host: '127.0.0.1', sameSite: true },
    { label: 'cross-site-localhost', host: 'localhost', sameSite: false },
  ];
  const attackOutcome = {};

  for (const a of attacks) {
    step(`attack from http://${a.host}:<foreignPort>/ (${a.sameSite ? 'same site, other origin' : 'other site'})`, async (t) => {
      const currentId = need(state.currentId, 'session list');
      const origin = `http://${a.host}:${need(state.foreignPort, 'foreign server')}`;
      const page = watch(await state.context.newPage(), `foreign ${a.label}`);
      const outcome = (attackOutcome[a.label] = {});
      try {
        const nav = await page.goto(`${origin}/`);
        assert.equal(nav?.status(), 200, `foreign page ${origin}/ did not load`);

        const { raw, map } = await pageCookies(page);
        assert.ok(!raw.includes('kyros_session'), `kyros_session visible on ${origin}: ${raw}`);
        // Cookies are not port-scoped: the same-site page reads the victim's real token.
        if (a.sameSite) assert.equal(map.csrf_token, state.token, `document.cookie on ${origin}: ${raw}`);
        else assert.equal(map.csrf_token, undefined, `document.cookie on ${origin}: ${raw}`);
        outcome.documentCookieHasToken = map.csrf_token !== undefined;

        // a. Reading the session list with the victim's cookie: CORS must withhold the body.
        const read = await pageFetch(page, `${state.base}/auth/sessions`, { credentials: 'include' });
        outcome.read = read.ok ? `${read.type} ${read.status}` : read.error;
        await logAttack(page, `a. GET /auth/sessions: ${outcome.read}`);
        assert.ok(!read.ok || read.type === 'opaque', `the foreign page read the answer: ${show(read)}`);
        if (!read.ok) assert.equal(read.name, 'TypeError', show(read));

        // b. Revoking the victim's session with the token the page can see: preflight refused.
        const del = await pageFetch(page, `${state.base}/auth/sessions/${encodeURIComponent(currentId)}`, {
          method: 'DELETE',
          credentials: 'include',
          headers: { 'X-CSRF-Token': map.csrf_token ?? 'none' },
        });
        outcome.delete = del.ok ? `${del.type} ${del.status}` : del.error;
        await logAttack(page, `b. DELETE /auth/sessions/{current}: ${outcome.delete}`);
        assert.equal(del.ok, false, `the cross-origin DELETE got an answer: ${show(del)}`);
        assert.equal(del.name, 'TypeError', show(del));

        // c1. A request that needs no preflight: no-cors POST to the login endpoint. The body is
        // valid JSON with valid credentials (sent as text/plain), so only the server's
        // cross-site/content-type checks stand between it and a login CSRF.
        const simple = await pageFetch(page, `${state.base}/auth/session`, {
          method: 'POST',
          mode: 'no-cors',
          credentials: 'include',
          body: JSON.stringify({ username: ADMIN, password: PASSWORD }),
        });
        outcome.noCorsPost = simple.ok ? `${simple.type} ${simple.status}` : simple.error;
        await logAttack(page, `c. no-cors POST /auth/session: ${outcome.noCorsPost}`);
        if (simple.ok) assert.equal(simple.type, 'opaque', `no-cors answer readable: ${show(simple)}`);
        await shot(page, `04-foreign-${a.label}`);
      } finally {
        await page.close().catch(() => {});
      }

      // c2. An auto-posting text/plain form (a top-level navigation to the service).
      const formPage = watch(await state.context.newPage(), `foreign form ${a.label}`);
      try {
        const target = `${state.base}/auth/session`;
        const answered = formPage.waitForResponse(
          (r) => r.url() === target && r.request().method() === 'POST',
          { timeout: 15_000 },
        );
        await formPage.goto(`${origin}/login-csrf`, { waitUntil: 'commit' });
        const resp = await answered;
        await formPage.waitForLoadState('load').catch(() => {});
        outcome.formPost = resp.status();
        await shot(formPage, `05-foreign-form-${a.label}`);
        assert.notEqual(resp.status(), 429, 'the login-CSRF form was rate-limited, so the check proved nothing');
        assert.ok(resp.status() >= 400, `the cross-origin login form was accepted: HTTP ${resp.status()}`);
      } finally {
        await formPage.close().catch(() => {});
      }
      t.diagnostic(`attack ${a.label}: ${JSON.stringify(outcome)}`);
    });
  }

  step('after the attacks the session is intact and no session was revoked or created', async () => {
    const currentId = need(state.currentId, 'session list');
    const sessions = await listSessions(state.page);
    assert.deepEqual(
      sessions.map((s) => [String(s.id), s.current]),
      [[currentId, true]],
      `sessions after the attacks: ${JSON.stringify(sessions)}`,
    );
    const cookie = (await state.context.cookies(state.base)).find((c) => c.name === 'kyros_session');
    assert.equal(cookie?.value, state.sessionCookie, 'the session cookie was replaced (login CSRF)');
    const { map } = await pageCookies(state.page);
    assert.equal(map.csrf_token, state.token, 'the csrf_token cookie changed');
    await state.page.goto(`${state.base}/health`);
    await shot(state.page, '06-same-origin-after-attacks', JSON.stringify({ sessions, attacks: attackOutcome }, null, 2));
  });

  step('DELETE /auth/session with the token logs out', async () => {
    need(state.currentId, 'session list');
    const { map } = await pageCookies(state.page);
    const res = await pageFetch(state.page, `${state.base}/auth/session`, {
      method: 'DELETE',
      credentials: 'same-origin',
      headers: { 'X-CSRF-Token': map.csrf_token ?? '' },
    });
    assert.equal(res.status, 204, `DELETE /auth/session: ${show(res)}`);
    const gone = await pageFetch(state.page, `${state.base}/auth/sessions`, { credentials: 'same-origin' });
    assert.equal(gone.status, 401, `the session still works after logout: ${show(gone)}`);
  });
});
