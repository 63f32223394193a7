//! The HTTP API: one module per resource, each with `configure`; what they share lives in
//! [`crate::web`].

pub mod alerts;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod certificates;
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

/// Routes under `/api/v1`.
pub fn configure_api(cfg: &mut web::ServiceConfig, ingest_max_body_bytes: usize) {
    auth::configure(cfg);
    telemetry::configure(cfg, ingest_max_body_bytes);
    users::configure(cfg);
    devices::configure(cfg);
    api_keys::configure(cfg);
    certificates::configure(cfg);
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
