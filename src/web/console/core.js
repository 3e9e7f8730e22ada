// Kyros console: a small single-page app for people (not agents) on top of the service's API.
// This module holds what every page shares (DOM helpers, formatting, the API client, forms, live
// updates, the session, the Page base class); each page is a module of its own and main.js routes.
//
// Rules every module keeps, because the page runs under the production Content-Security-Policy
// (script-src 'self'; style-src 'self'; connect-src 'self'):
//   * no inline script or style, no element.style, no eval: DOM is built with createElement and
//     textContent only (never innerHTML), and shown/hidden with the `hidden` property and classes
//     (SVG charts set presentation attributes such as `fill` and `height`, never `style`);
//   * ES modules loaded same-origin with relative imports (one content hash for the whole set);
//     nothing from another origin.
// Authentication is the HttpOnly session cookie alone. The readable `csrf_token` cookie is sent
// back in `X-CSRF-Token` on every state-changing request (read afresh each time: the server renews
// it). Nothing is kept in localStorage/sessionStorage, and no secret ever goes into a URL or a log.

export const APP = 'Kyros Console';
export const HOME = '/console/jobs';
export const LOGIN = '/console/login';
export const JOB_STATUSES = ['pending', 'running', 'completed', 'failed', 'cancelled'];

export const state = {
  me: null, // {id, username, email, role}
  page: null, // the current page object
  keepNotice: false, // keep the notice across the next navigation
};

// ---------------------------------------------------------------------------------------------
// DOM helpers.

export const $ = (selector, root = document) => root.querySelector(selector);
export const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'multiple', 'required', 'readOnly']);

/**
 * h('button', {class: 'btn', type: 'button', onclick: fn}, 'Text', childNode, [more]) — attributes
 * as strings (aria-*, data-*, id, for, …), a few as properties, `on…` as listeners. Children are
 * nodes or text; null/false/undefined are skipped. Text is always text, never markup.
 */
export function h(tag, props, ...children) {
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

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export let uid = 0;
export const nextId = (prefix) => `${prefix}-${++uid}`;

// Every time shows its zone (the browser's, by its short name: "UTC", "CET", "GMT+2"); a time of
// another day shows its date with the year.
export const DATE_FMT = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  timeZoneName: 'short',
});

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : DATE_FMT.format(d);
}

export const SHORT_TODAY = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
export const SHORT_DATE = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZoneName: 'short' });

/** Compact, for tables: the time alone today, else the date with the year and the minutes (the
 * full time as a tooltip); both with the time zone. */
export function fmtShort(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toDateString() === new Date().toDateString() ? SHORT_TODAY.format(d) : SHORT_DATE.format(d);
}

export function timeEl(iso, { short = false } = {}) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: fmtTime(iso) }, short ? fmtShort(iso) : fmtTime(iso));
}

export const shortTime = (iso) => timeEl(iso, { short: true });

/** "4 s", "3 min 05 s", "2 h 07 min", "3 d 4 h" for a length of time in milliseconds. */
export function fmtDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  const s = Math.floor(ms / 1000);
  const pad = (n) => String(n).padStart(2, '0');
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

