//! The single place where errors become HTTP answers: `{"error":{"code","message","details"}}`.
//!
//! Every code is declared once, in the table that makes [`Code`] (code, HTTP status, when it is
//! answered); the errors table of `docs/API.md` is kept equal to it by a test, and clients may rely
//! on both. Services outside the web layer return their own errors and say their code through
//! [`ErrorCode`]; this file turns them into answers. Unexpected failures are logged with their
//! cause and answered with an opaque 500.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use sea_orm::DbErr;
use serde_json::{json, Value};

/// Declares [`Code`] from one table, one row per code: its one-line doc, variant, stable string
/// and HTTP status. The enum, [`Code::ALL`], [`Code::as_str`], [`Code::status`] and [`Code::doc`]
/// all come from the row, so they cannot drift apart; the errors table of `docs/API.md` is checked
/// against it (`every_error_code_is_documented_as_declared` below).
macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $code:literal, $status:ident; )+) => {
        /// Stable error codes. Adding one is fine; renaming one breaks clients.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Code {
            /// Every code, in the order of the table (and of `docs/API.md`).
            pub const ALL: [Code; [$(Code::$variant),+].len()] = [$(Code::$variant),+];

            /// The stable snake_case string clients see in `error.code`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Code::$variant => $code, )+
                }
            }

            /// The HTTP status every answer with this code has.
            pub fn status(self) -> StatusCode {
                match self {
                    $( Code::$variant => StatusCode::$status, )+
                }
            }

            /// When this code is answered, in one line (the `when` column of `docs/API.md`).
            pub fn doc(self) -> &'static str {
                match self {
                    $( Code::$variant => concat!($($doc),+).trim_start(), )+
                }
            }
        }
    };
}

