//! Report jobs: `POST /api/v1/reports` queues one; the runner generates queued jobs (at most
//! `reports.max_running_jobs` at once, oldest first) into `data_dir/reports/{id}`, recording the
//! rows written as it goes, and removes files (and their jobs) `reports.keep_hours` after they
//! finish. A job interrupted by a stop is queued again at the next start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use chrono::Utc;
use insa_entities::report_jobs as jobs;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::{Format, Kind, Progress, Report, ReportError, ReportQuery};
use crate::state::AppState;

/// How often the runner looks for work and expired files, besides being woken.
const TICK: Duration = Duration::from_secs(2);
/// How often a running job's progress is recorded.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Where job files live.
pub fn dir(state: &AppState) -> PathBuf {
    state.settings.data_dir.join("reports")
}

pub fn file(state: &AppState, id: uuid::Uuid) -> PathBuf {
    dir(state).join(id.to_string())
}

/// Queues a report (its query holding its period and format) and wakes the runner.
pub async fn queue(
    state: &AppState,
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
    .insert(&state.db)
    .await?;
    state.report_jobs.notify_one();
    Ok(job)
}

/// Starts the runner on the current arbiter.
pub fn start(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        if let Err(err) = requeue_interrupted(&state).await {
            tracing::warn!(error = %err, "report jobs: cannot requeue interrupted jobs");
        }
        loop {
            if let Err(err) = super::schedules::run_due(&state).await {
                tracing::warn!(error = %err, "report schedules: cannot run");
            }
            if let Err(err) = run_due(&state).await {
                tracing::warn!(error = %err, "report jobs: cannot read the queue");
            }
            if let Err(err) = remove_expired(&state).await {
                tracing::warn!(error = %err, "report jobs: cannot remove expired files");
            }
            tokio::select! {
                () = state.report_jobs.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

async fn requeue_interrupted(state: &AppState) -> Result<(), sea_orm::DbErr> {
    jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, "queued".into())
        .col_expr(jobs::Column::RowsDone, 0i64.into())
        .filter(jobs::Column::Status.eq("running"))
        .exec(&state.db)
        .await?;
    Ok(())
}

async fn run_due(state: &web::Data<AppState>) -> Result<(), sea_orm::DbErr> {
    let running = jobs::Entity::find()
        .filter(jobs::Column::Status.eq("running"))
        .count(&state.db)
        .await? as usize;
    let room = state
        .settings
        .reports
        .max_running_jobs
        .saturating_sub(running);
    if room == 0 {
        return Ok(());
    }
    let queued = jobs::Entity::find()
        .filter(jobs::Column::Status.eq("queued"))
        .order_by_asc(jobs::Column::CreatedAt)
        .limit(room as u64)
        .all(&state.db)
        .await?;
    for job in queued {
        // Claimed only if still queued (another runner may not take it twice).
        let claimed = jobs::Entity::update_many()
            .col_expr(jobs::Column::Status, "running".into())
            .col_expr(jobs::Column::StartedAt, Utc::now().into())
            .filter(jobs::Column::Id.eq(job.id))
            .filter(jobs::Column::Status.eq("queued"))
            .exec(&state.db)
            .await?;
        if claimed.rows_affected == 1 {
            let state = state.clone();
            actix_web::rt::spawn(async move {
                let id = job.id;
                let outcome = run(&state, &job).await;
                if let Err(err) = finish(&state, job, outcome).await {
                    tracing::warn!(job = %id, error = %err, "report jobs: cannot record the outcome");
                }
                state.report_jobs.notify_one();
            });
        }
    }
    Ok(())
}

/// What a finished job wrote.
struct Written {
    bytes: u64,
    rows: u64,
}

/// Generates a job's file.
async fn run(state: &AppState, job: &jobs::Model) -> Result<Written, ReportError> {
    let query: ReportQuery = serde_json::from_value(job.query.clone())
        .map_err(|err| ReportError::Other(format!("stored query: {err}")))?;
    let kind = Kind::parse(&job.kind)
        .ok_or_else(|| ReportError::Other(format!("unknown kind {}", job.kind)))?;
    let format = Format::parse(&job.format)
        .ok_or_else(|| ReportError::Other(format!("unknown format {}", job.format)))?;
    let report = Report::resolve(&state.db, kind, &query, job.created_at)
        .await
        .map_err(|err| ReportError::Other(err.to_string()))?;
    let contents = super::measure(&state.db, &report).await?;
    // Checked when queued; a schedule's period may have grown past the limits since.
    super::check_limits(&report, &contents, format, false, &state.settings.reports)
        .map_err(|err| ReportError::Other(err.to_string()))?;
    let mut row = job.clone().into_active_model();
    row.rows = Set(Some(contents.rows as i64));
    row.update(&state.db).await?;

    let folder = dir(state);
    tokio::task::spawn_blocking(move || crate::private_files::private_dir(&folder))
        .await
        .map_err(|err| ReportError::Other(format!("reports folder: {err}")))??;
    let target = file(state, job.id);
    let partial = target.with_extension("part");
    let progress = Arc::new(Progress::default());
    let recorder = {
        let (db, progress, id) = (state.db.clone(), progress.clone(), job.id);
        actix_web::rt::spawn(async move {
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
    let written = super::write(&state.db, &report, &contents, format, &partial, &progress).await;
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

async fn finish(
    state: &AppState,
    job: jobs::Model,
    outcome: Result<Written, ReportError>,
) -> Result<(), sea_orm::DbErr> {
    let (id, now) = (job.id, Utc::now());
    let mut row = job.into_active_model();
    row.finished_at = Set(Some(now));
    let hours = state.settings.reports.keep_hours.min(24 * 365) as i64;
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
    let finished = row.update(&state.db).await?;
    super::schedules::email_finished(state, &finished).await
}

async fn remove_expired(state: &AppState) -> Result<(), sea_orm::DbErr> {
    let expired = jobs::Entity::find()
        .filter(jobs::Column::ExpiresAt.lte(Utc::now()))
        .all(&state.db)
        .await?;
    for job in expired {
        let _ = tokio::fs::remove_file(file(state, job.id)).await;
        jobs::Entity::delete_by_id(job.id).exec(&state.db).await?;
    }
    Ok(())
}
