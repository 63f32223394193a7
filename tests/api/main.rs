//! Integration tests: each test starts the real platform on a free port with a fresh database
//! (SQLite by default, PostgreSQL when `DATABASE_URL` is set) and talks to it over HTTP.

mod alerting;
mod alerts;
mod api_keys;
mod auth;
mod backup;
mod browser;
mod cli;
mod database_tls;
mod devices;
mod durability;
pub mod email;
mod email_tls;
mod errors;
mod health;
mod helpers;
mod https;
pub mod live;
mod metrics;
pub mod mqtt;
mod mqtt_tls;
mod mqtts;
mod openapi;
mod pki;
mod reports;
mod roles;
mod rules;
mod schema;
mod security_ingest;
mod security_mqtt;
mod security_rules;
mod security_web;
mod telemetry;
mod users;
mod webhooks;