error_codes! {
    /// the body is not well-formed JSON
    InvalidJson = "invalid_json", BAD_REQUEST;
    /// a path id is not a UUID
    InvalidId = "invalid_id", BAD_REQUEST;
    /// a query parameter is unknown, empty (`?start=`: leave it out instead) or out of range
    /// (`limit` 1..=1000, `offset` 0..=2^63-1, `status` ...), or the query string holds `%00`
    /// (U+0000)
    InvalidQuery = "invalid_query", BAD_REQUEST;
    /// any other malformed request
    BadRequest = "bad_request", BAD_REQUEST;
    /// the JSON is well-formed but a field is missing, unknown, of the wrong type or out of
    /// range, or a string (or object key) holds U+0000 (NUL), which the databases cannot store
    ValidationFailed = "validation_failed", UNPROCESSABLE_ENTITY;
    /// the reading would give its device more distinct telemetry keys than `devices.max_keys`
    /// (1000); `details` has `limit` and `new_keys`; the device's known keys are still accepted
    TooManyKeys = "too_many_keys", UNPROCESSABLE_ENTITY;
    /// the body is not sent as `application/json`
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    /// the body exceeds `server.max_body_bytes` (256 KiB by default)
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE;
    /// no `Authorization` / `X-API-Key`
    MissingCredentials = "missing_credentials", UNAUTHORIZED;
    /// wrong email or password (the same answer for unknown emails)
    InvalidCredentials = "invalid_credentials", UNAUTHORIZED;
    /// bad signature, wrong kind (access vs refresh), unknown or already-used refresh token
    InvalidToken = "invalid_token", UNAUTHORIZED;
    /// the token has expired: refresh, or log in again
    TokenExpired = "token_expired", UNAUTHORIZED;
    /// the session was logged out, its password changed, or its refresh token replayed
    SessionEnded = "session_ended", UNAUTHORIZED;
    /// unknown API key
    InvalidApiKey = "invalid_api_key", UNAUTHORIZED;
    /// the key passed its `expires_at`
    ApiKeyExpired = "api_key_expired", UNAUTHORIZED;
    /// the key was revoked
    ApiKeyRevoked = "api_key_revoked", UNAUTHORIZED;
    /// the user is disabled
    AccountDisabled = "account_disabled", FORBIDDEN;
    /// the role (or key) may not do this; `details.required_role` says which is needed
    Forbidden = "forbidden", FORBIDDEN;
    /// the current password given to change it is wrong
    WrongPassword = "wrong_password", FORBIDDEN;
    /// no such route
    NotFound = "not_found", NOT_FOUND;
    /// no device with that id
    DeviceNotFound = "device_not_found", NOT_FOUND;
    /// no user with that id
    UserNotFound = "user_not_found", NOT_FOUND;
    /// no API key with that id
    ApiKeyNotFound = "api_key_not_found", NOT_FOUND;
    /// no certificate with that id for the device
    CertificateNotFound = "certificate_not_found", NOT_FOUND;
    /// no rule with that id
    RuleNotFound = "rule_not_found", NOT_FOUND;
    /// no alert with that id
    AlertNotFound = "alert_not_found", NOT_FOUND;
    /// the alert is resolved: it can no longer be acknowledged
    AlertResolved = "alert_resolved", CONFLICT;
    /// the report holds more points than `reports.max_points`, or more than
    /// `reports.max_sync_points` for an Excel/PDF/ZIP answered at once; `details` says how many
    /// and what to do
    ReportTooLarge = "report_too_large", UNPROCESSABLE_ENTITY;
    /// no report job with that id (or it expired)
    ReportNotFound = "report_not_found", NOT_FOUND;
    /// no report schedule with that id
    ScheduleNotFound = "schedule_not_found", NOT_FOUND;
    /// the report job has not finished; `GET /api/v1/reports/{id}` shows its progress
    ReportNotReady = "report_not_ready", CONFLICT;
    /// the route exists, but not with this method; `Allow` lists the methods it takes
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    /// another user has this email
    EmailTaken = "email_taken", CONFLICT;
    /// this would leave no active admin
    LastAdmin = "last_admin", CONFLICT;
    /// an admin tried to delete their own account
    CannotDeleteSelf = "cannot_delete_self", CONFLICT;
    /// too many login attempts for the account or from the address
    LoginRateLimited = "login_rate_limited", TOO_MANY_REQUESTS;
    /// an API key exceeded its `rate_limit`, too many password-change attempts, or too many live
    /// connections
    RateLimited = "rate_limited", TOO_MANY_REQUESTS;
    /// the caller already has `reports.max_queued_jobs_per_user` report jobs queued or running;
    /// `details` has `limit`; retry when one ends
    TooManyReportJobs = "too_many_report_jobs", TOO_MANY_REQUESTS;
    /// unexpected; the cause is in the server log
    Internal = "internal_error", INTERNAL_SERVER_ERROR;
    /// the database cannot be reached; retry later
    DatabaseUnavailable = "database_unavailable", SERVICE_UNAVAILABLE;
    /// readings arrive faster than they can be stored; nothing was stored, retry after
    /// `Retry-After`
    IngestSaturated = "ingest_saturated", SERVICE_UNAVAILABLE;
    /// the batch holding these readings failed to commit; nothing was stored, retry
    NotStored = "not_stored", SERVICE_UNAVAILABLE;
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
    /// An answer with `code` (and its status) and a message for people.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Value::Null,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header to the answer.
    pub fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    /// Sets `details`: limits, counts or other context a client can act on.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Sets `Retry-After` (at least one second).
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

    /// 403 `forbidden`: the role or key may not do this.
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

    /// The database cannot be reached: logged, answered 503 with a retry hint.
    pub fn database_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "database unavailable");
        Self::new(Code::DatabaseUnavailable, "the database is unavailable").retry_after(5)
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

