//! `/telemetry`: readings in (devices, by API key; engineers by token), history and latest out.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use chrono::{DateTime, Utc};
use insa_actors::payload;
use insa_actors::writer::WriteError;
use insa_actors::IngestError;
use insa_entities::{telemetry, telemetry_latest, Role};
use sea_orm::{ColumnTrait, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::devices::{find_device, with_live_state};
use crate::error::{ApiError, Code, FieldProblem};
use crate::query::{buckets, suggest, Bucket, Function, Interval, MAX_BUCKETS};
use crate::state::AppState;
use crate::web::query::{bad_query, parse_query, KeyName};

pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.service(
        web::resource("/telemetry")
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body_bytes)
                    .error_handler(crate::error::json_error),
            )
            .route(web::post().to(post_telemetry))
            .route(web::get().to(get_telemetry)),
    )
    .route("/telemetry/latest", web::get().to(get_latest));
}

const MAX_QUERY_KEYS: usize = 100;
const DEFAULT_ROWS: u64 = 1000;
const MAX_ROWS: u64 = 10_000;

/// The answer to an accepted reading or batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Data points stored.
    pub accepted: usize,
}

fn with_rate_headers(mut response: HttpResponseBuilder, caller: &Caller) -> HttpResponseBuilder {
    if let Caller::Device(key) = caller {
        for header in key.rate_headers() {
            response.insert_header(header);
        }
    }
    response
}

fn ingest_error(err: IngestError) -> ApiError {
    match err {
        IngestError::DeviceNotFound(id) => crate::devices::DeviceError::NotFound(id).into(),
        IngestError::Saturated => ApiError::new(
            Code::IngestSaturated,
            "readings arrive faster than they can be stored; nothing was stored, retry shortly",
        )
        .retry_after(1),
        IngestError::NotStored(WriteError::TooManyKeys { limit, new }) => ApiError::new(
            Code::TooManyKeys,
            format!(
                "nothing was stored: a device may have at most {limit} distinct telemetry keys \
                 (devices.max_keys) and this reading brings {new} new ones; keys the device \
                 already has are still accepted"
            ),
        )
        .with_details(json!({ "limit": limit, "new_keys": new })),
        // The edge checks what it can; this is what only the database could tell.
        IngestError::NotStored(WriteError::Refused(_)) => {
            ApiError::validation(vec![FieldProblem::new(
                "telemetry",
                "the database refused these readings as invalid data; nothing was stored",
            )])
        }
        IngestError::NotStored(err) => {
            ApiError::new(Code::NotStored, format!("nothing was stored: {err}")).retry_after(1)
        }
        IngestError::Database(err) => ApiError::from(err),
    }
}

/// Store readings. A device sends the product README's body with its `X-API-Key`: one reading
/// (`timestamp` optional) or a batch (`records`). Answered only once the readings are committed.
#[utoipa::path(post, path = "/api/v1/telemetry", tag = "telemetry",
    request_body(content = Object, description = "`{device_id, timestamp?, telemetry: {key: number | boolean | string | {value, unit?, quality?}}}` or `{device_id, records: [{timestamp?, telemetry}]}`"),
    responses(
        (status = 201, description = "Stored", body = Accepted),
        (status = 403, description = "The key may not write, or belongs to another device"),
        (status = 404, description = "`device_not_found`"),
        (status = 422, description = "`validation_failed`: the field at fault is named; `too_many_keys`: the device has reached `devices.max_keys` distinct keys"),
        (status = 429, description = "`rate_limited`: the key's hourly allowance is spent"),
        (status = 503, description = "`ingest_saturated` or `not_stored`: nothing stored, retry"),
    ),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn post_telemetry(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let default_device = match &caller {
        Caller::Device(key) if !key.write => {
            return Err(ApiError::forbidden("this API key has no write permission"))
        }
        Caller::Device(key) => key.device_id,
        Caller::User(user) => {
            user.require(Role::Engineer)?;
            None
        }
    };
    let limits = state.settings.ingest.limits();
    let decoded = payload::decode(&body, default_device, false, Utc::now(), &limits)
        .map_err(|err| ApiError::validation(vec![FieldProblem::new(err.field, err.message)]))?;
    let Some(device_id) = decoded.points.first().map(|p| p.device_id) else {
        return Err(ApiError::validation(vec![FieldProblem::new(
            "telemetry",
            "holds no readings",
        )]));
    };
    if let Caller::Device(key) = &caller {
        if !key.covers(device_id) {
            return Err(ApiError::forbidden(
                "this API key belongs to another device",
            ));
        }
    }
    let timeout = Duration::from_secs(state.settings.ingest.ack_timeout_secs);
    let stored = tokio::time::timeout(timeout, state.pipeline.ingest(device_id, decoded.points))
        .await
        .map_err(|_| {
            ApiError::new(
                Code::NotStored,
                "the readings were not confirmed stored in time; retry (a retry may duplicate them)",
            )
            .retry_after(1)
        })?
        .map_err(ingest_error)?;
    metrics::counter!("insa_telemetry_messages_total", "transport" => "http").increment(1);
    metrics::counter!("insa_telemetry_points_total", "transport" => "http")
        .increment(stored as u64);
    Ok(with_rate_headers(HttpResponse::Created(), &caller).json(Accepted { accepted: stored }))
}

