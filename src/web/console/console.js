// Kyros console: a small single-page app for people (not agents) on top of the service's API.
//
// Rules this file keeps, because the page runs under the production Content-Security-Policy
// (script-src 'self'; style-src 'self'; connect-src 'self'):
//   * no inline script or style, no element.style, no eval: DOM is built with createElement and
//     textContent only (never innerHTML), and shown/hidden with the `hidden` property and classes;
//   * one file, no imports, nothing from another origin.
// Authentication is the HttpOnly session cookie alone. The readable `csrf_token` cookie is sent
// back in `X-CSRF-Token` on every state-changing request (read afresh each time: the server renews
// it). Nothing is kept in localStorage/sessionStorage, and no secret ever goes into a URL or a log.

const APP = 'Kyros Console';
const HOME = '/console/jobs';
const LOGIN = '/console/login';
const JOB_STATUSES = ['pending', 'running', 'completed', 'failed', 'cancelled'];
const SCOPES = [
  ['jobs:read', 'Read jobs, tasks and agents'],
  ['jobs:write', 'Create and change jobs and tasks'],
  ['jobs:claim', 'Run jobs as an agent (claim, heartbeat, complete)'],
  ['events:read', 'Read events'],
  ['events:write', 'Write collaboration events'],
  ['admin', 'Administration (administrators only)'],
];
const AUDIT_EVENTS = [
  'apikey.created', 'apikey.first_used', 'apikey.rejected', 'apikey.revoked', 'auth.lockout', 'auth.login',
  'auth.logout', 'auth.logout_all', 'auth.password_change', 'auth.password_changed', 'auth.refresh',
  'auth.refresh_reuse', 'auth.token_rejected', 'csp.violation', 'csrf.rejected', 'https.rejected',
  'mfa.confirm', 'mfa.disable', 'mfa.disabled', 'mfa.enabled', 'mfa.reset', 'mfa.verify',
  'ratelimit.exceeded', 'ratelimit.penalized', 'rbac.denied', 'request.rejected', 'session.created',
  'session.revoked', 'tokens.revoked', 'user.created', 'user.disabled', 'user.enabled', 'user.role_changed',
  'user.unlocked',
];
const EVENT_LABELS = {
  job_created: 'Created',
  job_claimed: 'Claimed by an agent',
  job_status_updated: 'Status changed',
  job_completed: 'Completed',
  job_failed: 'Failed',
  job_requeued: 'Returned to the queue',
  job_released: 'Given back by its agent',
  job_progress: 'Progress',
  job_output: 'Output',
  job_deleted: 'Deleted',
};
// Events that come with every heartbeat or batch of output lines: the job page shows what they
// carry (progress, lease, output) in place, not as entries of its event list.
const QUIET_EVENTS = new Set(['job_output', 'job_progress']);
// Events after which the agents page reads the agents again (at most once a second).
const AGENT_EVENTS = new Set(['job_claimed', 'job_completed', 'job_failed', 'job_released', 'job_progress', 'job_requeued', 'job_status_updated']);
// An agent not seen for this long is offline (the service's rule, applied here between reads).
const AGENT_ONLINE_MS = 120_000;

const state = {
  me: null, // {id, username, email, role}
  page: null, // the current page object
  keepNotice: false, // keep the notice across the next navigation
};

// ---------------------------------------------------------------------------------------------
// DOM helpers.

const $ = (selector, root = document) => root.querySelector(selector);
const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'multiple', 'required', 'readOnly']);

/**
 * h('button', {class: 'btn', type: 'button', onclick: fn}, 'Text', childNode, [more]) — attributes
 * as strings (aria-*, data-*, id, for, …), a few as properties, `on…` as listeners. Children are
 * nodes or text; null/false/undefined are skipped. Text is always text, never markup.
 */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'value') {
      if ('defaultValue' in el) el.defaultValue = value;
      el.value = value;
    } else if (key === 'checked' || key === 'selected') {
      // The default too, so that form.reset() comes back to it.
      el[key === 'checked' ? 'defaultChecked' : 'defaultSelected'] = Boolean(value);
      el[key] = Boolean(value);
    } else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;

const DATE_FMT = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : DATE_FMT.format(d);
}

const SHORT_TODAY = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
const SHORT_DATE = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });

/** Compact, for tables: the time alone today, else date and minutes (full time as a tooltip). */
function fmtShort(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toDateString() === new Date().toDateString() ? SHORT_TODAY.format(d) : SHORT_DATE.format(d);
}

function timeEl(iso, { short = false } = {}) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: fmtTime(iso) }, short ? fmtShort(iso) : fmtTime(iso));
}

const shortTime = (iso) => timeEl(iso, { short: true });

/** "4 s", "3 min 05 s", "2 h 07 min", "3 d 4 h" for a length of time in milliseconds. */
function fmtDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  const s = Math.floor(ms / 1000);
  const pad = (n) => String(n).padStart(2, '0');
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

/** "just now", "12 s ago", "3 min ago" … relative to the browser's clock. */
function ago(iso) {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return '—';
  const ms = Date.now() - t;
  if (ms < 2000) return 'just now';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/** A relative time that `tickAgo` keeps current (the full time as a tooltip). */
function agoEl(iso, attrs = {}) {
  if (!iso) return h('span', { class: 'muted', ...attrs }, '—');
  return h('time', { datetime: iso, title: fmtTime(iso), 'data-ago': '', ...attrs }, ago(iso));
}

/** Brings every relative time under `root` up to date (called once a second by pages). */
function tickAgo(root) {
  for (const el of root.querySelectorAll('time[data-ago]')) {
    const text = ago(el.getAttribute('datetime'));
    if (el.textContent !== text) el.textContent = text;
  }
}

const percent = (p) => `${Math.round(Math.max(0, Math.min(1, Number(p))) * 100)}%`;
const hasNumber = (v) => v !== null && v !== undefined && Number.isFinite(Number(v));

const slug = (s) => String(s ?? '').toLowerCase().replace(/[^a-z0-9]+/g, '-');
const badge = (value, label) => h('span', { class: `badge badge-${slug(value)}` }, label ?? String(value));
const shortId = (id) => (id ? String(id).slice(0, 8) : '—');
const dash = (v) => (v === null || v === undefined || v === '' ? '—' : String(v));

function compactJson(value) {
  if (value === null || value === undefined) return '';
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** A labelled form field: {label, id, name, type, hint, ...input attributes}. */
function field({ label, hint, control, ...attrs }) {
  const id = attrs.id ?? nextId('f');
  const hintId = hint ? `${id}-hint` : null;
  const input = control ?? h(attrs.type === 'textarea' ? 'textarea' : attrs.type === 'select' ? 'select' : 'input', {
    ...attrs,
    id,
    type: attrs.type === 'textarea' || attrs.type === 'select' ? undefined : attrs.type ?? 'text',
    'aria-describedby': hintId,
  });
  if (control) {
    input.id = id;
    if (hintId) input.setAttribute('aria-describedby', hintId);
  }
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('span', { class: 'hint', id: hintId }, hint) : null);
}

function select({ options, value, ...attrs }) {
  const el = h('select', attrs);
  for (const [v, text] of options) el.append(h('option', { value: v, selected: v === value }, text));
  return el;
}

function table(headers, body, caption) {
  return h(
    'div',
    { class: 'table-wrap', tabindex: '0', role: 'group', 'aria-label': caption ?? 'Table' },
    h(
      'table',
      null,
      caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
      h('thead', null, h('tr', null, headers.map((th) => (typeof th === 'string' ? h('th', { scope: 'col' }, th) : th)))),
      body,
    ),
  );
}

/**
 * Puts `items` into `tbody` as rows, keeping the existing row element of an item whose data did
 * not change (found by `data-key`, compared by `data-sig`). A live refresh then leaves untouched
 * rows alone: the keyboard focus and an open "Are you sure?" stay where they are.
 */
function syncRows(tbody, items, { key, sig, row, empty }) {
  const old = new Map();
  for (const tr of tbody.children) if (tr.dataset.key) old.set(tr.dataset.key, tr);
  const rows = items.map((item) => {
    const k = String(key(item));
    const s = sig(item);
    const existing = old.get(k);
    if (existing && existing.dataset.sig === s) return existing;
    const tr = row(item);
    tr.dataset.key = k;
    tr.dataset.sig = s;
    return tr;
  });
  if (!rows.length) rows.push(empty());
  rows.forEach((tr, i) => {
    const at = tbody.children[i];
    if (at !== tr) tbody.insertBefore(tr, at ?? null);
  });
  while (tbody.children.length > rows.length) tbody.lastElementChild.remove();
}

// What a job row shows; not `updated_at`, which every heartbeat changes (a row redrawn twice a
// second would lose the focus and an open "Are you sure?").
const jobSig = (j) => [j.status, j.name, j.priority, j.attempt, j.agent_name, hasNumber(j.progress) ? percent(j.progress) : ''].join('|');

function emptyRow(colspan, text) {
  return h('tr', null, h('td', { colspan, class: 'empty' }, text));
}

/**
 * A button that asks once more before doing something that cannot be undone: the first click
 * swaps it for "<question> [confirm] [Cancel]", with the focus on the confirm button.
 */
function confirmButton({ label, question, confirmLabel, onConfirm, small = true, ariaLabel }) {
  const wrap = h('span', { class: 'actions' });
  const size = small ? ' btn-small' : '';
  const first = h('button', { type: 'button', class: `btn btn-danger${size}`, 'aria-label': ariaLabel }, label);
  const reset = () => {
    wrap.replaceChildren(first);
    first.focus();
  };
  first.addEventListener('click', () => {
    const yes = h('button', { type: 'button', class: `btn btn-danger-solid${size}` }, confirmLabel ?? label);
    const no = h('button', { type: 'button', class: `btn btn-secondary${size}`, onclick: reset }, 'Cancel');
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      no.disabled = true;
      try {
        await onConfirm();
      } finally {
        if (yes.isConnected) {
          yes.disabled = false;
          no.disabled = false;
        }
      }
    });
    wrap.replaceChildren(h('span', { class: 'muted' }, question ?? 'Are you sure?'), yes, no);
    yes.focus();
  });
  wrap.append(first);
  return wrap;
}

async function copyText(text, statusEl) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    ok = false;
  }
  if (statusEl) statusEl.textContent = ok ? 'Copied to the clipboard.' : 'Copying is not available here: select the text and copy it.';
}

// ---------------------------------------------------------------------------------------------
// Notices (success/info messages) and the rate-limit banner.

let noticeTimer = null;

function notify(text, { kind = 'success', keep = false } = {}) {
  const el = $('#notice');
  clearTimeout(noticeTimer);
  el.className = kind === 'info' ? 'notice notice-info' : 'notice';
  el.replaceChildren(
    h('span', null, text),
    h('button', { type: 'button', class: 'link-button', onclick: clearNotice }, 'Dismiss'),
  );
  el.hidden = false;
  state.keepNotice = keep;
  noticeTimer = setTimeout(clearNotice, 12_000);
}

function clearNotice() {
  clearTimeout(noticeTimer);
  const el = $('#notice');
  el.hidden = true;
  el.replaceChildren();
}

/** While a 429's Retry-After runs: a banner with a countdown, and every submit button disabled. */
const rateLimit = {
  until: 0,
  timer: null,
  active() {
    return Date.now() < this.until;
  },
  start(seconds) {
    const secs = Math.max(1, Math.min(3600, Number.isFinite(seconds) ? Math.ceil(seconds) : 5));
    this.until = Math.max(this.until, Date.now() + secs * 1000);
    const banner = $('#rate-limit-banner');
    const left = this.secondsLeft();
    // The countdown is for the eyes; screen readers hear the sentence once.
    banner.replaceChildren(
      h('span', { 'aria-hidden': 'true' }, 'Too many requests — try again in ', h('span', { id: 'rate-limit-seconds' }, String(left)), ' s'),
      h('span', { class: 'visually-hidden' }, `Too many requests. Try again in ${left} seconds.`),
    );
    banner.hidden = false;
    this.apply();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 250);
  },
  secondsLeft() {
    return Math.max(0, Math.ceil((this.until - Date.now()) / 1000));
  },
  tick() {
    const left = this.secondsLeft();
    const el = $('#rate-limit-seconds');
    if (el) el.textContent = String(left);
    if (left <= 0) this.stop();
  },
  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.until = 0;
    $('#rate-limit-banner').hidden = true;
    this.apply();
  },
  /** Disables the submit buttons of the page while limited (and re-enables those it disabled). */
  apply() {
    const on = this.active();
    for (const button of document.querySelectorAll('#main button[type="submit"]')) {
      if (on && !button.disabled) {
        button.disabled = true;
        button.dataset.rateLimited = '1';
      } else if (!on && button.dataset.rateLimited) {
        delete button.dataset.rateLimited;
        button.disabled = false;
      }
    }
  },
};

// ---------------------------------------------------------------------------------------------
// The API.

class ApiError extends Error {
  constructor(status, message, { body = null, fields = [], retryAfter = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
    this.fields = fields; // [{field, message}]
    this.retryAfter = retryAfter;
  }
}

function readCookie(name) {
  for (const part of document.cookie.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    if (part.slice(0, i).trim() !== name) continue;
    const raw = part.slice(i + 1).trim();
    try {
      return decodeURIComponent(raw);
    } catch {
      return raw;
    }
  }
  return null;
}

function errorFrom(status, body, res) {
  let message = body?.error?.message ?? (typeof body?.detail === 'string' ? body.detail : null);
  const fields = [];
  if (Array.isArray(body?.detail)) {
    for (const item of body.detail) {
      const loc = Array.isArray(item?.loc) ? item.loc : [];
      fields.push({ field: String(loc[loc.length - 1] ?? ''), message: String(item?.msg ?? 'Invalid value') });
    }
  }
  const retryAfter = Number.parseInt(res?.headers.get('Retry-After') ?? '', 10);
  if (!message) {
    message =
      status === 429
        ? 'Too many requests.'
        : status >= 500
          ? 'The service had a problem. Please try again.'
          : `The request failed (HTTP ${status}).`;
  }
  return new ApiError(status, message, { body, fields, retryAfter: Number.isFinite(retryAfter) ? retryAfter : null });
}

/**
 * fetch() for the JSON API with the session cookie. Options: method, body (JSON), signal,
 * quiet401 (a 401 is an answer of this endpoint, e.g. a wrong password, not the end of the session).
 */
async function api(path, { method = 'GET', body, signal, quiet401 = false, retried = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') {
    const token = readCookie('csrf_token');
    if (token) headers['X-CSRF-Token'] = token;
  }
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
      signal,
    });
  } catch (err) {
    if (err?.name === 'AbortError') throw err;
    throw new ApiError(0, 'The service cannot be reached. Check the connection and try again.');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.ok) return data;
  const err = errorFrom(res.status, data, res);
  if (res.status === 429) rateLimit.start(err.retryAfter ?? 5);
  // The token cookie can be missing or stale (e.g. a tab left open for an hour): fetch a fresh one
  // and try once more.
  if (res.status === 403 && err.message === 'Invalid CSRF token' && !retried && state.me) {
    const fresh = await fetch('/auth/csrf', { credentials: 'same-origin', cache: 'no-store' }).catch(() => null);
    if (fresh?.ok) return api(path, { method, body, signal, quiet401, retried: true });
  }
  if (res.status === 401 && !quiet401) sessionEnded();
  throw err;
}

