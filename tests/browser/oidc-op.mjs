// A real OpenID Provider for the tests of "sign in with an identity provider": the certified
// `oidc-provider` package, on loopback HTTP, with the clients and people the test gives it, keys
// generated at start (nothing secret is kept in the repository), its own login page and an
// automatic consent.
//
// Used two ways:
//   * imported by the browser test: `const op = await startProvider(config)`;
//   * as a process by the Rust tests (tests/it/oidc.rs):
//       OIDC_OP_CONFIG='{"clients":[…],"users":[…]}' node tests/browser/oidc-op.mjs
//     prints one JSON line `{"issuer":"http://127.0.0.1:PORT"}` when it listens, and runs until
//     killed (or until its stdin closes).
//
// config: {
//   port: 0,                                   // 0: any free port
//   clients: [{ client_id, client_secret, redirect_uris: [...] }],
//   users: [{ id, password, email, email_verified, username, amr: ["pwd", "otp"] }],
// }
//
// The login page (GET /interaction/:uid) is a form with `login` and `password`; POST
// /interaction/:uid/login checks them against `users`. Consent is granted automatically.
//
// Misbehaviour on demand, for the tests of what a client must refuse: POST /__test/mode with
// `{"mode": M}` rewrites the `id_token` of every later token response:
//   "unknown-key"  signed by a key the provider does not publish (RS256, new kid)
//   "alg-none"     unsigned (`alg: none`)
//   "hs256"        HS256 keyed with the client secret
//   "wrong-iss"    `iss` of another issuer (signed with the real key)
//   "wrong-aud"    `aud` of another client (signed with the real key)
//   "wrong-nonce"  another `nonce` (signed with the real key)
//   "expired"      `exp` an hour ago (signed with the real key)
//   ""             as issued
// and `{"mode": "token-error"}` makes the token endpoint answer 500 with an HTML page.

import crypto from 'node:crypto';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

import Provider from 'oidc-provider';
import * as jose from 'jose';

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function loginPage(uid, clientId, error) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test OpenID Provider: sign in</title></head>
<body>
<h1>Test OpenID Provider</h1>
<p>Sign in to continue to <strong>${escapeHtml(clientId)}</strong>.</p>
${error ? `<p id="op-error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" id="op-login">
  <label>Login <input id="op-login-name" name="login" autocomplete="username" autofocus></label>
  <label>Password <input id="op-password" name="password" type="password" autocomplete="current-password"></label>
  <button type="submit" id="op-submit">Sign in</button>
</form>
</body></html>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

/** Starts the provider; resolves to { issuer, setMode(mode), close() }. */
export async function startProvider(config) {
  const clients = config.clients ?? [];
  const users = config.users ?? [];
  let mode = '';

  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
  const signingKey = await jose.importJWK(signingJwk, 'RS256');

  const server = http.createServer();
  await new Promise((resolve) => server.listen(config.port ?? 0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      redirect_uris: c.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    async findAccount(ctx, id) {
      const user = users.find((u) => u.id === id);
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: user.email,
            email_verified: Boolean(user.email_verified),
            preferred_username: user.username ?? id,
            name: user.name ?? user.username ?? id,
          };
        },
      };
    },
    // amr (RFC 8176) with the openid scope: what the login step says it used.
    claims: { openid: ['sub', 'amr'], email: ['email', 'email_verified'], profile: ['preferred_username', 'name'] },
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    jwks: { keys: [signingJwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
  });

  // The misbehaviours: rewrite the id_token of token responses.
  provider.use(async (ctx, next) => {
    if (ctx.path === '/token' && mode === 'token-error') {
      ctx.status = 500;
      ctx.type = 'html';
      ctx.body = '<html><body>Internal Server Error: stack trace at TokenEndpoint.js:42</body></html>';
      return;
    }
    await next();
    if (ctx.path !== '/token' || !mode || !ctx.body?.id_token) return;
    const claims = jose.decodeJwt(ctx.body.id_token);
    const now = Math.floor(Date.now() / 1000);
    const resign = (payload) => new jose.SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'JWT' }).sign(signingKey);
    switch (mode) {
      case 'unknown-key': {
        const { privateKey: other } = await jose.generateKeyPair('RS256');
        ctx.body.id_token = await new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'unknown-' + crypto.randomBytes(4).toString('hex'), typ: 'JWT' }).sign(other);
        break;
      }
      case 'alg-none': {
        const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
        ctx.body.id_token = `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
        break;
      }
      case 'hs256': {
        const secret = clients.find((c) => c.client_id === claims.aud || (Array.isArray(claims.aud) && claims.aud.includes(c.client_id)))?.client_secret ?? '';
        ctx.body.id_token = await new jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(secret));
        break;
      }
      case 'wrong-iss':
        ctx.body.id_token = await resign({ ...claims, iss: 'http://127.0.0.1:1/another-issuer' });
        break;
      case 'wrong-aud':
        ctx.body.id_token = await resign({ ...claims, aud: 'another-client', azp: 'another-client' });
        break;
      case 'wrong-nonce':
        ctx.body.id_token = await resign({ ...claims, nonce: crypto.randomBytes(16).toString('base64url') });
        break;
      case 'expired':
        ctx.body.id_token = await resign({ ...claims, iat: now - 7200, exp: now - 3600 });
        break;
      default:
        break;
    }
  });

  const opHandler = provider.callback();
  server.on('request', async (req, res) => {
    try {
      const url = new URL(req.url, issuer);
      if (url.pathname === '/__test/mode' && req.method === 'POST') {
        mode = String((await readJson(req)).mode ?? '');
        res.writeHead(204).end();
        return;
      }
      const m = /^\/interaction\/([^/]+)(\/login)?$/.exec(url.pathname);
      if (m) {
        const details = await provider.interactionDetails(req, res);
        if (m[2] && req.method === 'POST') {
          const form = await readForm(req);
          const user = users.find((u) => u.id === form.get('login') && u.password === form.get('password'));
          if (!user) {
            res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(loginPage(details.uid, details.params.client_id, 'Wrong login or password.'));
            return;
          }
          await provider.interactionFinished(req, res, { login: { accountId: user.id, amr: user.amr ?? ['pwd'] } }, { mergeWithLastSubmission: false });
          return;
        }
        if (details.prompt.name === 'login') {
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(loginPage(details.uid, details.params.client_id));
          return;
        }
        // Consent: granted as asked.
        const { prompt, params, session } = details;
        const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
        if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
        if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
        if (prompt.details.missingResourceScopes) {
          for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes)) grant.addResourceScope(indicator, scopes.join(' '));
        }
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return;
      }
      opHandler(req, res);
    } catch (err) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`test provider error: ${err?.message ?? err}`);
    }
  });

  return {
    issuer,
    setMode(m) {
      mode = m;
    },
    close() {
      server.closeAllConnections?.();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const config = JSON.parse(process.env.OIDC_OP_CONFIG ?? '{}');
  const op = await startProvider(config);
  process.stdout.write(`${JSON.stringify({ issuer: op.issuer })}\n`);
  // End with the test that started it.
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
}
