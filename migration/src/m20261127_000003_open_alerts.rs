//! At most one open (not resolved) alert per device and rule, enforced by the database so that
//! concurrent raises cannot duplicate an alert. Alerts of the built-in rule (a device's
//! `config.alert_threshold`) have no rule id: at most one open per device.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

// Partial unique indexes: the same SQL on PostgreSQL and SQLite.
const UP: [&str; 2] = [
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_alerts_open_rule ON alerts (device_id, rule_id) \
     WHERE status <> 'resolved' AND rule_id IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_alerts_open_builtin ON alerts (device_id) \
     WHERE status <> 'resolved' AND rule_id IS NULL",
];
const DOWN: [&str; 2] = [
    "DROP INDEX IF EXISTS uq_alerts_open_rule",
    "DROP INDEX IF EXISTS uq_alerts_open_builtin",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in UP {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in DOWN {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