const jsonOrEmpty = (v) => (v === '' ? undefined : v);

// ---------------------------------------------------------------------------------------------
// Forms: submit handling, error display next to the form (role=alert) and on the fields.

function clearFormErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) el.remove();
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) {
    el.removeAttribute('aria-invalid');
    const described = (el.getAttribute('aria-describedby') ?? '').split(' ').filter((id) => !id.endsWith('-error'));
    if (described.length) el.setAttribute('aria-describedby', described.join(' '));
    else el.removeAttribute('aria-describedby');
  }
  const box = form.querySelector(':scope > .form-error');
  if (box) {
    box.hidden = true;
    box.textContent = '';
  }
}

function setFieldError(form, name, message) {
  const control = form.elements.namedItem(name);
  const el = control instanceof RadioNodeList ? control[0] : control;
  if (!el || !el.id) return false;
  const id = `${el.id}-error`;
  el.setAttribute('aria-invalid', 'true');
  el.setAttribute('aria-describedby', [el.getAttribute('aria-describedby'), id].filter(Boolean).join(' '));
  const holder = el.closest('.field, fieldset') ?? el.parentElement;
  holder.append(h('span', { class: 'field-error', id }, message));
  return true;
}

function showFormError(form, err) {
  let box = form.querySelector(':scope > .form-error');
  if (!box) {
    box = h('div', { class: 'form-error', role: 'alert' });
    form.prepend(box);
  }
  let message = err instanceof ApiError ? err.message : 'Something went wrong. Please try again.';
  if (err instanceof ApiError && err.status === 429 && err.retryAfter) {
    message = `Too many requests. Try again in ${err.retryAfter} s.`;
  }
  for (const f of err?.fields ?? []) setFieldError(form, f.field, f.message);
  box.textContent = message;
  box.hidden = false;
  const invalid = form.querySelector('[aria-invalid="true"]');
  (invalid ?? box).focus?.();
}

class FieldProblem extends Error {
  constructor(fieldName, message) {
    super(message);
    this.fields = [{ field: fieldName, message }];
  }
}

/** Wires a form: the handler gets the FormData; errors are shown in the form. */
function onSubmit(form, handler) {
  const box = h('div', { class: 'form-error', role: 'alert', tabindex: '-1', hidden: true });
  form.prepend(box);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (form.dataset.busy) return;
    clearFormErrors(form);
    if (rateLimit.active()) return;
    const submit = form.querySelector('button[type="submit"]');
    form.dataset.busy = '1';
    form.setAttribute('aria-busy', 'true');
    if (submit) submit.disabled = true;
    try {
      await handler(new FormData(form), form);
    } catch (err) {
      if (err?.name === 'AbortError') return;
      if (err instanceof FieldProblem) {
        showFormError(form, Object.assign(new ApiError(422, err.message), { fields: err.fields }));
      } else {
        showFormError(form, err);
      }
    } finally {
      delete form.dataset.busy;
      form.removeAttribute('aria-busy');
      if (submit) submit.disabled = false;
      rateLimit.apply();
    }
  });
  return form;
}

/** A page-level message area for errors of actions that are not forms (buttons in tables). */
function alertArea() {
  const el = h('div', { class: 'form-error', role: 'alert', hidden: true });
  el.show = (err) => {
    el.textContent = err instanceof ApiError ? err.message : String(err?.message ?? err);
    el.hidden = false;
  };
  el.clear = () => {
    el.hidden = true;
    el.textContent = '';
  };
  return el;
}

// ---------------------------------------------------------------------------------------------
// Live updates over the WebSocket: job events, reconnection with backoff, connection state.

const live = {
  ws: null,
  wanted: false,
  attempt: 0,
  timer: null,
  countdown: null,
  jobIds: new Set(),
  hadConnection: false,
  staleData: false,

  start() {
    this.wanted = true;
    if (!this.ws && !this.timer) this.connect();
  },

  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    this.timer = null;
    this.countdown = null;
    this.attempt = 0;
    this.hadConnection = false;
    this.staleData = false;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.close(1000, 'logout');
    }
    this.show('offline');
  },

  /** Starts over with a new connection (e.g. after the session cookie changed). */
  restart() {
    if (!this.wanted) return;
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    this.timer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.close(1000, 'restart');
    }
    this.attempt = 0;
    this.connect();
  },

  show(kind, seconds) {
    const box = $('#conn');
    const text = $('#conn-text');
    const count = $('#conn-countdown');
    box.className = `conn conn-${kind}`;
    if (kind !== 'live') delete box.dataset.stream;
    const label = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting', offline: 'Offline' }[kind];
    if (text.textContent !== label) text.textContent = label;
    count.textContent = kind === 'reconnecting' && seconds !== undefined ? `in ${seconds} s` : '';
    box.title = kind === 'live' ? 'Live updates are on' : kind === 'reconnecting' ? 'The live connection was lost' : '';
  },

  connect() {
    this.timer = null;
    clearInterval(this.countdown);
    this.countdown = null;
    if (!this.wanted) return;
    this.show(this.hadConnection ? 'reconnecting' : 'connecting');
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.retryLater();
      return;
    }
    this.ws = ws;
    let greeted = false;
    ws.onmessage = (message) => {
      let msg;
      try {
        msg = JSON.parse(message.data);
      } catch {
        return;
      }
      if (msg?.type === 'connection') {
        greeted = true;
        this.attempt = 0;
        this.show('live');
        this.send({ type: 'subscribe', stream: 'orchestrator' });
        for (const id of this.jobIds) this.send({ type: 'subscribe', job_id: id });
        // Whatever happened while the connection was down is read again.
        if (this.staleData) state.page?.refresh?.();
        this.staleData = false;
        this.hadConnection = true;
      } else if (msg?.type === 'event' && msg.event) {
        state.page?.onEvent?.(msg.event);
      } else if (msg?.type === 'subscribed' && msg.stream === 'orchestrator') {
        // Marks that every job event now reaches this page (the browser test waits for it).
        $('#conn').dataset.stream = 'orchestrator';
      }
    };
    ws.onclose = async (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      delete $('#conn').dataset.stream;
      this.staleData = true;
      if (!this.wanted) return;
      // 1008: the session ended (logout elsewhere, revocation, password change). A handshake that
      // failed may mean the same. Ask the API: a 401 ends the console's session, otherwise (e.g. a
      // fresh session after a password change) connect again.
      if (event.code === 1008 || !greeted) {
        this.show('reconnecting');
        try {
          await api('/auth/user');
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) return; // sessionEnded() took over
        }
        if (!this.wanted) return;
        if (event.code === 1008) {
          this.attempt = 0;
          this.connect();
          return;
        }
      }
      this.retryLater();
    };
    ws.onerror = () => {}; // onclose follows and decides
  },

  /** Exponential backoff with jitter: about 1, 2, 4 … 30 s. */
  retryLater() {
    const base = Math.min(30, 2 ** this.attempt);
    this.attempt += 1;
    const delay = Math.max(0.5, base * (0.75 + Math.random() * 0.5));
    const until = Date.now() + delay * 1000;
    const tick = () => this.show('reconnecting', Math.max(0, Math.ceil((until - Date.now()) / 1000)));
    tick();
    clearInterval(this.countdown);
    this.countdown = setInterval(tick, 1000);
    this.timer = setTimeout(() => this.connect(), delay * 1000);
  },

  send(msg) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  },

  /** The jobs whose own events the current page follows (besides the whole orchestrator stream). */
  follow(ids) {
    const next = new Set(ids);
    for (const id of this.jobIds) if (!next.has(id)) this.send({ type: 'unsubscribe', job_id: id });
    for (const id of next) if (!this.jobIds.has(id)) this.send({ type: 'subscribe', job_id: id });
    this.jobIds = next;
  },
};

// ---------------------------------------------------------------------------------------------
// Session.

function safeNext(next) {
  if (typeof next !== 'string') return HOME;
  if (!next.startsWith('/console/') || next.startsWith('//') || next.includes('\\')) return HOME;
  if (next === '/console/' || next.startsWith(LOGIN)) return HOME;
  return next;
}

/** Reads the profile. Without the csrf_token cookie (which the server sets with every session and
 * clears at logout) there is no session to ask about, and the 401 would count against the client. */
async function loadMe() {
  if (!readCookie('csrf_token')) {
    state.me = null;
    return;
  }
  try {
    const me = await api('/auth/user', { quiet401: true });
    state.me = me && me.username ? { id: me.id, username: me.username, email: me.email, role: me.role } : null;
  } catch {
    state.me = null;
  }
}

function loggedIn(user) {
  state.me = { id: user.id, username: user.username, email: user.email, role: user.role };
  live.start();
}

/** The API answered 401 to a request that needed the session: back to the login page. */
function sessionEnded() {
  if (!state.me) return;
  state.me = null;
  live.stop();
  notify('Your session has ended. Please sign in again.', { kind: 'info', keep: true });
  const here = location.pathname + location.search;
  navigate(`${LOGIN}?next=${encodeURIComponent(here)}`, { replace: true });
}

async function logout() {
  const button = $('#logout-button');
  button.disabled = true;
  try {
    await api('/auth/session', { method: 'DELETE', quiet401: true });
  } catch (err) {
    if (!(err instanceof ApiError) || (err.status !== 401 && err.status !== 0)) {
      button.disabled = false;
      notify(`Signing out failed: ${err.message}`, { kind: 'info' });
      return;
    }
  }
  button.disabled = false;
  state.me = null;
  live.stop();
  notify('You have been signed out.', { kind: 'info', keep: true });
  navigate(LOGIN, { replace: true });
}

// ---------------------------------------------------------------------------------------------
// Pages.

class Page {
  constructor({ params = [], query = new URLSearchParams() } = {}) {
    this.params = params;
    this.query = query;
    this.controller = new AbortController();
    this.timers = [];
  }

  get title() {
    return APP;
  }

  alive() {
    return state.page === this && !this.controller.signal.aborted;
  }

  api(path, options = {}) {
    return api(path, { ...options, signal: this.controller.signal });
  }

  later(fn, ms) {
    const t = setTimeout(fn, ms);
    this.timers.push(t);
    return t;
  }

  every(fn, ms) {
    const t = setInterval(fn, ms);
    this.timers.push(t);
    return t;
  }

  /** Calls fn once, `ms` after the last request (bursts of events cause one reload). */
  debounced(name, fn, ms = 250) {
    clearTimeout(this[`_${name}`]);
    this[`_${name}`] = this.later(fn, ms);
  }

  /**
   * Calls fn soon, but at most once per `ms`: requests while a call is waiting join it. Unlike
   * `debounced`, a steady stream of events (heartbeats) cannot put the call off for ever.
   */
  throttled(name, fn, ms = 1000) {
    const slot = `_throttle_${name}`;
    if (this[slot]?.waiting) return;
    const last = this[slot]?.last ?? 0;
    const wait = Math.max(0, last + ms - Date.now());
    this[slot] = { waiting: true, last };
    this.later(() => {
      this[slot] = { waiting: false, last: Date.now() };
      fn();
    }, wait);
  }

  dispose() {
    this.controller.abort();
    for (const t of this.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
  }

  setTitle(text) {
    document.title = `${text} · ${APP}`;
  }

  head(title, subtitle, ...extra) {
    return h(
      'div',
      { class: 'page-head' },
      h('div', null, h('h1', { tabindex: '-1' }, title), subtitle ? h('p', { class: 'muted' }, subtitle) : null),
      extra.length ? h('div', { class: 'actions' }, extra) : null,
    );
  }

  loadError(err, target) {
    if (err?.name === 'AbortError' || !this.alive()) return;
    const box = h('div', { class: 'form-error', role: 'alert' }, `Could not load the data: ${err?.message ?? err}`);
    target.replaceChildren(box);
  }
}

// ----- sign-in with an identity provider -------------------------------------------------------

/** The redirect_uri of the console: its login page (OAUTH2_REDIRECT_URIS must list it). The
 * provider comes back there with `code` and `state`; the server knows from the state which
 * provider and what for (sign-in or link), so the page keeps nothing between the two. */
function oauthRedirectUri() {
  return `${location.origin}${LOGIN}`;
}

/** Whether this address is a provider's answer (`state` with `code` or `error`). */
function oauthReturn(query) {
  return query.has('state') && (query.has('code') || query.has('error'));
}

let providersPromise = null;
/** The configured identity providers (`GET /auth/providers`), asked once per page load. */
function loadProviders() {
  providersPromise ??= api('/auth/providers', { quiet401: true })
    .then((res) => res?.providers ?? [])
    .catch(() => []);
  return providersPromise;
}

/** The callback of a provider's answer; the server finds the provider and the purpose by the
 * state (`POST /auth/oauth2/callback`). */
function oauthCallback(code, stateParam, iss) {
  const body = { code, state: stateParam, redirect_uri: oauthRedirectUri() };
  if (iss) body.iss = iss;
  return api('/auth/oauth2/callback', { method: 'POST', body, quiet401: true });
}

/** Starts a sign-in ("session") or a link ("link", with the account's password) with provider
 * `p`: the server answers the provider's URL, and the browser goes there. Throws the API's error. */
async function startOAuth(p, mode, password) {
  const redirect = oauthRedirectUri();
  const res =
    mode === 'link'
      ? await api(`/auth/oauth2/${encodeURIComponent(p.name)}/link`, { method: 'POST', body: { redirect_uri: redirect, password } })
      : await api(`/auth/oauth2/${encodeURIComponent(p.name)}?redirect_uri=${encodeURIComponent(redirect)}&mode=session`, { quiet401: true });
  location.assign(res.authorization_url);
}

// ----- login ---------------------------------------------------------------------------------

class LoginPage extends Page {
  get title() {
    return 'Sign in';
  }

