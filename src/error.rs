//! The single place where errors become HTTP answers: `{"error":{"code","message","details"}}`.
//!
//! Every code is listed in [`Code`] with its HTTP status, and documented in `docs/API.md`; clients
//! may rely on them. Unexpected failures are logged with their cause and answered with an opaque 500.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use sea_orm::DbErr;
use serde_json::{json, Value};

/// Stable error codes. Adding one is fine; renaming one breaks clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    InvalidJson,
    InvalidId,
    InvalidQuery,
    ValidationFailed,
    TooManyKeys,
    UnsupportedMediaType,
    PayloadTooLarge,
    MissingCredentials,
    InvalidCredentials,
    InvalidToken,
    TokenExpired,
    SessionEnded,
    InvalidApiKey,
    ApiKeyExpired,
    ApiKeyRevoked,
    AccountDisabled,
    Forbidden,
    WrongPassword,
    NotFound,
    DeviceNotFound,
    UserNotFound,
    ApiKeyNotFound,
    RuleNotFound,
    AlertNotFound,
    AlertResolved,
    MethodNotAllowed,
    EmailTaken,
    LastAdmin,
    CannotDeleteSelf,
    LoginRateLimited,
    RateLimited,
    TooManyReportJobs,
    Internal,
    DatabaseUnavailable,
    IngestSaturated,
    NotStored,
    ReportTooLarge,
    ReportNotFound,
    ReportNotReady,
    ScheduleNotFound,
}

impl Code {
    /// Every code, for documentation checks.
    pub const ALL: [Code; 41] = [
        Code::BadRequest,
        Code::InvalidJson,
        Code::InvalidId,
        Code::InvalidQuery,
        Code::ValidationFailed,
        Code::TooManyKeys,
        Code::UnsupportedMediaType,
        Code::PayloadTooLarge,
        Code::MissingCredentials,
        Code::InvalidCredentials,
        Code::InvalidToken,
        Code::TokenExpired,
        Code::SessionEnded,
        Code::InvalidApiKey,
        Code::ApiKeyExpired,
        Code::ApiKeyRevoked,
        Code::AccountDisabled,
        Code::Forbidden,
        Code::WrongPassword,
        Code::NotFound,
        Code::DeviceNotFound,
        Code::UserNotFound,
        Code::ApiKeyNotFound,
        Code::RuleNotFound,
        Code::AlertNotFound,
        Code::AlertResolved,
        Code::MethodNotAllowed,
        Code::EmailTaken,
        Code::LastAdmin,
        Code::CannotDeleteSelf,
        Code::LoginRateLimited,
        Code::RateLimited,
        Code::TooManyReportJobs,
        Code::Internal,
        Code::DatabaseUnavailable,
        Code::IngestSaturated,
        Code::NotStored,
        Code::ReportTooLarge,
        Code::ReportNotFound,
        Code::ReportNotReady,
        Code::ScheduleNotFound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::InvalidJson => "invalid_json",
            Code::InvalidId => "invalid_id",
            Code::InvalidQuery => "invalid_query",
            Code::ValidationFailed => "validation_failed",
            Code::TooManyKeys => "too_many_keys",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::PayloadTooLarge => "payload_too_large",
            Code::MissingCredentials => "missing_credentials",
            Code::InvalidCredentials => "invalid_credentials",
            Code::InvalidToken => "invalid_token",
            Code::TokenExpired => "token_expired",
            Code::SessionEnded => "session_ended",
            Code::InvalidApiKey => "invalid_api_key",
            Code::ApiKeyExpired => "api_key_expired",
            Code::ApiKeyRevoked => "api_key_revoked",
            Code::AccountDisabled => "account_disabled",
            Code::Forbidden => "forbidden",
            Code::WrongPassword => "wrong_password",
            Code::NotFound => "not_found",
            Code::DeviceNotFound => "device_not_found",
            Code::UserNotFound => "user_not_found",
            Code::ApiKeyNotFound => "api_key_not_found",
            Code::RuleNotFound => "rule_not_found",
            Code::AlertNotFound => "alert_not_found",
            Code::AlertResolved => "alert_resolved",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::EmailTaken => "email_taken",
            Code::LastAdmin => "last_admin",
            Code::CannotDeleteSelf => "cannot_delete_self",
            Code::LoginRateLimited => "login_rate_limited",
            Code::RateLimited => "rate_limited",
            Code::TooManyReportJobs => "too_many_report_jobs",
            Code::Internal => "internal_error",
            Code::DatabaseUnavailable => "database_unavailable",
            Code::IngestSaturated => "ingest_saturated",
            Code::NotStored => "not_stored",
            Code::ReportTooLarge => "report_too_large",
            Code::ReportNotFound => "report_not_found",
            Code::ReportNotReady => "report_not_ready",
            Code::ScheduleNotFound => "schedule_not_found",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::BadRequest | Code::InvalidJson | Code::InvalidId | Code::InvalidQuery => {
                StatusCode::BAD_REQUEST
            }
            Code::ValidationFailed | Code::TooManyKeys | Code::ReportTooLarge => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::MissingCredentials
            | Code::InvalidCredentials
            | Code::InvalidToken
            | Code::TokenExpired
            | Code::SessionEnded
            | Code::InvalidApiKey
            | Code::ApiKeyExpired
            | Code::ApiKeyRevoked => StatusCode::UNAUTHORIZED,
            Code::AccountDisabled | Code::Forbidden | Code::WrongPassword => StatusCode::FORBIDDEN,
            Code::NotFound
            | Code::DeviceNotFound
            | Code::UserNotFound
            | Code::ApiKeyNotFound
            | Code::RuleNotFound
            | Code::AlertNotFound
            | Code::ReportNotFound
            | Code::ScheduleNotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::EmailTaken
            | Code::LastAdmin
            | Code::CannotDeleteSelf
            | Code::AlertResolved
            | Code::ReportNotReady => StatusCode::CONFLICT,
            Code::LoginRateLimited | Code::RateLimited | Code::TooManyReportJobs => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::DatabaseUnavailable | Code::IngestSaturated | Code::NotStored => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub details: Value,
    /// Seconds, sent as `Retry-After` with 429 and 503.
    pub retry_after: Option<u64>,
    /// More headers for the answer (`X-RateLimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Value::Null,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// 422 listing each field's problem.
    pub fn validation(problems: Vec<FieldProblem>) -> Self {
        let summary = problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(Code::ValidationFailed, format!("invalid input: {summary}"))
            .with_details(json!({ "fields": problems.iter().map(|p| json!({"field": p.field, "message": p.message})).collect::<Vec<_>>() }))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, message)
    }

