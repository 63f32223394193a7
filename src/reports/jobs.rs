//! Report jobs: `POST /api/v1/reports` (and a schedule's run) queues one; the runner
//! (`runner.rs`) claims queued jobs, generates each into `data_dir/reports/{id}` recording the
//! rows written as it goes, records how it ended, and removes files (and their jobs)
//! `reports.keep_hours` after they finish. A job interrupted by a stop is queued again at the
//! next start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use insa_entities::report_jobs as jobs;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Format, Kind, Progress, Report, ReportError, ReportQuery};
use crate::settings::ReportSettings;

/// How often a running job's progress is recorded.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The queue of report jobs, and what running them takes: the database, where the files go,
/// the limits, and the runner's wake-up call. Cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    /// Where jobs (and the data of their reports) are.
    pub db: DatabaseConnection,
    /// `data_dir/reports`: where job files live.
    pub dir: PathBuf,
    /// The limits a job is generated within.
    pub settings: ReportSettings,
    /// Wakes the runner: a job was queued or ended.
    pub wake: Arc<Notify>,
}

impl JobQueue {
    /// The queue in `db`, with the files under `data_dir`.
    pub fn new(db: DatabaseConnection, data_dir: &Path, settings: &ReportSettings) -> JobQueue {
        JobQueue {
            db,
            dir: data_dir.join("reports"),
            settings: settings.clone(),
            wake: Arc::default(),
        }
    }

    /// Where job `id`'s file is (once done).
    pub fn file(&self, id: Uuid) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Queues a report (its query holding its period and format) and wakes the runner.
    pub async fn add(
        &self,
        kind: Kind,
        query: &ReportQuery,
        rows: Option<u64>,
        created_by: Option<Uuid>,
        schedule_id: Option<Uuid>,
    ) -> Result<jobs::Model, DbErr> {
        let format = query.format.unwrap_or(Format::Csv);
        let now = Utc::now();
        let name = super::file_name(
            kind,
            query.start.unwrap_or(now),
            query.end.unwrap_or(now),
            format,
        );
        let job = jobs::ActiveModel {
            id: Set(Uuid::new_v4()),
            kind: Set(kind.as_str().into()),
            format: Set(format.extension().into()),
            query: Set(serde_json::to_value(query).map_err(|err| DbErr::Custom(err.to_string()))?),
            status: Set("queued".into()),
            rows: Set(rows.map(|r| r as i64)),
            rows_done: Set(0),
            file_name: Set(Some(name)),
            file_size: Set(None),
            error: Set(None),
            created_by: Set(created_by),
            schedule_id: Set(schedule_id),
            created_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
            expires_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        self.wake.notify_one();
        Ok(job)
    }
}

/// Queues again the jobs a stop interrupted.
pub(super) async fn requeue_interrupted(queue: &JobQueue) -> Result<(), DbErr> {
    jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, "queued".into())
        .col_expr(jobs::Column::RowsDone, 0i64.into())
        .filter(jobs::Column::Status.eq("running"))
        .exec(&queue.db)
        .await?;
    Ok(())
}

/// The oldest queued jobs there is room for (`reports.max_running_jobs` running at once).
pub(super) async fn due(queue: &JobQueue) -> Result<Vec<jobs::Model>, DbErr> {
    let running = jobs::Entity::find()
        .filter(jobs::Column::Status.eq("running"))
        .count(&queue.db)
        .await? as usize;
    let room = queue.settings.max_running_jobs.saturating_sub(running);
    if room == 0 {
        return Ok(Vec::new());
    }
    jobs::Entity::find()
        .filter(jobs::Column::Status.eq("queued"))
        .order_by_asc(jobs::Column::CreatedAt)
        .limit(room as u64)
        .all(&queue.db)
        .await
}

/// Marks a job running if it is still queued (another runner may not take it twice); whether
/// this one did.
pub(super) async fn claim(queue: &JobQueue, job: &jobs::Model) -> Result<bool, DbErr> {
    let claimed = jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, "running".into())
        .col_expr(jobs::Column::StartedAt, Utc::now().into())
        .filter(jobs::Column::Id.eq(job.id))
        .filter(jobs::Column::Status.eq("queued"))
        .exec(&queue.db)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// What a finished job wrote.
