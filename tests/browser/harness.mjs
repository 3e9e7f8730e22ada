// The harness shared by the headless-browser tests of this directory (console.test.mjs,
// console-work.test.mjs, session-csrf.test.mjs, oidc.test.mjs): where things are, processes and
// their logs, HTTP(S) requests from node, a throwaway certificate, the browser, what a page does
// wrong (console messages, uncaught errors, CSP violations), screenshots and test steps.
//
// Not a test itself (its name matches none of node --test's patterns). It keeps no state of a
// run: each test passes its own service address, CA, logs and pages.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const OUTPUT_DIR = path.join(REPO_ROOT, 'test-output');
export const SHOTS_DIR = path.join(OUTPUT_DIR, 'browser');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const KYROS_BIN = process.env.KYROS_BIN
  ? path.resolve(process.cwd(), process.env.KYROS_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'kyros');
export const HEALTH_TIMEOUT_MS = 30_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The service binary and Chromium are there. */
export function assertTools() {
  assert.ok(fs.existsSync(KYROS_BIN), `service binary not found: ${KYROS_BIN} (run cargo build, or set KYROS_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found: ${CHROMIUM} (apt-get install chromium)`);
}

// ---------------------------------------------------------------------------------------------
// Processes.

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The start of a minimal environment for a child process (PATH, HOME, TMPDIR), so that neither
 * the caller's settings nor a .env file of the repository apply.
 */
export const baseEnv = (home) => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: process.env.HOME ?? home,
  TMPDIR: os.tmpdir(),
});

/**
 * Spawns `command args` with its stdout and stderr kept as lines ("out| …", "err| …") in `log`
 * (at most 2 000), its exit noted there, and killed should this process exit first.
 */
export function spawnLogged(command, args, { cwd, env, log, name = 'service' }) {
  const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const [stream, tag] of [[child.stdout, 'out|'], [child.stderr, 'err|']]) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop();
      for (const l of lines) log.push(`${tag} ${l}`);
      if (log.length > 2000) log.splice(0, log.length - 2000);
    });
  }
  child.on('exit', (code, sig) => log.push(`(${name} exited: code ${code}, signal ${sig})`));
  process.once('exit', () => child.kill('SIGKILL'));
  return child;
}

/** `$KYROS_BIN serve` with exactly `env`, in `cwd`; its output goes to `log`. */
export const startService = ({ cwd, env, log }) => spawnLogged(KYROS_BIN, ['serve'], { cwd, env, log });

