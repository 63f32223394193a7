//! `/api/v1/report-schedules`: reports emailed daily, weekly or monthly (docs/API.md). Engineers
//! and admins manage them; every role reads them.

use actix_web::http::header::LOCATION;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use insa_domain::text::{looks_like_email, required_text, NAME_MAX_CHARS};
use insa_entities::{report_schedules as schedules, Role};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, QueryOrder, Set};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code, FieldProblem};
use crate::reports::schedules::{queue_run, Frequency};
use crate::reports::{job_request, Format, Kind, Report, ReportQuery};
use crate::state::AppState;
use crate::web::answers::JobResponse;
use crate::web::list::{list_query, Items, Listed, Paged};

const RECIPIENTS_MAX: usize = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/report-schedules")
            .route(web::get().to(list_schedules))
            .route(web::post().to(create_schedule)),
    )
    .service(
        web::resource("/report-schedules/{id}")
            .route(web::get().to(get_schedule))
            .route(web::put().to(update_schedule))
            .route(web::delete().to(delete_schedule)),
    )
    .service(web::resource("/report-schedules/{id}/run").route(web::post().to(run_schedule)));
}

/// A schedule as the API shows it: its own fields and its report's, side by side.
fn present(schedule: &schedules::Model) -> Value {
    let mut out = json!({
        "id": schedule.id,
        "name": schedule.name,
        "kind": schedule.kind,
        "format": schedule.format,
        "frequency": schedule.frequency,
        "hour": schedule.hour,
        "weekday": schedule.weekday,
        "day": schedule.day,
        "recipients": schedule.recipients,
        "enabled": schedule.enabled,
        "next_run_at": schedule.next_run_at,
        "last_run_at": schedule.last_run_at,
        "last_job_id": schedule.last_job_id,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    });
    if let (Some(out), Value::Object(query)) = (out.as_object_mut(), &schedule.query) {
        for (key, value) in query {
            if !value.is_null() && value != &json!([]) {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

/// The fields a client may send (those of `present` that are not the platform's).
const SCHEDULE_FIELDS: [&str; 8] = [
    "name",
    "frequency",
    "hour",
    "weekday",
    "day",
    "recipients",
    "enabled",
    "format",
];

/// A schedule checked: the row to store (without ids and times).
struct Checked {
    name: String,
    kind: Kind,
    format: Format,
    query: ReportQuery,
    frequency: Frequency,
    hour: i32,
    recipients: Vec<String>,
    enabled: bool,
}

async fn check(state: &AppState, body: Value) -> Result<Checked, ApiError> {
    let Value::Object(mut fields) = body else {
        return Err(ApiError::validation(vec![FieldProblem::new(
            "body",
            "must be a JSON object",
        )]));
    };
    let own: Map<String, Value> = SCHEDULE_FIELDS
        .iter()
        .filter_map(|f| fields.remove(*f).map(|v| (f.to_string(), v)))
        .collect();
    // What is left is the report: kind and its query (no period: each run covers its own).
    for period in ["start", "end"] {
        if fields.remove(period).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::validation(vec![FieldProblem::new(
                period,
                "a schedule covers the period before each run: leave start and end out",
            )]));
        }
    }
    let (kind, query) = job_request(Value::Object(fields))?;
    let mut problems = Vec::new();
    let name = required_text(
        &mut problems,
        "name",
        own.get("name").and_then(Value::as_str).map(str::to_string),
        NAME_MAX_CHARS,
    );
    let format = match own.get("format") {
        None | Some(Value::Null) => Format::Xlsx,
        Some(value) => value.as_str().and_then(Format::parse).unwrap_or_else(|| {
            problems.push(FieldProblem::new("format", "must be csv, xlsx, pdf or zip"));
            Format::Xlsx
        }),
    };
    let number = |field: &str,
                  default: i64,
                  range: std::ops::RangeInclusive<i64>,
                  problems: &mut Vec<FieldProblem>| {
        match own.get(field) {
            None | Some(Value::Null) => default,
            Some(value) => match value.as_i64().filter(|v| range.contains(v)) {
                Some(v) => v,
                None => {
                    problems.push(FieldProblem::new(
                        field,
                        format!(
                            "must be a whole number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    ));
                    default
                }
            },
        }
    };
    let hour = number("hour", 6, 0..=23, &mut problems);
    let frequency = match own.get("frequency").and_then(Value::as_str) {
        Some("daily") => Frequency::Daily,
        Some("weekly") => Frequency::Weekly(number("weekday", 1, 1..=7, &mut problems) as u32),
        Some("monthly") => Frequency::Monthly(number("day", 1, 1..=28, &mut problems) as u32),
        _ => {
            problems.push(FieldProblem::new(
                "frequency",
                "is required: daily, weekly or monthly",
            ));
            Frequency::Daily
        }
    };
    let recipients: Vec<String> = match own.get("recipients").and_then(Value::as_array) {
        Some(list) if (1..=RECIPIENTS_MAX).contains(&list.len()) => list
            .iter()
            .enumerate()
            .filter_map(
                |(i, address)| match address.as_str().filter(|a| looks_like_email(a)) {
                    Some(address) => Some(address.to_string()),
                    None => {
                        problems.push(FieldProblem::new(
                            format!("recipients[{i}]"),
                            "must be an email address",
                        ));
                        None
                    }
                },
            )
            .collect(),
        _ => {
            problems.push(FieldProblem::new(
                "recipients",
                format!("1 to {RECIPIENTS_MAX} email addresses"),
            ));
            Vec::new()
        }
    };
    let enabled = match own.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(enabled)) => *enabled,
        Some(_) => {
            problems.push(FieldProblem::new("enabled", "must be true or false"));
            true
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    // The devices, keys and filters must make a report today.
    Report::resolve(&state.db, kind, &query, Utc::now()).await?;
    Ok(Checked {
        name: name.unwrap_or_default(),
        kind,
        format,
        query,
        frequency,
        hour: hour as i32,
        recipients,
        enabled,
    })
}

fn apply(row: &mut schedules::ActiveModel, checked: Checked) {
    let (frequency, weekday, day) = match checked.frequency {
        Frequency::Daily => ("daily", None, None),
        Frequency::Weekly(weekday) => ("weekly", Some(weekday as i32), None),
        Frequency::Monthly(day) => ("monthly", None, Some(day as i32)),
    };
    let mut query = checked.query;
    query.format = None;
    row.name = Set(checked.name);
    row.kind = Set(checked.kind.as_str().into());
    row.format = Set(checked.format.extension().into());
    row.query = Set(serde_json::to_value(&query).unwrap_or_default());
    row.frequency = Set(frequency.into());
    row.hour = Set(checked.hour);
    row.weekday = Set(weekday);
    row.day = Set(day);
    row.recipients = Set(json!(checked.recipients));
    row.enabled = Set(checked.enabled);
    row.next_run_at = Set(checked.frequency.next_run(checked.hour as u32, Utc::now()));
    row.updated_at = Set(Utc::now());
}

async fn find(state: &AppState, id: Uuid) -> Result<schedules::Model, ApiError> {
    schedules::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                Code::ScheduleNotFound,
                format!("no report schedule with id {id}"),
            )
        })
}

/// Create a schedule: `name`, `kind`, the report's filters (as for `POST /reports`, without
/// `start`/`end`), `format` (default xlsx), `frequency` (`daily`, `weekly` with `weekday` 1-7,
/// `monthly` with `day` 1-28), `hour` (UTC, default 6), `recipients`, `enabled`.
#[utoipa::path(post, path = "/api/v1/report-schedules", tag = "reports",
    request_body(content = Object, description = "The schedule"),
    responses((status = 201, description = "The schedule, with `next_run_at`"),
              (status = 422, description = "`validation_failed`")),
    security(("bearer" = [])))]