  render(main) {
    this.main = main;
    if (oauthReturn(this.query)) {
      this.completeOAuth();
      return;
    }
    this.passwordStep();
  }

  focusTarget() {
    return $('#login-username') ?? $('#mfa-code') ?? $('#mfa-recovery');
  }

  /** Back from the identity provider: the callback with the code and the state it sent. */
  async completeOAuth() {
    const code = this.query.get('code');
    const stateParam = this.query.get('state');
    const failed = this.query.get('error');
    const iss = this.query.get('iss');
    // The code must not stay in the address bar or the history.
    history.replaceState(null, '', LOGIN);
    this.query = new URLSearchParams();
    this.frame(h('h1', { id: 'login-title', tabindex: '-1' }, 'Signing in…'), h('p', { class: 'muted', role: 'status' }, 'Completing the sign-in with your identity provider.'));
    if (failed || !code) {
      this.passwordStep('The sign-in with the identity provider was cancelled or refused.');
      return;
    }
    try {
      const res = await oauthCallback(code, stateParam, iss);
      if (!this.alive()) return;
      if (res?.mfa_required) {
        this.mfaToken = res.mfa_token;
        this.mfaStep(false);
        return;
      }
      if (res?.linked) {
        this.passwordStep('The identity is linked to your account. Sign in to continue.');
        return;
      }
      this.done(res);
    } catch (err) {
      if (this.alive()) this.passwordStep(err?.message ?? String(err));
    }
  }

  providerButtons() {
    const box = h('div', { class: 'auth-providers', id: 'login-providers', hidden: true });
    loadProviders().then((providers) => {
      if (!providers.length || !this.alive()) return;
      box.replaceChildren(
        h('p', { class: 'muted auth-or' }, 'or'),
        ...providers.map((p) =>
          h(
            'button',
            {
              type: 'button',
              class: 'btn btn-secondary btn-block',
              id: `oidc-${p.name}`,
              'data-provider': p.name,
              onclick: async (e) => {
                const button = e.currentTarget;
                button.disabled = true;
                try {
                  await startOAuth(p, 'session');
                } catch (err) {
                  button.disabled = false;
                  notify(err?.message ?? String(err), { kind: 'error' });
                }
              },
            },
            `Sign in with ${p.display_name}`,
          ),
        ),
      );
      box.hidden = false;
    });
    return box;
  }

  frame(...children) {
    const wrap = h('div', { class: 'auth-wrap' }, h('div', { class: 'card' }, children));
    this.main.replaceChildren(wrap);
    rateLimit.apply();
  }

  passwordStep(message) {
    this.mfaToken = null;
    this.setTitle('Sign in');
    const form = h(
      'form',
      { id: 'login-form', novalidate: true, 'aria-labelledby': 'login-title' },
      field({ label: 'Username', id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' }),
      field({ label: 'Password', id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Sign in')),
    );
    onSubmit(form, async (data) => {
      const username = String(data.get('username') ?? '').trim();
      const password = String(data.get('password') ?? '');
      if (!username) throw new FieldProblem('username', 'Enter your username.');
      if (!password) throw new FieldProblem('password', 'Enter your password.');
      clearNotice();
      const res = await api('/auth/session', { method: 'POST', body: { username, password }, quiet401: true });
      if (!this.alive()) return;
      if (res?.mfa_required) {
        this.mfaToken = res.mfa_token;
        this.mfaStep(false);
        return;
      }
      this.done(res);
    });
    this.frame(
      h('h1', { id: 'login-title', tabindex: '-1' }, 'Sign in to Kyros'),
      h('p', { class: 'muted' }, 'Sign in with your Kyros account to manage jobs, agents and keys.'),
      message ? h('div', { class: 'form-error', role: 'alert' }, message) : null,
      form,
      this.providerButtons(),
    );
  }

  mfaStep(recovery) {
    this.setTitle('Two-step verification');
    const input = recovery
      ? field({ label: 'Recovery code', id: 'mfa-recovery', name: 'recovery_code', autocomplete: 'off', required: true, autocapitalize: 'none', spellcheck: 'false', hint: 'Each recovery code works only once.' })
      : field({
          label: 'Authentication code',
          id: 'mfa-code',
          name: 'code',
          class: 'code-input',
          inputmode: 'numeric',
          autocomplete: 'one-time-code',
          pattern: '[0-9]{6}',
          maxlength: '6',
          required: true,
          hint: 'The 6-digit code your authenticator app shows now.',
        });
    const form = h(
      'form',
      { id: 'mfa-form', novalidate: true, 'aria-labelledby': 'mfa-title' },
      input,
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Verify')),
    );
    onSubmit(form, async (data) => {
      const body = { mfa_token: this.mfaToken };
      if (recovery) {
        body.recovery_code = String(data.get('recovery_code') ?? '').trim();
        if (!body.recovery_code) throw new FieldProblem('recovery_code', 'Enter one of your recovery codes.');
      } else {
        body.code = String(data.get('code') ?? '').replace(/\s+/g, '');
        if (!/^[0-9]{6}$/.test(body.code)) throw new FieldProblem('code', 'Enter the 6 digits from your app.');
      }
      try {
        const res = await api('/auth/mfa/verify', { method: 'POST', body, quiet401: true });
        if (this.alive()) this.done(res);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401 && /challenge/i.test(err.message)) {
          this.passwordStep('The sign-in took too long. Please enter your password again.');
          return;
        }
        throw err;
      }
    });
    this.frame(
      h('h1', { id: 'mfa-title', tabindex: '-1' }, 'Two-step verification'),
      h('p', { class: 'muted' }, recovery ? 'Enter one of the recovery codes you saved when you set up two-step verification.' : 'Open your authenticator app and enter the code for Kyros.'),
      form,
      h(
        'div',
        { class: 'auth-alt' },
        h('button', { type: 'button', class: 'link-button', id: recovery ? 'use-totp' : 'use-recovery', onclick: () => this.mfaStep(!recovery) }, recovery ? 'Use a code from the app instead' : 'Use a recovery code instead'),
        h('button', { type: 'button', class: 'link-button', onclick: () => this.passwordStep() }, 'Start over'),
      ),
    );
    $(recovery ? '#mfa-recovery' : '#mfa-code')?.focus();
  }

  async done(res) {
    this.mfaToken = null;
    let user = res?.user;
    if (!user) {
      await loadMe();
      user = state.me;
    }
    if (!user) {
      this.passwordStep('Signing in did not complete. Please try again.');
      return;
    }
    loggedIn(user);
    clearNotice();
    navigate(safeNext(this.query.get('next')), { replace: true });
  }
}

// ----- jobs ----------------------------------------------------------------------------------

function jobActions(job, onChanged, alerts) {
  const wrap = h('div', { class: 'actions' });
  const change = async (status, verb) => {
    alerts.clear();
    try {
      const updated = await api(`/api/v1/jobs/${encodeURIComponent(job.id)}/status`, { method: 'PUT', body: { status } });
      notify(`Job “${updated.name}” ${verb}.`);
      onChanged(updated);
    } catch (err) {
      alerts.show(err);
    }
  };
  if (job.status === 'pending' || job.status === 'running') {
    wrap.append(
      confirmButton({
        label: 'Cancel',
        ariaLabel: `Cancel job ${job.name}`,
        question: 'Cancel this job?',
        confirmLabel: 'Cancel job',
        onConfirm: () => change('cancelled', 'cancelled'),
      }),
    );
  }
  if (job.status === 'failed') {
    wrap.append(
      h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `Retry job ${job.name}`, onclick: () => change('pending', 'queued again') }, 'Retry'),
    );
  }
  return wrap;
}

class JobsPage extends Page {
  get title() {
    return 'Jobs';
  }

  render(main) {
    this.status = JOB_STATUSES.includes(this.query.get('status')) ? this.query.get('status') : '';
    this.skip = Math.max(0, Number.parseInt(this.query.get('skip') ?? '0', 10) || 0);
    this.limit = 50;
    this.alerts = alertArea();
    const canSeeAll = state.me?.role === 'admin' || state.me?.role === 'moderator';

    const form = h(
      'form',
      { id: 'job-form', novalidate: true, 'aria-labelledby': 'job-form-title' },
      field({ label: 'Title', id: 'job-title', name: 'title', required: true, maxlength: '255', autocomplete: 'off' }),
      field({ label: 'Description', id: 'job-description', name: 'description', type: 'textarea', maxlength: '1024', rows: '3' }),
      h(
        'div',
        { class: 'form-row' },
        field({ label: 'Priority', id: 'job-priority', name: 'priority', type: 'number', min: '-1000', max: '1000', step: '1', value: '0', hint: 'Higher runs first (−1000 to 1000).' }),
        field({ label: 'Requires labels', id: 'job-requires', name: 'requires', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: 'e.g. linux, gpu', hint: 'Optional. Only agents with all of these labels run it.' }),
      ),
      field({ label: 'Metadata (JSON)', id: 'job-metadata', name: 'metadata', type: 'textarea', class: 'mono', rows: '3', placeholder: '{"queue": "default"}', hint: 'Optional. A JSON object, at most 16 KiB.' }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Create job')),
    );
    onSubmit(form, async (data) => {
      const title = String(data.get('title') ?? '').trim();
      if (!title) throw new FieldProblem('title', 'Give the job a title.');
      const priority = Number(data.get('priority') || 0);
      if (!Number.isInteger(priority) || priority < -1000 || priority > 1000) throw new FieldProblem('priority', 'Use a whole number from −1000 to 1000.');
      let metadata;
      const rawMeta = String(data.get('metadata') ?? '').trim();
      if (rawMeta) {
        try {
          metadata = JSON.parse(rawMeta);
        } catch {
          throw new FieldProblem('metadata', 'This is not valid JSON.');
        }
        if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) throw new FieldProblem('metadata', 'Metadata must be a JSON object, like {"key": "value"}.');
      }
      const description = String(data.get('description') ?? '').trim();
      const requires = String(data.get('requires') ?? '')
        .split(/[\s,]+/)
        .map((l) => l.trim().toLowerCase())
        .filter(Boolean);
      const job = await this.api('/api/v1/jobs', {
        method: 'POST',
        body: { title, description: jsonOrEmpty(description), priority, metadata, requires: requires.length ? requires : undefined },
      });
      form.reset();
      notify(`Job “${job.name}” created.`);
      if (this.alive()) this.load();
    });

    this.tbody = h('tbody', { id: 'jobs-body' }, emptyRow(6, 'Loading…'));
    const filter = select({
      id: 'job-filter-status',
      name: 'status',
      value: this.status,
      options: [['', 'All statuses'], ...JOB_STATUSES.map((s) => [s, s[0].toUpperCase() + s.slice(1)])],
      onchange: (e) => this.go({ status: e.target.value, skip: 0 }),
    });
    this.prev = h('button', { type: 'button', class: 'btn btn-secondary btn-small', onclick: () => this.go({ skip: Math.max(0, this.skip - this.limit) }) }, 'Newer');
    this.next = h('button', { type: 'button', class: 'btn btn-secondary btn-small', onclick: () => this.go({ skip: this.skip + this.limit }) }, 'Older');
    this.range = h('span', { class: 'muted', 'aria-live': 'polite' });
    this.pager = h('div', { class: 'pager', hidden: true }, this.prev, this.range, this.next);

    main.replaceChildren(
      this.head('Jobs', canSeeAll ? 'Every job in the orchestrator, newest first. The list updates live.' : 'Your jobs, newest first. The list updates live.'),
      h(
        'div',
        { class: 'grid-2 grid-side' },
        h('section', { class: 'card', 'aria-labelledby': 'job-form-title' }, h('h2', { id: 'job-form-title' }, 'New job'), form),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'jobs-list-title' },
          h(
            'div',
            { class: 'card-head' },
            h('h2', { id: 'jobs-list-title' }, 'Job list'),
            h('div', { class: 'filters' }, field({ label: 'Status', control: filter, id: 'job-filter-status' }), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load() }, 'Refresh')),
          ),
          this.alerts,
          table(['Title', 'Status', h('th', { scope: 'col', class: 'num' }, 'Priority'), 'Created', 'Updated', 'Actions'], this.tbody, 'Jobs'),
          this.pager,
        ),
      ),
    );
    this.load();
  }

  go(changes) {
    const q = new URLSearchParams();
    const status = changes.status ?? this.status;
    const skip = changes.skip ?? this.skip;
    if (status) q.set('status', status);
    if (skip) q.set('skip', String(skip));
    const qs = q.toString();
    navigate(`/console/jobs${qs ? `?${qs}` : ''}`, { focus: false });
  }

  refresh() {
    this.load();
  }

  async load() {
    const q = new URLSearchParams({ skip: String(this.skip), limit: String(this.limit) });
    if (this.status) q.set('status', this.status);
    try {
      const jobs = await this.api(`/api/v1/jobs?${q}`);
      if (!this.alive()) return;
      syncRows(this.tbody, jobs, {
        key: (j) => j.id,
        sig: jobSig,
        row: (j) => this.row(j),
        empty: () => emptyRow(6, this.status ? `No ${this.status} jobs.` : 'No jobs yet. Create one with the form.'),
      });
      this.prev.disabled = this.skip === 0;
      this.next.disabled = jobs.length < this.limit;
      this.range.textContent = jobs.length ? `Jobs ${this.skip + 1}–${this.skip + jobs.length}` : '';
      this.pager.hidden = this.prev.disabled && this.next.disabled;
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.tbody.replaceChildren(emptyRow(6, `Could not load the jobs: ${err.message}`));
    }
  }

  row(job) {
    return h(
      'tr',
      { 'data-job-id': job.id, 'data-status': job.status, 'data-updated': job.updated_at },
      h('td', { class: 'cell-title' }, h('a', { href: `/console/jobs/${encodeURIComponent(job.id)}`, 'data-link': '' }, job.name)),
      h(
        'td',
        { class: 'job-status' },
        badge(job.status),
        job.status === 'running' && hasNumber(job.progress) ? h('span', { class: 'job-row-progress' }, ` ${percent(job.progress)}`) : null,
        job.agent_name && (job.status === 'running' || job.attempt > 0) ? h('span', { class: 'job-row-agent muted' }, job.agent_name) : null,
      ),
      h('td', { class: 'num' }, String(job.priority ?? 0)),
      h('td', { class: 'nowrap' }, shortTime(job.created_at)),
      h('td', { class: 'nowrap' }, shortTime(job.updated_at)),
      h('td', null, jobActions(job, (updated) => this.replace(updated), this.alerts)),
    );
  }

  rowOf(id) {
    return this.tbody.querySelector(`tr[data-job-id="${CSS.escape(String(id))}"]`);
  }

  replace(job) {
    const old = this.rowOf(job.id);
    if (!old || old.dataset.sig === jobSig(job)) return;
    // An answer that was overtaken by a newer one (e.g. by a heartbeat's job).
    if (old.dataset.updated && new Date(job.updated_at) < new Date(old.dataset.updated)) return;
    if (this.status && job.status !== this.status) {
      old.remove();
      if (!this.tbody.rows.length) this.load();
      return;
    }
    const row = this.row(job);
    row.dataset.key = job.id;
    row.dataset.sig = jobSig(job);
    row.classList.add('row-flash');
    old.replaceWith(row);
    this.later(() => row.classList.remove('row-flash'), 1500);
  }

  async onEvent(evt) {
    if (!String(evt.event ?? '').startsWith('job_') || !evt.task_id) return;
    const id = evt.task_id;
    if (evt.event === 'job_output') return;
    if (evt.event === 'job_deleted') {
      this.rowOf(id)?.remove();
      return;
    }
    if (evt.event === 'job_progress') {
      // A heartbeat carries the job: no need to read it again.
      if (evt.job && this.rowOf(id)) this.replace(evt.job);
      return;
    }
    if (!this.rowOf(id)) {
      // A job this page does not show yet (new, or now matching the filter): read the page again.
      if (this.skip === 0) this.debounced('reload', () => this.load());
      return;
    }
    try {
      const job = await this.api(`/api/v1/jobs/${encodeURIComponent(id)}`);
      if (this.alive()) this.replace(job);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.rowOf(id)?.remove();
    }
  }
}

