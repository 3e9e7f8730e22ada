// The jobs list: a form to submit a job, and the list searched, filtered, sorted and paged by the
// service (GET /api/v1/jobs with q, status, owner, created_from/to, sort, order, skip/limit and
// total=true → X-Total-Count), with bulk cancel/retry and "Run again". The list follows the jobs
// live. Every choice is in the address (/console/jobs?q=…&sort=…), so a reload or a shared link
// shows the same list.

import { JOB_STATUSES, state, h, shortTime, percent, hasNumber, badge, field, select, table, syncRows, emptyRow, confirmButton, notify, ApiError, api, jsonOrEmpty, FieldProblem, onSubmit, alertArea, Page, navigate, count, num, rateLimit } from './core.js';
import { confirmDialog } from './dialog.js';

// The service's limits (OpenAPI: JobCreate.title maxLength 255, description maxLength 1024; the
// `q` and `owner` query parameters maxLength 255).
export const JOB_TITLE_MAX = 255;
export const JOB_DESCRIPTION_MAX = 1024;
const QUERY_MAX = 255;
// Metadata: a JSON object of at most 16 KiB; labels: 1–64 characters of a-z 0-9 . _ - : /, at
// most 32 (the service's rules, told in its OpenAPI descriptions).
const METADATA_MAX_BYTES = 16 * 1024;
const LABEL_RE = /^[a-z0-9][a-z0-9._:/-]{0,63}$/;
const LABELS_MAX = 32;
const BULK_MAX = 100;
const PAGE_SIZE = 50;

const SORTS = ['created_at', 'updated_at', 'priority', 'title', 'status'];
/** The sort choices of the select: [value, label]; the value is "column:order". */
const SORT_CHOICES = [
  ['created_at:desc', 'Newest first'],
  ['created_at:asc', 'Oldest first'],
  ['updated_at:desc', 'Recently updated'],
  ['priority:desc', 'Highest priority first'],
  ['priority:asc', 'Lowest priority first'],
  ['title:asc', 'Title A–Z'],
  ['title:desc', 'Title Z–A'],
  ['status:asc', 'Status A–Z'],
  ['status:desc', 'Status Z–A'],
];
/** The order a column sorts in when its header is first clicked. */
const FIRST_ORDER = { created_at: 'desc', updated_at: 'desc', priority: 'desc', title: 'asc', status: 'asc' };

export const FINISHED = new Set(['completed', 'failed', 'cancelled']);
export const jobPath = (id) => `/api/v1/jobs/${encodeURIComponent(id)}`;

/** A running job whose lease ended: its agent stopped reporting, the service will requeue it. */
export function leaseExpired(job, now = Date.now()) {
  if (job?.status !== 'running' || !job.lease_expires_at) return false;
  const t = new Date(job.lease_expires_at).getTime();
  return Number.isFinite(t) && t < now;
}

/** The status as a badge, with "lease expired — waiting to be requeued" when that is the truth. */
export function statusView(job) {
  if (leaseExpired(job)) {
    return [badge('running'), ' ', h('span', { class: 'lease-expired', title: `The lease ended at ${shortTime(job.lease_expires_at).textContent}` }, 'lease expired — waiting to be requeued')];
  }
  return badge(job.status);
}

/** "Run 2" for a job that has started (the run the events call "run 2"). */
export const runLabel = (job) => (job.attempt > 0 ? `Run ${job.attempt}` : null);

// What a job row shows; not `updated_at`, which every heartbeat changes (a row redrawn twice a
// second would lose the focus and an open "Are you sure?").
export const jobSig = (j) =>
  [j.status, j.name, j.priority, j.attempt, j.agent_name, j.owner_name, leaseExpired(j), hasNumber(j.progress) ? percent(j.progress) : ''].join('|');

/** What deleting or cancelling this job means for its agent. */
export const heldByAgent = (job) => job.status === 'running' && Boolean(job.agent_id || job.agent_name);

/**
 * The actions of a job: Cancel (asks first: "Cancel job" / "Keep job"), Retry (failed), Run again
 * (finished: a new job with the same input). `onRerun(newJob)` is told of a new job.
 */
