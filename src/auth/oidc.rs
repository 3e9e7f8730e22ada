//! Sign-in with an identity provider: OpenID Connect (any provider by issuer, with presets for
//! Google and Microsoft) and GitHub's plain OAuth2, on the original service's routes
//! (`GET /auth/oauth2/{provider}`, `POST /auth/oauth2/{provider}/callback`), done as RFC 6749,
//! RFC 7636, RFC 9700 (OAuth 2.0 Security Best Current Practice) and OpenID Connect Core 1.0 ask.
//!
//! * **Begin** ([`begin`]): the `redirect_uri` must be one of `OAUTH2_REDIRECT_URIS` (exact
//!   match, RFC 9700 §4.1.1). A random `state` (the client's handle), a PKCE verifier (RFC 7636,
//!   S256) and a `nonce` are made; only keyed hashes of the state and of the browser's binding
//!   cookie are stored with the verifier and the nonce (`oauth_states`), for
//!   [`STATE_LIFETIME_SECS`]. The verifier and the nonce never leave the server (the original
//!   service sent the verifier to the client inside `state`).
//! * **Callback** ([`callback`]): the state is taken out of the table (single use: a replay
//!   finds nothing), must be fresh and must come back from the browser that began the sign-in
//!   (its binding cookie). The code is exchanged with the verifier; an `id_token` is verified by
//!   `openidconnect`: signature with the provider's keys (JWKS, fetched again once when a `kid`
//!   is unknown: key rotation) and only with the asymmetric algorithms the provider advertises
//!   (never `none`, never HS256 keyed with the client secret), `iss`, `aud`, `azp`, `exp`, `iat`
//!   and the `nonce`. GitHub: the account from `/user`, the verified primary e-mail from
//!   `/user/emails`.
//! * **Account**: the identity is `issuer` + `sub`, never the e-mail. A linked identity signs in
//!   its account; an unknown one creates an account only when the provider allows it
//!   (`OIDC_<NAME>_AUTO_CREATE`), with a verified e-mail in an allowed domain, and never attaches
//!   to an existing account with the same e-mail (the original service did: account takeover).
//!   Linking needs the account signed in ([`begin`] in [`Mode::Link`]) or an administrator
//!   ([`admin_link`]). Provider access and refresh tokens are not stored.
//! * **Policy**: the account must be active and not locked; an account with TOTP gets the
//!   second-factor step unless the provider is trusted for MFA (`OIDC_<NAME>_TRUST_MFA`) and its
//!   `amr` claim (RFC 8176) names a multi-factor method; the per-account budget applies;
//!   everything is audited (`auth.oidc.login`, `auth.oidc.link`, `auth.oidc.unlink`, with the
//!   reason of each refusal).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse,
    JsonWebKeySetUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    Scope, TokenResponse,
};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::accounts::{self, AccountError};
use crate::audit::AuditEvent;
use crate::config::identity::{IdentitySettings, ProviderKind, ProviderSettings};
use crate::context::RequestContext;
use crate::crypto::{Purpose, random_bytes};
use crate::limiter::gcra::Quota;
use crate::limiter::{Policy, Verdict};
use crate::model::User;
use crate::state::AppState;
use crate::store::StoreError;
/// A linked identity (`store::identities`).
pub use crate::store::identities::IdentityRow;
use crate::store::identities::{self, StateRow};

/// How long a sign-in may take between its start and the callback: 10 minutes.
pub const STATE_LIFETIME_SECS: i64 = 600;
/// The cookie that binds a pending sign-in to the browser that began it (HttpOnly,
/// `SameSite=Lax` so that it comes back on the provider's top-level redirect, path
/// `/auth/oauth2`).
pub const BINDING_COOKIE: &str = "kyros_oauth";
/// The binding cookie's name over HTTPS: the `__Host-` prefix (RFC 6265bis §4.1.3.2) makes the
/// browser refuse one set by a sibling subdomain or for another path (no planted binding).
pub const BINDING_COOKIE_HOST: &str = "__Host-kyros_oauth";
/// How long discovered provider metadata and keys are used before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// At most one extra key-set fetch per provider in this time (an unknown `kid` must not make
/// every request fetch).
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(30);
/// Longest e-mail address kept from a provider (RFC 5321 §4.5.3.1: 320 octets); a longer one
/// counts as none.
const EMAIL_MAX_BYTES: usize = 320;
/// Largest provider response read (discovery, keys, tokens, user info): 1 MiB.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Each request to a provider: 10 s.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The `amr` value (RFC 8176 §2) that says more than one factor was used. Single factors (`otp`,
/// `hwk`, `fpt`…) may each be the only one (a passwordless e-mail code is `otp`), so they do not
/// count.
const MFA_AMR: &str = "mfa";

/// What the sign-in is for; chosen when it begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bearer tokens (the original service's answer).
    Bearer = 1,
    /// A browser session (the console).
    Session = 2,
    /// Linking the identity to the signed-in account that began it.
    Link = 3,
}

impl Mode {
    fn from_i16(v: i16) -> Option<Mode> {
        match v {
            1 => Some(Mode::Bearer),
            2 => Some(Mode::Session),
            3 => Some(Mode::Link),
            _ => None,
        }
    }
}