function describeEvent(evt) {
  const parts = [];
  if (evt.event === 'job_status_updated' && evt.old_status && evt.new_status) parts.push(`${evt.old_status} → ${evt.new_status}`);
  else if (evt.job?.status) parts.push(`status ${evt.job.status}`);
  const agent = evt.agent_name ?? (evt.event === 'job_claimed' ? evt.job?.agent_name : null);
  if (agent) parts.push(`agent ${agent}`);
  else if (evt.agent_id) parts.push(`agent ${shortId(evt.agent_id)}`);
  if (evt.reason) parts.push(String(evt.reason));
  if (evt.event === 'job_failed' && evt.job?.error) {
    const [first, ...more] = String(evt.job.error).split('\n');
    parts.push(more.length ? `${first} …` : first);
  }
  if ((evt.event === 'job_failed' || evt.event === 'job_completed') && hasNumber(evt.job?.exit_code)) parts.push(`exit code ${evt.job.exit_code}`);
  if (evt.run_id) parts.push(`run ${String(evt.run_id).split(':').pop()}`);
  return parts.join(' · ');
}

const FINISHED = new Set(['completed', 'failed', 'cancelled']);
const OUTPUT_PAGE = 5000;

/** One line of a terminal panel: a text node (markup in the output stays text), its stream marked. */
function terminalLine(stream, text, attrs = {}) {
  const kind = stream === 'stderr' || stream === 'system' ? stream : 'stdout';
  return h(
    'div',
    { class: `term-line term-${kind}`, 'data-stream': kind, ...attrs },
    h('span', { class: 'term-mark' }, kind === 'stderr' ? 'err' : kind === 'system' ? 'sys' : ''),
    h('span', { class: 'term-text' }, String(text ?? '')),
  );
}

/**
 * A job's output as a terminal: every page of GET …/output first, then the live `job_output`
 * events appended in sequence order. A batch that does not follow the last line shown (events
 * missed, e.g. while reconnecting) makes it read the API again from that line.
 */
class JobOutput {
  constructor(page, jobId) {
    this.page = page;
    this.jobId = jobId;
    this.lines = []; // {seq, attempt, stream, at, line}, in order
    this.lastSeq = 0;
    this.lastAttempt = null;
    this.loading = false;
    this.again = false;
    this.follow = true;
    this.empty = h('p', { class: 'term-empty', id: 'job-output-empty' }, 'No output yet.');
    this.screen = h(
      'div',
      { id: 'job-output', class: 'terminal', role: 'log', 'aria-live': 'off', 'aria-labelledby': 'job-output-title', tabindex: '0' },
      this.empty,
    );
    this.screen.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.truncated = h('p', { class: 'output-truncated', id: 'job-output-truncated', role: 'status', hidden: true }, 'The output reached its size limit: later lines were dropped.');
    this.problem = h('div', { class: 'form-error', role: 'alert', hidden: true });
    this.count = h('span', { class: 'muted', id: 'job-output-count' }, '0 lines');
    this.followBox = h('input', { type: 'checkbox', id: 'job-output-follow', checked: true, onchange: (e) => this.setFollow(e.target.checked) });
    this.download = h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'job-output-download', onclick: () => this.save() }, 'Download');
    this.el = h(
      'section',
      { class: 'card', id: 'job-output-card', 'aria-labelledby': 'job-output-title' },
      h(
        'div',
        { class: 'card-head' },
        h('h2', { id: 'job-output-title' }, 'Output'),
        h('div', { class: 'actions' }, this.count, h('label', { class: 'check', for: 'job-output-follow' }, this.followBox, 'Follow'), this.download),
      ),
      this.problem,
      this.truncated,
      this.screen,
    );
  }

  /** Reads the lines after the last one shown, page by page, to the end. */
  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.download.disabled = true;
    try {
      do {
        this.again = false;
        for (;;) {
          const after = this.lastSeq;
          const res = await this.page.api(`/api/v1/jobs/${encodeURIComponent(this.jobId)}/output?after=${after}&limit=${OUTPUT_PAGE}`);
          if (!this.page.alive()) return;
          if (res?.truncated) this.truncated.hidden = false;
          const lines = res?.lines ?? [];
          this.add(lines, { fromApi: true });
          if (lines.length < OUTPUT_PAGE || this.lastSeq <= after) break;
        }
      } while (this.again);
      this.problem.hidden = true;
    } catch (err) {
      if (err?.name === 'AbortError' || !this.page.alive()) return;
      this.problem.textContent = `The output could not be read: ${err?.message ?? err}`;
      this.problem.hidden = false;
    } finally {
      this.loading = false;
      this.download.disabled = false;
    }
  }

  /** A `job_output` event: its lines, when they follow the last one shown; else a read. */
  onEvent(evt) {
    if (evt.truncated) this.truncated.hidden = false;
    this.add(evt.lines ?? [], { fromApi: false });
  }

  add(lines, { fromApi }) {
    const sorted = lines.filter((l) => Number.isFinite(Number(l?.seq))).sort((a, b) => Number(a.seq) - Number(b.seq));
    const frag = document.createDocumentFragment();
    let gap = false;
    for (const l of sorted) {
      const seq = Number(l.seq);
      if (seq <= this.lastSeq) continue; // seen already (history and live overlap)
      if (!fromApi && seq !== this.lastSeq + 1) {
        gap = true;
        break;
      }
      if (l.attempt !== this.lastAttempt) {
        frag.append(h('div', { class: 'term-run', 'data-attempt': String(l.attempt ?? '') }, `── Run ${l.attempt ?? '?'} ──`));
        this.lastAttempt = l.attempt;
      }
      this.lastSeq = seq;
      this.lines.push(l);
      frag.append(terminalLine(l.stream, l.line, { 'data-seq': String(seq), title: `${l.stream === 'stderr' ? 'stderr' : l.stream === 'system' ? 'service' : 'stdout'} · ${fmtTime(l.at)}` }));
    }
    if (frag.childNodes.length) {
      this.empty.hidden = true;
      this.screen.append(frag);
      const n = this.lines.length;
      this.count.textContent = `${n} line${n === 1 ? '' : 's'}`;
      if (this.follow) this.scrollToEnd();
    }
    if (gap) this.load();
  }

  setFollow(on) {
    this.follow = on;
    this.followBox.checked = on;
    if (on) this.scrollToEnd();
  }

  scrollToEnd() {
    this.screen.scrollTop = this.screen.scrollHeight;
  }

  /** Scrolling up stops following; scrolling back to the end follows again. */
  onScroll() {
    const atEnd = this.screen.scrollHeight - this.screen.scrollTop - this.screen.clientHeight < 4;
    if (atEnd !== this.follow) this.setFollow(atEnd);
  }

  /** The whole output as a .txt file (a Blob behind an object URL, no script). */
  save() {
    const text = this.lines.map((l) => `${l.line}\n`).join('');
    const url = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }));
    const a = h('a', { href: url, download: `job-${this.jobId}-output.txt`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30_000);
  }
}

/** What the job page's details show (not the run's live fields, which change with every heartbeat). */
const detailSig = (j) =>
  JSON.stringify([j.status, j.name, j.description, j.priority, j.metadata, j.requires, j.result, j.error, j.created_at, j.started_at, j.completed_at]);

/** A job's result: the last lines of the output (`output_tail`, as `kyros agent` reports) as a
 * terminal, any other JSON pretty-printed. */
function resultView(result) {
  if (typeof result === 'string') return [h('pre', { id: 'job-result' }, result)];
  if (result && typeof result === 'object' && !Array.isArray(result) && Array.isArray(result.output_tail)) {
    const { output_tail: tail, ...rest } = result;
    const out = [
      h(
        'div',
        { id: 'job-result', class: 'terminal terminal-short', role: 'group', 'aria-label': 'Last lines of the output' },
        tail.length ? tail.map((line) => terminalLine('stdout', typeof line === 'string' ? line : compactJson(line))) : h('p', { class: 'term-empty' }, 'No output.'),
      ),
    ];
    const other = Object.keys(rest).filter((k) => k !== 'exit_code');
    if (other.length) out.push(h('pre', { id: 'job-result-data' }, JSON.stringify(rest, null, 2)));
    return out;
  }
  return [h('pre', { id: 'job-result' }, JSON.stringify(result, null, 2))];
}

class JobDetailPage extends Page {
  get title() {
    return 'Job';
  }

  render(main) {
    this.id = this.params[0];
    this.job = null;
    this.beatAt = null; // the newest heartbeat (or claim) of the job we know of
    this.eventIds = new Set();
    this.alerts = alertArea();
    this.body = h('div', null, h('p', { class: 'muted' }, 'Loading the job…'));
    this.events = h('ol', { id: 'job-events', class: 'timeline', 'aria-live': 'polite', 'aria-relevant': 'additions' });
    this.noEvents = h('p', { class: 'muted', id: 'job-events-empty' }, 'No events yet.');
    this.run = this.runCard();
    this.output = new JobOutput(this, this.id);
    this.output.el.hidden = true;
    main.replaceChildren(
      h('p', { class: 'breadcrumb' }, h('a', { href: '/console/jobs', 'data-link': '' }, '← All jobs')),
      this.alerts,
      this.body,
      this.run.el,
      this.output.el,
      h('section', { class: 'card', 'aria-labelledby': 'job-events-title' }, h('h2', { id: 'job-events-title' }, 'Events'), this.noEvents, this.events),
    );
    this.load(true);
    this.every(() => this.tick(), 1000);
  }

  focusTarget() {
    return $('#main h1') ?? $('#main');
  }

  jobIds() {
    return [this.id];
  }

  refresh() {
    this.load(false);
  }

  async load(first) {
    try {
      const [job, history] = await Promise.all([
        this.api(`/api/v1/jobs/${encodeURIComponent(this.id)}`),
        this.api(`/api/v1/orchestrator/events?lifecycle=true&task_id=${encodeURIComponent(this.id)}`).catch((err) => {
          if (err?.name === 'AbortError') throw err;
          return { events: [], error: err };
        }),
      ]);
      if (!this.alive()) return;
      for (const evt of [...(history.events ?? [])].sort((a, b) => Number(a.id) - Number(b.id))) {
        this.noteBeat(evt);
        if (!QUIET_EVENTS.has(evt.event)) this.addEvent(evt);
      }
      if (first) this.show(job, true);
      else this.update(job);
      if (history.error) this.alerts.show(new Error(`The event history could not be read: ${history.error.message}`));
      this.output.el.hidden = false;
      this.output.load();
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      if (err instanceof ApiError && err.status === 404) {
        this.setTitle('Job not found');
        this.run.el.hidden = true;
        this.output.el.hidden = true;
        this.body.replaceChildren(this.head('Job not found', 'This job does not exist, was deleted, or belongs to someone else.'));
        if (first) $('#main h1')?.focus();
        return;
      }
      this.loadError(err, this.body);
    }
  }

  /** A newer version of the job: the details drawn again when they changed, the run in place. */
  update(job) {
    if (this.job && new Date(job.updated_at) < new Date(this.job.updated_at)) return; // overtaken
    if (!this.job || detailSig(job) !== detailSig(this.job)) this.show(job, false);
    else {
      this.job = job;
      this.updateRun(job);
    }
  }

