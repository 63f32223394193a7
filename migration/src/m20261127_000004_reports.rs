//! Reports: jobs generated in the background (their files live in `data_dir/reports`) and
//! schedules that email a report to recipients daily, weekly or monthly.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn time(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .null()
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReportSchedules::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ReportSchedules::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ReportSchedules::Name)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportSchedules::Kind)
                            .string_len(20)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportSchedules::Format)
                            .string_len(10)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportSchedules::Query)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportSchedules::Frequency)
                            .string_len(10)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ReportSchedules::Hour).integer().not_null())
                    .col(ColumnDef::new(ReportSchedules::Weekday).integer().null())
                    .col(ColumnDef::new(ReportSchedules::Day).integer().null())
                    .col(
                        ColumnDef::new(ReportSchedules::Recipients)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportSchedules::Enabled)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(
                        ColumnDef::new(ReportSchedules::NextRunAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(time(ReportSchedules::LastRunAt))
                    .col(ColumnDef::new(ReportSchedules::LastJobId).uuid().null())
                    .col(ColumnDef::new(ReportSchedules::CreatedBy).uuid().null())
                    .col(
                        ColumnDef::new(ReportSchedules::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReportSchedules::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_report_schedules_user")
                            .from(ReportSchedules::Table, ReportSchedules::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_report_schedules_due")
                    .table(ReportSchedules::Table)
                    .col(ReportSchedules::Enabled)
                    .col(ReportSchedules::NextRunAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReportJobs::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ReportJobs::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ReportJobs::Kind).string_len(20).not_null())
                    .col(ColumnDef::new(ReportJobs::Format).string_len(10).not_null())
                    .col(ColumnDef::new(ReportJobs::Query).json_binary().not_null())
                    .col(
                        ColumnDef::new(ReportJobs::Status)
                            .string_len(20)
                            .not_null()
                            .default("queued"),
                    )
                    .col(ColumnDef::new(ReportJobs::Rows).big_integer().null())
                    .col(
                        ColumnDef::new(ReportJobs::RowsDone)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(ReportJobs::FileName).string_len(255).null())
                    .col(ColumnDef::new(ReportJobs::FileSize).big_integer().null())
                    .col(ColumnDef::new(ReportJobs::Error).text().null())
                    .col(ColumnDef::new(ReportJobs::CreatedBy).uuid().null())
                    .col(ColumnDef::new(ReportJobs::ScheduleId).uuid().null())
                    .col(
                        ColumnDef::new(ReportJobs::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(time(ReportJobs::StartedAt))
                    .col(time(ReportJobs::FinishedAt))
                    .col(time(ReportJobs::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_report_jobs_user")
                            .from(ReportJobs::Table, ReportJobs::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_report_jobs_schedule")
                            .from(ReportJobs::Table, ReportJobs::ScheduleId)
                            .to(ReportSchedules::Table, ReportSchedules::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_report_jobs_status")
                    .table(ReportJobs::Table)
                    .col(ReportJobs::Status)
                    .col(ReportJobs::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReportJobs::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ReportSchedules::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ReportJobs {
    Table,
    Id,
    Kind,
    Format,
    Query,
    Status,
    Rows,
    RowsDone,
    FileName,
    FileSize,
    Error,
    CreatedBy,
    ScheduleId,
    CreatedAt,
    StartedAt,
    FinishedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ReportSchedules {
    Table,
    Id,
    Name,
    Kind,
    Format,
    Query,
    Frequency,
    Hour,
    Weekday,
    Day,
    Recipients,
    Enabled,
    NextRunAt,
    LastRunAt,
    LastJobId,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}
