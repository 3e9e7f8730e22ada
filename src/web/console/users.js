// Administration of the user accounts. Every change is based on the version of the user the
// list showed (its `etag`, sent as If-Match): a 412 opens the conflict dialog with both versions.
// A role change, disabling and signing out everywhere ask once, with a clear verb; "Reset MFA" is
// offered only for users with two-step verification on, "Unlock" only for locked users.

import { state, h, fmtTime, shortTime, badge, dash, field, select, table, syncRows, emptyRow, confirmButton, notify, ApiError, FieldProblem, onSubmit, alertArea, Page, count } from './core.js';
import { confirmDialog, conflictDialog } from './dialog.js';

// The service's limits (OpenAPI: UserCreate.username and email maxLength 255, password 8 to 1024).
const USERNAME_MAX = 255;
const EMAIL_MAX = 255;
const PASSWORD_MAX = 1024;

const ROLES = [['user', 'User'], ['moderator', 'Moderator'], ['admin', 'Administrator']];
const ROLE_NAMES = { user: 'a user', moderator: 'a moderator', admin: 'an admin' };
const userPath = (id) => `/api/v1/admin/users/${encodeURIComponent(id)}`;
const isLocked = (u) => Boolean(u.locked_until) && new Date(u.locked_until) > new Date();

// ----- administration: users -----------------------------------------------------------------

export class UsersPage extends Page {
  get title() {
    return 'Users';
  }