  show(job, focus) {
    this.job = job;
    this.setTitle(`Job “${job.name}”`);
    const requires = job.requires?.length
      ? h('span', { id: 'job-requires', class: 'labels' }, job.requires.map((l) => h('code', { class: 'label' }, l)))
      : h('span', { id: 'job-requires', class: 'muted' }, 'any agent');
    const props = [
      ['Status', h('span', { id: 'job-status' }, badge(job.status))],
      ['ID', h('code', null, job.id)],
      ['Priority', String(job.priority ?? 0)],
      ['Requires', requires],
      ['Created', timeEl(job.created_at)],
      ['Started', timeEl(job.started_at)],
      ['Finished', timeEl(job.completed_at)],
    ];
    const dl = h('dl', { class: 'props' }, props.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
    const sections = [];
    if (job.description) sections.push(h('h3', null, 'Description'), h('p', { id: 'job-description-text' }, job.description));
    if (job.metadata) sections.push(h('h3', null, 'Metadata'), h('pre', null, JSON.stringify(job.metadata, null, 2)));
    if (job.result !== null && job.result !== undefined) sections.push(h('h3', null, 'Result'), resultView(job.result));
    if (job.error) sections.push(h('h3', null, 'Error'), h('pre', { id: 'job-error' }, job.error));
    const actions = jobActions(job, (updated) => this.update(updated), this.alerts);
    actions.append(
      confirmButton({
        label: 'Delete',
        ariaLabel: `Delete job ${job.name}`,
        question: 'Delete this job for good?',
        confirmLabel: 'Delete job',
        onConfirm: async () => {
          try {
            await this.api(`/api/v1/jobs/${encodeURIComponent(job.id)}`, { method: 'DELETE' });
            notify(`Job “${job.name}” deleted.`, { keep: true });
            navigate('/console/jobs');
          } catch (err) {
            this.alerts.show(err);
          }
        },
      }),
    );
    const hadFocus = this.body.contains(document.activeElement) && document.activeElement.tagName === 'H1';
    this.body.replaceChildren(
      h(
        'div',
        { class: 'page-head' },
        h('div', null, h('h1', { tabindex: '-1', id: 'job-title' }, job.name), h('p', { class: 'muted' }, 'Job details. Changes appear here live.')),
        actions,
      ),
      h('section', { class: 'card job-card', 'aria-labelledby': 'job-details-title' }, h('h2', { id: 'job-details-title', class: 'visually-hidden' }, 'Details'), dl, sections),
    );
    this.updateRun(job);
    if (focus || hadFocus) $('#job-title')?.focus();
    rateLimit.apply();
  }

  /** The run's card: built once, its fields changed in place (heartbeats come twice a second). */
  runCard() {
    const el = {
      agent: h('span', { id: 'job-agent' }, '—'),
      run: h('span', { id: 'job-run' }, '—'),
      duration: h('span', { id: 'job-duration' }, '—'),
      progress: h('progress', { id: 'job-progress', max: '1', 'aria-labelledby': 'job-progress-label', 'aria-describedby': 'job-progress-text' }),
      progressText: h('span', { id: 'job-progress-text' }),
      lease: h('span', { id: 'job-lease' }, '—'),
      beat: h('span', { id: 'job-heartbeat' }, '—'),
      exit: h('span', { id: 'job-exit-code' }, '—'),
    };
    const prop = (key, label, ...value) => {
      const group = h('div', { class: 'prop', 'data-prop': key }, h('dt', { id: `job-${key}-label` }, label), h('dd', null, value));
      el[`${key}Row`] = group;
      return group;
    };
    el.el = h(
      'section',
      { class: 'card', id: 'job-run-card', 'aria-labelledby': 'job-run-title', hidden: true },
      h('h2', { id: 'job-run-title' }, 'Run'),
      h(
        'dl',
        { class: 'props' },
        prop('agent', 'Agent', el.agent),
        prop('run', 'Run', el.run),
        prop('duration', 'Duration', el.duration),
        prop('progress', 'Progress', h('span', { class: 'progress-line' }, el.progress, el.progressText)),
        prop('lease', 'Lease until', el.lease),
        prop('heartbeat', 'Last heartbeat', el.beat),
        prop('exit', 'Exit code', el.exit),
      ),
    );
    return el;
  }

  /** A claim or heartbeat: the newest one is the "last heartbeat". */
  noteBeat(evt) {
    if (evt.event !== 'job_progress' && evt.event !== 'job_claimed') return;
    if (!evt.timestamp) return;
    if (!this.beatAt || new Date(evt.timestamp) > new Date(this.beatAt)) this.beatAt = evt.timestamp;
  }

  updateRun(job) {
    const r = this.run;
    r.el.hidden = false;
    const running = job.status === 'running';
    r.agent.replaceChildren(job.agent_name ? h('strong', null, job.agent_name) : job.agent_id ? h('code', { title: job.agent_id }, `agent ${shortId(job.agent_id)}`) : h('span', { class: 'muted' }, 'none yet'));
    if (job.status === 'pending') r.run.textContent = job.attempt > 0 ? `Waiting for an agent (after ${job.attempt} run${job.attempt === 1 ? '' : 's'})` : 'Waiting for an agent';
    else r.run.textContent = job.attempt > 0 ? `Run ${job.attempt}` : '—';
    r.durationRow.hidden = !job.started_at;
    const hasProgress = hasNumber(job.progress);
    r.progressRow.hidden = !hasProgress && !running;
    if (hasProgress) {
      r.progress.value = Math.max(0, Math.min(1, Number(job.progress)));
      r.progressText.textContent = job.progress_message ? `${percent(job.progress)} · ${job.progress_message}` : percent(job.progress);
    } else {
      r.progress.removeAttribute('value'); // indeterminate: running, nothing reported
      r.progressText.textContent = 'Not reported';
    }
    r.leaseRow.hidden = !running;
    r.lease.replaceChildren(running && job.lease_expires_at ? timeEl(job.lease_expires_at) : '—');
    r.heartbeatRow.hidden = !this.beatAt && !running;
    const shown = r.beat.querySelector('time')?.getAttribute('datetime');
    if (this.beatAt && shown !== this.beatAt) r.beat.replaceChildren(agoEl(this.beatAt));
    else if (!this.beatAt) r.beat.replaceChildren(h('span', { class: 'muted' }, 'none yet'));
    r.exitRow.hidden = !hasNumber(job.exit_code);
    r.exit.textContent = hasNumber(job.exit_code) ? String(job.exit_code) : '—';
    this.tick();
  }

  /** Once a second: the running time and the relative times. */
  tick() {
    const job = this.job;
    if (!job) return;
    if (job.started_at) {
      const start = new Date(job.started_at).getTime();
      const end = job.completed_at ? new Date(job.completed_at).getTime() : job.status === 'running' ? Date.now() : NaN;
      const text = Number.isNaN(end) ? '—' : job.status === 'running' ? `${fmtDuration(end - start)} (running)` : fmtDuration(end - start);
      if (this.run.duration.textContent !== text) this.run.duration.textContent = text;
    }
    tickAgo(this.run.el);
  }

  addEvent(evt) {
    if (evt.id === undefined || this.eventIds.has(evt.id)) return;
    this.eventIds.add(evt.id);
    const item = h(
      'li',
      { 'data-event-id': String(evt.id), 'data-event': evt.event ?? '' },
      h('span', { class: 'event-name' }, EVENT_LABELS[evt.event] ?? String(evt.event ?? 'event')),
      ' ',
      h('code', { class: 'muted' }, String(evt.event ?? '')),
      timeEl(evt.timestamp),
      describeEvent(evt) ? h('span', { class: 'event-detail' }, describeEvent(evt)) : null,
    );
    // Keep the list in id order (live events can overtake the history answer).
    const after = [...this.events.children].find((li) => Number(li.dataset.eventId) > Number(evt.id));
    this.events.insertBefore(item, after ?? null);
    this.noEvents.hidden = true;
  }

  async onEvent(evt) {
    if (evt.task_id !== this.id) return;
    if (evt.event === 'job_output') {
      this.output.onEvent(evt);
      return;
    }
    this.noteBeat(evt);
    if (evt.event === 'job_progress') {
      // The heartbeat carries the job (new lease end, progress): nothing to read.
      if (evt.job) this.update(evt.job);
      else if (this.job) this.updateRun(this.job);
      return;
    }
    this.addEvent(evt);
    if (evt.event === 'job_deleted') {
      this.alerts.show(new Error('This job was deleted.'));
      return;
    }
    try {
      const job = await this.api(`/api/v1/jobs/${encodeURIComponent(this.id)}`);
      if (!this.alive()) return;
      this.update(job);
      // The last lines may have been sent just before the end: make sure they are all here.
      if (FINISHED.has(job.status)) this.output.load();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.alerts.show(new Error('This job was deleted.'));
    }
  }
}

// ----- tasks ---------------------------------------------------------------------------------

class TasksPage extends Page {
  get title() {
    return 'Tasks';
  }

  render(main) {
    this.alerts = alertArea();
    this.tbody = h('tbody', { id: 'tasks-body' }, emptyRow(5, 'Loading…'));
    this.editor = h('section', { class: 'card', id: 'task-editor', 'aria-labelledby': 'task-editor-title', hidden: true });
    const form = h(
      'form',
      { id: 'task-form', novalidate: true },
      field({ label: 'Title', id: 'task-title', name: 'title', required: true, maxlength: '255', autocomplete: 'off' }),
      field({ label: 'Description', id: 'task-description', name: 'description', type: 'textarea', rows: '3', maxlength: '10000' }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Add task')),
    );
    onSubmit(form, async (data) => {
      const title = String(data.get('title') ?? '').trim();
      if (!title) throw new FieldProblem('title', 'Give the task a title.');
      const description = String(data.get('description') ?? '').trim();
      const task = await this.api('/api/v1/collab/tasks', { method: 'POST', body: description ? { title, description } : { title } });
      form.reset();
      notify(`Task “${task.title}” added.`);
      if (this.alive()) this.load();
    });
    main.replaceChildren(
      this.head('Tasks', 'Shared tasks everyone can read and edit. The list updates live.'),
      h(
        'div',
        { class: 'grid-2 grid-side' },
        h('section', { class: 'card', 'aria-labelledby': 'task-form-title' }, h('h2', { id: 'task-form-title' }, 'New task'), form),
        h(
          'div',
          { class: 'stack' },
          this.editor,
          h(
            'section',
            { class: 'card', 'aria-labelledby': 'tasks-list-title' },
            h('div', { class: 'card-head' }, h('h2', { id: 'tasks-list-title' }, 'Task list'), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load() }, 'Refresh')),
            this.alerts,
            table(['Title', 'Description', h('th', { scope: 'col', class: 'num' }, 'Version'), 'Updated', 'Actions'], this.tbody, 'Tasks'),
          ),
        ),
      ),
    );
    this.load();
  }

  refresh() {
    this.load();
  }

  onEvent(evt) {
    if (String(evt.event ?? '').startsWith('task_')) this.debounced('reload', () => this.load());
  }

  async load() {
    try {
      const res = await this.api('/api/v1/collab/state/tasks');
      if (!this.alive()) return;
      const items = [...(res?.items ?? [])].reverse();
      syncRows(this.tbody, items, {
        key: (t) => t.id,
        sig: (t) => `${t.version}|${t.updated_at}`,
        row: (t) => this.row(t),
        empty: () => emptyRow(5, 'No tasks yet.'),
      });
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.tbody.replaceChildren(emptyRow(5, `Could not load the tasks: ${err.message}`));
    }
  }

  row(task) {
    return h(
      'tr',
      { 'data-task-id': task.id },
      h('td', null, h('strong', null, task.title)),
      h('td', null, task.description ? task.description : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'num' }, String(task.version)),
      h('td', { class: 'nowrap' }, shortTime(task.updated_at)),
      h(
        'td',
        null,
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `Edit task ${task.title}`, onclick: () => this.edit(task) }, 'Edit'),
          confirmButton({
            label: 'Delete',
            ariaLabel: `Delete task ${task.title}`,
            question: 'Delete?',
            confirmLabel: 'Delete task',
            onConfirm: async () => {
              this.alerts.clear();
              try {
                await this.api(`/api/v1/collab/tasks/${encodeURIComponent(task.id)}`, { method: 'DELETE' });
                notify(`Task “${task.title}” deleted.`);
                this.load();
              } catch (err) {
                this.alerts.show(err);
              }
            },
          }),
        ),
      ),
    );
  }

  edit(task) {
    const form = h(
      'form',
      { id: 'task-edit-form', novalidate: true },
      field({ label: 'Title', id: 'task-edit-title', name: 'title', required: true, maxlength: '255', value: task.title, autocomplete: 'off' }),
      field({ label: 'Description', id: 'task-edit-description', name: 'description', type: 'textarea', rows: '3', maxlength: '10000', value: task.description ?? '' }),
      h(
        'div',
        { class: 'form-actions' },
        h('button', { type: 'submit', class: 'btn' }, 'Save task'),
        h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.closeEditor(task.id) }, 'Cancel'),
      ),
    );
    onSubmit(form, async (data) => {
      const title = String(data.get('title') ?? '').trim();
      if (!title) throw new FieldProblem('title', 'Give the task a title.');
      const description = String(data.get('description') ?? '').trim();
      const saved = await this.api(`/api/v1/collab/tasks/${encodeURIComponent(task.id)}`, { method: 'PUT', body: description ? { title, description } : { title } });
      notify(`Task “${saved.title}” saved.`);
      this.closeEditor(task.id);
      this.load();
    });
    this.editor.replaceChildren(h('h2', { id: 'task-editor-title' }, `Edit “${task.title}”`), form);
    this.editor.hidden = false;
    $('#task-edit-title').focus();
    rateLimit.apply();
  }

  closeEditor(id) {
    this.editor.hidden = true;
    this.editor.replaceChildren();
    this.tbody.querySelector(`tr[data-task-id="${CSS.escape(id)}"] button`)?.focus();
  }
}

// ----- agents --------------------------------------------------------------------------------

/** The agent's state now: the service's answer, or offline once its last heartbeat is too old. */
function agentHealth(status, seen) {
  const t = new Date(seen).getTime();
  if (status !== 'offline' && Number.isFinite(t) && Date.now() - t > AGENT_ONLINE_MS) return 'offline';
  return status || 'offline';
}

const HEALTH_TITLES = { active: 'Online, running jobs', idle: 'Online, waiting for jobs', offline: 'Not seen for two minutes or more' };

function healthBadge(status, seen) {
  const now = agentHealth(status, seen);
  const el = badge(now);
  el.classList.add('agent-health');
  if (HEALTH_TITLES[now]) el.title = HEALTH_TITLES[now];
  el.dataset.status = status ?? '';
  el.dataset.seen = seen ?? '';
  el.dataset.shown = now;
  return el;
}

class AgentsPage extends Page {
  get title() {
    return 'Agents';
  }