/** SIGTERM, then SIGKILL after 5 s. */
export async function stopService(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const done = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
  if (!done) {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * `kyros serve` as it runs in production — `ENVIRONMENT=production`, HTTPS with a throwaway
 * certificate, a first administrator, nothing else of the caller's environment — in a new
 * directory under the system's temporary one (`prefix`), waited for until `/health` answers.
 * `extra` adds settings (a test says why). The answer: `{tmpDir, dataDir, cert, certFile, port,
 * base, service}`.
 */
export async function startProductionService({ prefix, secret, admin, email, password, extra = {}, log }) {
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const dataDir = path.join(tmpDir, 'data');
  fs.mkdirSync(dataDir);
  const { certFile, keyFile, cert } = makeCertificate(tmpDir);
  const port = await freePort();
  const base = `https://127.0.0.1:${port}`;
  const env = {
    ...baseEnv(tmpDir),
    ENVIRONMENT: 'production',
    SECRET_KEY: secret,
    TLS_CERT_FILE: certFile,
    TLS_KEY_FILE: keyFile,
    KYROS_BIND: `127.0.0.1:${port}`,
    KYROS_DATA_DIR: dataDir,
    FIRST_SUPERUSER: admin,
    FIRST_SUPERUSER_EMAIL: email,
    FIRST_SUPERUSER_PASSWORD: password,
    LOG_LEVEL: 'WARNING',
    ...extra,
  };
  // The data directory as working directory, so that no .env file of the repository applies.
  const service = startService({ cwd: dataDir, env, log });
  const running = { tmpDir, dataDir, cert, certFile, port, base, service, env };
  await waitForHealth({ base, ca: cert }, service);
  return running;
}

/**
 * A throwaway self-signed server certificate for 127.0.0.1 (openssl CLI) in `dir`: its files and
 * the PEM text (to trust it as the only CA).
 */
export function makeCertificate(dir) {
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1',
    // A server certificate, not a CA: the agent's TLS stack (rustls/webpki) refuses a CA
    // certificate as the server's own.
    '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'keyUsage=digitalSignature',
    '-addext', 'extendedKeyUsage=serverAuth',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { certFile, keyFile, cert: fs.readFileSync(certFile) };
}

// ---------------------------------------------------------------------------------------------
// Requests from node.

/**
 * A JSON request from node to `server.base` (http:// or https://; over HTTPS `server.ca` is the
 * only CA trusted). Answers {status, headers, text, json}.
 */
export function nodeRequest(server, method, urlPath, { headers = {}, body } = {}) {
  const url = new URL(server.base);
  const tls = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const req = (tls ? https : http).request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path: urlPath,
        ...(tls ? { ca: server.ca } : {}),
        headers: { Accept: 'application/json', ...headers, ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}) },
        timeout: 10_000,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json = null;
          try {
            json = text ? JSON.parse(text) : null;
          } catch {}
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: timeout`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

/** Waits until GET /health answers 200 (failing early if `child` exits). */
export async function waitForHealth(server, child, timeout = HEALTH_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`the service exited early (code ${child.exitCode}, signal ${child.signalCode})`);
    }
    try {
      const res = await nodeRequest(server, 'GET', '/health');
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = String(err?.code ?? err);
    }
    await sleep(150);
  }
  throw new Error(`GET ${server.base}/health did not answer 200 within ${timeout} ms (last: ${last})`);
}

// ---------------------------------------------------------------------------------------------
// The browser.

/** Headless Chromium in which nothing but localhost and 127.0.0.1 resolves. */
export function launchBrowser() {
  // Playwright makes and removes a fresh temporary --user-data-dir itself.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-proxy-server',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
    ],
  });
}

/** Every document of `context` records its CSP violations in window.__csp. */
export function recordCsp(context) {
  return context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
}

/** The CSP violations the page's document recorded (see recordCsp). */
export const cspViolations = (page) => page.evaluate(() => window.__csp ?? []);

/**
 * Notes what `page` does into `sink`: console messages, uncaught exceptions, failed requests and
 * answers >= 400 into sink.pageLog; when the sink has them, console reports of CSP violations
 * into sink.cspConsole and uncaught exceptions (with `consoleErrors`, also console errors other
 * than failed loads) into sink.pageErrors. `onResponse` sees every answer.
 */
export function watchPage(page, label, sink, { consoleErrors = false, onResponse } = {}) {
  page.on('console', (m) => {
    const text = m.text();
    sink.pageLog.push(`[${label}] console.${m.type()}: ${text}`);
    if (sink.cspConsole && /Content Security Policy/i.test(text)) sink.cspConsole.push(`[${label}] ${text}`);
    if (consoleErrors && sink.pageErrors && m.type() === 'error' && !/Failed to load resource/.test(text)) sink.pageErrors.push(`[${label}] console error: ${text}`);
  });
  page.on('pageerror', (e) => {
    sink.pageLog.push(`[${label}] pageerror: ${e?.stack ?? e}`);
    sink.pageErrors?.push(`[${label}] ${e?.message ?? e}`);
  });
  page.on('requestfailed', (r) => sink.pageLog.push(`[${label}] requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => {
    if (r.status() >= 400) sink.pageLog.push(`[${label}] HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
    onResponse?.(r);
  });
  return page;
}

/**
 * A full-page screenshot to `dir`/`name`.png, with `note` (text) shown on top of the page first.
 * A failure is noted in `log` when given, else thrown.
 */
export async function screenshot(page, name, { dir = SHOTS_DIR, note, log } = {}) {
  try {
    if (note !== undefined) {
      await page.evaluate((text) => {
        const pre = document.createElement('pre');
        pre.style.cssText = 'background:#eef6ee;border:1px solid #9c9;padding:8px;white-space:pre-wrap;font:12px monospace';
        pre.textContent = text;
        document.body.prepend(pre);
      }, `${name}\n${note}`);
    }
    fs.mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
  } catch (err) {
    if (!log) throw err;
    log.push(`[screenshot ${name}] failed: ${err}`);
  }
}

/**
 * The page as it stands is sound: no CSP violation so far (neither as an event in the document
 * nor as a console report in sink.cspConsole), no uncaught exception (sink.pageErrors), no inline
 * style attribute, one h1 in <main> (with `main`, also exactly one <main>), and every form
 * control with a label.
 */
export async function assertPageSound(page, where, sink, { main = false } = {}) {
  const events = await cspViolations(page);
  assert.deepEqual(events, [], `CSP violations on ${where}: ${JSON.stringify(events)}`);
  assert.deepEqual(sink.cspConsole, [], `CSP reports in the console (${where}): ${JSON.stringify(sink.cspConsole)}`);
  assert.deepEqual(sink.pageErrors, [], `script errors in the page (${where})`);
  const dom = await page.evaluate(() => ({
    styled: [...document.querySelectorAll('[style]:not([style=""])')].map((el) => el.outerHTML.slice(0, 120)),
    h1: document.querySelectorAll('main h1').length,
    unlabelled: [...document.querySelectorAll('input:not([type="hidden"]), select, textarea')]
      .filter((el) => !el.labels?.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
      .map((el) => el.id || el.name || el.outerHTML.slice(0, 80)),
    main: document.querySelectorAll('main').length,
  }));
  assert.deepEqual(dom.styled, [], `${where}: elements with a style attribute`);
  if (main) assert.equal(dom.main, 1, `${where}: <main> landmarks`);
  assert.equal(dom.h1, 1, `${where}: h1 headings in <main>`);
  assert.deepEqual(dom.unlabelled, [], `${where}: form controls without a label`);
}

/**
 * A JSON API call made by the page itself (its session cookie, its CSRF token from
 * document.cookie, its Origin). Answers {status, text, json, headers}.
 */
export function pageApi(page, method, urlPath, body, { ifMatch } = {}) {
  return page.evaluate(
    async ({ method, urlPath, body, ifMatch }) => {
      const raw = document.cookie.split(';').map((c) => c.trim()).find((c) => c.startsWith('csrf_token='));
      const headers = { Accept: 'application/json' };
      if (raw) headers['X-CSRF-Token'] = decodeURIComponent(raw.slice('csrf_token='.length));
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      if (ifMatch) headers['If-Match'] = ifMatch;
      const res = await fetch(urlPath, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
      const text = await res.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {}
      return { status: res.status, text, json, headers: Object.fromEntries(res.headers.entries()) };
    },
    { method, urlPath, body, ifMatch },
  );
}

/**
 * Waits for conditions on a console page, failing with what the page shows. `currentPage()`
 * gives the page when a call names none; `timeout` is the default wait.
 */
export function consoleExpectations(currentPage, timeout) {
  /** Waits until an element matching `selector` shows text matching `pattern`. */
  async function expectText(selector, pattern, what, { page = currentPage(), timeout: ms = timeout } = {}) {
    const loc = page.locator(selector).filter({ hasText: pattern }).first();
    try {
      await loc.waitFor({ state: 'visible', timeout: ms });
    } catch {
      const shown = await page.locator(selector).allInnerTexts().catch(() => []);
      assert.fail(`${what}: expected ${selector} to show ${pattern}, it shows ${JSON.stringify(shown).slice(0, 500)} (page ${page.url()})`);
    }
    return loc;
  }

  async function expectVisible(selector, what, { page = currentPage(), timeout: ms = timeout } = {}) {
    const loc = page.locator(selector).first();
    try {
      await loc.waitFor({ state: 'visible', timeout: ms });
    } catch {
      assert.fail(`${what}: ${selector} did not become visible (page ${page.url()})`);
    }
    return loc;
  }

  async function expectUrl(pattern, what, page = currentPage()) {
    try {
      await page.waitForURL(pattern, { timeout });
    } catch {
      assert.fail(`${what}: expected the URL to match ${pattern}, it is ${page.url()}`);
    }
  }

  /** The live connection is up and receives every job event. */
  async function expectLive(page = currentPage()) {
    await expectText('#conn-text', /^Live$/, 'connection state', { page });
    await expectVisible('#conn[data-stream="orchestrator"]', 'subscription to the orchestrator stream', { page });
  }

  return { expectText, expectVisible, expectUrl, expectLive };
}

// ---------------------------------------------------------------------------------------------
// Steps and diagnostics.

/**
 * The diagnostics printed when a step fails: the service, the page, the page log, `extra`
 * sections ([title, lines, how many of the last]) and the service log.
 */
export function diagnostics({ base, dir, page, pageLog = [], pageLines = 60, serviceLog = [], serviceLines = 80, extra = [] }) {
  const out = ['', '----- diagnostics -----'];
  out.push(`service: ${KYROS_BIN} on ${base ?? '(not started)'}; temp dir ${dir}`);
  if (page !== undefined) out.push(`page: ${page ? page.url() : '(none)'}`);
  out.push(`browser console / page errors / failed requests (last ${pageLines}):`);
  const pl = pageLog.slice(-pageLines);
  out.push(...(pl.length ? pl.map((l) => `  ${l}`) : ['  (none)']));
  for (const [title, lines, n] of extra) {
    if (!lines.length) continue;
    out.push(`${title} (last ${n} lines):`);
    out.push(...lines.slice(-n).map((l) => `  ${l}`));
  }
  out.push(`service log (last ${serviceLines} lines):`);
  const tail = serviceLog.slice(-serviceLines);
  out.push(...(tail.length ? tail.map((l) => `  ${l}`) : ['  (empty)']));
  out.push('-----------------------');
  return out.join('\n');
}

/**
 * Makes `step(name, fn, timeout)`: a test that, when it fails for a reason of its own (not a
 * prerequisite missing, see need), takes `failureShot(name)` (if given) and prints
 * `diagnostics()`.
 */
export function stepper({ timeout = 60_000, diagnostics: report = () => '', failureShot } = {}) {
  return (name, fn, stepTimeout = timeout) =>
    it(name, { timeout: stepTimeout }, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        if (!err?.prerequisite) {
          if (failureShot) await failureShot(name);
          console.error(`\nstep failed: ${name}\n${err?.stack ?? err}${report()}`);
        }
        throw err;
      }
    });
}

/** The value an earlier step left, or a "prerequisite missing" failure (no diagnostics). */
export function need(value, what) {
  if (value === null || value === undefined || value === false) {
    throw Object.assign(new Error(`prerequisite missing (an earlier step failed): ${what}`), { prerequisite: true });
  }
  return value;
}