  render(main) {
    this.alerts = alertArea();
    this.tbody = h('tbody', { id: 'users-body' }, emptyRow(7, 'Loading…'));
    this.total = h('span', { class: 'list-total', id: 'users-total', 'aria-live': 'polite' });
    const form = h(
      'form',
      { id: 'user-form', novalidate: true },
      h(
        'div',
        { class: 'form-row' },
        field({ label: 'Username', id: 'user-username', name: 'username', required: true, limit: USERNAME_MAX, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' }),
        field({ label: 'Email', id: 'user-email', name: 'email', type: 'email', required: true, limit: EMAIL_MAX, autocomplete: 'off' }),
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
      if (new TextEncoder().encode(body.password).length > PASSWORD_MAX) throw new FieldProblem('password', `Use at most ${PASSWORD_MAX} bytes.`);
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
        h('div', { class: 'card-head' }, h('div', { class: 'head-title' }, h('h2', { id: 'users-title' }, 'All users'), this.total), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load() }, 'Refresh')),
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
      this.users = new Map(items.map((u) => [u.id, u]));
      this.total.textContent = count(items.length, 'user');
      syncRows(this.tbody, items, {
        key: (u) => u.id,
        sig: (u) => JSON.stringify([u.etag, isLocked(u)]),
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
      const done = await fn();
      if (done !== false) notify(message);
      await this.load();
    } catch (err) {
      this.alerts.show(err);
      await this.load();
    }
  }

  /**
   * PATCH the user with If-Match: the etag of the version the list showed. A 412: both versions
   * in the conflict dialog; "Overwrite with mine" sends the change again on the current version,
   * "Keep theirs" leaves it. False when nothing was changed.
   */
  async patch(u, body) {
    let etag = u.etag;
    for (;;) {
      try {
        await this.api(userPath(u.id), { method: 'PATCH', body, ifMatch: etag });
        return true;
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 412) throw err;
      }
      const list = await this.api('/api/v1/admin/users');
      const current = (list?.items ?? []).find((x) => x.id === u.id);
      if (!current) throw new ApiError(404, `${u.username} no longer exists.`);
      const mine = { ...u, ...body };
      const answer = await conflictDialog({
        what: 'user',
        intro: `Someone changed ${u.username} after this page showed it. Choose which version to keep.`,
        rows: [
          ['Role', mine.role, current.role],
          ['Status', mine.active ? 'Active' : 'Disabled', current.active ? 'Active' : 'Disabled'],
          ['Two-step verification', u.mfa_enabled ? 'On' : 'Off', current.mfa_enabled ? 'On' : 'Off'],
          ['Locked until', isLocked(u) ? fmtTime(u.locked_until) : 'not locked', isLocked(current) ? fmtTime(current.locked_until) : 'not locked'],
        ],
      });
      if (answer !== 'overwrite') {
        notify(`Kept the current version of ${u.username}.`, { kind: 'info' });
        return false;
      }
      etag = current.etag;
      u = current;
    }
  }

  /** The role select changed: asks first ("Make vera an admin?"), then changes it. */
  async changeRole(u, select) {
    const role = select.value;
    if (role === u.role) return;
    const ok = await confirmDialog({
      id: 'role-dialog',
      title: `Make ${u.username} ${ROLE_NAMES[role] ?? role}?`,
      message: [
        h('p', null, `${u.username} is ${ROLE_NAMES[u.role] ?? u.role} now.`, role === 'admin' ? ' An admin can change every user, key and setting.' : ''),
        h('p', null, 'Their sessions and tokens end: they sign in again with the new role.'),
      ],
      confirmLabel: 'Change role',
      keepLabel: 'Keep role',
    });
    if (!ok) {
      select.value = u.role;
      return;
    }
    await this.act(() => this.patch(u, { role }), `${u.username} is now ${ROLE_NAMES[role] ?? role}.`);
  }

  row(u) {
    const self = u.id === state.me?.id;
    const locked = isLocked(u);
    const roleSelect = select({
      id: `role-${u.id}`,
      value: u.role,
      disabled: self,
      class: 'role-select',
      options: ROLES,
      onchange: (e) => this.changeRole(u, e.target),
    });
    const post = (action, message) => () => this.act(() => this.api(`${userPath(u.id)}/${action}`, { method: 'POST' }), message);
    const actions = h('div', { class: 'actions' });
    if (!self) {
      actions.append(
        u.active
          ? confirmButton({
              label: 'Disable',
              ariaLabel: `Disable ${u.username}`,
              question: `Disable ${u.username}? They are signed out at once.`,
              confirmLabel: 'Disable user',
              keepLabel: 'Keep user active',
              onConfirm: () => this.act(() => this.patch(u, { active: false }), `${u.username} is disabled.`),
            })
          : h(
              'button',
              {
                type: 'button',
                class: 'btn btn-secondary btn-small',
                'aria-label': `Enable ${u.username}`,
                onclick: () => this.act(() => this.patch(u, { active: true }), `${u.username} is enabled.`),
              },
              'Enable',
            ),
      );
    }
    if (locked) {
      actions.append(h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `Unlock ${u.username}`, onclick: post('unlock', `${u.username} is unlocked.`) }, 'Unlock'));
    }
    if (u.mfa_enabled) {
      actions.append(
        confirmButton({
          label: 'Reset MFA',
          ariaLabel: `Reset two-step verification of ${u.username}`,
          question: `Turn off two-step verification of ${u.username}?`,
          confirmLabel: 'Reset MFA',
          keepLabel: 'Keep MFA',
          onConfirm: post('reset-mfa', `Two-step verification of ${u.username} is reset.`),
        }),
      );
    }
    actions.append(
      confirmButton({
        label: 'Sign out everywhere',
        ariaLabel: `Sign ${u.username} out everywhere`,
        question: `End all sessions and tokens of ${u.username}?`,
        confirmLabel: 'Sign out everywhere',
        keepLabel: 'Keep sessions',
        onConfirm: post('revoke-tokens', `${u.username} is signed out everywhere.`),
      }),
    );
    return h(
      'tr',
      { 'data-user-id': u.id, 'data-username': u.username, 'data-role': u.role, 'data-locked': locked ? 'true' : 'false', 'data-mfa': u.mfa_enabled ? 'true' : 'false' },
      h('td', { class: 'cell-user' }, h('strong', null, u.username), self ? h('span', { class: 'muted' }, ' (you)') : null),
      h('td', { class: 'cell-email' }, dash(u.email)),
      h('td', null, h('label', { for: `role-${u.id}`, class: 'visually-hidden' }, `Role of ${u.username}`), roleSelect),
      h(
        'td',
        { class: 'user-status' },
        h('span', { class: 'badges' }, u.active ? badge('active', 'Active') : badge('inactive', 'Disabled'), u.mfa_enabled ? badge('on', 'MFA') : null, locked ? badge('denied', 'Locked') : null),
        locked ? h('span', { class: 'locked-until muted' }, 'until ', shortTime(u.locked_until)) : null,
      ),
      h('td', { class: 'num' }, String(u.failed_logins ?? 0)),
      h('td', { class: 'nowrap' }, shortTime(u.created_at)),
      h('td', { class: 'cell-actions' }, actions),
    );
  }
}