  render(main) {
    this.tbody = h('tbody', { id: 'agents-body' }, emptyRow(6, 'Loading…'));
    this.summary = h('p', { class: 'muted', id: 'agents-summary', 'aria-live': 'polite' });
    main.replaceChildren(
      this.head(
        'Agents',
        'Workers that run jobs (kyros agent, or any client with a jobs:claim key). The list updates live.',
        h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load() }, 'Refresh'),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'agents-title' },
        h('h2', { id: 'agents-title', class: 'visually-hidden' }, 'Agent list'),
        this.summary,
        table(['Agent', 'Status', 'Labels', 'Runs', 'Last seen', 'Current jobs'], this.tbody, 'Agents'),
        h('p', { class: 'hint' }, 'Online means seen within the last two minutes. Create agent keys (scope jobs:claim) on the ', h('a', { href: '/console/keys', 'data-link': '' }, 'API keys'), ' page.'),
      ),
    );
    this.load();
    this.every(() => this.load(), 30_000);
    this.every(() => this.tick(), 1000);
  }

  refresh() {
    this.load();
  }

  onEvent(evt) {
    if (AGENT_EVENTS.has(evt.event)) this.throttled('reload', () => this.load(), 1000);
  }

  /** Once a second: "last seen" and the health badges (an agent that stops goes offline). */
  tick() {
    tickAgo(this.tbody);
    for (const b of this.tbody.querySelectorAll('.agent-health')) {
      if (agentHealth(b.dataset.status, b.dataset.seen) !== b.dataset.shown) b.replaceWith(healthBadge(b.dataset.status, b.dataset.seen));
    }
  }

  async load() {
    try {
      const res = await this.api('/api/v1/agents?pageSize=100');
      if (!this.alive()) return;
      const agents = res?.agents ?? [];
      const total = res?.total ?? agents.length;
      this.summary.textContent = `${total} agent${total === 1 ? '' : 's'}`;
      syncRows(this.tbody, agents, {
        key: (a) => a.id,
        // Not lastHeartbeatAt (it changes with every heartbeat): that is set in place below.
        sig: (a) =>
          JSON.stringify([a.name, a.status, a.labels, a.version, a.host, a.runsCompleted, a.runsFailed, a.successRate, (a.currentJobs ?? []).map((j) => [j.id, j.name, j.attempt, j.progress])]),
        empty: () => emptyRow(6, 'No agent has connected yet.'),
        row: (a) => this.row(a),
      });
      for (const a of agents) {
        const tr = this.tbody.querySelector(`tr[data-agent-id="${CSS.escape(String(a.id))}"]`);
        if (!tr) continue;
        const seen = tr.querySelector('.agent-seen');
        if (seen && a.lastHeartbeatAt && seen.getAttribute('datetime') !== a.lastHeartbeatAt) {
          seen.setAttribute('datetime', a.lastHeartbeatAt);
          seen.title = fmtTime(a.lastHeartbeatAt);
          seen.textContent = ago(a.lastHeartbeatAt);
        }
        const health = tr.querySelector('.agent-health');
        if (health && health.dataset.seen !== a.lastHeartbeatAt) health.replaceWith(healthBadge(a.status, a.lastHeartbeatAt));
      }
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.tbody.replaceChildren(emptyRow(6, `Could not load the agents: ${err.message}`));
    }
  }

  row(a) {
    const about = [a.version ? `version ${a.version}` : null, a.host ? `on ${a.host}` : null].filter(Boolean).join(' ');
    const finished = (a.runsCompleted ?? 0) + (a.runsFailed ?? 0);
    const jobs = a.currentJobs ?? (a.currentJob ? [a.currentJob] : []);
    return h(
      'tr',
      { 'data-agent-id': a.id, 'data-agent-name': a.name },
      h(
        'td',
        { class: 'agent-cell' },
        h('strong', { class: 'agent-name' }, a.name),
        about ? h('span', { class: 'agent-about muted' }, about) : null,
        h('code', { class: 'muted agent-id', title: a.id }, shortId(a.id)),
      ),
      h('td', { class: 'agent-status' }, healthBadge(a.status, a.lastHeartbeatAt)),
      h('td', { class: 'agent-labels' }, a.labels?.length ? h('span', { class: 'labels' }, a.labels.map((l) => h('code', { class: 'label' }, l))) : h('span', { class: 'muted' }, '—')),
      h(
        'td',
        { class: 'agent-runs nowrap' },
        h('span', { class: 'agent-runs-count' }, `${a.runsCompleted ?? 0} completed · ${a.runsFailed ?? 0} failed`),
        h('span', { class: 'agent-rate muted' }, finished && hasNumber(a.successRate) ? `${percent(a.successRate)} succeeded` : 'no finished runs'),
        a.lastRunAt ? h('span', { class: 'muted agent-last-run' }, 'last run ', agoEl(a.lastRunAt)) : null,
      ),
      h('td', { class: 'nowrap' }, agoEl(a.lastHeartbeatAt, { class: 'agent-seen' })),
      h(
        'td',
        { class: 'agent-jobs' },
        jobs.length
          ? h(
              'ul',
              { class: 'agent-job-list' },
              jobs.map((j) =>
                h(
                  'li',
                  { 'data-job-id': j.id },
                  h('a', { href: `/console/jobs/${encodeURIComponent(j.id)}`, 'data-link': '' }, j.name),
                  h('span', { class: 'muted' }, ` run ${j.attempt}`),
                  hasNumber(j.progress)
                    ? h('span', { class: 'progress-line' }, h('progress', { max: '1', value: String(Math.max(0, Math.min(1, Number(j.progress)))), 'aria-label': `Progress of ${j.name}` }), percent(j.progress))
                    : null,
                ),
              ),
            )
          : h('span', { class: 'muted' }, 'none'),
      ),
    );
  }
}

// ----- API keys ------------------------------------------------------------------------------

class KeysPage extends Page {
  get title() {
    return 'API keys';
  }

  render(main) {
    this.alerts = alertArea();
    this.secretBox = h('section', { id: 'new-key', class: 'secret-box', hidden: true, 'aria-labelledby': 'new-key-title' });
    this.tbody = h('tbody', { id: 'keys-body' }, emptyRow(8, 'Loading…'));
    const isAdmin = state.me?.role === 'admin';
    const scopes = h(
      'fieldset',
      { id: 'key-scopes' },
      h('legend', null, 'Scopes'),
      h(
        'div',
        { class: 'checks' },
        SCOPES.filter(([s]) => s !== 'admin' || isAdmin).map(([scope, text]) => {
          const id = `scope-${slug(scope)}`;
          return h('label', { class: 'check', for: id, title: text }, h('input', { type: 'checkbox', id, name: 'scopes', value: scope, checked: scope === 'jobs:read' }), h('code', null, scope));
        }),
      ),
      h('span', { class: 'hint' }, 'An agent that runs jobs needs jobs:read and jobs:claim.'),
    );
    const form = h(
      'form',
      { id: 'key-form', novalidate: true },
      h(
        'div',
        { class: 'form-row' },
        field({ label: 'Name', id: 'key-name', name: 'name', required: true, maxlength: '100', autocomplete: 'off', hint: 'For example the agent or machine that will use it.' }),
        field({ label: 'Expires after (days)', id: 'key-expires', name: 'expires_in_days', type: 'number', min: '1', max: '3650', step: '1', hint: 'Optional. Empty: the key does not expire.' }),
      ),
      scopes,
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Create key')),
    );
    onSubmit(form, async (data) => {
      const name = String(data.get('name') ?? '').trim();
      if (!name) throw new FieldProblem('name', 'Give the key a name.');
      const chosen = data.getAll('scopes').map(String);
      if (!chosen.length) throw new FieldProblem('scopes', 'Choose at least one scope.');
      const days = String(data.get('expires_in_days') ?? '').trim();
      const body = { name, scopes: chosen };
      if (days) {
        const n = Number(days);
        if (!Number.isInteger(n) || n < 1 || n > 3650) throw new FieldProblem('expires_in_days', 'Use a whole number of days from 1 to 3650.');
        body.expires_in_days = n;
      }
      const created = await this.api('/api/v1/api-keys', { method: 'POST', body });
      form.reset();
      if (!this.alive()) return;
      this.showSecret(created);
      this.load();
    });
    main.replaceChildren(
      this.head('API keys', 'Keys let agents and scripts call the API. A key’s secret is shown once, when it is created.'),
      this.secretBox,
      h(
        'div',
        { class: 'stack' },
        h('section', { class: 'card', 'aria-labelledby': 'key-form-title' }, h('h2', { id: 'key-form-title' }, 'New key'), form),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'keys-title' },
          h('div', { class: 'card-head' }, h('h2', { id: 'keys-title' }, 'Your keys')),
          this.alerts,
          table(['Name', 'Key ID', 'Scopes', 'Status', 'Created', 'Last used', 'Expires', 'Actions'], this.tbody, 'API keys'),
        ),
      ),
    );
    this.load();
  }

  showSecret(created) {
    const status = h('span', { class: 'hint', role: 'status' });
    this.secretBox.replaceChildren(
      h('h2', { id: 'new-key-title' }, `Copy the key “${created.name}” now`),
      h('p', null, 'This is the only time the key is shown. Store it where the agent can read it (a secret store, not source code). If it is lost, revoke it and create a new one.'),
      h('code', { id: 'new-key-secret', class: 'secret-value' }, created.key),
      h(
        'div',
        { class: 'form-actions' },
        h('button', { type: 'button', class: 'btn', onclick: () => copyText(created.key, status) }, 'Copy key'),
        h(
          'button',
          {
            type: 'button',
            class: 'btn btn-secondary',
            onclick: () => {
              this.secretBox.hidden = true;
              this.secretBox.replaceChildren();
              $('#key-name')?.focus();
            },
          },
          'I have stored it',
        ),
        status,
      ),
    );
    this.secretBox.hidden = false;
    this.secretBox.querySelector('button').focus();
  }

  async load() {
    try {
      const res = await this.api('/api/v1/api-keys');
      if (!this.alive()) return;
      const items = res?.items ?? [];
      syncRows(this.tbody, items, {
        key: (k) => k.id,
        sig: (k) => `${k.status}|${k.last_used_at}|${k.revoked_at}`,
        row: (k) => this.row(k),
        empty: () => emptyRow(8, 'No keys yet.'),
      });
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.tbody.replaceChildren(emptyRow(8, `Could not load the keys: ${err.message}`));
    }
  }

  row(key) {
    return h(
      'tr',
      { 'data-key-id': key.id, 'data-key-name': key.name, 'data-status': key.status },
      h('td', { class: 'nowrap' }, h('strong', null, key.name)),
      h('td', null, h('code', null, key.lookup_id ?? shortId(key.id))),
      h('td', null, (key.scopes ?? []).map((s, i) => [i ? ' ' : null, h('code', null, s)])),
      h('td', { class: 'key-status' }, badge(key.status)),
      h('td', { class: 'nowrap' }, shortTime(key.created_at)),
      h('td', { class: 'nowrap' }, key.last_used_at ? shortTime(key.last_used_at) : h('span', { class: 'muted' }, 'never')),
      h('td', { class: 'nowrap' }, key.expires_at ? shortTime(key.expires_at) : h('span', { class: 'muted' }, 'never')),
      h(
        'td',
        null,
        key.status === 'revoked'
          ? h('span', { class: 'muted' }, 'Revoked', key.revoked_at ? [' ', shortTime(key.revoked_at)] : null)
          : confirmButton({
              label: 'Revoke',
              ariaLabel: `Revoke key ${key.name}`,
              question: 'Revoke? Agents using it stop at once.',
              confirmLabel: 'Revoke key',
              onConfirm: async () => {
                this.alerts.clear();
                try {
                  await this.api(`/api/v1/api-keys/${encodeURIComponent(key.id)}`, { method: 'DELETE' });
                  notify(`Key “${key.name}” revoked.`);
                  await this.load();
                } catch (err) {
                  this.alerts.show(err);
                }
              },
            }),
      ),
    );
  }
}

// ----- account -------------------------------------------------------------------------------

function browserName(ua) {
  if (!ua) return 'Unknown client';
  const browser =
    (/Edg\/(\d+)/.exec(ua) && `Edge ${/Edg\/(\d+)/.exec(ua)[1]}`) ||
    (/Firefox\/(\d+)/.exec(ua) && `Firefox ${/Firefox\/(\d+)/.exec(ua)[1]}`) ||
    (/Chrom(?:e|ium)\/(\d+)/.exec(ua) && `Chrome ${/Chrom(?:e|ium)\/(\d+)/.exec(ua)[1]}`) ||
    (/Version\/(\d+).*Safari/.exec(ua) && `Safari ${/Version\/(\d+).*Safari/.exec(ua)[1]}`) ||
    null;
  const os = /Windows/.test(ua) ? 'Windows' : /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : null;
  if (!browser) return ua.length > 60 ? `${ua.slice(0, 57)}…` : ua;
  return os ? `${browser} on ${os}` : browser;
}