pub async fn create_schedule(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: crate::body::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let checked = check(&state, body.into_inner()).await?;
    let now = Utc::now();
    let mut row = schedules::ActiveModel {
        id: Set(Uuid::new_v4()),
        last_run_at: Set(None),
        last_job_id: Set(None),
        created_by: Set(Some(user.id)),
        created_at: Set(now),
        ..Default::default()
    };
    apply(&mut row, checked);
    let schedule = row.insert(&state.db).await?;
    audit(&state, &req, &user, "report_schedule.create", &schedule).await;
    Ok(HttpResponse::Created()
        .insert_header((
            LOCATION,
            format!("/api/v1/report-schedules/{}", schedule.id),
        ))
        .json(present(&schedule)))
}

list_query! {
    pub struct ListQuery {}
}

/// A report schedule as the API shows it: its own fields and its report's, side by side.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct Schedule(Value);

impl Items for Schedule {
    const FIELD: &'static str = "schedules";
    const LIST: &'static str = "ScheduleList";
}

/// `{schedules, total, limit, offset}`.
pub type ScheduleList = Listed<Schedule>;

/// Schedules by name.
#[utoipa::path(get, path = "/api/v1/report-schedules", tag = "reports", params(ListQuery),
    responses((status = 200, body = ScheduleList)),
    security(("bearer" = [])))]
