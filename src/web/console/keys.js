import { state, $, h, shortTime, slug, badge, shortId, field, table, syncRows, emptyRow, confirmButton, copyText, notify, FieldProblem, onSubmit, alertArea, Page, count, num } from './core.js';

// The service's limit (OpenAPI: KeyCreate.name maxLength 100).
const KEY_NAME_MAX = 100;

export const SCOPES = [
  ['jobs:read', 'Read jobs, tasks and agents'],
  ['jobs:write', 'Create and change jobs and tasks'],
  ['jobs:claim', 'Run jobs as an agent (claim, heartbeat, complete)'],
  ['events:read', 'Read events'],
  ['events:write', 'Write collaboration events'],
  ['admin', 'Administration (administrators only)'],
];

// ----- API keys ------------------------------------------------------------------------------

export class KeysPage extends Page {
  get title() {
    return 'API keys';
  }

  render(main) {
    this.alerts = alertArea();
    this.secretBox = h('section', { id: 'new-key', class: 'secret-box', hidden: true, 'aria-labelledby': 'new-key-title' });
    this.tbody = h('tbody', { id: 'keys-body' }, emptyRow(8, 'Loading…'));
    this.total = h('span', { class: 'list-total', id: 'keys-total', 'aria-live': 'polite' });
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
        field({ label: 'Name', id: 'key-name', name: 'name', required: true, limit: KEY_NAME_MAX, autocomplete: 'off', hint: 'For example the agent or machine that will use it.' }),
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
          h('div', { class: 'card-head' }, h('div', { class: 'head-title' }, h('h2', { id: 'keys-title' }, 'Your keys'), this.total)),
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
      const active = items.filter((k) => k.status === 'active').length;
      this.total.textContent = `${count(items.length, 'key')} · ${num(active)} active`;
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
              question: `Revoke “${key.name}”? Agents using it stop at once.`,
              confirmLabel: 'Revoke key',
              keepLabel: 'Keep key',
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
