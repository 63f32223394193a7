//! `/api/v1/reports`: telemetry and alert reports as CSV, Excel, PDF or ZIP (docs/API.md).
//!
//! `GET /reports/telemetry` and `GET /reports/alerts` answer the file at once: CSV streams as it
//! is read (any size up to `reports.max_points`); Excel, PDF and ZIP are written to a temporary
//! file first and are limited to `reports.max_sync_points` (larger ones run as jobs).

use actix_web::body::SizedStream;
use actix_web::http::header::{HeaderValue, CONTENT_DISPOSITION, LOCATION};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use insa_entities::{report_jobs as jobs, Role};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{ApiError, Code};
use crate::reports::{self, csv_out, job_request, Format, Kind, Progress, Report, ReportQuery};
use crate::state::AppState;
use crate::web::answers::JobResponse;
use crate::web::list::{list_query, Items, Listed, Paged};
use crate::web::query::{parse_query, KeyName};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The named reports first: `{id}` would take them otherwise.
    cfg.service(web::resource("/reports/telemetry").route(web::get().to(telemetry_report)))
        .service(web::resource("/reports/alerts").route(web::get().to(alert_report)))
        .service(
            web::resource("/reports")
                .route(web::get().to(list_jobs))
                .route(web::post().to(create_job)),
        )
        .service(web::resource("/reports/{id}").route(web::get().to(get_job)))
        .service(web::resource("/reports/{id}/download").route(web::get().to(download_job)));
}

/// The query string of a telemetry report (repeat `device_id` and `key` for several).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TelemetryReportParams {
    /// A device (repeatable) ...
    device_id: Option<Vec<uuid::Uuid>>,
    /// ... or every device of an area.
    area: Option<String>,
    /// RFC 3339; default: 24 h before `end`.
    #[param(format = DateTime)]
    start: Option<String>,
    /// RFC 3339, exclusive; default: now.
    #[param(format = DateTime)]
    end: Option<String>,
    /// Telemetry keys (repeatable); all when absent.
    #[param(inline, value_type = Option<Vec<KeyName>>)]
    key: Option<Vec<String>>,
    /// Aggregate per interval (`15m`, `1h`, `1d`) instead of raw points.
    #[param(pattern = "^([1-9][0-9]{0,4}[smh]|[1-9][0-9]{0,3}d)$")]
    interval: Option<String>,
    /// `avg` (default), `min`, `max`, `sum` or `count`.
    #[param(pattern = "^(avg|min|max|sum|count)$")]
    agg: Option<String>,
    /// `csv` (default), `xlsx`, `pdf` or `zip` (the three in one archive).
    #[param(pattern = "^(csv|xlsx|pdf|zip)$")]
    format: Option<String>,
}

/// The query string of an alert report (repeat `device_id` for several).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AlertReportParams {
    /// Devices (repeatable); all when absent.
    device_id: Option<Vec<uuid::Uuid>>,
    /// RFC 3339; default: 24 h before `end`.
    #[param(format = DateTime)]
    start: Option<String>,
    /// RFC 3339, exclusive; default: now.
    #[param(format = DateTime)]
    end: Option<String>,
    /// `info`, `warning` or `critical`.
    #[param(pattern = "^(info|warning|critical)$")]
    severity: Option<String>,
    /// `csv` (default), `xlsx`, `pdf` or `zip` (the three in one archive).
    #[param(pattern = "^(csv|xlsx|pdf|zip)$")]
    format: Option<String>,
}

/// Telemetry of devices over a period: a summary (per key: points, min, max, average; alerts
/// by severity) and the points, or aggregates with `interval`.
#[utoipa::path(get, path = "/api/v1/reports/telemetry", tag = "reports", params(TelemetryReportParams),
    responses(
        (status = 200, description = "The file, `Content-Disposition: attachment` with the period in its name"),
        (status = 400, description = "`invalid_query`"),
        (status = 404, description = "`device_not_found`"),
        (status = 422, description = "`report_too_large`: more than the limits allow"),
    ),
    security(("bearer" = [])))]