/// May this caller read this device's data? Users of any role; keys with `read` for the device.
fn authorize_read(caller: &Caller, device_id: Uuid) -> Result<(), ApiError> {
    match caller {
        Caller::User(user) => user.require(Role::Viewer),
        Caller::Device(key) if !key.read => {
            Err(ApiError::forbidden("this API key has no read permission"))
        }
        Caller::Device(key) if !key.covers(device_id) => Err(ApiError::forbidden(
            "this API key belongs to another device",
        )),
        Caller::Device(_) => Ok(()),
    }
}

/// The device a read names, checked against the caller, after checking the keys asked for.
fn read_target(
    caller: &Caller,
    device_id: Option<&str>,
    keys: &[String],
) -> Result<Uuid, ApiError> {
    let device_id = parse_device(device_id)?;
    authorize_read(caller, device_id)?;
    check_keys(keys)?;
    Ok(device_id)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TelemetryQuery {
    /// The device.
    #[param(required = true, value_type = Uuid)]
    pub device_id: Option<String>,
    /// RFC 3339; inclusive.
    #[param(format = DateTime)]
    pub start: Option<String>,
    /// RFC 3339; inclusive for rows, exclusive for aggregate buckets.
    #[param(format = DateTime)]
    pub end: Option<String>,
    /// Repeat to select several keys; all keys when absent.
    #[serde(default)]
    #[param(inline, value_type = Vec<KeyName>)]
    pub key: Vec<String>,
    /// Rows: 1..=10000, default 1000.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u64>,
    /// `asc` or `desc` (default `desc` for rows, `asc` for aggregates).
    #[param(pattern = "^(asc|desc)$")]
    pub order: Option<String>,
    /// Aggregate into buckets of `<n>s|m|h|d` (e.g. `1m`, `1h`, `1d`).
    #[param(pattern = "^([1-9][0-9]{0,4}[smh]|[1-9][0-9]{0,3}d)$")]
    pub interval: Option<String>,
    /// `avg` (default), `min`, `max`, `sum` or `count`.
    #[param(pattern = "^(avg|min|max|sum|count)$")]
    pub agg: Option<String>,
}

fn parse_device(device_id: Option<&str>) -> Result<Uuid, ApiError> {
    let raw = device_id.ok_or_else(|| bad_query("device_id is required"))?;
    Uuid::parse_str(raw).map_err(|_| bad_query("device_id must be a UUID"))
}

pub(crate) fn parse_time(
    name: &str,
    value: Option<&str>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    bad_query(format!(
                        "{name} must be an RFC 3339 time, e.g. 2025-10-27T00:00:00Z"
                    ))
                })
        })
        .transpose()
}