/// Why a sign-in step was refused. The `Display` text is what the client sees; the reasons
/// for the audit log are kept apart.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("OAuth2 provider '{0}' not found or inactive")]
    UnknownProvider(String),
    #[error("redirect_uri is not allowed")]
    RedirectUriNotAllowed,
    #[error("Invalid or expired state")]
    InvalidState,
    /// The provider refused the code, or what it answered did not verify.
    #[error("Sign-in with the identity provider failed")]
    ProviderRejected(&'static str),
    /// The provider could not be reached or answered garbage.
    #[error("The identity provider could not be reached")]
    ProviderUnavailable(&'static str),
    #[error("No account is linked to this identity")]
    NoAccount,
    #[error("The identity provider has not verified this e-mail address")]
    EmailNotVerified,
    #[error("This e-mail domain may not sign in here")]
    DomainNotAllowed,
    #[error(
        "An account with this e-mail address exists: sign in to it and link this identity from the account page"
    )]
    AccountExists,
    #[error("This account cannot sign in")]
    AccountRefused,
    #[error("This identity is linked to another account")]
    LinkedElsewhere,
    #[error("This identity is the account's only way to sign in")]
    LastSignInMethod,
    #[error("Identity not found")]
    IdentityNotFound,
    /// Linking needs the account's password again.
    #[error("Enter your password to link an identity")]
    PasswordRequired,
    #[error("Rate limit exceeded")]
    Limited(Quota),
    #[error(transparent)]
    Login(#[from] super::login::LoginError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A person as the provider describes them, after every check of its answer.
#[derive(Debug, Clone)]
pub struct ProviderIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// A name to derive a username from (`preferred_username`, GitHub's `login`, the e-mail's
    /// local part).
    pub preferred_username: Option<String>,
    /// RFC 8176 authentication method references.
    pub amr: Vec<String>,
}

struct Discovered {
    metadata: CoreProviderMetadata,
    fetched: Instant,
    jwks_fetched: Instant,
}

