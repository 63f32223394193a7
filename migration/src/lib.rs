//! Schema migrations of insa-iiot, run by the platform at start-up (and by `insa-iiot migrate`).
//!
//! Every migration works on both PostgreSQL and SQLite: only portable column types are used
//! (`uuid`, `json_binary`, `timestamp_with_time_zone`), and nothing here imports the entities crate,
//! so the history of the schema never changes when the entities do.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_initial;
mod m20261127_000002_telemetry_latest;
mod m20261127_000003_open_alerts;
mod m20261127_000004_reports;
mod m20261129_000005_alert_chatter;
mod m20261130_000006_device_certificates;

/// All migrations of the platform, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_initial::Migration),
            Box::new(m20261127_000002_telemetry_latest::Migration),
            Box::new(m20261127_000003_open_alerts::Migration),
            Box::new(m20261127_000004_reports::Migration),
            Box::new(m20261129_000005_alert_chatter::Migration),
            Box::new(m20261130_000006_device_certificates::Migration),
        ]
    }
}
