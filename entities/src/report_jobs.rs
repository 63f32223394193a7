//! Reports generated in the background; the file is `data_dir/reports/{id}` until `expires_at`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "report_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `telemetry` or `alerts`.
    pub kind: String,
    /// `csv`, `xlsx`, `pdf` or `zip`.
    pub format: String,
    /// The report's query (devices, period, keys, aggregation, severity).
    pub query: Json,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// Rows the report holds (points, buckets or alerts), once measured.
    pub rows: Option<i64>,
    pub rows_done: i64,
    pub file_name: Option<String>,
    pub file_size: Option<i64>,
    pub error: Option<String>,
    pub created_by: Option<Uuid>,
    pub schedule_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