export function jobActions(job, onChanged, alerts, { onRerun } = {}) {
  const wrap = h('div', { class: 'actions' });
  const change = async (status, verb) => {
    alerts.clear();
    try {
      const updated = await api(`${jobPath(job.id)}/status`, { method: 'PUT', body: { status } });
      notify(`Job “${updated.name}” ${verb}.`);
      onChanged(updated);
    } catch (err) {
      alerts.show(err);
    }
  };
  if (job.status === 'pending' || job.status === 'running') {
    wrap.append(
      confirmButton({
        label: 'Cancel job',
        ariaLabel: `Cancel job ${job.name}`,
        question: heldByAgent(job) ? `Cancel this job? Its agent (${job.agent_name ?? 'running it'}) is told to stop.` : 'Cancel this job?',
        confirmLabel: 'Cancel job',
        keepLabel: 'Keep job',
        onConfirm: () => change('cancelled', 'cancelled'),
      }),
    );
  }
  if (job.status === 'failed') {
    wrap.append(
      h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `Retry job ${job.name}`, onclick: () => change('pending', 'queued again') }, 'Retry'),
    );
  }
  if (FINISHED.has(job.status)) {
    wrap.append(
      h(
        'button',
        {
          type: 'button',
          class: 'btn btn-secondary btn-small',
          'aria-label': `Run job ${job.name} again`,
          title: 'A new job with the same title, description, priority, metadata and labels',
          onclick: async (e) => {
            const button = e.currentTarget;
            alerts.clear();
            button.disabled = true;
            try {
              const created = await api(`${jobPath(job.id)}/rerun`, { method: 'POST' });
              notify(`Job “${created.name}” submitted again.`, { keep: true });
              onRerun?.(created);
            } catch (err) {
              alerts.show(err);
            } finally {
              if (button.isConnected) button.disabled = false;
            }
          },
        },
        'Run again',
      ),
    );
  }
  return wrap;
}

