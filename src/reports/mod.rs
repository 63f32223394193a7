//! Reports: telemetry and alerts over a period, as CSV, Excel, PDF, or a ZIP of the three.
//!
//! Memory stays bounded whatever the size: points are read page by page in time order (one
//! index scan per key, merged), CSV is written as it is read, Excel worksheets go row by row to
//! temporary files (rust_xlsxwriter's constant-memory mode), and the PDF holds summaries, the
//! alert list and charts of at most [`CHART_BUCKETS`] averaged points per key.

pub mod csv_out;
pub mod excel;
pub mod jobs;
pub mod pdf;
pub mod runner;
pub mod schedules;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};
use insa_entities::{alerts, devices, telemetry};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Select, Statement, Value as SqlValue,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use insa_domain::{FieldProblem, Severity};

use crate::query::{Function, Interval};
use crate::settings::ReportSettings;

/// Points per chart line in a PDF.
pub const CHART_BUCKETS: i64 = 300;
/// Rows read per query.
const PAGE: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Xlsx,
    Pdf,
    Zip,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "csv" => Some(Format::Csv),
            "xlsx" => Some(Format::Xlsx),
            "pdf" => Some(Format::Pdf),
            "zip" => Some(Format::Zip),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Pdf => "pdf",
            Format::Zip => "zip",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Pdf => "application/pdf",
            Format::Zip => "application/zip",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Telemetry,
    Alerts,
}

impl Kind {
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "telemetry" => Some(Kind::Telemetry),
            "alerts" => Some(Kind::Alerts),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Telemetry => "telemetry",
            Kind::Alerts => "alerts",
        }
    }
}

/// What a client asks for (query string of `GET /reports/{kind}`, body of `POST /reports`, or a
/// schedule's stored definition).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// One or more devices ...
    #[serde(default)]
    pub device_id: Vec<Uuid>,
    /// ... or every device of an area (telemetry).
    pub area: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// Keys to include (telemetry); all when empty.
    #[serde(default)]
    pub key: Vec<String>,
    /// Aggregate per interval (`15m`, `1h`, ...) with `agg` (default avg) instead of raw points.
    pub interval: Option<String>,
    pub agg: Option<String>,
    /// Alerts: only this severity.
    pub severity: Option<String>,
    /// `csv` (default), `xlsx`, `pdf` or `zip`.
    pub format: Option<Format>,
}

/// Aggregation of a telemetry report.
#[derive(Debug, Clone, Copy)]
pub struct Aggregation {
    pub interval: Interval,
    pub function: Function,
}

/// A report checked against the database: what it covers.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: Kind,
    /// The devices covered, by name; for an alerts report without a device filter, every device.
    pub devices: Vec<devices::Model>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub keys: Vec<String>,
    pub aggregation: Option<Aggregation>,
    pub severity: Option<String>,
    pub generated_at: DateTime<Utc>,
}

