import { LOGIN, state, $, h, field, notify, clearNotice, rateLimit, ApiError, api, FieldProblem, onSubmit, safeNext, loadMe, loggedIn, Page, navigate } from './core.js';

// ----- sign-in with an identity provider -------------------------------------------------------

/** The redirect_uri of the console: its login page (OAUTH2_REDIRECT_URIS must list it). The
 * provider comes back there with `code` and `state`; the server knows from the state which
 * provider and what for (sign-in or link), so the page keeps nothing between the two. */
export function oauthRedirectUri() {
  return `${location.origin}${LOGIN}`;
}

/** Whether this address is a provider's answer (`state` with `code` or `error`). */
export function oauthReturn(query) {
  return query.has('state') && (query.has('code') || query.has('error'));
}

export let providersPromise = null;
/** The configured identity providers (`GET /auth/providers`), asked once per page load. */
export function loadProviders() {
  providersPromise ??= api('/auth/providers', { quiet401: true })
    .then((res) => res?.providers ?? [])
    .catch(() => []);
  return providersPromise;
}

/** The callback of a provider's answer; the server finds the provider and the purpose by the
 * state (`POST /auth/oauth2/callback`). */
export function oauthCallback(code, stateParam, iss) {
  const body = { code, state: stateParam, redirect_uri: oauthRedirectUri() };
  if (iss) body.iss = iss;
  return api('/auth/oauth2/callback', { method: 'POST', body, quiet401: true });
}

/** Starts a sign-in ("session") or a link ("link", with the account's password) with provider
 * `p`: the server answers the provider's URL, and the browser goes there. Throws the API's error. */
export async function startOAuth(p, mode, password) {
  const redirect = oauthRedirectUri();
  const res =
    mode === 'link'
      ? await api(`/auth/oauth2/${encodeURIComponent(p.name)}/link`, { method: 'POST', body: { redirect_uri: redirect, password } })
      : await api(`/auth/oauth2/${encodeURIComponent(p.name)}?redirect_uri=${encodeURIComponent(redirect)}&mode=session`, { quiet401: true });
  location.assign(res.authorization_url);
}

// ----- login ---------------------------------------------------------------------------------

export class LoginPage extends Page {
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
          pattern: '[0-9 ]{6,7}',
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
