//! `/api/v1/reports`: telemetry and alert reports as CSV, Excel, PDF or ZIP (docs/API.md).
//!
//! `GET /reports/telemetry` and `GET /reports/alerts` answer the file at once: CSV streams as it
//! is read (any size up to `reports.max_points`); Excel, PDF and ZIP are written to a temporary
//! file first and are limited to `reports.max_sync_points` (larger ones run as jobs).

use actix_web::body::SizedStream;
use actix_web::http::header::{HeaderValue, CONTENT_DISPOSITION};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use insa_entities::Role;
use utoipa::IntoParams;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::reports::{self, csv_out, Format, Kind, Progress, Report, ReportQuery};
use crate::routes::telemetry::parse_query;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/reports/telemetry").route(web::get().to(telemetry_report)))
        .service(web::resource("/reports/alerts").route(web::get().to(alert_report)));
}

/// The query string of a report (repeat `device_id` and `key` for several).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ReportParams {
    /// A device (repeatable) ...
    device_id: Option<Vec<uuid::Uuid>>,
    /// ... or every device of an area (telemetry).
    area: Option<String>,
    /// RFC 3339; default: 24 h before `end`.
    start: Option<String>,
    /// RFC 3339, exclusive; default: now.
    end: Option<String>,
    /// Telemetry keys (repeatable); all when absent.
    key: Option<Vec<String>>,
    /// Aggregate per interval (`15m`, `1h`, `1d`) instead of raw points.
    interval: Option<String>,
    /// `avg` (default), `min`, `max`, `sum` or `count`.
    agg: Option<String>,
    /// Alerts only: `info`, `warning` or `critical`.
    severity: Option<String>,
    /// `csv` (default), `xlsx`, `pdf` or `zip` (the three in one archive).
    format: Option<String>,
}

/// Telemetry of devices over a period: a summary (per key: points, min, max, average; alerts
/// by severity) and the points, or aggregates with `interval`.
#[utoipa::path(get, path = "/api/v1/reports/telemetry", tag = "reports", params(ReportParams),
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
#[utoipa::path(get, path = "/api/v1/reports/alerts", tag = "reports", params(ReportParams),
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
            receiver.recv().await.map(|chunk| (chunk, receiver))
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