impl Report {
    /// Resolves and checks a query; `start`/`end` default to the 24 hours before `now`.
    pub async fn resolve(
        db: &DatabaseConnection,
        kind: Kind,
        query: &ReportQuery,
        now: DateTime<Utc>,
    ) -> Result<Report, Refused> {
        let end = query.end.unwrap_or(now);
        let start = query.start.unwrap_or(end - Duration::hours(24));
        if start >= end {
            return Err(bad("start must be before end"));
        }
        if query.key.len() > 100 {
            return Err(bad("at most 100 keys per report"));
        }
        let aggregation = match (&query.interval, &query.agg) {
            (None, None) => None,
            (None, Some(_)) => return Err(bad("agg needs an interval, e.g. interval=1h&agg=avg")),
            (Some(interval), agg) => {
                let interval = Interval::parse(interval).ok_or_else(|| {
                    bad("interval must be <n>s, <n>m, <n>h or <n>d with n at least 1, e.g. 1h")
                })?;
                let function = Function::parse(agg.as_deref().unwrap_or("avg"))
                    .ok_or_else(|| bad("agg must be avg, min, max, sum or count"))?;
                Some(Aggregation { interval, function })
            }
        };
        if kind == Kind::Alerts && (aggregation.is_some() || !query.key.is_empty()) {
            return Err(bad("key, interval and agg apply to telemetry reports"));
        }
        if kind == Kind::Telemetry && query.severity.is_some() {
            return Err(bad("severity applies to alert reports"));
        }
        if let Some(severity) = &query.severity {
            if insa_domain::Severity::parse(severity).is_none() {
                return Err(bad("severity must be info, warning or critical"));
            }
        }
        let devices = match (&query.area, query.device_id.is_empty()) {
            (Some(_), false) => return Err(bad("give device_id or area, not both")),
            (Some(area), true) => {
                let found = devices::Entity::find()
                    .filter(devices::Column::Area.eq(area.as_str()))
                    .order_by_asc(devices::Column::Name)
                    .all(db)
                    .await?;
                if found.is_empty() {
                    return Err(Refused::NoDevice(format!("no device in area {area}")));
                }
                found
            }
            (None, false) => {
                let mut found = devices::Entity::find()
                    .filter(devices::Column::Id.is_in(query.device_id.clone()))
                    .order_by_asc(devices::Column::Name)
                    .all(db)
                    .await?;
                if let Some(missing) = query
                    .device_id
                    .iter()
                    .find(|id| !found.iter().any(|d| d.id == **id))
                {
                    return Err(Refused::NoDevice(format!("no device with id {missing}")));
                }
                found.dedup_by_key(|d| d.id);
                found
            }
            (None, true) if kind == Kind::Alerts => {
                devices::Entity::find()
                    .order_by_asc(devices::Column::Name)
                    .all(db)
                    .await?
            }
            (None, true) => return Err(bad("give one or more device_id, or an area")),
        };
        Ok(Report {
            kind,
            devices,
            start,
            end,
            keys: query.key.clone(),
            aggregation,
            severity: query.severity.clone(),
            generated_at: now,
        })
    }

    /// `telemetry-report_2026-11-01_2026-11-27.xlsx`
    pub fn file_name(&self, format: Format) -> String {
        file_name(self.kind, self.start, self.end, format)
    }

    pub fn title(&self) -> String {
        match self.kind {
            Kind::Telemetry => "Telemetry report".into(),
            Kind::Alerts => "Alert report".into(),
        }
    }

    /// `2026-11-26 00:00 UTC to 2026-11-27 00:00 UTC`
    pub fn period(&self) -> String {
        format!(
            "{} to {}",
            self.start.format("%Y-%m-%d %H:%M UTC"),
            self.end.format("%Y-%m-%d %H:%M UTC")
        )
    }

    pub fn device_name(&self, id: Uuid) -> String {
        self.devices
            .iter()
            .find(|d| d.id == id)
            .map_or_else(|| id.to_string(), |d| d.name.clone())
    }

    fn device_ids(&self) -> Vec<Uuid> {
        self.devices.iter().map(|d| d.id).collect()
    }
}

/// `telemetry-report_2026-11-01_2026-11-27.xlsx`: the kind, the first and last day.
pub fn file_name(kind: Kind, start: DateTime<Utc>, end: DateTime<Utc>, format: Format) -> String {
    format!(
        "{}-report_{}_{}.{}",
        kind.as_str(),
        start.format("%Y-%m-%d"),
        end.format("%Y-%m-%d"),
        format.extension()
    )
}

fn bad(message: impl Into<String>) -> Refused {
    Refused::Query(message.into())
}

