//! `/api/v1/security/*`: the CSP violation report endpoint that the CSP header points at, and
//! the security posture as it really is (`health` public, `config` for administrators outside
//! `ENVIRONMENT=local`).

use axum::Extension;
use axum::Json as JsonResponse;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, ErrorEnvelope, access};
use super::extract::validated;
use crate::audit::AuditEvent;
use crate::auth::rbac::AdminOutsideLocal;
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// Reports are small; anything bigger is not a report.
const MAX_REPORT_BYTES: usize = 64 * 1024;
/// At most this many violations of one Reporting API batch are recorded.
const MAX_REPORTS: usize = 20;
/// Recorded text fields are cut to this many characters.
const MAX_TEXT_CHARS: usize = 512;

/// Browser CSP reports: browsers send them with cookies and never a CSRF token, so only the
/// origin is checked (`csrf::origin_guard`, attached in `src/http/mod.rs`).
pub fn csrf_exempt_routes() -> ApiRouter {
    access(Access::Public, ApiRouter::new().routes(routes!(csp_report)))
}

pub fn routes() -> ApiRouter {
    ApiRouter::new()
        .merge(access(
            Access::Public,
            ApiRouter::new().routes(routes!(security_health)),
        ))
        .merge(access(
            Access::AdminOutsideLocal,
            ApiRouter::new().routes(routes!(security_config)),
        ))
}

/// An integer field of a report, kept as sent (any size).
type Int = Option<Value>;

/// `application/csp-report`: the `report-uri` form browsers send (CSP Level 2 §4.4).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LegacyCspReport {
    #[serde(rename = "csp-report")]
    #[schema(rename = "csp-report")]
    pub csp_report: LegacyViolation,
}

/// One violation in the `report-uri` form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct LegacyViolation {
    pub document_uri: String,
    pub referrer: Option<String>,
    pub violated_directive: String,
    pub effective_directive: String,
    pub original_policy: String,
    pub blocked_uri: String,
    pub disposition: Option<String>,
    pub source_file: Option<String>,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub line_number: Int,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub column_number: Int,
    pub script_sample: Option<String>,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub status_code: Int,
}

/// `application/json`: the original service's form (its pydantic model).
#[derive(Debug, Deserialize, ToSchema)]
pub struct OriginalCspReport {
    pub csp_report: OriginalViolation,
}

/// One violation in the original service's form.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OriginalViolation {
    pub document_uri: String,
    pub violated_directive: String,
    pub effective_directive: String,
    pub original_policy: String,
    pub blocked_uri: String,
    pub disposition: Option<String>,
    pub source_file: Option<String>,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub line_number: Int,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub status_code: Int,
}

/// `application/reports+json`: a batch of the Reporting API (CSP Level 3 §5.3). Reports of
/// other types are accepted and ignored; of the `csp-violation` reports the first 20 are
/// recorded.
#[derive(Debug, Deserialize)]
pub struct ReportBatch(pub Vec<ReportingApiReport>);

impl PartialSchema for ReportBatch {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(ReportingApiReport::name()))
            .min_items(Some(1))
            .description(Some(
                "Reporting API reports; the csp-violation ones are recorded (at most 20)",
            ))
            .into()
    }
}

impl ToSchema for ReportBatch {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            ReportingApiReport::name().into_owned(),
            ReportingApiReport::schema(),
        ));
        ReportingApiReport::schemas(schemas);
    }
}

/// One report of a Reporting API batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ReportingApiReport {
    Csp(Box<CspViolationReport>),
    Other(OtherReport),
}

/// The report type of a CSP violation.
#[derive(Debug, Deserialize, ToSchema)]
pub enum CspViolationType {
    #[serde(rename = "csp-violation")]
    CspViolation,
}

/// A `csp-violation` report.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CspViolationReport {
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: CspViolationType,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub age: Int,
    pub url: Option<String>,
    pub user_agent: Option<String>,
    pub body: CspViolationBody,
}