pub async fn telemetry_report(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    answer(&state, Kind::Telemetry, &req).await
}

/// Alerts raised over a period (optionally of some devices, of one severity).
#[utoipa::path(get, path = "/api/v1/reports/alerts", tag = "reports", params(AlertReportParams),
    responses(
        (status = 200, description = "The file, `Content-Disposition: attachment` with the period in its name"),
        (status = 400, description = "`invalid_query`"),
        (status = 422, description = "`report_too_large`"),
    ),
    security(("bearer" = [])))]
pub async fn alert_report(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    answer(&state, Kind::Alerts, &req).await
}

/// `attachment; filename="telemetry-report_2026-11-26_2026-11-27.csv"`
pub fn disposition(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

async fn answer(state: &AppState, kind: Kind, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let query: ReportQuery = parse_query(req)?;
    let format = query.format.unwrap_or(Format::Csv);
    let report = Report::resolve(&state.db, kind, &query, Utc::now()).await?;
    let contents = reports::measure(&state.db, &report).await?;
    reports::check_limits(&report, &contents, format, true, &state.settings.reports)?;
    metrics::counter!("insa_reports_total", "kind" => kind.as_str(), "format" => format.extension())
        .increment(1);
    let name = report.file_name(format);
    let mut response = HttpResponse::Ok();
    response
        .content_type(format.content_type())
        .insert_header((CONTENT_DISPOSITION, disposition(&name)));

    if format == Format::Csv {
        // Written as it is read; a full channel (a slow client) holds the writer back.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let db = state.db.clone();
        actix_web::rt::spawn(async move {
            let mut out = csv_out::Out::Stream(sender.clone());
            let written =
                csv_out::write(&db, &report, &contents, &mut out, &Progress::default()).await;
            if let Err(err) = written {
                tracing::warn!(error = %err, "a CSV report was cut short");
                let _ = sender
                    .send(Err(std::io::Error::other(err.to_string())))
                    .await;
            }
        });
        let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((chunk.map(actix_web::web::Bytes::from), receiver))
        });
        return Ok(response.streaming(body));
    }

    let dir = tempfile::tempdir().map_err(ApiError::internal)?;
    let path = dir.path().join(&name);
    reports::write(
        &state.db,
        &report,
        &contents,
        format,
        &path,
        &Progress::default(),
    )
    .await
    .map_err(ApiError::internal)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(ApiError::internal)?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    // The open file stays readable after its directory is removed.
    drop(dir);
    Ok(response.body(SizedStream::new(
        size,
        tokio_util::io::ReaderStream::new(file),
    )))
}

/// `POST /api/v1/reports`: `kind` and the fields of the query string of `GET /reports/{kind}`
/// (`device_id` and `key` as arrays). Unknown fields are refused.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct JobRequest {
    /// `telemetry` or `alerts`.
    #[schema(example = "telemetry")]
    kind: String,
    #[schema(value_type = Option<Vec<Uuid>>)]
    device_id: Option<Vec<Uuid>>,
    area: Option<String>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    key: Option<Vec<String>>,
    interval: Option<String>,
    agg: Option<String>,
    severity: Option<String>,
    /// `csv` (default), `xlsx`, `pdf` or `zip`.
    format: Option<String>,
}

impl Items for JobResponse {
    const FIELD: &'static str = "reports";
    const LIST: &'static str = "JobList";
}

/// `{reports, total, limit, offset}`.
pub type JobList = Listed<JobResponse>;

list_query! {
    pub struct JobQuery {}
}

/// Queue a report (any size up to `reports.max_points`); `202` with the job, then poll it.
#[utoipa::path(post, path = "/api/v1/reports", tag = "reports", request_body = JobRequest,
    responses(
        (status = 202, description = "Queued; `Location: /api/v1/reports/{id}`", body = JobResponse),
        (status = 400, description = "`invalid_query`"),
        (status = 404, description = "`device_not_found`"),
        (status = 422, description = "`report_too_large` or `validation_failed`"),
        (status = 429, description = "`too_many_report_jobs`: the caller's jobs queued or running are at `reports.max_queued_jobs_per_user`"),
    ),
    security(("bearer" = [])))]