/// Splits the body of a report job (`kind` and the fields of a report's query string, `device_id`
/// and `key` as arrays) into its kind and its query, checked field by field.
pub fn job_request(body: serde_json::Value) -> Result<(Kind, ReportQuery), Refused> {
    let serde_json::Value::Object(mut fields) = body else {
        return Err(Refused::Field(FieldProblem::new(
            "body",
            "must be a JSON object",
        )));
    };
    let Some(kind) = fields
        .remove("kind")
        .as_ref()
        .and_then(|k| k.as_str())
        .and_then(Kind::parse)
    else {
        return Err(Refused::Field(FieldProblem::new(
            "kind",
            "is required: telemetry or alerts",
        )));
    };
    let query = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|err| Refused::Field(FieldProblem::new("body", err.to_string())))?;
    Ok((kind, query))
}

/// Per device and key over the period: points, numeric range and mean.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStats {
    pub device_id: Uuid,
    pub key: String,
    pub unit: Option<String>,
    /// Points, numeric or text.
    pub count: i64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
}

/// What a report holds, measured before it is written.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub stats: Vec<KeyStats>,
    /// Alerts by severity over the period (for the devices covered).
    pub alerts_by_severity: BTreeMap<Severity, u64>,
    /// Rows the report will write: points, buckets or alerts.
    pub rows: u64,
}

impl Contents {
    pub fn keys_of(&self, device: Uuid) -> Vec<&KeyStats> {
        self.stats
            .iter()
            .filter(|s| s.device_id == device)
            .collect()
    }
}

