//! The newest point per (device, key), kept by the telemetry writer in the same transaction as the
//! points themselves, so "latest values" is a key lookup and never a scan of the history.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TelemetryLatest::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(TelemetryLatest::DeviceId).uuid().not_null())
                    .col(
                        ColumnDef::new(TelemetryLatest::Key)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TelemetryLatest::Timestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(TelemetryLatest::Value).double().null())
                    .col(ColumnDef::new(TelemetryLatest::Unit).string_len(20).null())
                    .col(ColumnDef::new(TelemetryLatest::Quality).integer().null())
                    .col(
                        ColumnDef::new(TelemetryLatest::Metadata)
                            .json_binary()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TelemetryLatest::DeviceId)
                            .col(TelemetryLatest::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_telemetry_latest_device")
                            .from(TelemetryLatest::Table, TelemetryLatest::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(TelemetryLatest::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum TelemetryLatest {
    Table,
    DeviceId,
    Key,
    Timestamp,
    Value,
    Unit,
    Quality,
    Metadata,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
}
