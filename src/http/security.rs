//! `/api/v1/security/*`: the CSP violation report endpoint that the CSP header points at, and
//! the security posture as it really is (`health` public, `config` for administrators outside
//! `ENVIRONMENT=local`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};

use crate::audit::AuditEvent;
use crate::auth::rbac::AdminOutsideLocal;
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::security::headers::CSP_REPORT_PATH;
use crate::state::AppState;

/// Reports are small; anything bigger is not a report.
const MAX_REPORT_BYTES: usize = 64 * 1024;
const MAX_REPORTS: usize = 20;

/// Browser CSP reports: browsers send them with cookies and never a CSRF token, so only the
/// origin is checked (`csrf::origin_guard`, attached in `src/http/mod.rs`).
pub fn csrf_exempt_routes() -> Router<AppState> {
    Router::new().route(CSP_REPORT_PATH, post(csp_report))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/security/health", get(security_health))
        .route("/api/v1/security/config", get(security_config))
}

fn text(obj: &Map<String, Value>, keys: &[&str]) -> Value {
    keys.iter()
        .find_map(|k| obj.get(*k))
        .map(|v| match v {
            Value::String(s) => Value::String(s.chars().take(512).collect()),
            Value::Number(n) => Value::Number(n.clone()),
            _ => Value::Null,
        })
        .unwrap_or(Value::Null)
}

/// Fields every report of the original service's JSON form must carry (its pydantic model:
/// all but `status_code` were required, and a report without them was a 422).
const ORIGINAL_REQUIRED: &[&str] = &[
    "document_uri",
    "violated_directive",
    "effective_directive",
    "original_policy",
    "blocked_uri",
];
/// The same fields in the browsers' `application/csp-report` form (CSP Level 2 §4.4).
const LEGACY_REQUIRED: &[&str] = &[
    "document-uri",
    "violated-directive",
    "effective-directive",
    "original-policy",
    "blocked-uri",
];
/// What every `csp-violation` body of the Reporting API carries (CSP Level 3 §5.3).
const REPORTING_API_REQUIRED: &[&str] = &["documentURL", "effectiveDirective", "blockedURL"];

/// A 422 entry (`type: missing`, pydantic's wording) for each required field that is absent
/// or not a string or number.
fn missing_fields_at(
    report: &Map<String, Value>,
    loc: &[Value],
    required: &[&str],
) -> Vec<FieldError> {
    required
        .iter()
        .filter(|k| !matches!(report.get(**k), Some(Value::String(_) | Value::Number(_))))
        .map(|k| FieldError {
            kind: "missing",
            loc: loc.iter().cloned().chain([json!(k)]).collect(),
            msg: "Field required".into(),
        })
        .collect()
}

fn missing_fields(report: &Map<String, Value>, loc: &[&str], required: &[&str]) -> Vec<FieldError> {
    let loc: Vec<Value> = loc.iter().map(|l| json!(l)).collect();
    missing_fields_at(report, &loc, required)
}

/// One violation in a common shape, whichever of the three formats it came in.
fn normalize(report: &Map<String, Value>) -> Value {
    json!({
        "document_uri": text(report, &["document-uri", "documentURL", "document_uri"]),
        "violated_directive": text(report, &["violated-directive", "violated_directive", "effectiveDirective"]),
        "effective_directive": text(report, &["effective-directive", "effectiveDirective", "effective_directive"]),
        "blocked_uri": text(report, &["blocked-uri", "blockedURL", "blocked_uri"]),
        "source_file": text(report, &["source-file", "sourceFile", "source_file"]),
        "line_number": text(report, &["line-number", "lineNumber", "line_number"]),
        "disposition": text(report, &["disposition"]),
        "status_code": text(report, &["status-code", "statusCode", "status_code"]),
    })
}

fn invalid() -> ApiError {
    ApiError::validation(vec![FieldError {
        kind: "value_error",
        loc: vec![json!("body")],
        msg: "Expected a CSP violation report".into(),
    }])
}

/// Accepts `application/csp-report` (`{"csp-report":{…}}`), `application/reports+json`
/// (`[{"type":"csp-violation","body":{…}}]`) and the original service's `{"csp_report":{…}}`.
async fn csp_report(
    State(state): State<AppState>,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if body.len() > MAX_REPORT_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
        ));
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(
        mime.as_str(),
        "application/csp-report" | "application/reports+json" | "application/json"
    ) {
        return Err(invalid());
    }
    let value: Value = serde_json::from_slice(&body).map_err(|_| invalid())?;
    let mut missing = Vec::new();
    let reports: Vec<Value> = match &value {
        Value::Object(o) => match (o.get("csp-report"), o.get("csp_report")) {
            (Some(Value::Object(r)), _) => {
                missing.extend(missing_fields(r, &["body", "csp-report"], LEGACY_REQUIRED));
                vec![normalize(r)]
            }
            (_, Some(Value::Object(r))) => {
                missing.extend(missing_fields(
                    r,
                    &["body", "csp_report"],
                    ORIGINAL_REQUIRED,
                ));
                vec![normalize(r)]
            }
            _ => return Err(invalid()),
        },
        Value::Array(items) => items
            .iter()
            .take(MAX_REPORTS)
            .enumerate()
            .filter_map(|(i, item)| {
                let item = item.as_object()?;
                (item.get("type")?.as_str()? == "csp-violation").then_some(())?;
                let Some(body) = item.get("body").and_then(Value::as_object) else {
                    missing.push(FieldError {
                        kind: "missing",
                        loc: vec![json!("body"), json!(i), json!("body")],
                        msg: "Field required".into(),
                    });
                    return None;
                };
                let loc = [json!("body"), json!(i), json!("body")];
                missing.extend(missing_fields_at(body, &loc, REPORTING_API_REQUIRED));
                Some(normalize(body))
            })
            .collect(),
        _ => return Err(invalid()),
    };
    if !missing.is_empty() {
        return Err(ApiError::validation(missing));
    }
    if reports.is_empty() {
        return Err(invalid());
    }
    let ctx = ctx.map(|Extension(c)| c);
    let user_agent: String = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect();
    for report in reports {
        state.audit.record(
            AuditEvent::new("csp.violation", "denied")
                .context(ctx.as_ref())
                .details(json!({"report": report, "user_agent": user_agent})),
        );
    }
    Ok(Json(json!({"status": "reported"})))
}

/// Whether rate-limit, revocation and session state is currently shared through Redis.
fn redis_shared_state(state: &AppState) -> bool {
    state.redis.as_ref().is_some_and(|r| r.is_healthy())
}

/// The protections in force. CSRF is enforced in every environment (unlike the original, which
/// switched it off in `local` and still said `true`).
async fn security_health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "security": {
            "csp_enabled": true,
            "csrf_enabled": true,
            "rate_limiting": state.settings.rate_limit.enabled,
            "jwt_enabled": true,
            "https_enforced": state.settings.enforce_https,
            "redis_shared_state": redis_shared_state(&state),
        },
    }))
}

async fn security_config(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<Value> {
    let s = &state.settings;
    Json(json!({
        "environment": s.environment.as_str(),
        "features": {
            "jwt_authentication": true,
            "csrf_protection": true,
            "rate_limiting": s.rate_limit.enabled,
            "csp_headers": true,
            "security_headers": true,
            "cors_policy": true,
            "https_enforced": s.enforce_https,
            "redis_shared_state": redis_shared_state(&state),
        },
        "jwt": {
            "algorithm": "HS512",
            "expiration_hours": s.access_token_expire_minutes / 60,
            "expiration_minutes": s.access_token_expire_minutes,
        },
    }))
}
