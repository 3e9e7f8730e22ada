//! The identity providers people may sign in with (OpenID Connect, and GitHub's OAuth2), from
//! `OIDC_PROVIDERS` and `OIDC_<NAME>_*` ([`super::options::PROVIDER_SUFFIXES`]), the original
//! service's `GOOGLE_*`, `MICROSOFT_*` and `GITHUB_*` variables, and `OAUTH2_REDIRECT_URIS`.
//!
//! Rules (issue 18; the original service's defects are in `original-service.md` §7.2):
//! * an issuer is an `https://` URL, except `http://127.0.0.1`, `http://[::1]` or
//!   `http://localhost` in `ENVIRONMENT=local` (a provider started by the tests);
//! * a provider needs a client id and a client secret;
//! * `redirect_uri` values are compared exactly with `OAUTH2_REDIRECT_URIS` (absolute `https://`
//!   URLs without a fragment; `http://` only for loopback hosts or in `ENVIRONMENT=local`);
//! * accounts created at a first sign-in get the role `user` or `moderator`, never `admin`.

use secrecy::SecretString;

use super::{ConfigError, Environment, Vars, csv, err};
use crate::model::Role;

/// What kind of provider, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// An OpenID Provider, found by discovery at
    /// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
    Oidc { issuer: String },
    /// The Microsoft identity platform of a multi-tenant application (`common`,
    /// `organizations`, `consumers`): the discovery document names the issuer
    /// `https://login.microsoftonline.com/{tenantid}/v2.0`, and an `id_token`'s `iss` must be it
    /// with its own `tid` claim in place of `{tenantid}`.
    MicrosoftMultiTenant { discovery_issuer: String },
    /// GitHub (or GitHub Enterprise Server): plain OAuth2 (`{web}/login/oauth/authorize`,
    /// `{web}/login/oauth/access_token`), then the account from `{api}/user` and its verified
    /// primary e-mail from `{api}/user/emails`.
    GitHub { web: String, api: String },
}

/// One identity provider.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The lower-case name: the `{provider}` of `/auth/oauth2/{provider}`.
    pub name: String,
    /// The name on the console's button.
    pub display_name: String,
    pub kind: ProviderKind,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    /// Lower-case e-mail domains whose users may sign in; empty: any.
    pub allowed_domains: Vec<String>,
    /// Create an account at the first sign-in of an unknown identity.
    pub auto_create: bool,
    /// The role of accounts created at a first sign-in (`user` or `moderator`).
    pub default_role: Role,
    /// Accept the provider's `amr` claim (RFC 8176: `mfa`, `otp`, `hwk`, `swk`, `sc`, `fpt`…)
    /// in place of the TOTP step of an account that has one.
    pub trust_mfa: bool,
}

impl ProviderSettings {
    /// The issuer recorded with each linked identity (`issuer` + `sub` identifies a person).
    pub fn identity_issuer(&self) -> &str {
        match &self.kind {
            ProviderKind::Oidc { issuer } => issuer,
            ProviderKind::MicrosoftMultiTenant { discovery_issuer } => discovery_issuer,
            ProviderKind::GitHub { web, .. } => web,
        }
    }
}

/// Every configured provider, and the allowed `redirect_uri` values.
#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    pub providers: Vec<ProviderSettings>,
    pub redirect_uris: Vec<String>,
}

impl IdentitySettings {
    pub fn provider(&self, name: &str) -> Option<&ProviderSettings> {
        self.providers.iter().find(|p| p.name == name)
    }
}

