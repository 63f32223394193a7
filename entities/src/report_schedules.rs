//! Reports emailed on a schedule: daily, weekly or monthly at an hour (UTC).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "report_schedules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// `telemetry` or `alerts`.
    pub kind: String,
    /// `csv`, `xlsx`, `pdf` or `zip`.
    pub format: String,
    /// The report's query without its period (each run covers the period just ended).
    pub query: Json,
    /// `daily`, `weekly` or `monthly`.
    pub frequency: String,
    /// Hour of the day (UTC, 0-23) the report is sent.
    pub hour: i32,
    /// Weekly: 1 (Monday) to 7 (Sunday).
    pub weekday: Option<i32>,
    /// Monthly: day of the month, 1 to 28.
    pub day: Option<i32>,
    /// Email addresses.
    pub recipients: Json,
    pub enabled: bool,
    pub next_run_at: DateTimeUtc,
    pub last_run_at: Option<DateTimeUtc>,
    pub last_job_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