/** A date input's value ("2026-11-30") as the start (or the end) of that day in the browser's zone. */
function dayBound(value, end) {
  if (!value) return null;
  const d = new Date(`${value}T${end ? '23:59:59.999' : '00:00:00'}`);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export class JobsPage extends Page {
  get title() {
    return 'Jobs';
  }

  /** The list's choices, from the address. */
  readQuery() {
    const q = this.query;
    const sort = SORTS.includes(q.get('sort')) ? q.get('sort') : 'created_at';
    const order = q.get('order') === 'asc' || q.get('order') === 'desc' ? q.get('order') : sort === 'created_at' ? 'desc' : FIRST_ORDER[sort];
    return {
      q: (q.get('q') ?? '').slice(0, 1000),
      status: JOB_STATUSES.includes(q.get('status')) ? q.get('status') : '',
      owner: this.canSeeAll ? q.get('owner') ?? '' : '',
      from: /^\d{4}-\d{2}-\d{2}$/.test(q.get('from') ?? '') ? q.get('from') : '',
      to: /^\d{4}-\d{2}-\d{2}$/.test(q.get('to') ?? '') ? q.get('to') : '',
      sort,
      order,
      skip: Math.max(0, Number.parseInt(q.get('skip') ?? '0', 10) || 0),
    };
  }

  get filtered() {
    const f = this.f;
    return Boolean(f.q || f.status || f.owner || f.from || f.to);
  }

  render(main) {
    this.canSeeAll = state.me?.role === 'admin' || state.me?.role === 'moderator';
    this.f = this.readQuery();
    this.limit = PAGE_SIZE;
    this.jobs = new Map(); // id → the job as shown
    this.selected = new Set();
    this.alerts = alertArea();
    this.cols = this.canSeeAll ? 9 : 8;

    const form = h(
      'form',
      { id: 'job-form', novalidate: true, 'aria-labelledby': 'job-form-title' },
      h(
        'div',
        { class: 'form-row form-row-wide' },
        field({ label: 'Title', id: 'job-title', name: 'title', required: true, limit: JOB_TITLE_MAX, autocomplete: 'off' }),
        field({ label: 'Priority', id: 'job-priority', name: 'priority', type: 'number', min: '-1000', max: '1000', step: '1', value: '0', hint: 'Higher runs first (−1000 to 1000).' }),
      ),
      h(
        'div',
        { class: 'form-row form-row-wide' },
        field({ label: 'Description', id: 'job-description', name: 'description', type: 'textarea', limit: JOB_DESCRIPTION_MAX, rows: '3' }),
        field({ label: 'Metadata (JSON)', id: 'job-metadata', name: 'metadata', type: 'textarea', class: 'mono', rows: '3', placeholder: '{"queue": "default"}', hint: 'Optional. A JSON object, at most 16 KiB.' }),
      ),
      h(
        'div',
        { class: 'form-row form-row-wide form-row-end' },
        field({ label: 'Requires labels', id: 'job-requires', name: 'requires', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: 'e.g. linux, gpu', hint: 'Optional. Only agents with all of these labels run it.' }),
        h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Create job')),
      ),
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
        const bytes = new TextEncoder().encode(JSON.stringify(metadata)).length;
        if (bytes > METADATA_MAX_BYTES) throw new FieldProblem('metadata', `Metadata is too large: ${num(bytes)} bytes, at most ${num(METADATA_MAX_BYTES)} (16 KiB).`);
      }
      const description = String(data.get('description') ?? '').trim();
      const requires = String(data.get('requires') ?? '')
        .split(/[\s,]+/)
        .map((l) => l.trim().toLowerCase())
        .filter(Boolean);
      const badLabel = requires.find((l) => !LABEL_RE.test(l));
      if (badLabel) throw new FieldProblem('requires', `“${badLabel}” is not a label: use 1 to 64 of a–z, 0–9 and . _ - : /, starting with a letter or digit.`);
      if (new Set(requires).size > LABELS_MAX) throw new FieldProblem('requires', `At most ${LABELS_MAX} labels (this has ${requires.length}).`);
      const job = await this.api('/api/v1/jobs', {
        method: 'POST',
        body: { title, description: jsonOrEmpty(description), priority, metadata, requires: requires.length ? requires : undefined },
      });
      form.reset();
      notify(`Job “${job.name}” created.`);
      if (this.alive()) this.load();
    });

    this.tbody = h('tbody', { id: 'jobs-body' }, emptyRow(this.cols, 'Loading…'));
    this.total = h('span', { class: 'list-total', id: 'jobs-total', 'aria-live': 'polite' });
    this.prev = h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'jobs-prev', onclick: () => this.go({ skip: Math.max(0, this.f.skip - this.limit) }) }, 'Previous page');
    this.next = h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'jobs-next', onclick: () => this.go({ skip: this.f.skip + this.limit }) }, 'Next page');
    this.range = h('span', { class: 'muted', id: 'jobs-range' });
    this.pager = h('div', { class: 'pager', hidden: true }, this.prev, this.range, this.next);
    this.selectAll = h('input', { type: 'checkbox', id: 'jobs-select-all', 'aria-label': 'Select every job on this page', onchange: (e) => this.selectPage(e.target.checked) });
    this.bulkCount = h('span', { id: 'jobs-bulk-count' });
    this.bulkBar = h(
      'div',
      { class: 'bulk-bar', id: 'jobs-bulk', role: 'region', 'aria-label': 'Selected jobs', hidden: true },
      this.bulkCount,
      h('button', { type: 'button', class: 'btn btn-danger btn-small', id: 'jobs-bulk-cancel', onclick: () => this.bulk('cancel') }, 'Cancel selected'),
      h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'jobs-bulk-retry', onclick: () => this.bulk('retry') }, 'Retry selected'),
      h('button', { type: 'button', class: 'link-button', onclick: () => this.clearSelection() }, 'Clear the selection'),
    );

    main.replaceChildren(
      this.head('Jobs', this.canSeeAll ? 'Every job in the orchestrator. The list updates live.' : 'Your jobs. The list updates live.'),
      h('section', { class: 'card', 'aria-labelledby': 'job-form-title' }, h('h2', { id: 'job-form-title' }, 'New job'), form),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'jobs-list-title' },
        h('div', { class: 'card-head' }, h('div', { class: 'head-title' }, h('h2', { id: 'jobs-list-title' }, 'Job list'), this.total), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load() }, 'Refresh')),
        this.filterForm(),
        this.alerts,
        this.bulkBar,
        table(this.headers(), this.tbody, 'Jobs'),
        this.pager,
      ),
    );
    this.load();
    // A lease that ends while the page is open changes what the row says.
    this.every(() => this.tickLeases(), 5000);
  }

  /** Search, status, owner, dates and sort: submitted as a whole, the selects at once. */
  filterForm() {
    const f = this.f;
    const form = h(
      'form',
      { id: 'job-filters', class: 'filters', novalidate: true, role: 'search', 'aria-label': 'Find jobs' },
      field({ label: 'Search titles', id: 'job-search', name: 'q', type: 'search', value: f.q, limit: QUERY_MAX, autocomplete: 'off', placeholder: 'Text in the title' }),
      field({
        label: 'Status',
        id: 'job-filter-status',
        control: select({ name: 'status', value: f.status, options: [['', 'All statuses'], ...JOB_STATUSES.map((s) => [s, s[0].toUpperCase() + s.slice(1)])], onchange: () => form.requestSubmit() }),
      }),
      this.canSeeAll ? field({ label: 'Owner', id: 'job-filter-owner', name: 'owner', value: f.owner, limit: QUERY_MAX, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: 'Username' }) : null,
      field({ label: 'Submitted from', id: 'job-filter-from', name: 'from', type: 'date', value: f.from }),
      field({ label: 'Submitted until', id: 'job-filter-to', name: 'to', type: 'date', value: f.to }),
      field({ label: 'Sort', id: 'job-sort', control: select({ name: 'sort', value: `${f.sort}:${f.order}`, options: SORT_CHOICES, onchange: () => form.requestSubmit() }) }),
      h(
        'div',
        { class: 'form-actions' },
        h('button', { type: 'submit', class: 'btn btn-secondary' }, 'Apply'),
        h('button', { type: 'button', class: 'btn btn-secondary', id: 'job-filters-reset', onclick: () => navigate('/console/jobs', { focus: false }) }, 'Reset'),
      ),
    );
    onSubmit(form, async (data) => {
      const from = String(data.get('from') ?? '');
      const to = String(data.get('to') ?? '');
      if (from && to && from > to) throw new FieldProblem('to', 'The end is before the start.');
      const [sort, order] = String(data.get('sort') ?? 'created_at:desc').split(':');
      this.go({ q: String(data.get('q') ?? '').trim(), status: String(data.get('status') ?? ''), owner: String(data.get('owner') ?? '').trim(), from, to, sort, order, skip: 0 });
    });
    return form;
  }

  /** The column headers; the sortable ones are buttons that sort by them (aria-sort tells how). */
  headers() {
    const f = this.f;
    const sortable = (label, column, cls) => {
      const active = f.sort === column;
      const next = active ? (f.order === 'asc' ? 'desc' : 'asc') : FIRST_ORDER[column];
      return h(
        'th',
        { scope: 'col', class: cls, 'aria-sort': active ? (f.order === 'asc' ? 'ascending' : 'descending') : null, 'data-label': label, 'data-sort': column },
        h(
          'button',
          { type: 'button', class: 'sort-button', onclick: () => this.go({ sort: column, order: next, skip: 0 }), title: `Sort by ${label.toLowerCase()}` },
          label,
          h('span', { class: 'sort-mark', 'aria-hidden': 'true' }, active ? (f.order === 'asc' ? ' ▲' : ' ▼') : ''),
        ),
      );
    };
    return [
      h('th', { scope: 'col', class: 'col-select', 'data-label': 'Select' }, this.selectAll),
      sortable('Title', 'title'),
      sortable('Status', 'status'),
      'Progress',
      this.canSeeAll ? 'Owner' : null,
      sortable('Priority', 'priority', 'num'),
      sortable('Created', 'created_at'),
      sortable('Updated', 'updated_at'),
      'Actions',
    ].filter(Boolean);
  }

  go(changes) {
    const f = { ...this.f, ...changes };
    const q = new URLSearchParams();
    if (f.q) q.set('q', f.q);
    if (f.status) q.set('status', f.status);
    if (f.owner) q.set('owner', f.owner);
    if (f.from) q.set('from', f.from);
    if (f.to) q.set('to', f.to);
    if (f.sort !== 'created_at' || f.order !== 'desc') {
      q.set('sort', f.sort);
      q.set('order', f.order);
    }
    if (f.skip) q.set('skip', String(f.skip));
    const qs = q.toString();
    navigate(`/console/jobs${qs ? `?${qs}` : ''}`, { focus: false });
  }

  refresh() {
    this.load();
  }

  /** The API query of the list as chosen. */
  apiQuery() {
    const f = this.f;
    const q = new URLSearchParams({ skip: String(f.skip), limit: String(this.limit), total: 'true' });
    if (f.q) q.set('q', f.q);
    if (f.status) q.set('status', f.status);
    if (f.owner) q.set('owner', f.owner);
    const from = dayBound(f.from, false);
    const to = dayBound(f.to, true);
    if (from) q.set('created_from', from);
    if (to) q.set('created_to', to);
    if (f.sort !== 'created_at' || f.order !== 'desc') {
      q.set('sort', f.sort);
      q.set('order', f.order);
    }
    return q;
  }

  async load() {
    try {
      const res = await this.api(`/api/v1/jobs?${this.apiQuery()}`, { full: true });
      if (!this.alive()) return;
      const jobs = res.data ?? [];
      const total = Number.parseInt(res.headers.get('X-Total-Count') ?? '', 10);
      this.jobs = new Map(jobs.map((j) => [j.id, j]));
      syncRows(this.tbody, jobs, {
        key: (j) => j.id,
        sig: (j) => `${jobSig(j)}|${this.selected.has(j.id)}`,
        row: (j) => this.row(j),
        empty: () => emptyRow(this.cols, this.filtered ? 'No jobs match. Change the search or the filters.' : 'No jobs yet. Create one with the form.'),
      });
      const known = Number.isFinite(total) ? total : this.f.skip + jobs.length;
      this.total.textContent = count(known, 'job');
      this.total.dataset.total = String(known);
      this.prev.disabled = this.f.skip === 0;
      this.next.disabled = Number.isFinite(total) ? this.f.skip + jobs.length >= total : jobs.length < this.limit;
      this.range.textContent = jobs.length ? `${num(this.f.skip + 1)}–${num(this.f.skip + jobs.length)} of ${num(known)}` : '';
      this.pager.hidden = this.prev.disabled && this.next.disabled;
      // A selection keeps only the jobs still in view.
      for (const id of this.selected) if (!this.jobs.has(id)) this.selected.delete(id);
      this.updateBulk();
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.tbody.replaceChildren(emptyRow(this.cols, `Could not load the jobs: ${err.message}`));
    }
  }

  row(job) {
    const run = runLabel(job);
    return h(
      'tr',
      { 'data-job-id': job.id, 'data-status': job.status, 'data-updated': job.updated_at, 'data-lease': job.status === 'running' ? job.lease_expires_at ?? '' : '', class: this.selected.has(job.id) ? 'row-selected' : null },
      h(
        'td',
        { class: 'col-select' },
        h('input', { type: 'checkbox', class: 'job-select', checked: this.selected.has(job.id), 'aria-label': `Select job ${job.name}`, onchange: (e) => this.toggle(job.id, e.target.checked) }),
      ),
      h('td', { class: 'cell-title' }, h('a', { href: `/console/jobs/${encodeURIComponent(job.id)}`, 'data-link': '' }, job.name)),
      h(
        'td',
        { class: 'job-status' },
        statusView(job),
        job.agent_name && (job.status === 'running' || job.attempt > 0) ? h('span', { class: 'job-row-agent muted' }, job.agent_name, run ? ` · ${run}` : null) : null,
      ),
      h(
        'td',
        { class: 'job-progress-cell' },
        hasNumber(job.progress)
          ? h('span', { class: 'progress-line' }, h('progress', { max: '1', value: String(Math.max(0, Math.min(1, Number(job.progress)))), 'aria-label': `Progress of ${job.name}` }), h('span', { class: 'job-row-progress' }, percent(job.progress)))
          : h('span', { class: 'muted' }, '—'),
      ),
      this.canSeeAll ? h('td', { class: 'job-owner' }, job.owner_name ?? h('span', { class: 'muted' }, '—')) : null,
      h('td', { class: 'num card-minor' }, String(job.priority ?? 0)),
      h('td', { class: 'nowrap' }, shortTime(job.created_at)),
      h('td', { class: 'nowrap card-minor' }, shortTime(job.updated_at)),
      h('td', { class: 'cell-actions' }, jobActions(job, (updated) => this.replace(updated), this.alerts, { onRerun: () => this.load() })),
    );
  }

  rowOf(id) {
    return this.tbody.querySelector(`tr[data-job-id="${CSS.escape(String(id))}"]`);
  }

  replace(job, { force = false } = {}) {
    const old = this.rowOf(job.id);
    if (!old || (!force && old.dataset.sig === `${jobSig(job)}|${this.selected.has(job.id)}`)) return;
    // An answer that was overtaken by a newer one (e.g. by a heartbeat's job).
    if (!force && old.dataset.updated && new Date(job.updated_at) < new Date(old.dataset.updated)) return;
    this.jobs.set(job.id, job);
    if (this.f.status && job.status !== this.f.status) {
      old.remove();
      this.selected.delete(job.id);
      this.updateBulk();
      if (!this.tbody.rows.length) this.load();
      return;
    }
    const row = this.row(job);
    row.dataset.key = job.id;
    row.dataset.sig = `${jobSig(job)}|${this.selected.has(job.id)}`;
    row.classList.add('row-flash');
    old.replaceWith(row);
    this.later(() => row.classList.remove('row-flash'), 1500);
  }

  tickLeases() {
    const now = Date.now();
    for (const tr of this.tbody.querySelectorAll('tr[data-status="running"][data-lease]')) {
      const job = this.jobs.get(tr.dataset.key);
      if (job && leaseExpired(job, now) && !tr.querySelector('.lease-expired')) this.replace(job, { force: true });
    }
  }

  // ----- selection and bulk actions

  toggle(id, on) {
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    this.rowOf(id)?.classList.toggle('row-selected', on);
    const row = this.rowOf(id);
    if (row) row.dataset.sig = `${jobSig(this.jobs.get(id) ?? {})}|${on}`;
    this.updateBulk();
  }

  selectPage(on) {
    for (const input of this.tbody.querySelectorAll('input.job-select')) {
      const id = input.closest('tr').dataset.jobId;
      input.checked = on;
      this.toggle(id, on);
    }
  }

  clearSelection() {
    this.selectPage(false);
    this.selected.clear();
    this.updateBulk();
  }

  updateBulk() {
    const n = this.selected.size;
    this.bulkBar.hidden = n === 0;
    this.bulkCount.textContent = `${count(n, 'job')} selected`;
    const onPage = this.tbody.querySelectorAll('input.job-select').length;
    this.selectAll.checked = n > 0 && n >= onPage;
    this.selectAll.indeterminate = n > 0 && n < onPage;
    rateLimit.apply();
  }

  /** Cancel (after a confirmation) or retry the selected jobs in one request (POST …/jobs/bulk). */
  async bulk(action) {
    const ids = [...this.selected].slice(0, BULK_MAX);
    if (!ids.length) return;
    this.alerts.clear();
    const jobs = ids.map((id) => this.jobs.get(id)).filter(Boolean);
    if (action === 'cancel') {
      const running = jobs.filter(heldByAgent).length;
      const ok = await confirmDialog({
        id: 'bulk-cancel-dialog',
        title: `Cancel ${count(ids.length, 'job')}?`,
        message: [
          h('p', null, 'Jobs that already finished stay as they are.'),
          running ? h('p', null, `${count(running, 'job is', 'jobs are')} running: ${running === 1 ? 'its agent is' : 'their agents are'} told to stop.`) : null,
        ],
        confirmLabel: `Cancel ${count(ids.length, 'job')}`,
        keepLabel: 'Keep jobs',
      });
      if (!ok) return;
    }
    try {
      const res = await this.api('/api/v1/jobs/bulk', { method: 'POST', body: { action, ids } });
      const failed = (res?.results ?? []).filter((r) => r.status !== 200);
      const verb = action === 'cancel' ? 'cancelled' : 'queued again';
      notify(`${count(res?.succeeded ?? 0, 'job')} ${verb}.${failed.length ? ` ${count(failed.length, 'job')} could not be.` : ''}`);
      if (failed.length) {
        const name = (id) => this.jobs.get(id)?.name ?? id;
        this.alerts.show(new Error(`Not ${verb}: ${failed.map((r) => `“${name(r.id)}” (${r.detail ?? `HTTP ${r.status}`})`).join('; ')}`));
      }
      this.selected.clear();
      this.load();
    } catch (err) {
      if (err?.name !== 'AbortError') this.alerts.show(err);
    }
  }

  async onEvent(evt) {
    if (!String(evt.event ?? '').startsWith('job_') || !evt.task_id) return;
    const id = evt.task_id;
    if (evt.event === 'job_output') return;
    if (evt.event === 'job_deleted') {
      this.rowOf(id)?.remove();
      this.selected.delete(id);
      this.updateBulk();
      this.debounced('reload', () => this.load(), 500);
      return;
    }
    if (evt.event === 'job_progress') {
      // A heartbeat carries the job: no need to read it again.
      if (evt.job && this.rowOf(id)) this.replace(evt.job);
      return;
    }
    if (!this.rowOf(id) || this.f.sort !== 'created_at' || evt.event === 'job_created') {
      // A job this page does not show yet (new, or now matching the filter), or an order that
      // may have changed: read the page again (and the total).
      this.debounced('reload', () => this.load(), 300);
      if (!this.rowOf(id)) return;
    }
    try {
      const job = await this.api(jobPath(id));
      if (this.alive()) this.replace(job);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.rowOf(id)?.remove();
    }
  }
}