/// A domain error that knows its [`Code`]: services outside the web layer return their own error
/// enums and implement this; `?` in a handler then turns them into the answer here, so this file
/// stays the one place where errors become HTTP. The error's `Display` is the message clients
/// see, except for 5xx codes: those are logged with it and answered opaquely.
///
/// For example, an enum with `#[error("no report schedule with id {0}")] NotFound(Uuid)` answers
/// `code()` with [`Code::ScheduleNotFound`]: the client gets a 404 with that message (the unit tests
/// below show one of each kind).
pub trait ErrorCode: std::fmt::Display {
    /// The stable code the client sees (its HTTP status comes with it).
    fn code(&self) -> Code;

    /// The fields at fault, for [`Code::ValidationFailed`] (answered in `details.fields`).
    fn problems(&self) -> Vec<FieldProblem> {
        Vec::new()
    }
}

impl<E: ErrorCode> From<E> for ApiError {
    fn from(err: E) -> Self {
        match err.code() {
            Code::ValidationFailed => match err.problems() {
                problems if problems.is_empty() => {
                    ApiError::new(Code::ValidationFailed, err.to_string())
                }
                problems => ApiError::validation(problems),
            },
            Code::DatabaseUnavailable => ApiError::database_unavailable(err),
            Code::Internal => ApiError::internal(err),
            code => ApiError::new(code, err.to_string()),
        }
    }
}

/// The code a database failure is answered with: 503 `database_unavailable` when the database
/// cannot be reached (worth a retry), else 500 `internal_error`.
pub fn database_code(err: &DbErr) -> Code {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Code::DatabaseUnavailable,
        _ => Code::Internal,
    }
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        match database_code(&err) {
            Code::DatabaseUnavailable => ApiError::database_unavailable(err),
            _ => ApiError::internal(format_args!("database: {err}")),
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
            Code::BadRequest.as_str(),
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
    use super::*;

    #[test]
    fn every_error_code_is_documented_as_declared() {
        let doc = include_str!("../docs/API.md");
        let documented: Vec<&str> = doc
            .lines()
            .skip_while(|line| *line != "| code | HTTP | when |")
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .collect();
        let declared: Vec<String> = Code::ALL
            .iter()
            .map(|code| {
                format!(
                    "| `{}` | {} | {} |",
                    code.as_str(),
                    code.status().as_u16(),
                    code.doc()
                )
            })
            .collect();
        assert_eq!(
            documented,
            declared,
            "the errors table of docs/API.md must be the table of src/error.rs:\n{}",
            declared.join("\n")
        );
    }

    #[test]
    fn codes_are_distinct_snake_case_and_answered_with_their_status() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} declared twice");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            let answer = ApiError::new(code, "x").error_response();
            assert_eq!(answer.status(), code.status(), "{name}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum Refused {
        #[error("no such thing")]
        Missing,
        #[error("invalid input")]
        Invalid,
        #[error("disk on fire")]
        Broken,
    }

    impl ErrorCode for Refused {
        fn code(&self) -> Code {
            match self {
                Refused::Missing => Code::NotFound,
                Refused::Invalid => Code::ValidationFailed,
                Refused::Broken => Code::Internal,
            }
        }

        fn problems(&self) -> Vec<FieldProblem> {
            match self {
                Refused::Invalid => vec![FieldProblem::new("name", "is required")],
                _ => Vec::new(),
            }
        }
    }

    #[test]
    fn domain_errors_are_answered_with_their_code() {
        let missing = ApiError::from(Refused::Missing);
        assert_eq!(
            (missing.code, missing.message.as_str()),
            (Code::NotFound, "no such thing")
        );
        let invalid = ApiError::from(Refused::Invalid);
        assert_eq!(invalid.code, Code::ValidationFailed);
        assert_eq!(invalid.details["fields"][0]["field"], "name");
        let broken = ApiError::from(Refused::Broken);
        assert_eq!(broken.code, Code::Internal);
        assert!(
            !broken.message.contains("fire"),
            "5xx causes stay in the log"
        );
    }
}

/// Services' own errors, answered here: each mapped to its code and the message clients get.
mod from_domain;
