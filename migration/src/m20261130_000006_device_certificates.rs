//! Device certificates issued by the platform's CA: one row per certificate (never its private
//! key), revoked by setting `revoked_at`; deleting the device deletes its rows (and the platform
//! stops accepting them).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DeviceCertificates {
    Table,
    Id,
    DeviceId,
    Serial,
    FingerprintSha256,
    KeySource,
    NotBefore,
    NotAfter,
    CreatedBy,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
}

fn time(name: impl IntoIden, null: bool) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    column.timestamp_with_time_zone();
    if null {
        column.null();
    } else {
        column.not_null();
    }
    column
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeviceCertificates::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(DeviceCertificates::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DeviceCertificates::DeviceId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeviceCertificates::Serial)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(DeviceCertificates::FingerprintSha256)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeviceCertificates::KeySource)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(time(DeviceCertificates::NotBefore, false))
                    .col(time(DeviceCertificates::NotAfter, false))
                    .col(ColumnDef::new(DeviceCertificates::CreatedBy).uuid().null())
                    .col(time(DeviceCertificates::CreatedAt, false))
                    .col(time(DeviceCertificates::RevokedAt, true))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DeviceCertificates::Table, DeviceCertificates::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_device_certificates_device")
                    .table(DeviceCertificates::Table)
                    .col(DeviceCertificates::DeviceId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeviceCertificates::Table).to_owned())
            .await
    }
}