function svgDataUrl(svg) {
  const bytes = new TextEncoder().encode(svg);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:image/svg+xml;base64,${btoa(bin)}`;
}

class AccountPage extends Page {
  get title() {
    return 'Account';
  }

  render(main) {
    const me = state.me;
    this.mfaCard = h('section', { class: 'card', id: 'mfa-card', 'aria-labelledby': 'mfa-title' }, h('h2', { id: 'mfa-title' }, 'Two-step verification'), h('p', { class: 'muted' }, 'Loading…'));
    this.sessionsAlerts = alertArea();
    this.sessionsBody = h('tbody', { id: 'sessions-body' }, emptyRow(6, 'Loading…'));
    main.replaceChildren(
      this.head('Account', 'Your profile, password, two-step verification and signed-in sessions.'),
      h(
        'div',
        { class: 'grid-2' },
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'profile-title' },
          h('h2', { id: 'profile-title' }, 'Profile'),
          h(
            'dl',
            { class: 'props', id: 'profile' },
            h('dt', null, 'Username'),
            h('dd', null, me.username),
            h('dt', null, 'Email'),
            h('dd', null, dash(me.email)),
            h('dt', null, 'Role'),
            h('dd', null, me.role),
          ),
        ),
        this.passwordCard(),
      ),
      this.mfaCard,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'sessions-title' },
        h('div', { class: 'card-head' }, h('h2', { id: 'sessions-title' }, 'Signed-in sessions'), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.loadSessions() }, 'Refresh')),
        h('p', { class: 'muted' }, 'Browsers where you are signed in. Sign out any you do not recognise.'),
        this.sessionsAlerts,
        table(['Browser', 'IP address', 'Signed in', 'Last active', 'Expires', 'Actions'], this.sessionsBody, 'Sessions'),
      ),
    );
    this.identitiesCard = h('section', { class: 'card', id: 'identities-card', 'aria-labelledby': 'identities-title', hidden: true });
    main.insertBefore(this.identitiesCard, this.mfaCard.nextSibling);
    this.loadMfa();
    this.loadSessions();
    if (oauthReturn(this.query)) this.completeLink();
    else this.loadIdentities();
  }

  refresh() {
    this.loadSessions();
  }

  /** Back from the provider after "Link": the callback links the identity to this account. */
  async completeLink() {
    const code = this.query.get('code');
    const stateParam = this.query.get('state');
    const iss = this.query.get('iss');
    history.replaceState(null, '', '/console/account');
    try {
      if (!code) throw new Error('Linking was cancelled or refused at the identity provider.');
      const res = await oauthCallback(code, stateParam, iss);
      const label = (await loadProviders()).find((p) => p.name === res?.identity?.provider)?.display_name ?? 'provider';
      notify(res?.linked ? `Your ${label} identity is linked: you can sign in with it.` : 'Signed in again.');
    } catch (err) {
      if (err?.name === 'AbortError') return;
      notify(err?.message ?? String(err), { kind: 'error', keep: true });
    }
    if (this.alive()) this.loadIdentities();
  }

  /** "Link": a provider, and the password proved again (for an account that has one). */
  linkForm(linkable, hasPassword) {
    const form = h(
      'form',
      { id: 'link-form', novalidate: true },
      h(
        'div',
        { class: 'form-row' },
        field({ label: 'Provider', id: 'link-provider', control: select({ name: 'provider', value: linkable[0].name, options: linkable.map((p) => [p.name, p.display_name]) }) }),
        hasPassword ? field({ label: 'Your password', id: 'link-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, hint: 'Linking lets the provider sign you in: confirm it is you.' }) : null,
      ),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-secondary', id: 'link-submit' }, 'Link identity')),
    );
    onSubmit(form, async (data) => {
      const p = linkable.find((x) => x.name === String(data.get('provider') ?? ''));
      const password = hasPassword ? String(data.get('password') ?? '') : undefined;
      if (!p) throw new FieldProblem('provider', 'Choose a provider.');
      if (hasPassword && !password) throw new FieldProblem('password', 'Enter your password.');
      await startOAuth(p, 'link', password);
    });
    return form;
  }

  async loadIdentities() {
    try {
      const [providers, res] = await Promise.all([loadProviders(), this.api('/auth/identities')]);
      if (!this.alive()) return;
      const linked = res?.identities ?? [];
      if (!providers.length && !linked.length) return;
      const label = (name) => providers.find((p) => p.name === name)?.display_name ?? name;
      const alerts = alertArea();
      const rows = linked.map((i) =>
        h(
          'tr',
          { 'data-identity-id': i.id },
          h('td', null, label(i.provider)),
          h('td', null, dash(i.email)),
          h('td', { class: 'nowrap' }, shortTime(i.created_at)),
          h('td', { class: 'nowrap' }, i.last_login_at ? shortTime(i.last_login_at) : '—'),
          h(
            'td',
            null,
            linked.length === 1 && !res.has_password
              ? h('span', { class: 'muted' }, 'Your only way to sign in')
              : confirmButton({
                  label: 'Unlink',
                  ariaLabel: `Unlink your ${label(i.provider)} identity`,
                  question: `Stop signing in with ${label(i.provider)}?`,
                  confirmLabel: 'Unlink',
                  onConfirm: async () => {
                    alerts.clear();
                    try {
                      await this.api(`/auth/identities/${encodeURIComponent(i.id)}`, { method: 'DELETE' });
                      notify(`Your ${label(i.provider)} identity is unlinked.`);
                      this.loadIdentities();
                    } catch (err) {
                      alerts.show(err);
                    }
                  },
                }),
          ),
        ),
      );
      const linkable = providers.filter((p) => !linked.some((i) => i.provider === p.name));
      this.identitiesCard.replaceChildren(
        ...[
        h('h2', { id: 'identities-title' }, 'Sign-in with identity providers'),
        h('p', { class: 'muted' }, 'Accounts at other services that can sign you in to Kyros.'),
        alerts,
        table(['Provider', 'Email', 'Linked', 'Last used', 'Actions'], h('tbody', { id: 'identities-body' }, rows.length ? rows : [emptyRow(5, 'No linked identities.')]), 'Linked identities'),
        linkable.length ? this.linkForm(linkable, res.has_password) : null,
        ].filter(Boolean),
      );
      this.identitiesCard.hidden = false;
    } catch (err) {
      this.loadError(err, this.identitiesCard);
      this.identitiesCard.hidden = false;
    }
  }

  passwordCard() {
    const form = h(
      'form',
      { id: 'password-form', novalidate: true },
      field({ label: 'Current password', id: 'pw-current', name: 'current_password', type: 'password', autocomplete: 'current-password', required: true }),
      field({ label: 'New password', id: 'pw-new', name: 'new_password', type: 'password', autocomplete: 'new-password', required: true, minlength: '8', hint: 'At least 8 characters.' }),
      field({ label: 'Repeat the new password', id: 'pw-confirm', name: 'confirm_password', type: 'password', autocomplete: 'new-password', required: true }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Change password')),
    );
    onSubmit(form, async (data) => {
      const current = String(data.get('current_password') ?? '');
      const next = String(data.get('new_password') ?? '');
      if (!current) throw new FieldProblem('current_password', 'Enter your current password.');
      if ([...next].length < 8) throw new FieldProblem('new_password', 'Use at least 8 characters.');
      if (next !== String(data.get('confirm_password') ?? '')) throw new FieldProblem('confirm_password', 'The two new passwords differ.');
      await this.api('/auth/password', { method: 'POST', body: { current_password: current, new_password: next } });
      form.reset();
      // The server ended every session and gave this browser a new one: the live connection
      // belongs to the old one.
      live.restart();
      notify('Password changed. Every other session of your account has been signed out.');
      if (this.alive()) this.loadSessions();
    });
    return h('section', { class: 'card', 'aria-labelledby': 'password-title' }, h('h2', { id: 'password-title' }, 'Change password'), form);
  }

  async loadMfa() {
    try {
      const st = await this.api('/auth/mfa');
      if (this.alive()) this.showMfa(st);
    } catch (err) {
      this.loadError(err, this.mfaCard);
    }
  }

  mfaStatus(st) {
    return h(
      'p',
      { id: 'mfa-status' },
      st.enabled ? badge('on', 'On') : badge('off', 'Off'),
      ' ',
      st.enabled
        ? `Two-step verification is on. ${st.recovery_codes_left} recovery code${st.recovery_codes_left === 1 ? '' : 's'} left.`
        : 'Two-step verification is off. Turn it on so that a password alone cannot open your account.',
    );
  }

  showMfa(st, extra) {
    const parts = [h('h2', { id: 'mfa-title' }, 'Two-step verification'), this.mfaStatus(st)];
    if (extra) parts.push(extra);
    if (!st.enabled) {
      parts.push(
        h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'btn', id: 'mfa-enroll', onclick: (e) => this.enroll(e.currentTarget) }, 'Set up two-step verification')),
      );
    } else {
      const form = h(
        'form',
        { id: 'mfa-disable-form', novalidate: true },
        h('h3', null, 'Turn off two-step verification'),
        h(
          'div',
          { class: 'form-row' },
          field({ label: 'Password', id: 'mfa-disable-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
          field({ label: 'Code from your app', id: 'mfa-disable-code', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: '6', required: true }),
        ),
        h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-danger' }, 'Turn off')),
      );
      onSubmit(form, async (data) => {
        const password = String(data.get('password') ?? '');
        const code = String(data.get('code') ?? '').replace(/\s+/g, '');
        if (!password) throw new FieldProblem('password', 'Enter your password.');
        if (!/^[0-9]{6}$/.test(code)) throw new FieldProblem('code', 'Enter the 6 digits from your app.');
        await this.api('/auth/mfa/disable', { method: 'POST', body: { password, code } });
        notify('Two-step verification is off.');
        if (this.alive()) this.loadMfa();
      });
      parts.push(form);
    }
    this.mfaCard.replaceChildren(...parts);
    rateLimit.apply();
  }

  async enroll(button) {
    button.disabled = true;
    const alerts = alertArea();
    try {
      const e = await this.api('/auth/mfa/enroll', { method: 'POST' });
      if (!this.alive()) return;
      this.showEnrolment(e);
    } catch (err) {
      button.disabled = false;
      if (err?.name === 'AbortError') return;
      button.parentElement.after(alerts);
      alerts.show(err);
    }
  }

  showEnrolment(e) {
    const secretText = String(e.secret ?? '');
    const grouped = secretText.replace(/(.{4})(?=.)/g, '$1 ');
    const form = h(
      'form',
      { id: 'mfa-confirm-form', novalidate: true },
      field({
        label: 'Code from your app',
        id: 'mfa-confirm-code',
        name: 'code',
        class: 'code-input',
        inputmode: 'numeric',
        autocomplete: 'one-time-code',
        pattern: '[0-9]{6}',
        maxlength: '6',
        required: true,
        hint: 'Enter the 6-digit code the app shows for Kyros.',
      }),
      h(
        'div',
        { class: 'form-actions' },
        h('button', { type: 'submit', class: 'btn' }, 'Turn on'),
        h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.loadMfa() }, 'Cancel'),
      ),
    );
    onSubmit(form, async (data) => {
      const code = String(data.get('code') ?? '').replace(/\s+/g, '');
      if (!/^[0-9]{6}$/.test(code)) throw new FieldProblem('code', 'Enter the 6 digits from your app.');
      const res = await this.api('/auth/mfa/confirm', { method: 'POST', body: { code } });
      if (!this.alive()) return;
      this.showRecoveryCodes(res.recovery_codes ?? []);
    });
    const setup = h(
      'div',
      { class: 'mfa-setup', id: 'mfa-setup' },
      e.qr_svg
        ? h('img', { id: 'mfa-qr', class: 'qr', src: svgDataUrl(e.qr_svg), alt: 'QR code to add Kyros to your authenticator app', width: '200', height: '200' })
        : null,
      h(
        'div',
        null,
        h('h3', null, '1. Scan the QR code'),
        h('p', null, 'Use an authenticator app (for example one that supports TOTP codes). It will show a new 6-digit code every 30 seconds.'),
        h('p', null, 'Cannot scan it? Enter this key in the app instead:'),
        h('code', { id: 'mfa-secret', class: 'secret-value' }, grouped),
        h('h3', null, '2. Enter a code to confirm'),
        form,
      ),
    );
    this.mfaCard.replaceChildren(
      h('h2', { id: 'mfa-title' }, 'Two-step verification'),
      this.mfaStatus({ enabled: false }),
      setup,
    );
    $('#mfa-confirm-code')?.focus();
    rateLimit.apply();
  }

  showRecoveryCodes(codes) {
    const status = h('span', { class: 'hint', role: 'status' });
    const box = h(
      'div',
      { class: 'secret-box', id: 'recovery-codes-box' },
      h('h3', { id: 'recovery-title', tabindex: '-1' }, 'Save your recovery codes'),
      h('p', null, 'If you lose your phone, each of these codes lets you sign in once. They are shown only now: store them somewhere safe.'),
      h('ol', { id: 'recovery-codes', class: 'codes' }, codes.map((c) => h('li', null, c))),
      h(
        'div',
        { class: 'form-actions' },
        h('button', { type: 'button', class: 'btn', onclick: () => copyText(codes.join('\n'), status) }, 'Copy codes'),
        h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.loadMfa() }, 'I have saved them'),
        status,
      ),
    );
    notify('Two-step verification is on.');
    this.showMfa({ enabled: true, recovery_codes_left: codes.length }, box);
    $('#recovery-title')?.focus();
  }

  async loadSessions() {
    try {
      const res = await this.api('/auth/sessions');
      if (!this.alive()) return;
      const sessions = [...(res?.sessions ?? [])].sort((a, b) => Number(b.current) - Number(a.current));
      this.sessionsBody.replaceChildren(...(sessions.length ? sessions.map((s) => this.sessionRow(s)) : [emptyRow(6, 'No sessions.')]));
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.sessionsBody.replaceChildren(emptyRow(6, `Could not load the sessions: ${err.message}`));
    }
  }

  sessionRow(s) {
    return h(
      'tr',
      { 'data-session-id': s.id, 'data-current': s.current ? 'true' : 'false', class: s.current ? 'row-current' : null },
      h('td', null, h('span', { title: s.user_agent ?? '' }, browserName(s.user_agent)), s.current ? [' ', badge('current', 'This session')] : null),
      h('td', null, dash(s.ip)),
      h('td', { class: 'nowrap' }, shortTime(s.created_at)),
      h('td', { class: 'nowrap' }, shortTime(s.last_seen_at)),
      h('td', { class: 'nowrap' }, shortTime(s.expires_at)),
      h(
        'td',
        null,
        s.current
          ? h('span', { class: 'muted' }, 'Use “Log out”')
          : confirmButton({
              label: 'Sign out',
              ariaLabel: `Sign out the session of ${browserName(s.user_agent)}`,
              question: 'Sign it out?',
              confirmLabel: 'Sign out',
              onConfirm: async () => {
                this.sessionsAlerts.clear();
                try {
                  await this.api(`/auth/sessions/${encodeURIComponent(s.id)}`, { method: 'DELETE' });
                  notify('The session was signed out.');
                  this.loadSessions();
                } catch (err) {
                  this.sessionsAlerts.show(err);
                }
              },
            }),
      ),
    );
  }
}

// ----- administration: users -----------------------------------------------------------------

class UsersPage extends Page {
  get title() {
    return 'Users';
  }

  render(main) {
    this.alerts = alertArea();
    this.tbody = h('tbody', { id: 'users-body' }, emptyRow(7, 'Loading…'));
    const form = h(
      'form',
      { id: 'user-form', novalidate: true },
      h(
        'div',
        { class: 'form-row' },
        field({ label: 'Username', id: 'user-username', name: 'username', required: true, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' }),
        field({ label: 'Email', id: 'user-email', name: 'email', type: 'email', required: true, autocomplete: 'off' }),
      ),
      h(
        'div',
        { class: 'form-row' },
        field({ label: 'Initial password', id: 'user-password', name: 'password', type: 'password', required: true, minlength: '8', autocomplete: 'new-password', hint: 'At least 8 characters. Tell the user to change it.' }),
        field({ label: 'Role', id: 'user-role', control: select({ name: 'role', value: 'user', options: [['user', 'User'], ['moderator', 'Moderator'], ['admin', 'Administrator']] }) }),
      ),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Create user')),
    );
    onSubmit(form, async (data) => {
      const body = {
        username: String(data.get('username') ?? '').trim(),
        email: String(data.get('email') ?? '').trim(),
        password: String(data.get('password') ?? ''),
        role: String(data.get('role') ?? 'user'),
      };
      if (!body.username) throw new FieldProblem('username', 'Enter a username.');
      if (!body.email) throw new FieldProblem('email', 'Enter an email address.');
      if ([...body.password].length < 8) throw new FieldProblem('password', 'Use at least 8 characters.');
      const user = await this.api('/api/v1/admin/users', { method: 'POST', body });
      form.reset();
      notify(`User “${user.username}” created.`);
      if (this.alive()) this.load();
    });
    main.replaceChildren(
      this.head('Users', 'Accounts, roles and access. Every change is recorded in the audit log.'),
      h('section', { class: 'card', 'aria-labelledby': 'user-form-title' }, h('h2', { id: 'user-form-title' }, 'New user'), form),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'users-title' },
        h('div', { class: 'card-head' }, h('h2', { id: 'users-title' }, 'All users'), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load() }, 'Refresh')),
        this.alerts,
        table(['User', 'Email', 'Role', 'Status', h('th', { scope: 'col', class: 'num' }, 'Failed logins'), 'Created', 'Actions'], this.tbody, 'Users'),
      ),
    );
    this.load();
  }

  refresh() {
    this.load();
  }

  async load() {
    try {
      const res = await this.api('/api/v1/admin/users');
      if (!this.alive()) return;
      const items = res?.items ?? [];
      syncRows(this.tbody, items, {
        key: (u) => u.id,
        sig: (u) => JSON.stringify([u.role, u.active, u.failed_logins, u.locked_until, u.updated_at]),
        row: (u) => this.row(u),
        empty: () => emptyRow(7, 'No users.'),
      });
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.tbody.replaceChildren(emptyRow(7, `Could not load the users: ${err.message}`));
    }
  }

  async act(fn, message) {
    this.alerts.clear();
    try {
      await fn();
      notify(message);
      await this.load();
    } catch (err) {
      this.alerts.show(err);
      await this.load();
    }
  }

  row(u) {
    const self = u.id === state.me?.id;
    const locked = u.locked_until && new Date(u.locked_until) > new Date();
    const roleSelect = select({
      id: `role-${u.id}`,
      value: u.role,
      disabled: self,
      options: [['user', 'User'], ['moderator', 'Moderator'], ['admin', 'Administrator']],
      onchange: (e) =>
        this.act(() => this.api(`/api/v1/admin/users/${encodeURIComponent(u.id)}`, { method: 'PATCH', body: { role: e.target.value } }), `${u.username} is now ${e.target.value}.`),
    });
    const post = (action, message) => () => this.act(() => this.api(`/api/v1/admin/users/${encodeURIComponent(u.id)}/${action}`, { method: 'POST' }), message);
    const actions = h('div', { class: 'actions' });
    if (!self) {
      actions.append(
        u.active
          ? confirmButton({
              label: 'Disable',
              ariaLabel: `Disable ${u.username}`,
              question: 'Disable?',
              confirmLabel: 'Disable user',
              onConfirm: () => this.act(() => this.api(`/api/v1/admin/users/${encodeURIComponent(u.id)}`, { method: 'PATCH', body: { active: false } }), `${u.username} is disabled.`),
            })
          : h(
              'button',
              {
                type: 'button',
                class: 'btn btn-secondary btn-small',
                'aria-label': `Enable ${u.username}`,
                onclick: () => this.act(() => this.api(`/api/v1/admin/users/${encodeURIComponent(u.id)}`, { method: 'PATCH', body: { active: true } }), `${u.username} is enabled.`),
              },
              'Enable',
            ),
      );
    }
    if (locked || u.failed_logins > 0) {
      actions.append(h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `Unlock ${u.username}`, onclick: post('unlock', `${u.username} is unlocked.`) }, 'Unlock'));
    }
    actions.append(
      confirmButton({ label: 'Reset MFA', ariaLabel: `Reset two-step verification of ${u.username}`, question: 'Turn off their two-step verification?', confirmLabel: 'Reset MFA', onConfirm: post('reset-mfa', `Two-step verification of ${u.username} is reset.`) }),
      confirmButton({ label: 'Sign out everywhere', ariaLabel: `Sign ${u.username} out everywhere`, question: 'End all their sessions and tokens?', confirmLabel: 'Sign out', onConfirm: post('revoke-tokens', `${u.username} is signed out everywhere.`) }),
    );
    return h(
      'tr',
      { 'data-user-id': u.id, 'data-username': u.username },
      h('td', null, h('strong', null, u.username), self ? h('span', { class: 'muted' }, ' (you)') : null),
      h('td', null, dash(u.email)),
      h('td', null, h('label', { for: `role-${u.id}`, class: 'visually-hidden' }, `Role of ${u.username}`), roleSelect),
      h('td', null, u.active ? badge('active', 'Active') : badge('inactive', 'Disabled'), locked ? [' ', badge('denied', `Locked until ${fmtTime(u.locked_until)}`)] : null),
      h('td', { class: 'num' }, String(u.failed_logins ?? 0)),
      h('td', { class: 'nowrap' }, shortTime(u.created_at)),
      h('td', null, actions),
    );
  }
}

// ----- administration: audit log -------------------------------------------------------------

const AUDIT_FILTERS = ['event', 'outcome', 'actor', 'since', 'until'];

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

class AuditPage extends Page {
  get title() {
    return 'Audit log';
  }

  render(main) {
    this.filters = {};
    for (const k of AUDIT_FILTERS) if (this.query.get(k)) this.filters[k] = this.query.get(k);
    this.tbody = h('tbody', { id: 'audit-body' }, emptyRow(6, 'Loading…'));
    this.older = h('button', { type: 'button', class: 'btn btn-secondary', id: 'audit-older', hidden: true, onclick: () => this.load(true) }, 'Older entries');
    this.count = h('span', { class: 'muted', id: 'audit-count', 'aria-live': 'polite' });
    const datalist = h('datalist', { id: 'audit-event-names' }, AUDIT_EVENTS.map((e) => h('option', { value: e })));
    const form = h(
      'form',
      { id: 'audit-filter', class: 'filters', novalidate: true, role: 'search', 'aria-label': 'Filter the audit log' },
      field({ label: 'Event', id: 'audit-event', name: 'event', list: 'audit-event-names', value: this.filters.event ?? '', autocomplete: 'off', placeholder: 'e.g. auth.login' }),
      field({ label: 'Outcome', id: 'audit-outcome', control: select({ name: 'outcome', value: this.filters.outcome ?? '', options: [['', 'Any'], ['success', 'Success'], ['failure', 'Failure'], ['denied', 'Denied']] }) }),
      field({ label: 'Actor', id: 'audit-actor', name: 'actor', value: this.filters.actor ?? '', autocomplete: 'off' }),
      field({ label: 'From', id: 'audit-since', name: 'since', type: 'datetime-local', value: toLocalInput(this.filters.since) }),
      field({ label: 'Until', id: 'audit-until', name: 'until', type: 'datetime-local', value: toLocalInput(this.filters.until) }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Apply'), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => navigate('/console/admin/audit', { focus: false }) }, 'Reset')),
      datalist,
    );
    onSubmit(form, async (data) => {
      const q = new URLSearchParams();
      for (const k of ['event', 'outcome', 'actor']) {
        const v = String(data.get(k) ?? '').trim();
        if (v) q.set(k, v);
      }
      for (const k of ['since', 'until']) {
        const v = String(data.get(k) ?? '').trim();
        if (!v) continue;
        const d = new Date(v);
        if (Number.isNaN(d.getTime())) throw new FieldProblem(k, 'Enter a date and time.');
        q.set(k, d.toISOString());
      }
      const qs = q.toString();
      navigate(`/console/admin/audit${qs ? `?${qs}` : ''}`, { focus: false });
    });
    this.alerts = alertArea();
    main.replaceChildren(
      this.head('Audit log', 'Security events, newest first: sign-ins, key and session changes, refusals.', h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load(false) }, 'Refresh')),
      h('section', { class: 'card', 'aria-label': 'Filters' }, form),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'audit-title' },
        h('div', { class: 'card-head' }, h('h2', { id: 'audit-title' }, Object.keys(this.filters).length ? 'Matching entries' : 'All entries'), this.count),
        this.alerts,
        table(['Time', 'Event', 'Outcome', 'Actor', 'Client IP', 'Details'], this.tbody, 'Audit log entries'),
        h('div', { class: 'pager' }, this.older),
      ),
    );
    this.load(false);
  }

  refresh() {
    this.load(false);
  }

  async load(more) {
    const q = new URLSearchParams({ ...this.filters, limit: '50' });
    if (more && this.nextBefore) q.set('before', String(this.nextBefore));
    this.older.disabled = true;
    try {
      const res = await this.api(`/api/v1/admin/audit?${q}`);
      if (!this.alive()) return;
      const rows = (res?.items ?? []).map((r) => this.row(r));
      if (more) this.tbody.append(...rows);
      else this.tbody.replaceChildren(...(rows.length ? rows : [emptyRow(6, 'No entries match.')]));
      this.nextBefore = res?.next_before ?? null;
      this.older.hidden = !this.nextBefore;
      this.older.disabled = false;
      const shown = this.tbody.querySelectorAll('tr[data-audit-id]').length;
      this.count.textContent = `${shown} entr${shown === 1 ? 'y' : 'ies'} shown`;
    } catch (err) {
      this.older.disabled = false;
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.alerts.show(err);
      if (!more) this.tbody.replaceChildren(emptyRow(6, 'Could not load the audit log.'));
    }
  }

  row(r) {
    const details =
      r.details && typeof r.details === 'object'
        ? Object.entries(r.details)
            .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : compactJson(v)}`)
            .join(' · ')
        : compactJson(r.details);
    return h(
      'tr',
      { 'data-audit-id': String(r.id), 'data-event': r.event },
      h('td', { class: 'nowrap' }, shortTime(r.at)),
      h('td', { class: 'audit-event' }, h('code', null, r.event)),
      h('td', null, badge(r.outcome)),
      h('td', { class: 'nowrap' }, dash(r.actor)),
      h('td', { class: 'nowrap' }, dash(r.client_ip)),
      h('td', null, details ? h('div', { class: 'details' }, details) : h('span', { class: 'muted' }, '—')),
    );
  }
}

