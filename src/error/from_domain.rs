//! The errors of the services (accounts, alerts, device keys, devices, reports, tokens) as HTTP
//! answers: each refusal with the code and message the API gives for it, failures as the
//! database or internal errors they are. The services themselves know nothing of HTTP.
//!
//! An error whose answer is its code and its message (and the fields at fault) implements
//! [`ErrorCode`]; one whose answer also carries details or headers (a rate limit's retry time, a
//! report's size) is converted with its own `From`.

use insa_actors::alerts::AlertError;
use insa_domain::FieldProblem;
use serde_json::json;

use super::{database_code, ApiError, Code, ErrorCode};
use crate::accounts::AccountError;
use crate::auth::device_key::KeyRefused;
use crate::auth::tokens::TokenError;
use crate::ca::IssueError;
use crate::certificates::CertificateError;
use crate::devices::DeviceError;
use crate::reports::Refused;

impl ErrorCode for AccountError {
    fn code(&self) -> Code {
        match self {
            AccountError::EmailTaken(_) => Code::EmailTaken,
            AccountError::Password(_) => Code::ValidationFailed,
            AccountError::Hashing(_) => Code::Internal,
            AccountError::Database(err) => database_code(err),
        }
    }

    fn problems(&self) -> Vec<FieldProblem> {
        match self {
            AccountError::Password(problem) => vec![problem.clone()],
            _ => Vec::new(),
        }
    }
}

impl ErrorCode for AlertError {
    fn code(&self) -> Code {
        match self {
            AlertError::NotFound(_) => Code::AlertNotFound,
            AlertError::Resolved => Code::AlertResolved,
            AlertError::Db(err) => database_code(err),
        }
    }
}

impl ErrorCode for TokenError {
    fn code(&self) -> Code {
        match self {
            TokenError::Expired => Code::TokenExpired,
            TokenError::Invalid | TokenError::WrongKind(_) => Code::InvalidToken,
            TokenError::Signing(_) => Code::Internal,
        }
    }
}

impl ErrorCode for DeviceError {
    fn code(&self) -> Code {
        match self {
            DeviceError::NotFound(_) => Code::DeviceNotFound,
            DeviceError::Database(err) => database_code(err),
        }
    }
}

impl ErrorCode for CertificateError {
    fn code(&self) -> Code {
        match self {
            CertificateError::NoDevice(_) => Code::DeviceNotFound,
            CertificateError::NotFound(_) => Code::CertificateNotFound,
            CertificateError::Issue(IssueError::BadCsr(_)) => Code::ValidationFailed,
            CertificateError::Issue(IssueError::Signing(_)) => Code::Internal,
            CertificateError::Database(err) => database_code(err),
        }
    }

    fn problems(&self) -> Vec<FieldProblem> {
        match self {
            CertificateError::Issue(IssueError::BadCsr(problem)) => {
                vec![FieldProblem::new("csr_pem", problem.clone())]
            }
            _ => Vec::new(),
        }
    }
}

impl From<KeyRefused> for ApiError {
    fn from(refused: KeyRefused) -> Self {
        let message = refused.to_string();
        match refused {
            KeyRefused::Invalid => ApiError::new(Code::InvalidApiKey, message),
            KeyRefused::Revoked => ApiError::new(Code::ApiKeyRevoked, message),
            KeyRefused::Expired => ApiError::new(Code::ApiKeyExpired, message),
            KeyRefused::RateLimited(over) => ApiError::new(Code::RateLimited, message)
                .with_details(json!({
                    "limit": "api_key",
                    "requests_per_hour": over.limit,
                    "retry_after_secs": over.retry_after_secs,
                }))
                .retry_after(over.retry_after_secs)
                .header("X-RateLimit-Limit", over.limit)
                .header("X-RateLimit-Remaining", 0),
            KeyRefused::Database(err) => err.into(),
        }
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Query(message) => ApiError::new(Code::InvalidQuery, message),
            Refused::Field(problem) => ApiError::validation(vec![problem]),
            Refused::NoDevice(message) => ApiError::new(Code::DeviceNotFound, message),
            Refused::TooLarge {
                message,
                rows,
                limit,
                at_once,
            } => {
                let details = if at_once {
                    json!({"rows": rows, "limit": limit, "job": "POST /api/v1/reports"})
                } else {
                    json!({"rows": rows, "limit": limit})
                };
                ApiError::new(Code::ReportTooLarge, message).with_details(details)
            }
            Refused::Database(err) => err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed report job records the refusal's text; it starts with the code the API answers.
    #[test]
    fn a_report_refusal_names_the_code_it_is_answered_with() {
        let refusals = [
            Refused::Query("start must be before end".into()),
            Refused::Field(FieldProblem::new("kind", "is required")),
            Refused::NoDevice("no device in area north".into()),
            Refused::TooLarge {
                message: "the report holds 10 points".into(),
                rows: 10,
                limit: 5,
                at_once: true,
            },
        ];
        for refused in refusals {
            let shown = refused.to_string();
            let answer = ApiError::from(refused);
            let code = answer.code.as_str();
            assert!(shown.starts_with(&format!("{code}: ")), "{shown} / {code}");
        }
    }
}