/// A report of another type (ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct OtherReport {
    /// Any type but `csp-violation`.
    #[serde(rename = "type")]
    #[schema(rename = "type", pattern = "^(?!csp-violation$)")]
    pub kind: String,
}

/// The body of a `csp-violation` report (`CSPViolationReportBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CspViolationBody {
    #[serde(rename = "documentURL")]
    #[schema(rename = "documentURL")]
    pub document_url: String,
    pub referrer: Option<String>,
    #[serde(rename = "blockedURL")]
    #[schema(rename = "blockedURL")]
    pub blocked_url: String,
    pub effective_directive: String,
    pub original_policy: Option<String>,
    pub source_file: Option<String>,
    pub sample: Option<String>,
    pub disposition: Option<String>,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub status_code: Int,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub line_number: Int,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub column_number: Int,
}

/// One violation in a common shape, whichever of the three forms it came in (the audit row's
/// `details.report`).
#[derive(Debug, Serialize)]
struct Violation {
    document_uri: Option<String>,
    violated_directive: Option<String>,
    effective_directive: Option<String>,
    blocked_uri: Option<String>,
    source_file: Option<String>,
    line_number: Int,
    disposition: Option<String>,
    status_code: Int,
}

fn cut(s: &str) -> Option<String> {
    Some(s.chars().take(MAX_TEXT_CHARS).collect())
}

fn cut_opt(s: Option<&String>) -> Option<String> {
    s.and_then(|s| cut(s))
}

/// The two Level 2 forms (`report-uri` and the original's) carry the same fields.
macro_rules! level2_violation {
    ($($form:ty),*) => {$(
        impl From<$form> for Violation {
            fn from(r: $form) -> Self {
                Violation {
                    document_uri: cut(&r.document_uri),
                    violated_directive: cut(&r.violated_directive),
                    effective_directive: cut(&r.effective_directive),
                    blocked_uri: cut(&r.blocked_uri),
                    source_file: cut_opt(r.source_file.as_ref()),
                    line_number: r.line_number,
                    disposition: cut_opt(r.disposition.as_ref()),
                    status_code: r.status_code,
                }
            }
        }
    )*};
}

level2_violation!(LegacyViolation, OriginalViolation);

impl From<CspViolationBody> for Violation {
    fn from(r: CspViolationBody) -> Self {
        Violation {
            document_uri: cut(&r.document_url),
            // Level 3 reports name the effective directive only.
            violated_directive: cut(&r.effective_directive),
            effective_directive: cut(&r.effective_directive),
            blocked_uri: cut(&r.blocked_url),
            source_file: cut_opt(r.source_file.as_ref()),
            line_number: r.line_number,
            disposition: cut_opt(r.disposition.as_ref()),
            status_code: r.status_code,
        }
    }
}

fn invalid() -> ApiError {
    ApiError::validation(vec![FieldError {
        kind: "value_error",
        loc: vec![json!("body")],
        msg: "Expected a CSP violation report".into(),
    }])
}

/// The acknowledgement of a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportStatus {
    /// `reported`.
    pub status: String,
}

/// `body` as JSON, checked against `T`'s schema (every problem in the 422 list).
fn parse<T: DeserializeOwned + ToSchema + 'static>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| invalid())?;
    validated::<T>(value)
}

/// Receive CSP violation reports (recorded as `csp.violation` audit rows). The form follows the
/// content type: `application/csp-report` (`report-uri`), `application/reports+json` (the
/// Reporting API, `report-to`) or `application/json` (the original service's form). Browsers
/// post them with cookies and without a CSRF token: only a cross-site origin is refused.
#[utoipa::path(
    post, path = "/api/v1/security/csp-report", tag = "security",
    request_body(
        description = "A violation report, in the form of its content type (at most 64 KiB)",
        content(
            (LegacyCspReport = "application/csp-report"),
            (ReportBatch = "application/reports+json"),
            (OriginalCspReport = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Recorded", body = ReportStatus),
        (status = 403, description = "Posted from another site", body = ErrorEnvelope),
        (status = 413, description = "Larger than 64 KiB", body = ErrorEnvelope),
    ),
)]
async fn csp_report(
    State(state): State<AppState>,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<JsonResponse<ReportStatus>, ApiError> {
    if body.len() > MAX_REPORT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
        ));
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let reports: Vec<Violation> = match mime.as_str() {
        "application/csp-report" => vec![parse::<LegacyCspReport>(&body)?.csp_report.into()],
        "application/json" => vec![parse::<OriginalCspReport>(&body)?.csp_report.into()],
        "application/reports+json" => parse::<ReportBatch>(&body)?
            .0
            .into_iter()
            .filter_map(|r| match r {
                ReportingApiReport::Csp(r) => Some(r.body.into()),
                ReportingApiReport::Other(_) => None,
            })
            .take(MAX_REPORTS)
            .collect(),
        _ => return Err(invalid()),
    };
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
    Ok(JsonResponse(ReportStatus {
        status: "reported".into(),
    }))
}

