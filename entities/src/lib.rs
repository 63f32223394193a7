//! sea-orm entities of insa-iiot, one module per table (see `docs/API.md` for what each holds).
//!
//! - [`users`], [`refresh_tokens`]: people and their sessions
//! - [`devices`], [`telemetry`], [`telemetry_latest`]: field devices, every point they sent, the newest per key
//! - [`rules`], [`alerts`], [`notification_deliveries`]: thresholds, what they raised, whom we told
//! - [`api_keys`]: device credentials (stored hashed)
//! - [`device_certificates`]: device certificates issued by the platform's CA (never their keys)
//! - [`report_jobs`], [`report_schedules`]: reports made in the background, reports emailed on a schedule
//! - [`audit_log`]: who did what, including failed logins
//!
//! Columns hold the domain's types (`insa_domain`): string enums ([`Role`], [`DeviceStatus`],
//! severities, alert and delivery statuses, channels) are stored as text so both PostgreSQL and
//! SQLite hold the same values; rule actions and notification payloads as JSON. [`rules::Model`]
//! turns into the domain's rule.

pub mod alerts;
pub mod api_keys;
pub mod audit_log;
pub mod device_certificates;
pub mod devices;
pub mod notification_deliveries;
pub mod refresh_tokens;
pub mod report_jobs;
pub mod report_schedules;
pub mod rules;
pub mod telemetry;
pub mod telemetry_latest;
pub mod users;

pub use insa_domain::{DeviceStatus, Role};
