//! insa-iiot: an Industrial IoT platform for oil & gas sites.
//!
//! - [`startup`]: [`startup::Application`], the platform built from [`settings::Settings`]
//! - [`settings`]: layered settings, validated at start-up
//! - [`db`]: PostgreSQL / SQLite connection and migrations; [`private_files`]: owner-only files
//! - [`routes`]: the REST API, one module per resource; [`web`]: what they share (list queries,
//!   pages and answers; PUT bodies); [`error`]: how errors are answered; [`body`]: JSON bodies
//!   checked storable (no NUL) before any handler sees them
//! - [`query`]: aggregation intervals of telemetry queries (pure)
//! - [`auth`]: passwords, tokens, API keys, the extractors handlers use for access control
//! - [`accounts`]: users, shared by the API, the CLI and first start
//! - [`audit`]: the audit log
//! - [`cli`]: the `migrate` and `user` commands of the binary
//! - [`notify`]: the notifier (email, webhook, MQTT deliveries); [`webhook_guard`]: its SSRF guard
//!
//! The domain values live in the `insa-domain` crate, actors in `insa-actors`, tables in
//! `insa-entities`, the schema in `insa-migration`.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod body;
pub mod cli;
pub mod dashboard;
pub mod db;
pub mod dynsec;
pub mod error;
pub mod metrics;
pub mod mqtt;
pub mod notify;
pub mod private_files;
pub mod query;
pub mod reports;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry_log;
pub mod web;
pub mod webhook_guard;

/// Makes rustls on ring the process-wide TLS provider (the one TLS stack of the platform).
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
