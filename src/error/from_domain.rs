//! The errors of the services (accounts, device keys, devices, reports) as HTTP answers: each
//! refusal with the code and message the API gives for it, failures as the database or internal
//! errors they are. The services themselves know nothing of HTTP.

use serde_json::json;

use super::{ApiError, Code};
use crate::accounts::AccountError;
use crate::auth::device_key::KeyRefused;
use crate::devices::DeviceError;
use crate::reports::Refused;

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::EmailTaken(_) => ApiError::new(Code::EmailTaken, err.to_string()),
            AccountError::Password(problem) => ApiError::validation(vec![problem]),
            AccountError::Hashing(cause) => ApiError::internal(cause),
            AccountError::Database(err) => err.into(),
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

impl From<DeviceError> for ApiError {
    fn from(err: DeviceError) -> Self {
        match err {
            DeviceError::NotFound(_) => ApiError::new(Code::DeviceNotFound, err.to_string()),
            DeviceError::Database(err) => err.into(),
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
    use insa_domain::FieldProblem;

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