const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Reads the providers from `vars` (already resolved: files and `_FILE` secrets applied).
pub(super) fn parse(vars: &Vars, env: Environment) -> Result<IdentitySettings, ConfigError> {
    let mut names: Vec<String> = vars
        .get("OIDC_PROVIDERS")
        .map(csv)
        .unwrap_or_default()
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    for (preset, var) in [
        ("google", "GOOGLE_CLIENT_ID"),
        ("microsoft", "MICROSOFT_CLIENT_ID"),
        ("github", "GITHUB_CLIENT_ID"),
    ] {
        if vars.get(var).is_some() && !names.iter().any(|n| n == preset) {
            names.push(preset.into());
        }
    }
    let mut providers = Vec::new();
    for name in names {
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return err("OIDC_PROVIDERS: a name is 1 to 32 letters, digits or '-'");
        }
        if name == "callback" || name == "providers" {
            return err(format!(
                "OIDC_PROVIDERS: {name} is reserved (a route of /auth/oauth2)"
            ));
        }
        if providers.iter().any(|p: &ProviderSettings| p.name == name) {
            return err(format!("OIDC_PROVIDERS: {name} is listed twice"));
        }
        providers.push(provider(vars, env, &name)?);
    }
    let mut redirect_uris = Vec::new();
    for uri in vars
        .get("OAUTH2_REDIRECT_URIS")
        .map(csv)
        .unwrap_or_default()
    {
        check_redirect_uri(&uri, env)?;
        redirect_uris.push(uri);
    }
    if !providers.is_empty() && redirect_uris.is_empty() {
        return err("OAUTH2_REDIRECT_URIS must list the redirect_uri values sign-ins may use");
    }
    Ok(IdentitySettings {
        providers,
        redirect_uris,
    })
}

fn provider(vars: &Vars, env: Environment, name: &str) -> Result<ProviderSettings, ConfigError> {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    let var = |suffix: &str| format!("OIDC_{upper}_{suffix}");
    let get = |suffix: &str| vars.get(&var(suffix)).map(str::to_owned);
    // The presets also read the original service's names.
    let legacy = |suffix: &str| match name {
        "google" | "microsoft" | "github" => {
            let legacy = format!("{upper}_{suffix}");
            vars.get(&legacy).map(str::to_owned)
        }
        _ => None,
    };
    let client_id = get("CLIENT_ID")
        .or_else(|| legacy("CLIENT_ID"))
        .ok_or_else(|| ConfigError(format!("{} must be set", var("CLIENT_ID"))))?;
    let client_secret = get("CLIENT_SECRET")
        .or_else(|| legacy("CLIENT_SECRET"))
        .ok_or_else(|| ConfigError(format!("{} must be set", var("CLIENT_SECRET"))))?;
    let kind = match (name, get("ISSUER")) {
        (_, Some(issuer)) => {
            check_url(&var("ISSUER"), &issuer, env)?;
            ProviderKind::Oidc {
                issuer: issuer.trim_end_matches('/').to_owned(),
            }
        }
        ("google", None) => ProviderKind::Oidc {
            issuer: GOOGLE_ISSUER.into(),
        },
        ("microsoft", None) => {
            let tenant = vars.get("MICROSOFT_TENANT").unwrap_or("common");
            if tenant.is_empty()
                || !tenant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return err(
                    "MICROSOFT_TENANT must be a tenant id, or common, organizations or consumers",
                );
            }
            let issuer = format!("https://login.microsoftonline.com/{tenant}/v2.0");
            if matches!(tenant, "common" | "organizations" | "consumers") {
                ProviderKind::MicrosoftMultiTenant {
                    discovery_issuer: issuer,
                }
            } else {
                ProviderKind::Oidc { issuer }
            }
        }
        ("github", None) => {
            let web = vars.get("GITHUB_URL").unwrap_or("https://github.com");
            let api = vars
                .get("GITHUB_API_URL")
                .unwrap_or("https://api.github.com");
            check_url("GITHUB_URL", web, env)?;
            check_url("GITHUB_API_URL", api, env)?;
            ProviderKind::GitHub {
                web: web.trim_end_matches('/').to_owned(),
                api: api.trim_end_matches('/').to_owned(),
            }
        }
        (_, None) => return err(format!("{} must be set", var("ISSUER"))),
    };
    let default_scopes = match kind {
        ProviderKind::GitHub { .. } => "read:user user:email",
        _ => "openid email profile",
    };
    let scopes: Vec<String> = get("SCOPES")
        .unwrap_or_else(|| default_scopes.into())
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !matches!(kind, ProviderKind::GitHub { .. }) && !scopes.iter().any(|s| s == "openid") {
        return err(format!("{} must include openid", var("SCOPES")));
    }
    let allowed_domains = get("ALLOWED_DOMAINS")
        .map(|d| csv(&d))
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
        .collect();
    let flag = |suffix: &str| -> Result<bool, ConfigError> {
        match get(suffix).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => err(format!("{} must be true or false", var(suffix))),
            },
        }
    };
    let default_role = match get("DEFAULT_ROLE").as_deref() {
        None | Some("user") => Role::User,
        Some("moderator") => Role::Moderator,
        Some(_) => return err(format!("{} must be user or moderator", var("DEFAULT_ROLE"))),
    };
    let display_name = get("DISPLAY_NAME").unwrap_or_else(|| match name {
        "google" => "Google".into(),
        "microsoft" => "Microsoft".into(),
        "github" => "GitHub".into(),
        other => other.into(),
    });
    if display_name.chars().count() > 64 {
        return err(format!(
            "{} must be at most 64 characters",
            var("DISPLAY_NAME")
        ));
    }
    Ok(ProviderSettings {
        name: name.to_owned(),
        display_name,
        kind,
        client_id,
        client_secret: SecretString::from(client_secret),
        scopes,
        allowed_domains,
        auto_create: flag("AUTO_CREATE")?,
        default_role,
        trust_mfa: flag("TRUST_MFA")?,
    })
}