/// The configured providers, their discovered metadata and the HTTP client that talks to them.
pub struct Providers {
    settings: IdentitySettings,
    http: reqwest::Client,
    /// Per provider: one lock, so that a slow or unreachable provider holds up only its own
    /// sign-ins.
    discovered: HashMap<String, Arc<Mutex<Option<Arc<Discovered>>>>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field(
                "providers",
                &self
                    .settings
                    .providers
                    .iter()
                    .map(|p| &p.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The transport's failure (its text is logged, never sent to a client).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(String);

impl Providers {
    /// The providers of `settings`. The HTTP client follows no redirects (a provider's answer
    /// must not send the server elsewhere: SSRF) and gives up after [`PROVIDER_TIMEOUT`].
    pub fn new(settings: &IdentitySettings) -> anyhow::Result<Providers> {
        // The process-wide TLS provider (as `kyros::install_crypto_provider`), for the client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .user_agent(concat!("kyros/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("the identity providers' HTTP client: {e}"))?;
        Ok(Providers {
            discovered: settings
                .providers
                .iter()
                .map(|p| (p.name.clone(), Arc::new(Mutex::new(None))))
                .collect(),
            settings: settings.clone(),
            http,
        })
    }

    /// The configured providers, in configuration order.
    pub fn list(&self) -> &[ProviderSettings] {
        &self.settings.providers
    }

    fn provider(&self, name: &str) -> Result<&ProviderSettings, OidcError> {
        self.settings
            .provider(name)
            .ok_or_else(|| OidcError::UnknownProvider(name.chars().take(64).collect()))
    }

    /// One request to a provider, its body read up to [`MAX_RESPONSE_BYTES`].
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        send(&self.http, request).await
    }

    /// The provider's metadata and keys: cached for [`METADATA_TTL`]; `refresh_keys` fetches
    /// the key set again (at most once per [`JWKS_REFETCH_MIN`]).
    async fn metadata(
        &self,
        p: &ProviderSettings,
        refresh_keys: bool,
    ) -> Result<Arc<Discovered>, OidcError> {
        let slot = self
            .discovered
            .get(&p.name)
            .ok_or_else(|| OidcError::UnknownProvider(p.name.clone()))?;
        let mut cached = slot.lock().await;
        if let Some(d) = cached.as_ref() {
            let fresh = d.fetched.elapsed() < METADATA_TTL;
            let keys_recent = d.jwks_fetched.elapsed() < JWKS_REFETCH_MIN;
            if fresh && (!refresh_keys || keys_recent) {
                return Ok(Arc::clone(d));
            }
            if fresh && refresh_keys {
                let metadata = d.metadata.clone();
                let jwks = self.fetch_jwks(metadata.jwks_uri()).await?;
                let next = Arc::new(Discovered {
                    metadata: metadata.set_jwks(jwks),
                    fetched: d.fetched,
                    jwks_fetched: Instant::now(),
                });
                *cached = Some(Arc::clone(&next));
                return Ok(next);
            }
        }
        match self.discover(p).await {
            Ok(d) => {
                let next = Arc::new(d);
                *cached = Some(Arc::clone(&next));
                Ok(next)
            }
            // A refresh that fails keeps what was discovered before (for another TTL).
            Err(e) => match cached.as_ref() {
                Some(stale) => {
                    let kept = Arc::new(Discovered {
                        metadata: stale.metadata.clone(),
                        fetched: Instant::now(),
                        jwks_fetched: stale.jwks_fetched,
                    });
                    *cached = Some(Arc::clone(&kept));
                    Ok(kept)
                }
                None => Err(e),
            },
        }
    }

    /// OpenID Connect Discovery 1.0 §4: the configuration document of the issuer, whose
    /// `issuer` must be the configured one (§4.3), then its key set.
    async fn discover(&self, p: &ProviderSettings) -> Result<Discovered, OidcError> {
        let issuer = p.identity_issuer();
        let url = format!("{issuer}/.well-known/openid-configuration");
        let request = http_get(&url)?;
        let response = self.send(request).await.map_err(|e| {
            tracing::warn!(provider = %p.name, error = %e, "identity provider discovery failed");
            OidcError::ProviderUnavailable("discovery unreachable")
        })?;
        if !response.status().is_success() {
            tracing::warn!(provider = %p.name, status = %response.status(), "identity provider discovery failed");
            return Err(OidcError::ProviderUnavailable("discovery status"));
        }
        let metadata: CoreProviderMetadata = serde_json::from_slice(response.body())
            .map_err(|_| OidcError::ProviderUnavailable("discovery document invalid"))?;
        if metadata.issuer().as_str().trim_end_matches('/') != issuer {
            tracing::warn!(provider = %p.name, "the discovery document names another issuer");
            return Err(OidcError::ProviderUnavailable("discovery issuer mismatch"));
        }
        // Its endpoints use the issuer's scheme (https:// outside local loopback tests): the
        // client secret and codes never go out in clear, and no other scheme reaches a browser.
        let scheme = issuer.split("://").next().unwrap_or("https");
        let endpoints = [
            Some(metadata.authorization_endpoint().as_str()),
            metadata.token_endpoint().map(|u| u.as_str()),
            Some(metadata.jwks_uri().as_str()),
        ];
        if endpoints
            .into_iter()
            .flatten()
            .any(|u| !u.starts_with(&format!("{scheme}://")))
        {
            tracing::warn!(provider = %p.name, "the discovery document names an endpoint of another scheme");
            return Err(OidcError::ProviderUnavailable("discovery endpoint scheme"));
        }
        let jwks = self.fetch_jwks(metadata.jwks_uri()).await?;
        let now = Instant::now();
        Ok(Discovered {
            metadata: metadata.set_jwks(jwks),
            fetched: now,
            jwks_fetched: now,
        })
    }

    async fn fetch_jwks(&self, url: &JsonWebKeySetUrl) -> Result<CoreJsonWebKeySet, OidcError> {
        let response = self.send(http_get(url.as_str())?).await.map_err(|e| {
            tracing::warn!(error = %e, "identity provider key set unreachable");
            OidcError::ProviderUnavailable("jwks unreachable")
        })?;
        if !response.status().is_success() {
            return Err(OidcError::ProviderUnavailable("jwks status"));
        }
        serde_json::from_slice(response.body())
            .map_err(|_| OidcError::ProviderUnavailable("jwks invalid"))
    }
}

/// The HTTP client handed to `openidconnect` / `oauth2` for the token request.
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = TransportError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, TransportError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// One request to a provider, its body read up to [`MAX_RESPONSE_BYTES`].
async fn send(
    http: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, TransportError> {
    let (parts, body) = request.into_parts();
    let mut response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| TransportError(e.to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| TransportError(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(TransportError("response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    let mut out = HttpResponse::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

fn http_get(url: &str) -> Result<HttpRequest, OidcError> {
    openidconnect::http::Request::builder()
        .method(openidconnect::http::Method::GET)
        .uri(url)
        .header(openidconnect::http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|_| OidcError::ProviderUnavailable("bad provider URL"))
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A new value for the browser-binding cookie.
pub fn new_binding() -> String {
    random_token()
}

fn hashes(state: &AppState, label: &str, value: &str) -> Vec<String> {
    state
        .live()
        .keys
        .token_hashes(Purpose::OAuthState, &format!("{label}:{value}"))
}

fn hash(state: &AppState, label: &str, value: &str) -> String {
    crate::crypto::token_hash(
        state.live().keys.current(Purpose::OAuthState),
        &format!("{label}:{value}"),
    )
}

/// The answer of [`begin`]: where to send the browser, and the state it comes back with.
#[derive(Debug)]
pub struct Begun {
    pub authorization_url: String,
    pub state: String,
}

/// Begins a sign-in with `provider` (or, in [`Mode::Link`], the linking of an identity to
/// `link_user`), bound to the browser whose binding cookie is `binding`.
pub async fn begin(
    state: &AppState,
    provider: &str,
    redirect_uri: &str,
    mode: Mode,
    link_user: Option<&User>,
    binding: &str,
) -> Result<Begun, OidcError> {
    let p = state.oidc.provider(provider)?;
    if !state
        .oidc
        .settings
        .redirect_uris
        .iter()
        .any(|allowed| allowed == redirect_uri)
    {
        return Err(OidcError::RedirectUriNotAllowed);
    }
    let redirect =
        RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| OidcError::RedirectUriNotAllowed)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let handle = random_token();
    let nonce = random_token();
    let url = match &p.kind {
        ProviderKind::GitHub { web, .. } => {
            let client = github_client(p, web, redirect)?;
            let mut request = client
                .authorize_url(|| CsrfToken::new(handle.clone()))
                .set_pkce_challenge(challenge);
            for s in &p.scopes {
                request = request.add_scope(Scope::new(s.clone()));
            }
            request.url().0
        }
        _ => {
            let d = state.oidc.metadata(p, false).await?;
            let client = oidc_client(p, &d.metadata, redirect);
            let nonce_value = nonce.clone();
            let handle_value = handle.clone();
            let mut request = client
                .authorize_url(
                    CoreAuthenticationFlow::AuthorizationCode,
                    move || CsrfToken::new(handle_value),
                    move || Nonce::new(nonce_value),
                )
                .set_pkce_challenge(challenge);
            for s in p.scopes.iter().filter(|s| *s != "openid") {
                request = request.add_scope(Scope::new(s.clone()));
            }
            if mode == Mode::Link {
                // The person signs in at the provider again (OpenID Connect Core §3.1.2.1), so
                // that a provider session of somebody else in this browser is not linked by
                // accident.
                request = request.add_prompt(openidconnect::core::CoreAuthPrompt::Login);
            }
            request.url().0
        }
    };
    let now = state.clock.now();
    identities::insert_state(
        &state.db,
        &StateRow {
            state_hash: hash(state, "state", &handle),
            provider: p.name.clone(),
            browser_hash: hash(state, "browser", binding),
            redirect_uri: redirect_uri.to_owned(),
            pkce_verifier: verifier.secret().clone(),
            nonce,
            mode: mode as i16,
            link_user_id: link_user.map(|u| u.id),
            created_at: now,
            expires_at: now + chrono::Duration::seconds(STATE_LIFETIME_SECS),
        },
    )
    .await?;
    Ok(Begun {
        authorization_url: url.to_string(),
        state: handle,
    })
}

/// Begins linking an identity of `provider` to `user`, who proves the password again first
/// (an account that has one): a stolen session or token alone cannot attach the thief's
/// identity to the account (OWASP ASVS 3.7.1, re-authentication before sensitive changes).
#[allow(clippy::too_many_arguments)]
pub async fn begin_link(
    state: &AppState,
    ctx: Option<&RequestContext>,
    user: &User,
    password: Option<secrecy::SecretString>,
    provider: &str,
    redirect_uri: &str,
    binding: &str,
) -> Result<Begun, OidcError> {
    state.oidc.provider(provider)?;
    if accounts::has_password(user) {
        let password = password.ok_or(OidcError::PasswordRequired)?;
        super::login::confirm_password(state, ctx, user, password, "auth.oidc.link").await?;
    }
    begin(
        state,
        provider,
        redirect_uri,
        Mode::Link,
        Some(user),
        binding,
    )
    .await
}

type GitHubClient = oauth2::basic::BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn github_client(
    p: &ProviderSettings,
    web: &str,
    redirect: RedirectUrl,
) -> Result<GitHubClient, OidcError> {
    let auth = oauth2::AuthUrl::new(format!("{web}/login/oauth/authorize"))
        .map_err(|_| OidcError::ProviderUnavailable("bad provider URL"))?;
    let token = oauth2::TokenUrl::new(format!("{web}/login/oauth/access_token"))
        .map_err(|_| OidcError::ProviderUnavailable("bad provider URL"))?;
    Ok(
        oauth2::basic::BasicClient::new(oauth2::ClientId::new(p.client_id.clone()))
            .set_client_secret(oauth2::ClientSecret::new(
                p.client_secret.expose_secret().to_owned(),
            ))
            .set_auth_uri(auth)
            .set_token_uri(token)
            .set_redirect_uri(
                oauth2::RedirectUrl::new(redirect.to_string())
                    .map_err(|_| OidcError::RedirectUriNotAllowed)?,
            ),
    )
}

type OidcClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn oidc_client(
    p: &ProviderSettings,
    metadata: &CoreProviderMetadata,
    redirect: RedirectUrl,
) -> OidcClient {
    CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(p.client_id.clone()),
        Some(ClientSecret::new(
            p.client_secret.expose_secret().to_owned(),
        )),
    )
    .set_redirect_uri(redirect)
}

/// The signature algorithms an `id_token` may use: those the provider advertises, without
/// `none` and without the HMAC ones (keyed with the client secret, which the provider's other
/// clients of the same secret… and anyone who learns it could use); RS256 when it lists none.
fn allowed_algs(metadata: &CoreProviderMetadata) -> Vec<CoreJwsSigningAlgorithm> {
    use openidconnect::JwsSigningAlgorithm;
    let algs: Vec<CoreJwsSigningAlgorithm> = metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter(|a| !a.uses_shared_secret() && **a != CoreJwsSigningAlgorithm::None)
        .cloned()
        .collect();
    if algs.is_empty() {
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
    } else {
        algs
    }
}

/// What a completed callback leads to.
#[derive(Debug)]
pub enum Outcome {
    /// Signed in: the entry point issues tokens or a session, as `mode` says.
    SignedIn { user: User, mode: Mode },
    /// The account has TOTP: answer with a challenge for `mode`.
    SecondFactor { user: User, mode: Mode },
    /// The identity is now linked to `user`.
    Linked { user: User, identity: IdentityRow },
}

/// The callback parameters.
#[derive(Debug, Default)]
pub struct Callback<'a> {
    pub code: &'a str,
    pub state: &'a str,
    /// The browser-binding cookie sent with the callback.
    pub binding: Option<&'a str>,
    /// When given, it must be the one the sign-in began with.
    pub redirect_uri: Option<&'a str>,
    /// The `iss` the provider sent back with the code (RFC 9207); when given, it must be the
    /// provider's issuer (a mix-up between providers is refused).
    pub iss: Option<&'a str>,
    /// The signed-in user of the callback request: a link is completed only by the account that
    /// began it.
    pub caller: Option<Uuid>,
}

/// Completes a sign-in (see the module documentation). Every refusal is audited with its
/// reason.
pub async fn callback(
    state: &AppState,
    ctx: Option<&RequestContext>,
    provider: Option<&str>,
    params: Callback<'_>,
) -> Result<Outcome, OidcError> {
    if let Some(name) = provider {
        state.oidc.provider(name)?;
    }
    let result = complete(state, ctx, provider, params).await;
    if let Err(e) = &result {
        let reason = match e {
            OidcError::ProviderRejected(r) | OidcError::ProviderUnavailable(r) => (*r).to_owned(),
            OidcError::Store(_) => "store".into(),
            OidcError::Account(_) => "account".into(),
            // Refusals about a known account were recorded with the account.
            OidcError::AccountRefused | OidcError::InvalidState => return result,
            other => other.to_string(),
        };
        state.audit.record(
            AuditEvent::new("auth.oidc.login", "failure")
                .context(ctx)
                .details(json!({"provider": provider, "reason": reason})),
        );
    }
    result
}

async fn complete(
    state: &AppState,
    ctx: Option<&RequestContext>,
    provider: Option<&str>,
    params: Callback<'_>,
) -> Result<Outcome, OidcError> {
    // The state: single use, fresh, this provider, this browser.
    if params.state.is_empty() || params.state.len() > 200 || params.code.len() > 4096 {
        return Err(OidcError::InvalidState);
    }
    let mut row = None;
    for h in hashes(state, "state", params.state) {
        if let Some(r) = identities::take_state(&state.db, &h).await? {
            row = Some(r);
            break;
        }
    }
    let Some(row) = row else {
        state.audit.record(
            AuditEvent::new("auth.oidc.login", "failure")
                .context(ctx)
                .details(json!({"provider": provider, "reason": "unknown or used state"})),
        );
        return Err(OidcError::InvalidState);
    };
    // The provider the sign-in began with (a configuration without it: the state is void).
    let p = state
        .oidc
        .settings
        .provider(&row.provider)
        .ok_or(OidcError::InvalidState)?
        .clone();
    let p = &p;
    let now = state.clock.now();
    let binding_ok = params.binding.is_some_and(|b| {
        hashes(state, "browser", b).iter().any(|h| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                h.as_bytes(),
                row.browser_hash.as_bytes(),
            ))
        })
    });
    let mode = Mode::from_i16(row.mode).ok_or(OidcError::InvalidState)?;
    let other_provider = provider.is_some_and(|name| name != row.provider);
    if row.expires_at <= now || other_provider || !binding_ok {
        let why = if row.expires_at <= now {
            "expired state"
        } else if !binding_ok {
            "state from another browser"
        } else {
            "state of another provider"
        };
        state.audit.record(
            AuditEvent::new("auth.oidc.login", "failure")
                .context(ctx)
                .details(json!({"provider": p.name, "reason": why})),
        );
        return Err(OidcError::InvalidState);
    }
    let multi_tenant = matches!(p.kind, ProviderKind::MicrosoftMultiTenant { .. });
    if !multi_tenant
        && params
            .iss
            .is_some_and(|iss| iss.trim_end_matches('/') != p.identity_issuer())
    {
        return Err(OidcError::ProviderRejected(
            "iss parameter of another issuer",
        ));
    }
    if mode == Mode::Link && params.caller != row.link_user_id {
        state.audit.record(
            AuditEvent::new("auth.oidc.link", "failure")
                .context(ctx)
                .details(json!({"provider": p.name, "reason": "completed by another caller"})),
        );
        return Err(OidcError::InvalidState);
    }
    if params.redirect_uri.is_some_and(|r| r != row.redirect_uri) {
        return Err(OidcError::ProviderRejected(
            "redirect_uri differs from the sign-in's",
        ));
    }
    if params.code.is_empty() {
        return Err(OidcError::ProviderRejected("no code"));
    }
    let identity = match &p.kind {
        ProviderKind::GitHub { web, api } => {
            github_identity(state, p, web, api, &row, params.code).await?
        }
        _ => oidc_identity(state, p, &row, params.code).await?,
    };
    resolve_account(state, ctx, p, &identity, mode, row.link_user_id, now).await
}

async fn oidc_identity(
    state: &AppState,
    p: &ProviderSettings,
    row: &StateRow,
    code: &str,
) -> Result<ProviderIdentity, OidcError> {
    let providers = &state.oidc;
    let d = providers.metadata(p, false).await?;
    let redirect = RedirectUrl::new(row.redirect_uri.clone())
        .map_err(|_| OidcError::ProviderRejected("redirect_uri"))?;
    let client = oidc_client(p, &d.metadata, redirect.clone());
    let send = Http(providers.http.clone());
    let request = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|_| OidcError::ProviderUnavailable("no token endpoint"))?
        .set_pkce_verifier(PkceCodeVerifier::new(row.pkce_verifier.clone()));
    let token = request.request_async(&send).await.map_err(token_error)?;
    let id_token = token
        .id_token()
        .ok_or(OidcError::ProviderRejected("no id_token"))?
        .clone();
    let nonce = Nonce::new(row.nonce.clone());
    let multi_tenant = matches!(p.kind, ProviderKind::MicrosoftMultiTenant { .. });
    let verify = |metadata: &CoreProviderMetadata| -> Result<ProviderIdentity, openidconnect::ClaimsVerificationError> {
        let client = oidc_client(p, metadata, redirect.clone());
        let verifier: CoreIdTokenVerifier<'_> = client
            .id_token_verifier()
            .set_allowed_algs(allowed_algs(metadata))
            .require_issuer_match(!multi_tenant)
            .set_issue_time_verifier_fn(|iat| {
                let now = Utc::now();
                if iat > now + chrono::Duration::minutes(5) {
                    Err("issued in the future".into())
                } else if iat < now - chrono::Duration::hours(1) {
                    Err("issued more than an hour ago".into())
                } else {
                    Ok(())
                }
            });
        let claims = id_token.claims(&verifier, &nonce)?;
        // OpenID Connect Core §3.1.3.7 item 5: an `azp` must be this client.
        if claims
            .authorized_party()
            .is_some_and(|azp| azp.as_str() != p.client_id)
        {
            return Err(openidconnect::ClaimsVerificationError::InvalidAudience(
                "azp is another client".into(),
            ));
        }
        let iss = claims.issuer().as_str().trim_end_matches('/').to_owned();
        if multi_tenant {
            // The token's own tenant in the issuer template of the discovery document.
            let tid = unverified_claim(&id_token.to_string(), "tid").unwrap_or_default();
            let expected = metadata.issuer().as_str().replace("{tenantid}", &tid);
            if tid.is_empty() || iss != expected.trim_end_matches('/') {
                return Err(openidconnect::ClaimsVerificationError::InvalidIssuer(
                    "issuer does not match the token's tenant".into(),
                ));
            }
        }
        Ok(ProviderIdentity {
            // The token's own issuer (for a multi-tenant application, its tenant's): `iss` +
            // `sub` is what identifies a person.
            issuer: iss,
            subject: claims.subject().as_str().to_owned(),
            email: claims
                .email()
                .map(|e| e.as_str().to_owned())
                .filter(|e| e.len() <= EMAIL_MAX_BYTES),
            email_verified: claims.email_verified().unwrap_or(false),
            preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
            amr: claims
                .auth_method_refs()
                .map(|a| a.iter().map(|r| r.as_str().to_owned()).collect())
                .unwrap_or_default(),
        })
    };
    match verify(&d.metadata) {
        Ok(identity) => Ok(identity),
        // A key the cached set does not have: the provider may have rotated its keys.
        Err(openidconnect::ClaimsVerificationError::SignatureVerification(
            openidconnect::SignatureVerificationError::NoMatchingKey,
        )) => {
            let d = providers.metadata(p, true).await?;
            verify(&d.metadata).map_err(claims_error)
        }
        Err(e) => Err(claims_error(e)),
    }
}

/// A claim of a JWT's payload, read without verification: only for a token `openidconnect`
/// has verified (Microsoft's `tid`, which its core claims do not carry).
fn unverified_claim(jwt: &str, name: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get(name)?.as_str().map(str::to_owned)
}

fn claims_error(e: openidconnect::ClaimsVerificationError) -> OidcError {
    use openidconnect::ClaimsVerificationError as E;
    use openidconnect::SignatureVerificationError as S;
    OidcError::ProviderRejected(match e {
        E::Expired(_) => "id_token expired or issued at a wrong time",
        E::InvalidAudience(_) => "id_token audience or azp",
        E::InvalidIssuer(_) => "id_token issuer",
        E::InvalidNonce(_) => "id_token nonce",
        E::InvalidSubject(_) => "id_token subject",
        E::SignatureVerification(S::DisallowedAlg(_)) => "id_token algorithm not allowed",
        E::SignatureVerification(S::NoMatchingKey) => "id_token signed with an unknown key",
        E::SignatureVerification(S::NoSignature) => "id_token unsigned",
        E::SignatureVerification(_) => "id_token signature",
        E::Other(_) => "id_token invalid",
        _ => "id_token invalid",
    })
}

fn token_error<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: oauth2::RequestTokenError<RE, T>,
) -> OidcError {
    match e {
        oauth2::RequestTokenError::ServerResponse(_) => {
            OidcError::ProviderRejected("token endpoint refused the code")
        }
        oauth2::RequestTokenError::Request(err) => {
            tracing::warn!(error = %err, "identity provider token endpoint unreachable");
            OidcError::ProviderUnavailable("token endpoint unreachable")
        }
        oauth2::RequestTokenError::Parse(_, _) => {
            OidcError::ProviderUnavailable("token response invalid")
        }
        oauth2::RequestTokenError::Other(_) => OidcError::ProviderUnavailable("token endpoint"),
    }
}

#[derive(serde::Deserialize)]
struct GitHubUser {
    id: u64,
    login: String,
}

#[derive(serde::Deserialize)]
struct GitHubEmail {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

async fn github_identity(
    state: &AppState,
    p: &ProviderSettings,
    web: &str,
    api: &str,
    row: &StateRow,
    code: &str,
) -> Result<ProviderIdentity, OidcError> {
    let providers = &state.oidc;
    let redirect = RedirectUrl::new(row.redirect_uri.clone())
        .map_err(|_| OidcError::ProviderRejected("redirect_uri"))?;
    let client = github_client(p, web, redirect)?;
    let send = Http(providers.http.clone());
    let token = client
        .exchange_code(oauth2::AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(oauth2::PkceCodeVerifier::new(row.pkce_verifier.clone()))
        .request_async(&send)
        .await
        .map_err(token_error)?;
    let access = token.access_token().secret().clone();
    let get = |path: &str| {
        openidconnect::http::Request::builder()
            .method(openidconnect::http::Method::GET)
            .uri(format!("{api}{path}"))
            .header(
                openidconnect::http::header::ACCEPT,
                "application/vnd.github+json",
            )
            .header(
                openidconnect::http::header::AUTHORIZATION,
                format!("Bearer {access}"),
            )
            .body(Vec::new())
            .map_err(|_| OidcError::ProviderUnavailable("bad provider URL"))
    };
    let user: GitHubUser = github_json(providers, get("/user")?).await?;
    let emails: Vec<GitHubEmail> = github_json(providers, get("/user/emails")?).await?;
    let primary = emails.into_iter().find(|e| e.primary);
    Ok(ProviderIdentity {
        issuer: p.identity_issuer().to_owned(),
        subject: user.id.to_string(),
        email_verified: primary.as_ref().is_some_and(|e| e.verified),
        email: primary
            .map(|e| e.email)
            .filter(|e| e.len() <= EMAIL_MAX_BYTES),
        preferred_username: Some(user.login),
        amr: Vec::new(),
    })
}

async fn github_json<T: serde::de::DeserializeOwned>(
    providers: &Providers,
    request: HttpRequest,
) -> Result<T, OidcError> {
    let response = providers.send(request).await.map_err(|e| {
        tracing::warn!(error = %e, "GitHub API unreachable");
        OidcError::ProviderUnavailable("user API unreachable")
    })?;
    if response.status().is_server_error() {
        return Err(OidcError::ProviderUnavailable("user API status"));
    }
    if !response.status().is_success() {
        return Err(OidcError::ProviderRejected("user API refused the token"));
    }
    serde_json::from_slice(response.body())
        .map_err(|_| OidcError::ProviderUnavailable("user API answer invalid"))
}

fn email_domain_allowed(
    p: &ProviderSettings,
    identity: &ProviderIdentity,
) -> Result<(), OidcError> {
    if p.allowed_domains.is_empty() {
        return Ok(());
    }
    let email = identity
        .email
        .as_deref()
        .ok_or(OidcError::EmailNotVerified)?;
    if !identity.email_verified {
        return Err(OidcError::EmailNotVerified);
    }
    let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
    if domain.is_some_and(|d| p.allowed_domains.contains(&d)) {
        Ok(())
    } else {
        Err(OidcError::DomainNotAllowed)
    }
}

async fn resolve_account(
    state: &AppState,
    ctx: Option<&RequestContext>,
    p: &ProviderSettings,
    identity: &ProviderIdentity,
    mode: Mode,
    link_user_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Outcome, OidcError> {
    email_domain_allowed(p, identity)?;
    let linked = identities::find(&state.db, &identity.issuer, &identity.subject).await?;
    if mode == Mode::Link {
        let user_id = link_user_id.ok_or(OidcError::InvalidState)?;
        let user = accounts::user_by_id(state, user_id)
            .await?
            .filter(|u| u.active && !u.locked_at(now))
            .ok_or(OidcError::AccountRefused)?;
        let row = match linked {
            Some(row) if row.user_id == user.id => row,
            Some(_) => return Err(OidcError::LinkedElsewhere),
            None => link(state, p, identity, &user, now).await?,
        };
        state.audit.record(
            AuditEvent::new("auth.oidc.link", "success")
                .context(ctx)
                .user(&user)
                .details(json!({"provider": p.name, "identity_id": row.id, "subject": row.subject, "via": "sign-in"})),
        );
        return Ok(Outcome::Linked {
            user,
            identity: row,
        });
    }
    let (user, identity_id, created) = match linked {
        Some(row) => {
            let user = accounts::user_by_id(state, row.user_id)
                .await?
                .ok_or(OidcError::NoAccount)?;
            (user, row.id, false)
        }
        None => {
            if !p.auto_create {
                return Err(OidcError::NoAccount);
            }
            let email = identity
                .email
                .as_deref()
                .ok_or(OidcError::EmailNotVerified)?;
            if !identity.email_verified {
                return Err(OidcError::EmailNotVerified);
            }
            let wanted = identity
                .preferred_username
                .clone()
                .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
            let user = match accounts::create_external_user(
                state,
                &wanted,
                email,
                p.default_role,
                &p.name,
            )
            .await
            {
                Ok(user) => user,
                Err(AccountError::Taken("email")) => return Err(OidcError::AccountExists),
                Err(e) => return Err(e.into()),
            };
            let row = link(state, p, identity, &user, now).await?;
            (user, row.id, true)
        }
    };
    let refused = if !user.active {
        Some("inactive")
    } else if user.locked_at(now) {
        Some("locked")
    } else {
        None
    };
    if let Some(reason) = refused {
        state.audit.record(
            AuditEvent::new("auth.oidc.login", "failure")
                .context(ctx)
                .user(&user)
                .details(json!({"provider": p.name, "reason": reason})),
        );
        return Err(OidcError::AccountRefused);
    }
    if let Verdict::Limited(q) = state
        .limiter
        .check(Policy::AuthAccount, &format!("oidc:{}", user.id))
        .await
    {
        return Err(OidcError::Limited(q));
    }
    identities::touch(&state.db, identity_id, identity.email.as_deref(), now).await?;
    let mfa_asserted = p.trust_mfa && identity.amr.iter().any(|a| a == MFA_AMR);
    let second_factor = crate::auth::mfa::is_enabled(state, &user)
        .await
        .map_err(|e| match e {
            crate::auth::mfa::MfaError::Store(s) => OidcError::Store(s),
            other => OidcError::Store(StoreError::Other(other.to_string())),
        })?
        && !mfa_asserted;
    state.audit.record(
        AuditEvent::new(
            "auth.oidc.login",
            if second_factor {
                "challenge"
            } else {
                "success"
            },
        )
        .context(ctx)
        .user(&user)
        .details(json!({
            "provider": p.name,
            "identity_id": identity_id,
            "created": created,
            "mfa_asserted_by_provider": mfa_asserted,
        })),
    );
    Ok(if second_factor {
        Outcome::SecondFactor { user, mode }
    } else {
        Outcome::SignedIn { user, mode }
    })
}

async fn link(
    state: &AppState,
    p: &ProviderSettings,
    identity: &ProviderIdentity,
    user: &User,
    now: DateTime<Utc>,
) -> Result<IdentityRow, OidcError> {
    let row = IdentityRow {
        id: Uuid::new_v4(),
        user_id: user.id,
        provider: p.name.clone(),
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        created_at: now,
        last_login_at: None,
    };
    match identities::insert(&state.db, &row).await {
        Ok(()) => Ok(row),
        // Linked by a concurrent sign-in.
        Err(StoreError::Conflict(_)) => Err(OidcError::LinkedElsewhere),
        Err(e) => Err(e.into()),
    }
}

/// The identities linked to `user`.
pub async fn list(state: &AppState, user: &User) -> Result<Vec<IdentityRow>, OidcError> {
    Ok(identities::list_for_user(&state.db, user.id).await?)
}

/// Unlinks identity `id` of `user` (by the user or an administrator, `actor`). The last
/// identity of an account without a password stays: it is the account's only way in.
pub async fn unlink(
    state: &AppState,
    ctx: Option<&RequestContext>,
    actor: &User,
    user: &User,
    id: Uuid,
) -> Result<(), OidcError> {
    let linked = identities::list_for_user(&state.db, user.id).await?;
    let row = linked
        .iter()
        .find(|r| r.id == id)
        .ok_or(OidcError::IdentityNotFound)?;
    match identities::delete(&state.db, user.id, id, !accounts::has_password(user)).await? {
        identities::Unlinked::Deleted => {}
        identities::Unlinked::NotFound => return Err(OidcError::IdentityNotFound),
        identities::Unlinked::LastKept => return Err(OidcError::LastSignInMethod),
    }
    state.audit.record(
        AuditEvent::new("auth.oidc.unlink", "success")
            .context(ctx)
            .user(actor)
            .details(json!({
                "provider": row.provider,
                "identity_id": row.id,
                "target_user_id": user.id,
                "target": user.username,
            })),
    );
    Ok(())
}

/// An administrator links the identity `subject` at `provider` to `user` (the person has not
/// signed in with it yet, or the administrator vouches for the link).
pub async fn admin_link(
    state: &AppState,
    ctx: Option<&RequestContext>,
    admin: &User,
    user: &User,
    provider: &str,
    subject: &str,
) -> Result<IdentityRow, OidcError> {
    let p = state.oidc.provider(provider)?;
    if subject.is_empty() || subject.len() > 255 {
        return Err(OidcError::IdentityNotFound);
    }
    let identity = ProviderIdentity {
        issuer: p.identity_issuer().to_owned(),
        subject: subject.to_owned(),
        email: None,
        email_verified: false,
        preferred_username: None,
        amr: Vec::new(),
    };
    if let Some(existing) = identities::find(&state.db, &identity.issuer, subject).await? {
        if existing.user_id == user.id {
            return Ok(existing);
        }
        return Err(OidcError::LinkedElsewhere);
    }
    let row = link(state, p, &identity, user, state.clock.now()).await?;
    state.audit.record(
        AuditEvent::new("auth.oidc.link", "success")
            .context(ctx)
            .user(admin)
            .details(json!({
                "provider": p.name,
                "identity_id": row.id,
                "subject": subject,
                "target_user_id": user.id,
                "target": user.username,
                "via": "admin",
            })),
    );
    Ok(row)
}
