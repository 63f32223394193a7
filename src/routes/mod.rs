//! The HTTP API: one module per resource, each with `configure`.

pub mod alerts;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod devices;
pub mod health;
pub mod live;
pub mod notifications;
pub mod openapi;
pub mod report_schedules;
pub mod reports;
pub mod rules;
pub mod telemetry;
pub mod users;

use actix_web::web;
use serde::{Deserialize, Deserializer};

use crate::error::{ApiError, Code};

/// Routes under `/api/v1`.
pub fn configure_api(cfg: &mut web::ServiceConfig, ingest_max_body_bytes: usize) {
    auth::configure(cfg);
    telemetry::configure(cfg, ingest_max_body_bytes);
    users::configure(cfg);
    devices::configure(cfg);
    api_keys::configure(cfg);
    rules::configure(cfg);
    alerts::configure(cfg);
    notifications::configure(cfg);
    reports::configure(cfg);
    report_schedules::configure(cfg);
    live::configure(cfg);
    audit::configure(cfg);
    health::configure_api(cfg);
    openapi::configure(cfg);
}

pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1000;
/// The largest offset the databases take (a signed 64-bit integer); beyond it a query would
/// not run at all.
pub const MAX_OFFSET: u64 = i64::MAX as u64;

/// `limit` (1..=1000, default 100) and `offset` (0..=2^63-1, default 0), checked.
pub fn page(limit: Option<u64>, offset: Option<u64>) -> Result<(u64, u64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            Code::InvalidQuery,
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::new(
            Code::InvalidQuery,
            format!("offset must be between 0 and {MAX_OFFSET}"),
        ));
    }
    Ok((limit, offset))
}

/// A query parameter that must be one of `allowed` (400 `invalid_query` otherwise).
pub fn one_of(name: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::InvalidQuery,
            format!("{name} must be one of {}", allowed.join(", ")),
        ))
    }
}

/// For PUT bodies: tells "absent" (`None`) from "null" (`Some(None)`).
pub fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