pub async fn list_schedules(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    let page = query.page()?;
    let select = schedules::Entity::find().order_by_asc(schedules::Column::Name);
    let listed = page.fetch(&state.db, select).await?;
    Ok(HttpResponse::Ok().json(listed.map(|row| Schedule(present(&row)))))
}

/// One schedule.
#[utoipa::path(get, path = "/api/v1/report-schedules/{id}", tag = "reports",
    params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 200, description = "The schedule"), (status = 404, description = "`schedule_not_found`")),
    security(("bearer" = [])))]
pub async fn get_schedule(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(present(&find(&state, id.into_inner()).await?)))
}

/// The fields given replace the stored ones; the whole schedule is checked again and its next
/// run recomputed.
#[utoipa::path(put, path = "/api/v1/report-schedules/{id}", tag = "reports",
    params(("id" = Uuid, Path, description = "Schedule id")),
    request_body(content = Object, description = "The fields to change"),
    responses((status = 200, description = "The schedule"), (status = 404, description = "`schedule_not_found`")),
    security(("bearer" = [])))]
pub async fn update_schedule(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: crate::body::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let stored = find(&state, id.into_inner()).await?;
    let Value::Object(changes) = body.into_inner() else {
        return Err(ApiError::validation(vec![FieldProblem::new(
            "body",
            "must be a JSON object",
        )]));
    };
    let mut merged = present(&stored);
    if let Some(merged) = merged.as_object_mut() {
        for platform in [
            "id",
            "next_run_at",
            "last_run_at",
            "last_job_id",
            "created_at",
            "updated_at",
        ] {
            merged.remove(platform);
        }
        if stored.frequency != "weekly" {
            merged.remove("weekday");
        }
        if stored.frequency != "monthly" {
            merged.remove("day");
        }
        // A new target replaces the old one.
        if changes.contains_key("area") {
            merged.remove("device_id");
        }
        if changes.contains_key("device_id") {
            merged.remove("area");
        }
        merged.extend(changes);
    }
    let checked = check(&state, merged).await?;
    let mut row = stored.into_active_model();
    apply(&mut row, checked);
    let updated = row.update(&state.db).await?;
    audit(&state, &req, &user, "report_schedule.update", &updated).await;
    Ok(HttpResponse::Ok().json(present(&updated)))
}

/// Delete a schedule (its past jobs stay until they expire).
#[utoipa::path(delete, path = "/api/v1/report-schedules/{id}", tag = "reports",
    params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "`schedule_not_found`")),
    security(("bearer" = [])))]
pub async fn delete_schedule(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let schedule = find(&state, id.into_inner()).await?;
    schedules::Entity::delete_by_id(schedule.id)
        .exec(&state.db)
        .await?;
    audit(&state, &req, &user, "report_schedule.delete", &schedule).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Runs the schedule now: a job covering the period that ends now, emailed when done.
#[utoipa::path(post, path = "/api/v1/report-schedules/{id}/run", tag = "reports",
    params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 202, description = "The job", body = JobResponse), (status = 404, description = "`schedule_not_found`")),
    security(("bearer" = [])))]
pub async fn run_schedule(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let schedule = find(&state, id.into_inner()).await?;
    let job = queue_run(&state.report_jobs, &schedule, Utc::now()).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((LOCATION, format!("/api/v1/reports/{}", job.id)))
        .json(JobResponse::from(job)))
}

/// Records who changed a schedule.
async fn audit(
    state: &AppState,
    req: &HttpRequest,
    user: &AuthUser,
    action: &str,
    schedule: &schedules::Model,
) {
    Audit::by(action, user, req)
        .target("report_schedule", schedule.id)
        .details(json!({"name": schedule.name}))
        .record(&state.db)
        .await;
}