fn check_keys(keys: &[String]) -> Result<(), ApiError> {
    if keys.len() > MAX_QUERY_KEYS {
        return Err(bad_query(format!(
            "at most {MAX_QUERY_KEYS} keys per query"
        )));
    }
    if keys
        .iter()
        .any(|k| k.is_empty() || k.chars().count() > payload::MAX_KEY_LEN)
    {
        return Err(bad_query("keys are 1 to 100 characters"));
    }
    Ok(())
}

/// One stored point.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataPoint {
    pub timestamp: DateTime<Utc>,
    pub key: String,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub quality: Option<i32>,
    /// For text values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

fn text_of(metadata: &Option<Value>) -> Option<String> {
    metadata
        .as_ref()
        .and_then(|m| m.get("text"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    pub device_id: Uuid,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub order: &'static str,
    pub limit: u64,
    pub count: usize,
    pub data: Vec<DataPoint>,
}

/// A history answer: rows, or buckets when `interval` is given.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum History {
    Rows(HistoryResponse),
    Buckets(AggregateResponse),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AggregateResponse {
    pub device_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub interval: String,
    pub interval_seconds: i64,
    pub agg: &'static str,
    pub order: &'static str,
    pub count: usize,
    pub data: Vec<Bucket>,
}

/// History of a device: rows, or aggregates with `interval` (and `agg`).
#[utoipa::path(get, path = "/api/v1/telemetry", tag = "telemetry", params(TelemetryQuery),
    responses(
        (status = 200, description = "Rows (`HistoryResponse`) or, with `interval`, buckets (`AggregateResponse`)", body = History),
        (status = 400, description = "`invalid_query`, e.g. too many buckets: a coarser interval is suggested"),
        (status = 404, description = "`device_not_found`"),
    ),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn get_telemetry(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let query: TelemetryQuery = parse_query(&req)?;
    let device_id = read_target(&caller, query.device_id.as_deref(), &query.key)?;
    let start = parse_time("start", query.start.as_deref())?;
    let end = parse_time("end", query.end.as_deref())?;
    if let (Some(start), Some(end)) = (start, end) {
        if start > end {
            return Err(bad_query("start must not be after end"));
        }
    }
    let order = match query.order.as_deref() {
        None => None,
        Some("asc") => Some(Order::Asc),
        Some("desc") => Some(Order::Desc),
        Some(_) => return Err(bad_query("order must be asc or desc")),
    };
    find_device(&state.db, device_id).await?;

    if let Some(interval) = &query.interval {
        let response = aggregate(&state, device_id, &query, interval, start, end, order).await?;
        return Ok(with_rate_headers(HttpResponse::Ok(), &caller).json(response));
    }
    if query.agg.is_some() {
        return Err(bad_query("agg needs an interval, e.g. interval=1h&agg=avg"));
    }
    let limit = query.limit.unwrap_or(DEFAULT_ROWS);
    if !(1..=MAX_ROWS).contains(&limit) {
        return Err(bad_query(format!("limit must be between 1 and {MAX_ROWS}")));
    }
    let order = order.unwrap_or(Order::Desc);
    let mut select = telemetry::Entity::find().filter(telemetry::Column::DeviceId.eq(device_id));
    if !query.key.is_empty() {
        select = select.filter(telemetry::Column::Key.is_in(query.key.clone()));
    }
    if let Some(start) = start {
        select = select.filter(telemetry::Column::Timestamp.gte(start));
    }
    if let Some(end) = end {
        select = select.filter(telemetry::Column::Timestamp.lte(end));
    }
    let rows = select
        .order_by(telemetry::Column::Timestamp, order.clone())
        .order_by(telemetry::Column::Id, order.clone())
        .limit(limit)
        .all(&state.db)
        .await?;
    let data: Vec<DataPoint> = rows
        .into_iter()
        .map(|row| DataPoint {
            text: text_of(&row.metadata),
            timestamp: row.timestamp,
            key: row.key,
            value: row.value,
            unit: row.unit,
            quality: row.quality,
        })
        .collect();
    Ok(
        with_rate_headers(HttpResponse::Ok(), &caller).json(HistoryResponse {
            device_id,
            start,
            end,
            order: if order == Order::Asc { "asc" } else { "desc" },
            limit,
            count: data.len(),
            data,
        }),
    )
}

async fn aggregate(
    state: &AppState,
    device_id: Uuid,
    query: &TelemetryQuery,
    interval: &str,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    order: Option<Order>,
) -> Result<AggregateResponse, ApiError> {
    let interval = Interval::parse(interval).ok_or_else(|| {
        bad_query("interval must be <n>s, <n>m, <n>h or <n>d with n at least 1, e.g. 1h")
    })?;
    let function = Function::parse(query.agg.as_deref().unwrap_or("avg"))
        .ok_or_else(|| bad_query("agg must be avg, min, max, sum or count"))?;
    if query.limit.is_some() {
        return Err(bad_query(
            "limit applies to rows; aggregates are bounded by start, end and interval",
        ));
    }
    let end = end.unwrap_or_else(Utc::now);
    let start = start.unwrap_or(end - chrono::Duration::hours(24));
    let needed = buckets(end - start, interval);
    if needed > MAX_BUCKETS {
        let coarser = suggest(end - start);
        return Err(bad_query(format!(
            "interval={} over this range makes {needed} buckets per key (at most {MAX_BUCKETS}); use interval={} or coarser, or a shorter range",
            interval.label(),
            coarser.label()
        ))
        .with_details(json!({
            "buckets": needed,
            "max_buckets": MAX_BUCKETS,
            "suggested_interval": coarser.label(),
        })));
    }
    let order = order.unwrap_or(Order::Asc);
    let data = crate::query::aggregate(
        &state.db,
        device_id,
        &query.key,
        interval,
        function,
        (start, end),
        order == Order::Asc,
    )
    .await?;
    Ok(AggregateResponse {
        device_id,
        start,
        end,
        interval: interval.label(),
        interval_seconds: interval.seconds,
        agg: function.name(),
        order: if order == Order::Asc { "asc" } else { "desc" },
        count: data.len(),
        data,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LatestQuery {
    #[param(required = true, value_type = Uuid)]
    pub device_id: Option<String>,
    /// Repeat to select several keys; all keys when absent.
    #[serde(default)]
    #[param(inline, value_type = Vec<KeyName>)]
    pub key: Vec<String>,
}

/// The newest stored value of one key.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatestValue {
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub quality: Option<i32>,
    pub timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LatestResponse {
    pub device_id: Uuid,
    #[schema(example = "online")]
    pub status: &'static str,
    pub last_seen: Option<DateTime<Utc>>,
    /// key -> newest value.
    pub values: BTreeMap<String, LatestValue>,
}

/// The newest value of each key of a device (from the latest-values table, not a scan), with the
/// device's live status.
#[utoipa::path(get, path = "/api/v1/telemetry/latest", tag = "telemetry", params(LatestQuery),
    responses((status = 200, body = LatestResponse), (status = 404, description = "`device_not_found`")),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn get_latest(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let query: LatestQuery = parse_query(&req)?;
    let device_id = read_target(&caller, query.device_id.as_deref(), &query.key)?;
    let device = with_live_state(&state.pipeline, find_device(&state.db, device_id).await?).await;
    let (status, last_seen) = (device.status, device.last_seen);
    let mut select =
        telemetry_latest::Entity::find().filter(telemetry_latest::Column::DeviceId.eq(device_id));
    if !query.key.is_empty() {
        select = select.filter(telemetry_latest::Column::Key.is_in(query.key.clone()));
    }
    let values = select
        .all(&state.db)
        .await?
        .into_iter()
        .map(|row| {
            (
                row.key,
                LatestValue {
                    text: text_of(&row.metadata),
                    value: row.value,
                    unit: row.unit,
                    quality: row.quality,
                    timestamp: row.timestamp,
                },
            )
        })
        .collect();
    Ok(
        with_rate_headers(HttpResponse::Ok(), &caller).json(LatestResponse {
            device_id,
            status: status.as_str(),
            last_seen,
            values,
        }),
    )
}