/// The n-th bound value: `$n` on PostgreSQL, `?n` on SQLite.
fn mark(db: &impl ConnectionTrait, n: usize) -> String {
    match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// Measures a report: per-key statistics (telemetry), alert counts, rows to write.
pub async fn measure(db: &DatabaseConnection, report: &Report) -> Result<Contents, DbErr> {
    let mut contents = Contents {
        alerts_by_severity: alert_counts(db, report).await?,
        ..Contents::default()
    };
    match report.kind {
        Kind::Alerts => contents.rows = contents.alerts_by_severity.values().sum(),
        Kind::Telemetry => {
            contents.stats = key_stats(db, report).await?;
            contents.rows = contents
                .stats
                .iter()
                .map(|s| match report.aggregation {
                    Some(a) => (s.count as u64)
                        .min(crate::query::buckets(report.end - report.start, a.interval) as u64),
                    None => s.count as u64,
                })
                .sum();
        }
    }
    Ok(contents)
}

async fn key_stats(db: &DatabaseConnection, report: &Report) -> Result<Vec<KeyStats>, DbErr> {
    let mut values: Vec<SqlValue> = vec![report.start.into(), report.end.into()];
    let devices: Vec<String> = report
        .devices
        .iter()
        .map(|d| {
            values.push(d.id.into());
            mark(db, values.len())
        })
        .collect();
    let mut sql = format!(
        "SELECT device_id, key, MAX(unit) AS unit, COUNT(*) AS n, \
         CAST(MIN(value) AS DOUBLE PRECISION) AS low, CAST(MAX(value) AS DOUBLE PRECISION) AS high, \
         CAST(AVG(value) AS DOUBLE PRECISION) AS mean FROM telemetry \
         WHERE timestamp >= {} AND timestamp < {} AND device_id IN ({})",
        mark(db, 1),
        mark(db, 2),
        devices.join(", ")
    );
    if !report.keys.is_empty() {
        let keys: Vec<String> = report
            .keys
            .iter()
            .map(|k| {
                values.push(k.clone().into());
                mark(db, values.len())
            })
            .collect();
        sql.push_str(&format!(" AND key IN ({})", keys.join(", ")));
    }
    sql.push_str(" GROUP BY device_id, key ORDER BY key");
    let rows = db
        .query_all(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    let mut stats = Vec::with_capacity(rows.len());
    for row in rows {
        stats.push(KeyStats {
            device_id: row.try_get("", "device_id")?,
            key: row.try_get("", "key")?,
            unit: row.try_get("", "unit")?,
            count: row.try_get("", "n")?,
            min: row.try_get("", "low")?,
            max: row.try_get("", "high")?,
            avg: row.try_get("", "mean")?,
        });
    }
    // Devices in the report's order (by name), keys by name within each.
    let order: Vec<Uuid> = report.device_ids();
    stats.sort_by_key(|s| order.iter().position(|id| *id == s.device_id));
    Ok(stats)
}

fn alert_filter(report: &Report) -> Condition {
    let mut filter = Condition::all()
        .add(alerts::Column::CreatedAt.gte(report.start))
        .add(alerts::Column::CreatedAt.lt(report.end))
        .add(alerts::Column::DeviceId.is_in(report.device_ids()));
    if let Some(severity) = &report.severity {
        filter = filter.add(alerts::Column::Severity.eq(severity.as_str()));
    }
    filter
}

async fn alert_counts(
    db: &DatabaseConnection,
    report: &Report,
) -> Result<BTreeMap<Severity, u64>, DbErr> {
    let counts: Vec<(Severity, i64)> = alerts::Entity::find()
        .select_only()
        .column(alerts::Column::Severity)
        .column_as(alerts::Column::Id.count(), "n")
        .filter(alert_filter(report))
        .group_by(alerts::Column::Severity)
        .into_tuple()
        .all(db)
        .await?;
    Ok(counts
        .into_iter()
        .map(|(severity, n)| (severity, n.max(0) as u64))
        .collect())
}

/// The rows of a query in (time, id) order, `PAGE` at a time: each page starts after the last row
/// read — `time >= t` bounds the index scan, `time > t OR id > i` skips what was already read.
struct Keyset<E: EntityTrait> {
    select: Select<E>,
    time: E::Column,
    id: E::Column,
    /// The (time, id) of a row.
    key: fn(&E::Model) -> (SqlValue, SqlValue),
    after: Option<(SqlValue, SqlValue)>,
    buffer: VecDeque<E::Model>,
    done: bool,
}

impl<E: EntityTrait> Keyset<E> {
    fn new(
        select: Select<E>,
        time: E::Column,
        id: E::Column,
        key: fn(&E::Model) -> (SqlValue, SqlValue),
    ) -> Self {
        Self {
            select,
            time,
            id,
            key,
            after: None,
            buffer: VecDeque::new(),
            done: false,
        }
    }

    /// The next row, reading a page when the one in hand is used up.
    async fn front(&mut self, db: &DatabaseConnection) -> Result<Option<&E::Model>, DbErr> {
        if self.buffer.is_empty() && !self.done {
            let mut select = self.select.clone();
            if let Some((at, id)) = self.after.clone() {
                select = select.filter(self.time.gte(at.clone())).filter(
                    Condition::any()
                        .add(self.time.gt(at.clone()))
                        .add(Condition::all().add(self.time.eq(at)).add(self.id.gt(id))),
                );
            }
            let page = select
                .order_by_asc(self.time)
                .order_by_asc(self.id)
                .limit(PAGE)
                .all(db)
                .await?;
            self.done = (page.len() as u64) < PAGE;
            self.after = page.last().map(self.key);
            self.buffer.extend(page);
        }
        Ok(self.buffer.front())
    }

    fn pop(&mut self) -> Option<E::Model> {
        self.buffer.pop_front()
    }
}

/// The report's alerts, oldest first.
pub struct AlertRows(Keyset<alerts::Entity>);

impl AlertRows {
    pub fn new(report: &Report) -> Self {
        AlertRows(Keyset::new(
            alerts::Entity::find().filter(alert_filter(report)),
            alerts::Column::CreatedAt,
            alerts::Column::Id,
            |a| (a.created_at.into(), a.id.into()),
        ))
    }

    pub async fn next(&mut self, db: &DatabaseConnection) -> Result<Option<alerts::Model>, DbErr> {
        self.0.front(db).await?;
        Ok(self.0.pop())
    }
}

/// One row of a telemetry report: a point, or an aggregate bucket (with `count`).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub timestamp: DateTime<Utc>,
    pub key: String,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub quality: Option<i32>,
    pub text: Option<String>,
    /// Points in the bucket (aggregated reports).
    pub count: Option<i64>,
}

/// A device's rows in time order.
pub struct DeviceRows(Source);

enum Source {
    /// Raw points: one index scan per key (the (device, key, timestamp) index serves it), merged.
    Points(Vec<Keyset<telemetry::Entity>>),
    /// Aggregate buckets (bounded: at most the buckets of the period per key).
    Buckets(VecDeque<Row>),
}

impl DeviceRows {
    pub async fn open(
        db: &DatabaseConnection,
        report: &Report,
        contents: &Contents,
        device_id: Uuid,
    ) -> Result<DeviceRows, DbErr> {
        let stats = contents.keys_of(device_id);
        match report.aggregation {
            None => Ok(DeviceRows(Source::Points(
                stats
                    .iter()
                    .map(|s| {
                        Keyset::new(
                            telemetry::Entity::find()
                                .filter(telemetry::Column::DeviceId.eq(device_id))
                                .filter(telemetry::Column::Key.eq(s.key.as_str()))
                                .filter(telemetry::Column::Timestamp.gte(report.start))
                                .filter(telemetry::Column::Timestamp.lt(report.end)),
                            telemetry::Column::Timestamp,
                            telemetry::Column::Id,
                            |p| (p.timestamp.into(), p.id.into()),
                        )
                    })
                    .collect(),
            ))),
            Some(aggregation) => {
                let keys: Vec<String> = stats.iter().map(|s| s.key.clone()).collect();
                let buckets = crate::query::aggregate(
                    db,
                    device_id,
                    &keys,
                    aggregation.interval,
                    aggregation.function,
                    (report.start, report.end),
                    true,
                )
                .await?;
                Ok(DeviceRows(Source::Buckets(
                    buckets
                        .into_iter()
                        .map(|b| Row {
                            unit: stats
                                .iter()
                                .find(|s| s.key == b.key)
                                .and_then(|s| s.unit.clone()),
                            timestamp: b.timestamp,
                            key: b.key,
                            value: b.value,
                            quality: None,
                            text: None,
                            count: Some(b.count),
                        })
                        .collect(),
                )))
            }
        }
    }

    pub async fn next(&mut self, db: &DatabaseConnection) -> Result<Option<Row>, DbErr> {
        let keys = match &mut self.0 {
            Source::Buckets(rows) => return Ok(rows.pop_front()),
            Source::Points(keys) => keys,
        };
        // The earliest of each key's next point.
        let mut earliest: Option<(usize, (DateTime<Utc>, i64))> = None;
        for (i, key) in keys.iter_mut().enumerate() {
            if let Some(point) = key.front(db).await? {
                let at = (point.timestamp, point.id);
                if earliest.is_none_or(|(_, best)| at < best) {
                    earliest = Some((i, at));
                }
            }
        }
        let next = earliest.and_then(|(i, _)| keys[i].pop());
        Ok(next.map(|point| Row {
            text: point
                .metadata
                .as_ref()
                .and_then(|m| m.get("text"))
                .and_then(|t| t.as_str())
                .map(str::to_string),
            timestamp: point.timestamp,
            key: point.key,
            value: point.value,
            unit: point.unit,
            quality: point.quality,
            count: None,
        }))
    }
}

/// Rows written so far, for a job's progress figure.
#[derive(Debug, Default)]
pub struct Progress {
    pub rows: AtomicU64,
}

impl Progress {
    pub fn add(&self, n: u64) {
        self.rows.fetch_add(n, Ordering::Relaxed);
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    #[error("excel: {0}")]
    Excel(#[from] rust_xlsxwriter::XlsxError),
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("{0}")]
    Other(String),
}

/// Refuses a report beyond the limits: any format over `max_points` (or `max_alerts`), and
/// Excel/PDF/ZIP answered at once over `max_sync_points`.
pub fn check_limits(
    report: &Report,
    contents: &Contents,
    format: Format,
    at_once: bool,
    limits: &ReportSettings,
) -> Result<(), Refused> {
    let (limit, what) = match report.kind {
        Kind::Alerts => (limits.max_alerts, "alerts"),
        Kind::Telemetry => (limits.max_points, "points"),
    };
    if contents.rows > limit {
        let advice = match report.kind {
            Kind::Telemetry => "aggregate it (interval=1h&agg=avg) or shorten the period",
            Kind::Alerts => "filter by severity or device, or shorten the period",
        };
        return Err(Refused::TooLarge {
            message: format!(
                "the report holds {} {what}, more than the {limit} allowed; {advice}",
                contents.rows
            ),
            rows: contents.rows,
            limit,
            at_once: false,
        });
    }
    if at_once
        && format != Format::Csv
        && report.kind == Kind::Telemetry
        && contents.rows > limits.max_sync_points
    {
        return Err(Refused::TooLarge {
            message: format!(
                "the report holds {} points, more than the {} an Excel, PDF or ZIP report answers at once; run it in the background with POST /api/v1/reports, or download it as CSV",
                contents.rows, limits.max_sync_points
            ),
            rows: contents.rows,
            limit: limits.max_sync_points,
            at_once: true,
        });
    }
    Ok(())
}

/// Why a report cannot be made as asked. Shown (and recorded by a failed job) as the API's code
/// for it and the message, e.g. `report_too_large: the report holds ...`.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The query does not hold together.
    #[error("invalid_query: {0}")]
    Query(String),
    /// A field of a job's body is wrong.
    #[error("validation_failed: {}: {}", .0.field, .0.message)]
    Field(FieldProblem),
    /// A device asked for (or any of an area) does not exist.
    #[error("device_not_found: {0}")]
    NoDevice(String),
    /// More rows than `limit`; `at_once`: the limit of an Excel, PDF or ZIP report answered at
    /// once, not of every report.
    #[error("report_too_large: {message}")]
    TooLarge {
        message: String,
        rows: u64,
        limit: u64,
        at_once: bool,
    },
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// Writes the report as `format` into `path`.
pub async fn write(
    db: &DatabaseConnection,
    report: &Report,
    contents: &Contents,
    format: Format,
    path: &Path,
    progress: &Progress,
) -> Result<(), ReportError> {
    // Owner-only from the start; each writer below truncates and fills it, keeping the mode.
    crate::private_files::private_file(path)?;
    match format {
        Format::Csv => {
            let file = tokio::fs::File::create(path).await?;
            let mut out = csv_out::Out::File(tokio::io::BufWriter::new(file));
            csv_out::write(db, report, contents, &mut out, progress).await?;
            out.finish().await?;
        }
        Format::Xlsx => excel::write(db, report, contents, path, progress).await?,
        Format::Pdf => {
            let bytes = pdf::write(db, report, contents).await?;
            tokio::fs::write(path, bytes).await?;
        }
        Format::Zip => {
            let dir = tempfile::tempdir()?;
            let mut parts = Vec::new();
            for part in [Format::Xlsx, Format::Pdf, Format::Csv] {
                let file = dir.path().join(report.file_name(part));
                Box::pin(write(db, report, contents, part, &file, progress)).await?;
                parts.push(file);
            }
            let target = path.to_path_buf();
            tokio::task::spawn_blocking(move || zip_files(&parts, &target))
                .await
                .map_err(|err| ReportError::Other(format!("zip task: {err}")))??;
        }
    }
    Ok(())
}

/// A ZIP (deflate) of `files` under their own names, copied through (constant memory).
fn zip_files(files: &[std::path::PathBuf], target: &Path) -> Result<(), ReportError> {
    let mut archive = zip::ZipWriter::new(std::fs::File::create(target)?);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ReportError::Other("a part has no file name".into()))?;
        archive.start_file(name, options)?;
        std::io::copy(&mut std::fs::File::open(file)?, &mut archive)?;
    }
    archive.finish()?;
    Ok(())
}