// ----- other pages ---------------------------------------------------------------------------

class NotFoundPage extends Page {
  get title() {
    return 'Page not found';
  }

  render(main) {
    main.replaceChildren(this.head('Page not found', 'There is no console page at this address.'), h('p', null, h('a', { href: HOME, 'data-link': '' }, 'Go to the jobs')));
  }
}

class ForbiddenPage extends Page {
  get title() {
    return 'Not available';
  }

  render(main) {
    main.replaceChildren(this.head('Not available', 'This page is for administrators.'), h('p', null, h('a', { href: HOME, 'data-link': '' }, 'Go to the jobs')));
  }
}

// ---------------------------------------------------------------------------------------------
// Router and page chrome.

const ROUTES = [
  { re: /^\/console\/login$/, Page: LoginPage, public: true },
  { re: /^\/console\/jobs$/, Page: JobsPage, section: 'jobs' },
  { re: /^\/console\/jobs\/([^/]+)$/, Page: JobDetailPage, section: 'jobs' },
  { re: /^\/console\/tasks$/, Page: TasksPage, section: 'tasks' },
  { re: /^\/console\/agents$/, Page: AgentsPage, section: 'agents' },
  { re: /^\/console\/keys$/, Page: KeysPage, section: 'keys' },
  { re: /^\/console\/account$/, Page: AccountPage, section: 'account' },
  { re: /^\/console\/admin\/users$/, Page: UsersPage, section: 'admin-users', admin: true },
  { re: /^\/console\/admin\/audit$/, Page: AuditPage, section: 'admin-audit', admin: true },
];

function navigate(url, { replace = false, focus = true } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route({ focus });
}

function updateChrome(section) {
  const me = state.me;
  $('#nav').hidden = !me;
  $('#session-box').hidden = !me;
  for (const li of document.querySelectorAll('#nav [data-admin]')) li.hidden = me?.role !== 'admin';
  for (const a of document.querySelectorAll('#nav a[data-section]')) {
    if (me && a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (me) {
    $('#whoami-name').textContent = me.username;
    $('#whoami-role').textContent = me.role;
  }
}

function route({ focus = true } = {}) {
  let path = location.pathname;
  if (path === '/console' || path === '/console/') {
    history.replaceState(null, '', HOME);
    path = HOME;
  } else if (path.length > 1 && path.endsWith('/')) {
    path = path.replace(/\/+$/, '');
  }
  let params = [];
  let match = null;
  for (const r of ROUTES) {
    const m = r.re.exec(path);
    if (m) {
      match = r;
      params = m.slice(1).map((p) => {
        try {
          return decodeURIComponent(p);
        } catch {
          return p;
        }
      });
      break;
    }
  }
  const query = new URLSearchParams(location.search);
  if (match && !match.public && !state.me) {
    history.replaceState(null, '', `${LOGIN}?next=${encodeURIComponent(location.pathname + location.search)}`);
    return route({ focus });
  }
  if (!match && !state.me) {
    history.replaceState(null, '', LOGIN);
    return route({ focus });
  }
  if (match?.public && state.me) {
    // Back from linking an identity: the account page completes it.
    const target = oauthReturn(query) ? `/console/account${location.search}` : safeNext(query.get('next'));
    history.replaceState(null, '', target);
    return route({ focus });
  }
  const Page = !match ? NotFoundPage : match.admin && state.me?.role !== 'admin' ? ForbiddenPage : match.Page;

  if (state.keepNotice) state.keepNotice = false;
  else clearNotice();
  state.page?.dispose();
  const page = new Page({ params, query });
  state.page = page;
  updateChrome(match?.section);
  const main = $('#main');
  main.replaceChildren();
  document.title = `${page.title} · ${APP}`;
  page.render(main);
  rateLimit.apply();
  live.follow(page.jobIds?.() ?? []);
  if (focus) (page.focusTarget?.() ?? main.querySelector('h1') ?? main).focus();
  else if (page instanceof LoginPage) page.focusTarget()?.focus();
}

/** Same-origin console links navigate inside the app (new tab / modified clicks keep working). */
function onLinkClick(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  // Only the console's own links (data-link); in-page anchors such as the skip link stay native.
  const a = event.target.closest?.('a[href][data-link]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/console/') || url.pathname.startsWith('/console/assets/')) return;
  event.preventDefault();
  if (url.pathname + url.search === location.pathname + location.search) {
    route({ focus: true });
    return;
  }
  navigate(url.pathname + url.search);
}

async function boot() {
  document.addEventListener('click', onLinkClick);
  window.addEventListener('popstate', () => route({ focus: true }));
  $('#logout-button').addEventListener('click', logout);
  await loadMe();
  if (state.me) live.start();
  route({ focus: false });
}

boot();