pub(super) struct Written {
    bytes: u64,
    rows: u64,
}

/// Generates a job's file.
pub(super) async fn run(queue: &JobQueue, job: &jobs::Model) -> Result<Written, ReportError> {
    let query: ReportQuery = serde_json::from_value(job.query.clone())
        .map_err(|err| ReportError::Other(format!("stored query: {err}")))?;
    let kind = Kind::parse(&job.kind)
        .ok_or_else(|| ReportError::Other(format!("unknown kind {}", job.kind)))?;
    let format = Format::parse(&job.format)
        .ok_or_else(|| ReportError::Other(format!("unknown format {}", job.format)))?;
    let report = Report::resolve(&queue.db, kind, &query, job.created_at)
        .await
        .map_err(|err| ReportError::Other(err.to_string()))?;
    let contents = super::measure(&queue.db, &report).await?;
    // Checked when queued; a schedule's period may have grown past the limits since.
    super::check_limits(&report, &contents, format, false, &queue.settings)
        .map_err(|err| ReportError::Other(err.to_string()))?;
    let mut row = job.clone().into_active_model();
    row.rows = Set(Some(contents.rows as i64));
    row.update(&queue.db).await?;

    let folder = queue.dir.clone();
    tokio::task::spawn_blocking(move || crate::private_files::private_dir(&folder))
        .await
        .map_err(|err| ReportError::Other(format!("reports folder: {err}")))??;
    let target = queue.file(job.id);
    let partial = target.with_extension("part");
    let progress = Arc::new(Progress::default());
    let recorder = {
        let (db, progress, id) = (queue.db.clone(), progress.clone(), job.id);
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let _ = jobs::Entity::update_many()
                    .col_expr(jobs::Column::RowsDone, (progress.rows() as i64).into())
                    .filter(jobs::Column::Id.eq(id))
                    .exec(&db)
                    .await;
            }
        })
    };
    let written = super::write(&queue.db, &report, &contents, format, &partial, &progress).await;
    recorder.abort();
    if let Err(err) = written {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(err);
    }
    tokio::fs::rename(&partial, &target).await?;
    metrics::counter!("insa_reports_total", "kind" => kind.as_str(), "format" => format.extension())
        .increment(1);
    Ok(Written {
        bytes: tokio::fs::metadata(&target).await?.len(),
        rows: contents.rows,
    })
}

/// Records how a job ended; the finished job.
pub(super) async fn finish(
    queue: &JobQueue,
    job: jobs::Model,
    outcome: Result<Written, ReportError>,
) -> Result<jobs::Model, DbErr> {
    let (id, now) = (job.id, Utc::now());
    let mut row = job.into_active_model();
    row.finished_at = Set(Some(now));
    let hours = queue.settings.keep_hours.min(24 * 365) as i64;
    row.expires_at = Set(Some(now + chrono::Duration::hours(hours)));
    match outcome {
        Ok(written) => {
            row.status = Set("done".into());
            row.file_size = Set(Some(written.bytes as i64));
            row.rows = Set(Some(written.rows as i64));
            row.rows_done = Set(written.rows as i64);
        }
        Err(err) => {
            tracing::warn!(job = %id, error = %err, "report job failed");
            row.status = Set("failed".into());
            row.error = Set(Some(err.to_string()));
        }
    }
    row.update(&queue.db).await
}

/// Removes the files (and the jobs) past their `expires_at`.
pub(super) async fn remove_expired(queue: &JobQueue) -> Result<(), DbErr> {
    let expired = jobs::Entity::find()
        .filter(jobs::Column::ExpiresAt.lte(Utc::now()))
        .all(&queue.db)
        .await?;
    for job in expired {
        let _ = tokio::fs::remove_file(queue.file(job.id)).await;
        jobs::Entity::delete_by_id(job.id).exec(&queue.db).await?;
    }
    Ok(())
}