fn loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "localhost")
}

/// An issuer or API address: `https://`, or a loopback `http://` in `ENVIRONMENT=local`.
fn check_url(var: &str, value: &str, env: Environment) -> Result<(), ConfigError> {
    let url =
        reqwest::Url::parse(value).map_err(|_| ConfigError(format!("{var} must be a URL")))?;
    let host = url.host_str().unwrap_or_default();
    let ok = match url.scheme() {
        "https" => !host.is_empty(),
        "http" => env == Environment::Local && loopback(host),
        _ => false,
    };
    if !ok || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return err(format!(
            "{var} must be an https:// URL without query or fragment (http://127.0.0.1 or localhost only in ENVIRONMENT=local)"
        ));
    }
    Ok(())
}

fn check_redirect_uri(value: &str, env: Environment) -> Result<(), ConfigError> {
    let url = reqwest::Url::parse(value)
        .map_err(|_| ConfigError("OAUTH2_REDIRECT_URIS must hold absolute URLs".into()))?;
    let host = url.host_str().unwrap_or_default();
    let ok = match url.scheme() {
        "https" => !host.is_empty(),
        "http" => env == Environment::Local || loopback(host),
        _ => false,
    };
    if !ok || url.fragment().is_some() || !url.username().is_empty() {
        return err(
            "OAUTH2_REDIRECT_URIS must hold https:// URLs without a fragment (http:// only for loopback or in ENVIRONMENT=local)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Settings, Vars};

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        let mut v = Vars::new();
        // Generated here: production refuses weak keys.
        v.set(
            "SECRET_KEY",
            hex::encode(crate::crypto::random_bytes::<32>()),
        );
        for (k, val) in pairs {
            v.set(k, *val);
        }
        v
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        match Settings::from_vars(&vars(pairs)) {
            Ok(_) => panic!("accepted: {pairs:?}"),
            Err(e) => e.0,
        }
    }

    const CORP: &[(&str, &str)] = &[
        ("OIDC_PROVIDERS", "Corp"),
        ("OIDC_CORP_ISSUER", "https://id.corp.example/realms/main/"),
        ("OIDC_CORP_CLIENT_ID", "kyros"),
        ("OIDC_CORP_CLIENT_SECRET", "client-secret-of-the-test"),
        (
            "OAUTH2_REDIRECT_URIS",
            "https://kyros.corp.example/console/login",
        ),
    ];

    #[test]
    fn a_generic_provider_and_the_presets_are_read_from_their_variables() {
        let mut pairs = CORP.to_vec();
        pairs.extend([
            ("OIDC_CORP_ALLOWED_DOMAINS", "@Corp.Example, corp.test"),
            ("OIDC_CORP_DEFAULT_ROLE", "moderator"),
            ("GITHUB_CLIENT_ID", "gh"),
            ("GITHUB_CLIENT_SECRET", "gh-secret"),
            ("GOOGLE_CLIENT_ID", "g"),
            ("GOOGLE_CLIENT_SECRET", "g-secret"),
        ]);
        let s = Settings::from_vars(&vars(&pairs)).expect("valid");
        let names: Vec<&str> = s
            .identity
            .providers
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["corp", "google", "github"]);
        let corp = s.identity.provider("corp").expect("corp");
        assert_eq!(
            corp.identity_issuer(),
            "https://id.corp.example/realms/main"
        );
        assert_eq!(corp.allowed_domains, ["corp.example", "corp.test"]);
        assert_eq!(corp.default_role, crate::model::Role::Moderator);
        assert_eq!(corp.scopes, ["openid", "email", "profile"]);
        assert!(!corp.auto_create && !corp.trust_mfa);
        let google = s.identity.provider("google").expect("google");
        assert_eq!(google.identity_issuer(), "https://accounts.google.com");
        let github = s.identity.provider("github").expect("github");
        assert_eq!(github.identity_issuer(), "https://github.com");
        assert_eq!(github.scopes, ["read:user", "user:email"]);
        // Microsoft's multi-tenant default.
        let s = Settings::from_vars(&vars(&[
            ("MICROSOFT_CLIENT_ID", "m"),
            ("MICROSOFT_CLIENT_SECRET", "m-secret"),
            (
                "OAUTH2_REDIRECT_URIS",
                "https://kyros.example/console/login",
            ),
        ]))
        .expect("valid");
        assert!(matches!(
            s.identity.providers[0].kind,
            super::ProviderKind::MicrosoftMultiTenant { .. }
        ));
    }

    #[test]
    fn unsafe_or_incomplete_provider_settings_are_refused_by_name() {
        let with = |k: &str, v: &str| {
            let mut p: Vec<(&str, &str)> = CORP.iter().filter(|(n, _)| *n != k).copied().collect();
            if !v.is_empty() {
                p.push((k, v));
            }
            refusal(&p)
        };
        assert!(with("OIDC_CORP_ISSUER", "http://id.corp.example").contains("OIDC_CORP_ISSUER"));
        assert!(with("OIDC_CORP_ISSUER", "ftp://id.corp.example").contains("OIDC_CORP_ISSUER"));
        assert!(
            with("OIDC_CORP_ISSUER", "https://id.corp.example/?x=1").contains("OIDC_CORP_ISSUER")
        );
        assert!(with("OIDC_CORP_ISSUER", "").contains("OIDC_CORP_ISSUER must be set"));
        assert!(
            with("OIDC_CORP_CLIENT_SECRET", "").contains("OIDC_CORP_CLIENT_SECRET must be set")
        );
        assert!(with("OIDC_CORP_CLIENT_ID", "").contains("OIDC_CORP_CLIENT_ID must be set"));
        assert!(with("OIDC_CORP_DEFAULT_ROLE", "admin").contains("OIDC_CORP_DEFAULT_ROLE"));
        assert!(with("OIDC_CORP_AUTO_CREATE", "maybe").contains("OIDC_CORP_AUTO_CREATE"));
        assert!(with("OIDC_CORP_SCOPES", "email profile").contains("openid"));
        assert!(with("OAUTH2_REDIRECT_URIS", "").contains("OAUTH2_REDIRECT_URIS"));
        assert!(with("OAUTH2_REDIRECT_URIS", "/console/login").contains("OAUTH2_REDIRECT_URIS"));
        assert!(with("OIDC_PROVIDERS", "corp,corp").contains("listed twice"));
        assert!(with("OIDC_PROVIDERS", "co rp").contains("OIDC_PROVIDERS"));
        // A loopback http issuer only in ENVIRONMENT=local.
        let mut local = CORP.to_vec();
        local.retain(|(k, _)| *k != "OIDC_CORP_ISSUER");
        local.push(("OIDC_CORP_ISSUER", "http://127.0.0.1:8080"));
        assert!(Settings::from_vars(&vars(&local)).is_ok());
        local.push(("ENVIRONMENT", "production"));
        local.push(("FRONTEND_HOST", "https://kyros.corp.example"));
        let msg = refusal(&local);
        assert!(msg.contains("OIDC_CORP_ISSUER"), "{msg}");
        // The secret's value never appears in a refusal.
        assert!(!with("OIDC_CORP_ISSUER", "").contains("client-secret-of-the-test"));
    }
}
