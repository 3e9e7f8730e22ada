import { state, $, h, shortTime, badge, dash, field, select, table, emptyRow, confirmButton, copyText, notify, rateLimit, FieldProblem, onSubmit, alertArea, live, Page } from './core.js';
import { oauthReturn, loadProviders, oauthCallback, startOAuth } from './login.js';

// ----- account -------------------------------------------------------------------------------

export function browserName(ua) {
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

export function svgDataUrl(svg) {
  const bytes = new TextEncoder().encode(svg);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:image/svg+xml;base64,${btoa(bin)}`;
}

export class AccountPage extends Page {
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
                  keepLabel: 'Keep it linked',
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
      field({ label: 'New password', id: 'pw-new', name: 'new_password', type: 'password', autocomplete: 'new-password', required: true, minlength: '8', hint: 'From 8 to 1,024 characters.' }),
      field({ label: 'Repeat the new password', id: 'pw-confirm', name: 'confirm_password', type: 'password', autocomplete: 'new-password', required: true }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Change password')),
    );
    onSubmit(form, async (data) => {
      const current = String(data.get('current_password') ?? '');
      const next = String(data.get('new_password') ?? '');
      if (!current) throw new FieldProblem('current_password', 'Enter your current password.');
      if ([...next].length < 8) throw new FieldProblem('new_password', 'Use at least 8 characters.');
      if ([...next].length > 1024) throw new FieldProblem('new_password', 'Use at most 1,024 characters.');
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
          field({ label: 'Code from your app', id: 'mfa-disable-code', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9 ]{6,7}', required: true }),
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
        pattern: '[0-9 ]{6,7}',
        required: true,
        hint: 'Enter the 6-digit code the app shows for Kyros.',
      }),
      h(
        'div',
        { class: 'form-actions' },
        h('button', { type: 'submit', class: 'btn' }, 'Turn on'),
        h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.loadMfa() }, 'Not now'),
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
              keepLabel: 'Keep session',
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
