import { h, shortTime, badge, dash, compactJson, field, select, table, emptyRow, FieldProblem, onSubmit, alertArea, Page, navigate, count } from './core.js';

// The events the service writes, as GET /api/v1/admin/audit/events lists them; this copy is used
// only when that call fails.
export const AUDIT_EVENTS = [
  'apikey.created', 'apikey.first_used', 'apikey.rejected', 'apikey.revoked', 'auth.lockout', 'auth.login',
  'auth.logout', 'auth.logout_all', 'auth.password_change', 'auth.password_changed', 'auth.refresh',
  'auth.refresh_reuse', 'auth.token_rejected', 'csp.violation', 'csrf.rejected', 'https.rejected',
  'mfa.confirm', 'mfa.disable', 'mfa.disabled', 'mfa.enabled', 'mfa.reset', 'mfa.verify',
  'ratelimit.exceeded', 'ratelimit.penalized', 'rbac.denied', 'request.rejected', 'session.created',
  'session.revoked', 'tokens.revoked', 'user.created', 'user.disabled', 'user.enabled', 'user.role_changed',
  'user.unlocked',
];

// ----- administration: audit log -------------------------------------------------------------

export const AUDIT_FILTERS = ['event', 'outcome', 'actor', 'since', 'until'];

export function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export class AuditPage extends Page {
  get title() {
    return 'Audit log';
  }

  render(main) {
    this.filters = {};
    for (const k of AUDIT_FILTERS) if (this.query.get(k)) this.filters[k] = this.query.get(k);
    this.tbody = h('tbody', { id: 'audit-body' }, emptyRow(6, 'Loading…'));
    this.older = h('button', { type: 'button', class: 'btn btn-secondary', id: 'audit-older', hidden: true, onclick: () => this.load(true) }, 'Older entries');
    this.count = h('span', { class: 'muted', id: 'audit-count', 'aria-live': 'polite' });
    this.eventSelect = select({ name: 'event', value: this.filters.event ?? '', options: this.eventOptions(AUDIT_EVENTS) });
    const form = h(
      'form',
      { id: 'audit-filter', class: 'filters', novalidate: true, role: 'search', 'aria-label': 'Filter the audit log' },
      field({ label: 'Event', id: 'audit-event', control: this.eventSelect }),
      field({ label: 'Outcome', id: 'audit-outcome', control: select({ name: 'outcome', value: this.filters.outcome ?? '', options: [['', 'Any'], ['success', 'Success'], ['failure', 'Failure'], ['denied', 'Denied']] }) }),
      field({ label: 'Actor', id: 'audit-actor', name: 'actor', value: this.filters.actor ?? '', autocomplete: 'off' }),
      field({ label: 'From', id: 'audit-since', name: 'since', type: 'datetime-local', value: toLocalInput(this.filters.since) }),
      field({ label: 'Until', id: 'audit-until', name: 'until', type: 'datetime-local', value: toLocalInput(this.filters.until) }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Apply'), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => navigate('/console/admin/audit', { focus: false }) }, 'Reset')),
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
    this.loadEvents();
  }

  /** [value, label] options: any event, then each known one (and a filter from the address). */
  eventOptions(events) {
    const names = [...new Set([...events, ...(this.filters.event ? [this.filters.event] : [])])].sort();
    return [['', 'Any event'], ...names.map((e) => [e, e])];
  }

  /** The known events from the service (the built-in list stays when the call fails). */
  async loadEvents() {
    try {
      const res = await this.api('/api/v1/admin/audit/events');
      const events = Array.isArray(res?.events) ? res.events.map(String) : null;
      if (!events?.length || !this.alive()) return;
      const value = this.eventSelect.value;
      this.eventSelect.replaceChildren(...this.eventOptions(events).map(([v, t]) => h('option', { value: v, selected: v === value }, t)));
      this.eventSelect.value = value;
      this.eventSelect.dataset.source = 'service';
    } catch {
      // The built-in list stays.
    }
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
      this.count.textContent = `${count(shown, 'entry', 'entries')} shown${this.nextBefore ? ' (older ones on request)' : ''}`;
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