/** "just now", "12 s ago", "3 min ago" … relative to the browser's clock. */
export function ago(iso) {
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
export function agoEl(iso, attrs = {}) {
  if (!iso) return h('span', { class: 'muted', ...attrs }, '—');
  return h('time', { datetime: iso, title: fmtTime(iso), 'data-ago': '', ...attrs }, ago(iso));
}

/** Brings every relative time under `root` up to date (called once a second by pages). */
export function tickAgo(root) {
  for (const el of root.querySelectorAll('time[data-ago]')) {
    const text = ago(el.getAttribute('datetime'));
    if (el.textContent !== text) el.textContent = text;
  }
}

const NUMBER = new Intl.NumberFormat();
/** 1024 → "1,024" (the browser's way of grouping digits). */
export const num = (n) => NUMBER.format(Number(n) || 0);
/** "1 job", "42 jobs", "1 entry" / "2 entries" with `plural`. */
export const count = (n, one, many = `${one}s`) => `${num(n)} ${Number(n) === 1 ? one : many}`;
/** The length of a text as the service's JSON Schema counts it (Unicode code points). */
export const textLength = (s) => [...String(s ?? '')].length;

export const percent = (p) => `${Math.round(Math.max(0, Math.min(1, Number(p))) * 100)}%`;
export const hasNumber = (v) => v !== null && v !== undefined && Number.isFinite(Number(v));

export const slug = (s) => String(s ?? '').toLowerCase().replace(/[^a-z0-9]+/g, '-');
export const badge = (value, label) => h('span', { class: `badge badge-${slug(value)}` }, label ?? String(value));
export const shortId = (id) => (id ? String(id).slice(0, 8) : '—');
export const dash = (v) => (v === null || v === undefined || v === '' ? '—' : String(v));

export function compactJson(value) {
  if (value === null || value === undefined) return '';
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/**
 * A labelled form field: {label, id, name, type, hint, limit, ...input attributes}. `limit` is the
 * service's length limit (its OpenAPI maxLength): a counter under the field shows it before
 * submit ("12 / 1,024"), and `onSubmit` refuses a longer text with a message on the field (no
 * `maxlength`, which would cut a pasted text silently).
 */
export function field({ label, hint, control, limit: max, ...attrs }) {
  const id = attrs.id ?? nextId('f');
  const hintId = hint ? `${id}-hint` : null;
  const countId = max ? `${id}-count` : null;
  const describedBy = [hintId, countId].filter(Boolean).join(' ') || null;
  const input = control ?? h(attrs.type === 'textarea' ? 'textarea' : attrs.type === 'select' ? 'select' : 'input', {
    ...attrs,
    id,
    type: attrs.type === 'textarea' || attrs.type === 'select' ? undefined : attrs.type ?? 'text',
    'aria-describedby': describedBy,
  });
  if (control) {
    input.id = id;
    if (describedBy) input.setAttribute('aria-describedby', describedBy);
  }
  let counter = null;
  if (max) {
    input.dataset.max = String(max);
    counter = h('span', { class: 'counter', id: countId });
    const update = () => {
      const n = textLength(input.value);
      counter.textContent = n > max ? `${num(n)} / ${num(max)} — ${num(n - max)} too many` : `${num(n)} / ${num(max)}`;
      counter.classList.toggle('counter-over', n > max);
    };
    input.addEventListener('input', update);
    input.updateCounter = update;
    update();
  }
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint || counter ? h('div', { class: 'field-foot' }, hint ? h('span', { class: 'hint', id: hintId }, hint) : null, counter) : null,
  );
}

/** The length limits of a form's fields (`field({limit})`): the first field over its limit, as a
 * list of field problems (empty when every text fits). */
export function lengthProblems(form) {
  const problems = [];
  for (const el of form.querySelectorAll('[data-max]')) {
    const max = Number(el.dataset.max);
    const n = textLength(el.value);
    if (n > max) {
      const label = el.labels?.[0]?.textContent ?? el.name;
      problems.push({ field: el.name, message: `${label} is too long: ${num(n)} characters, at most ${num(max)}. Shorten it by ${num(n - max)}.` });
    }
  }
  return problems;
}

export function select({ options, value, ...attrs }) {
  const el = h('select', attrs);
  for (const [v, text] of options) el.append(h('option', { value: v, selected: v === value }, text));
  return el;
}

/**
 * A table in a scrolling frame. On a narrow screen (the stylesheet's card layout) every row is a
 * card of "label: value" lines: each cell gets its column's name as `data-label`, kept up to date
 * for every row added later (live lists) by a MutationObserver.
 */
export function table(headers, body, caption) {
  const ths = headers.map((th) => (typeof th === 'string' ? h('th', { scope: 'col' }, th) : th));
  const labels = ths.map((th) => th.dataset.label ?? th.textContent.trim());
  const label = (tr) => {
    if (tr.tagName !== 'TR') return;
    [...tr.cells].forEach((td, i) => {
      if (td.colSpan > 1) return;
      if (labels[i] && td.dataset.label !== labels[i]) td.dataset.label = labels[i];
    });
  };
  for (const tr of body.rows) label(tr);
  new MutationObserver((records) => {
    for (const r of records) for (const node of r.addedNodes) label(node);
  }).observe(body, { childList: true });
  return h(
    'div',
    { class: 'table-wrap', tabindex: '0', role: 'group', 'aria-label': caption ?? 'Table' },
    h('table', { class: 'cards-narrow' }, caption ? h('caption', { class: 'visually-hidden' }, caption) : null, h('thead', null, h('tr', null, ths)), body),
  );
}

/**
 * Puts `items` into `tbody` as rows, keeping the existing row element of an item whose data did
 * not change (found by `data-key`, compared by `data-sig`). A live refresh then leaves untouched
 * rows alone: the keyboard focus and an open "Are you sure?" stay where they are.
 */
export function syncRows(tbody, items, { key, sig, row, empty }) {
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


export function emptyRow(colspan, text) {
  return h('tr', null, h('td', { colspan, class: 'empty' }, text));
}

/**
 * A button that asks once more before doing something that cannot be undone: the first click
 * swaps it for "<question> [confirm] [keep]", with the focus on the confirm button. The two
 * buttons say what they do ("Delete job" / "Keep job"): never two "Cancel"s.
 */
export function confirmButton({ label, question, confirmLabel, keepLabel = 'Keep it', onConfirm, small = true, ariaLabel, disabled = false }) {
  const wrap = h('span', { class: 'actions confirm' });
  const size = small ? ' btn-small' : '';
  const first = h('button', { type: 'button', class: `btn btn-danger${size}`, 'aria-label': ariaLabel, disabled }, label);
  const reset = () => {
    wrap.replaceChildren(first);
    first.focus();
  };
  first.addEventListener('click', () => {
    const yes = h('button', { type: 'button', class: `btn btn-danger-solid${size}` }, confirmLabel ?? label);
    const no = h('button', { type: 'button', class: `btn btn-secondary${size}`, onclick: reset }, keepLabel);
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
    const q = typeof question === 'function' ? question() : question;
    wrap.replaceChildren(h('span', { class: 'confirm-question', role: 'status' }, q ?? 'Are you sure?'), yes, no);
    yes.focus();
  });
  wrap.append(first);
  return wrap;
}

export async function copyText(text, statusEl) {
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

export let noticeTimer = null;

export function notify(text, { kind = 'success', keep = false } = {}) {
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

export function clearNotice() {
  clearTimeout(noticeTimer);
  const el = $('#notice');
  el.hidden = true;
  el.replaceChildren();
}

/** While a 429's Retry-After runs: a banner with a countdown, and every submit button disabled. */
export const rateLimit = {
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
    clearTransientErrors();
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

export class ApiError extends Error {
  constructor(status, message, { body = null, fields = [], retryAfter = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
    this.fields = fields; // [{field, message}]
    this.retryAfter = retryAfter;
  }
}

export function readCookie(name) {
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

export function errorFrom(status, body, res) {
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
 * quiet401 (a 401 is an answer of this endpoint, e.g. a wrong password, not the end of the session),
 * ifMatch (the version an edit is based on: a 412 answers when it changed meanwhile), full (the
 * answer as {data, etag, headers} instead of its body alone).
 */
export async function api(path, { method = 'GET', body, signal, quiet401 = false, retried = false, ifMatch, full = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (ifMatch) headers['If-Match'] = ifMatch;
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
  if (res.ok) return full ? { data, etag: res.headers.get('ETag'), headers: res.headers } : data;
  const err = errorFrom(res.status, data, res);
  if (res.status === 429) rateLimit.start(err.retryAfter ?? 5);
  // The token cookie can be missing or stale (e.g. a tab left open for an hour): fetch a fresh one
  // and try once more.
  if (res.status === 403 && err.message === 'Invalid CSRF token' && !retried && state.me) {
    const fresh = await fetch('/auth/csrf', { credentials: 'same-origin', cache: 'no-store' }).catch(() => null);
    if (fresh?.ok) return api(path, { method, body, signal, quiet401, retried: true, ifMatch, full });
  }
  if (res.status === 401 && !quiet401) sessionEnded();
  throw err;
}

export const jsonOrEmpty = (v) => (v === '' ? undefined : v);

// ---------------------------------------------------------------------------------------------
// Forms: submit handling, error display next to the form (role=alert) and on the fields.

export function clearFormErrors(form) {
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

export function setFieldError(form, name, message) {
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

export function showFormError(form, err) {
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
  markTransient(box, err);
  const invalid = form.querySelector('[aria-invalid="true"]');
  (invalid ?? box).focus?.();
}

export class FieldProblem extends Error {
  constructor(fieldName, message) {
    super(message);
    this.fields = [{ field: fieldName, message }];
  }
}

/** Wires a form: the handler gets the FormData; errors are shown in the form. */
export function onSubmit(form, handler) {
  const box = h('div', { class: 'form-error', role: 'alert', tabindex: '-1', hidden: true });
  form.prepend(box);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (form.dataset.busy) return;
    clearFormErrors(form);
    if (rateLimit.active()) return;
    const tooLong = lengthProblems(form);
    if (tooLong.length) {
      showFormError(form, Object.assign(new ApiError(422, tooLong.length === 1 ? tooLong[0].message : 'Some texts are too long: shorten them.'), { fields: tooLong }));
      return;
    }
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
  // The length counters follow a reset of the form (the reset happens after this event).
  form.addEventListener('reset', () => setTimeout(() => {
    for (const el of form.querySelectorAll('[data-max]')) el.updateCounter?.();
  }));
  return form;
}

/** Errors that say nothing about what was entered (the service unreachable, too many requests, a
 * server error) go away by themselves: when the 429 countdown ends and after a live reconnect. */
function markTransient(box, err) {
  const status = err instanceof ApiError ? err.status : null;
  if (status === 0 || status === 429 || status >= 500) box.dataset.transient = '1';
  else delete box.dataset.transient;
}

export function clearTransientErrors() {
  for (const box of document.querySelectorAll('#main .form-error[data-transient]')) {
    delete box.dataset.transient;
    const form = box.parentElement?.tagName === 'FORM' ? box.parentElement : null;
    if (form) clearFormErrors(form);
    else {
      box.hidden = true;
      box.textContent = '';
    }
  }
}

/** A page-level message area for errors of actions that are not forms (buttons in tables). */
export function alertArea() {
  const el = h('div', { class: 'form-error', role: 'alert', hidden: true });
  el.show = (err) => {
    el.textContent = err instanceof ApiError ? err.message : String(err?.message ?? err);
    el.hidden = false;
    markTransient(el, err);
  };
  el.clear = () => {
    el.hidden = true;
    el.textContent = '';
  };
  return el;
}

// ---------------------------------------------------------------------------------------------
// Live updates over the WebSocket: job events, reconnection with backoff, connection state.

export const live = {
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
        // Whatever happened while the connection was down is read again, and the errors of the
        // outage go.
        if (this.staleData) {
          clearTransientErrors();
          state.page?.refresh?.();
        }
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

export function safeNext(next) {
  if (typeof next !== 'string') return HOME;
  if (!next.startsWith('/console/') || next.startsWith('//') || next.includes('\\')) return HOME;
  if (next === '/console/' || next.startsWith(LOGIN)) return HOME;
  return next;
}

/** Reads the profile. Without the csrf_token cookie (which the server sets with every session and
 * clears at logout) there is no session to ask about, and the 401 would count against the client. */
export async function loadMe() {
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

export function loggedIn(user) {
  state.me = { id: user.id, username: user.username, email: user.email, role: user.role };
  live.start();
}

/** The API answered 401 to a request that needed the session: back to the login page. */
export function sessionEnded() {
  if (!state.me) return;
  state.me = null;
  live.stop();
  notify('Your session has ended. Please sign in again.', { kind: 'info', keep: true });
  const here = location.pathname + location.search;
  navigate(`${LOGIN}?next=${encodeURIComponent(here)}`, { replace: true });
}

export async function logout() {
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

export class Page {
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

// ---------------------------------------------------------------------------------------------
// Navigation (the router itself is main.js's: it registers here).

export const router = { route: null };

export function navigate(url, { replace = false, focus = true } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  router.route({ focus });
}