    /// An unexpected failure: logged in full, answered opaquely.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            Code::Internal,
            "an internal error occurred; see the server log",
        )
    }
}

/// One field's problem in a 422 answer (the domain's: checks outside the web layer report them too).
pub use insa_domain::FieldProblem;

/// Input the domain refused: 422 `validation_failed` naming each field.
impl From<insa_domain::Problems> for ApiError {
    fn from(problems: insa_domain::Problems) -> Self {
        ApiError::validation(problems.0)
    }
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                tracing::error!(error = %err, "database unavailable");
                ApiError::new(Code::DatabaseUnavailable, "the database is unavailable")
                    .retry_after(5)
            }
            other => ApiError::internal(format_args!("database: {other}")),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        ApiError::internal(format_args!("blocking task: {err}"))
    }
}

fn body(code: &str, message: &str, details: &Value) -> Value {
    json!({ "error": { "code": code, "message": message, "details": details } })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        response.json(body(self.code.as_str(), &self.message, &self.details))
    }
}

/// Malformed JSON, wrong content type and oversized bodies.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::ContentType => ApiError::new(
            Code::UnsupportedMediaType,
            "the body must be JSON: send Content-Type: application/json",
        ),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            Code::PayloadTooLarge,
            format!("the body is larger than the {limit} bytes allowed"),
        )
        .with_details(json!({ "limit_bytes": limit })),
        JsonPayloadError::Deserialize(inner) if inner.is_data() => {
            ApiError::new(Code::ValidationFailed, format!("invalid body: {inner}"))
        }
        JsonPayloadError::Deserialize(inner) => {
            ApiError::new(Code::InvalidJson, format!("malformed JSON: {inner}"))
        }
        other => ApiError::new(Code::InvalidJson, format!("cannot read the body: {other}")),
    };
    api.into()
}

/// A path segment that does not parse (a malformed id).
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(Code::InvalidId, format!("invalid path parameter: {err}")).into()
}

/// A query string that does not parse.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(Code::InvalidQuery, format!("invalid query string: {err}")).into()
}

/// Turns any error answer that is not already JSON (unknown route, wrong method, framework errors)
/// into the standard error body, so clients parse one shape everywhere.
pub fn ensure_json_error<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (Code::NotFound.as_str(), "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            Code::MethodNotAllowed.as_str(),
            "this method is not allowed on this route".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            Code::PayloadTooLarge.as_str(),
            "the body is too large".to_string(),
        ),
        s if s.is_server_error() => (Code::Internal.as_str(), "an internal error occurred".into()),
        s => (
            "bad_request",
            s.canonical_reason().unwrap_or("bad request").to_string(),
        ),
    };
    let (req, res) = res.into_parts();
    let res = res.set_body(body(code, &message, &Value::Null).to_string());
    let mut res = ServiceResponse::new(req, res)
        .map_into_boxed_body()
        .map_into_right_body::<B>();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(ErrorHandlerResponse::Response(res))
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn every_error_code_is_documented_with_its_status() {
        let doc = include_str!("../docs/API.md");
        for code in Code::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
            assert!(doc.contains(&row), "docs/API.md lacks the row {row}");
        }
    }
}

/// Services' own errors, answered here: each mapped to its code and the message clients get.
mod from_domain;