pub async fn create_job(
    state: web::Data<AppState>,
    user: AuthUser,
    body: crate::body::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    let (kind, mut query) = job_request(body.into_inner())?;
    // Before anything is read for the report: a full queue costs one small count.
    let limit = state.settings.reports.max_queued_jobs_per_user;
    let waiting = jobs::Entity::find()
        .filter(jobs::Column::CreatedBy.eq(user.id))
        .filter(jobs::Column::Status.is_in(["queued", "running"]))
        .count(&state.db)
        .await?;
    if waiting >= limit {
        return Err(ApiError::new(
            Code::TooManyReportJobs,
            format!("you have {waiting} report jobs queued or running (at most {limit}); retry when one ends"),
        )
        .with_details(serde_json::json!({ "limit": limit }))
        .retry_after(10));
    }
    let now = Utc::now();
    let report = Report::resolve(&state.db, kind, &query, now).await?;
    // The period is fixed now: the job covers what was asked, whenever it runs.
    query.start = Some(report.start);
    query.end = Some(report.end);
    let format = query.format.unwrap_or(Format::Csv);
    let contents = reports::measure(&state.db, &report).await?;
    reports::check_limits(&report, &contents, format, false, &state.settings.reports)?;
    query.format = Some(format);
    let job = state
        .report_jobs
        .add(kind, &query, Some(contents.rows), Some(user.id), None)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((LOCATION, format!("/api/v1/reports/{}", job.id)))
        .json(JobResponse::from(job)))
}

/// Report jobs, newest first.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(JobQuery),
    responses((status = 200, body = JobList)), security(("bearer" = [])))]
pub async fn list_jobs(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<JobQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    let page = query.page()?;
    let select = jobs::Entity::find().order_by_desc(jobs::Column::CreatedAt);
    let listed = page.fetch(&state.db, select).await?;
    Ok(HttpResponse::Ok().json(listed.map(JobResponse::from)))
}

async fn find_job(state: &AppState, id: Uuid) -> Result<jobs::Model, ApiError> {
    jobs::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::ReportNotFound, format!("no report job with id {id}")))
}

/// A job: its status and progress.
#[utoipa::path(get, path = "/api/v1/reports/{id}", tag = "reports",
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobResponse), (status = 404, description = "`report_not_found`")),
    security(("bearer" = [])))]
pub async fn get_job(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(JobResponse::from(find_job(&state, id.into_inner()).await?)))
}

/// The finished job's file.
#[utoipa::path(get, path = "/api/v1/reports/{id}/download", tag = "reports",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, description = "`report_not_found`"),
        (status = 409, description = "`report_not_ready`: queued, running or failed"),
    ),
    security(("bearer" = [])))]
pub async fn download_job(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    let job = find_job(&state, id.into_inner()).await?;
    match job.status.as_str() {
        "done" => {}
        "failed" => {
            return Err(ApiError::new(
                Code::ReportNotReady,
                format!(
                    "the report failed: {}",
                    job.error.as_deref().unwrap_or("unknown")
                ),
            ))
        }
        _ => {
            let progress = JobResponse::from(job).progress;
            return Err(ApiError::new(
                Code::ReportNotReady,
                format!("the report is not ready ({progress} % written); GET /api/v1/reports/{{id}} shows its progress"),
            ));
        }
    }
    let format = Format::parse(&job.format).unwrap_or(Format::Csv);
    let path = state.report_jobs.file(job.id);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::new(Code::ReportNotFound, "the report's file is gone (expired)"))?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let name = job
        .file_name
        .unwrap_or_else(|| format!("report.{}", format.extension()));
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((CONTENT_DISPOSITION, disposition(&name)))
        .body(SizedStream::new(
            size,
            tokio_util::io::ReaderStream::new(file),
        )))
}
