//! Security headers on every response — the security layers' own 400/403/429 and 500s included.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;

use crate::config::Settings;
use crate::state::AppState;

pub const CSP_REPORT_PATH: &str = "/api/v1/security/csp-report";
pub const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()";
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The CSP: `KYROS_CONTENT_SECURITY_POLICY` when set, else the policy of the environment.
/// Staging and production are strict; local allows what development tooling needs. Both
/// report violations to the CSP report endpoint.
pub fn content_security_policy(settings: &Settings) -> String {
    if let Some(csp) = &settings.content_security_policy {
        return csp.clone();
    }
    let report = format!("report-uri {CSP_REPORT_PATH}; report-to csp-endpoint");
    if settings.environment.is_local() {
        format!(
            "default-src 'self'; img-src 'self' data: https:; font-src 'self' data:; connect-src 'self' ws: wss:; \
             frame-ancestors 'none'; base-uri 'self'; form-action 'self'; \
             script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; object-src 'none'; {report}"
        )
    } else {
        format!(
            "default-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'self'; form-action 'self'; script-src 'self'; style-src 'self'; \
             object-src 'none'; upgrade-insecure-requests; {report}"
        )
    }
}

/// The fixed set of headers, computed when the settings are (at start-up and on a reload).
#[derive(Debug, Clone)]
pub struct SecurityHeaders(Vec<(HeaderName, HeaderValue)>);

impl SecurityHeaders {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let mut headers = vec![
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::X_XSS_PROTECTION,
                HeaderValue::from_static("1; mode=block"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("strict-origin-when-cross-origin"),
            ),
            (
                HeaderName::from_static("permissions-policy"),
                HeaderValue::from_static(PERMISSIONS_POLICY),
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_str(&content_security_policy(settings))?,
            ),
            (
                HeaderName::from_static("reporting-endpoints"),
                HeaderValue::from_str(&format!("csp-endpoint=\"{CSP_REPORT_PATH}\""))?,
            ),
        ];
        if settings.enforce_https {
            headers.push((
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            ));
        }
        Ok(SecurityHeaders(headers))
    }
}

/// Stage of the request path: the configured security headers on every response (RFC 6797 HSTS,
/// CSP, OWASP Secure Headers), `Server` and `X-Powered-By` removed.
pub async fn security_headers(
    state: &AppState,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let mut response = next(request).await;
    let headers = response.headers_mut();
    for (name, value) in &state.live().security_headers.0 {
        headers.insert(name.clone(), value.clone());
    }
    headers.remove(header::SERVER);
    headers.remove("x-powered-by");
    response
}
