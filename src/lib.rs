//! insa-iiot: an Industrial IoT platform for oil & gas sites.
//!
//! - [`startup`]: [`startup::Application`], the platform built from [`settings::Settings`]: the
//!   shared [`state::AppState`] of the handlers, and each worker given what it needs
//! - [`settings`]: layered settings, validated at start-up; [`redact`]: URLs without passwords
//! - [`db`]: PostgreSQL / SQLite connection and migrations; [`private_files`]: owner-only files
//! - [`tls`]: HTTPS: the server certificate (TLS 1.2+), re-read on SIGHUP or file change
//! - [`tls_files`]: PEM certificate and key files (read for HTTPS, MQTTS and the outgoing links),
//!   and the TLS of the outgoing links (SMTP, PostgreSQL, an external broker), read at start-up
//!
//! The web layer (the only modules that know HTTP, with [`startup`], [`metrics`],
//! [`telemetry_log`] and [`dashboard`]):
//! - [`routes`]: the REST API, one module per resource, registering its routes and translating
//!   HTTP; no route module imports another
//! - [`web`]: what several route modules share (list queries, pages and answers; PUT bodies;
//!   answers; strict query strings)
//! - [`error`]: how errors are answered (one table of codes), services' errors included;
//!   [`body`]: JSON bodies checked storable (no NUL) before any handler sees them;
//!   [`auth::extract`]: who calls a handler
//!
//! Services (no HTTP; they return their own errors):
//! - [`auth`]: passwords, tokens, API keys (checked for HTTP and MQTT alike), revocation
//! - [`accounts`]: users, shared by the API, the CLI and first start
//! - [`devices`]: a device by id, with its actor's live state
//! - [`audit`]: the audit log
//! - [`query`]: telemetry aggregation (intervals, functions, the aggregate query)
//! - [`reports`]: report files, the job queue and its runner, schedules
//! - [`live`]: the live feed's open connections
//! - [`notify`]: the notifier (email, webhook, MQTT deliveries); [`webhook_guard`]: its SSRF guard
//! - [`mqtt`]: the broker choice, the embedded broker, rule commands; [`dynsec`]: Mosquitto's
//!   dynamic security in step with API keys
//! - [`cli`]: the `migrate` and `user` commands of the binary
//!
//! `tests/layers.rs` keeps it so: no import cycles, no route importing another, HTTP only in the
//! web layer.
//!
//! The domain values live in the `insa-domain` crate, actors in `insa-actors`, tables in
//! `insa-entities`, the schema in `insa-migration`.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod body;
pub mod ca;
pub mod certificates;
pub mod cli;
pub mod dashboard;
pub mod db;
pub mod devices;
pub mod dynsec;
pub mod error;
pub mod live;
pub mod metrics;
pub mod mqtt;
pub mod notify;
pub mod private_files;
pub mod query;
pub mod redact;
pub mod reports;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry_log;
pub mod tls;
pub mod tls_files;
pub mod web;
pub mod webhook_guard;

/// Makes rustls on ring the process-wide TLS provider (the one TLS stack of the platform).
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