/// Whether rate-limit, revocation and session state is currently shared through Redis.
fn redis_shared_state(state: &AppState) -> bool {
    state.redis.as_ref().is_some_and(|r| r.is_healthy())
}

/// The protections in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityHealth {
    /// `healthy`.
    pub status: String,
    pub security: SecurityFlags,
}

/// Which protections are on.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityFlags {
    pub csp_enabled: bool,
    pub csrf_enabled: bool,
    pub rate_limiting: bool,
    pub jwt_enabled: bool,
    pub https_enforced: bool,
    /// Rate-limit, revocation and session state is shared through Redis right now.
    pub redis_shared_state: bool,
}

/// The protections in force. CSRF is enforced in every environment (unlike the original, which
/// switched it off in `local` and still said `true`).
#[utoipa::path(
    get, path = "/api/v1/security/health", tag = "security",
    responses((status = 200, description = "The protections in force", body = SecurityHealth)),
)]
async fn security_health(State(state): State<AppState>) -> JsonResponse<SecurityHealth> {
    JsonResponse(SecurityHealth {
        status: "healthy".into(),
        security: SecurityFlags {
            csp_enabled: true,
            csrf_enabled: true,
            rate_limiting: state.settings().rate_limit.enabled,
            jwt_enabled: true,
            https_enforced: state.settings().enforce_https,
            redis_shared_state: redis_shared_state(&state),
        },
    })
}

/// The security configuration (no secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityConfig {
    /// `local`, `staging` or `production`.
    pub environment: String,
    pub features: SecurityFeatures,
    pub jwt: JwtConfig,
}

/// The security features and whether they are on.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityFeatures {
    pub jwt_authentication: bool,
    pub csrf_protection: bool,
    pub rate_limiting: bool,
    pub csp_headers: bool,
    pub security_headers: bool,
    pub cors_policy: bool,
    pub https_enforced: bool,
    pub redis_shared_state: bool,
}

/// Access tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct JwtConfig {
    /// `HS512`.
    pub algorithm: String,
    /// The lifetime of an access token, in whole hours.
    pub expiration_hours: i64,
    /// The lifetime of an access token, in minutes.
    pub expiration_minutes: i64,
}

/// The security configuration as it really is (no secrets).
#[utoipa::path(
    get, path = "/api/v1/security/config", tag = "security",
    responses(
        (status = 200, description = "The security configuration", body = SecurityConfig),
    ),
)]
async fn security_config(
    State(state): State<AppState>,
    _: AdminOutsideLocal,
) -> JsonResponse<SecurityConfig> {
    let s = &state.settings();
    JsonResponse(SecurityConfig {
        environment: s.environment.as_str().into(),
        features: SecurityFeatures {
            jwt_authentication: true,
            csrf_protection: true,
            rate_limiting: s.rate_limit.enabled,
            csp_headers: true,
            security_headers: true,
            cors_policy: true,
            https_enforced: s.enforce_https,
            redis_shared_state: redis_shared_state(&state),
        },
        jwt: JwtConfig {
            algorithm: "HS512".into(),
            expiration_hours: s.access_token_expire_minutes / 60,
            expiration_minutes: s.access_token_expire_minutes,
        },
    })
}
