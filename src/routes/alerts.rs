//! Alerts: `GET /alerts?status&severity&device_id&limit&offset` (the product README's queries),
//! `GET /alerts/{id}`, `POST /alerts/{id}/acknowledge`, `POST /alerts/{id}/resolve`.
//!
//! Every role reads alerts; operators, engineers and admins acknowledge and resolve them.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use insa_actors::alerts::{AlertError, Handled};
use insa_domain::{AlertStatus, Severity};
use insa_entities::{alerts, Role};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code};
use crate::routes::{one_of, page};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/alerts").route(web::get().to(list_alerts)))
        .service(web::resource("/alerts/{id}").route(web::get().to(get_alert)))
        .service(web::resource("/alerts/{id}/acknowledge").route(web::post().to(acknowledge_alert)))
        .service(web::resource("/alerts/{id}/resolve").route(web::post().to(resolve_alert)));
}

/// An alert as the API shows it (the product README's columns).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertResponse {
    pub id: Uuid,
    pub device_id: Uuid,
    pub rule_id: Option<Uuid>,
    #[schema(value_type = String, example = "critical")]
    pub severity: Severity,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// `active`, `acknowledged` or `resolved`.
    #[schema(value_type = String)]
    pub status: AlertStatus,
    /// The email of who acknowledged it.
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Times the condition was raised while this alert stood for it (more than 1 once it
    /// chatters: a flapping condition re-opens this alert instead of raising new ones).
    pub raise_count: i32,
    /// The condition changed more often than `alerts.max_notifications_per_window` per
    /// `alerts.chatter_window_secs`: the changes beyond were recorded here, not notified.
    pub chattering: bool,
}

impl From<alerts::Model> for AlertResponse {
    fn from(a: alerts::Model) -> Self {
        Self {
            id: a.id,
            device_id: a.device_id,
            rule_id: a.rule_id,
            severity: a.severity,
            message: a.message,
            value: a.value,
            threshold: a.threshold,
            status: a.status,
            acknowledged_by: a.acknowledged_by,
            acknowledged_at: a.acknowledged_at,
            resolved_at: a.resolved_at,
            created_at: a.created_at,
            metadata: a.metadata,
            raise_count: a.raise_count,
            chattering: a.chattering,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertResponse>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// `active`, `acknowledged` or `resolved`.
    #[param(pattern = "^(active|acknowledged|resolved)$")]
    pub status: Option<String>,
    /// `info`, `warning` or `critical`.
    #[param(pattern = "^(info|warning|critical)$")]
    pub severity: Option<String>,
    #[param(value_type = Option<Uuid>)]
    pub device_id: Option<String>,
    /// 1..=1000, default 100
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    #[param(minimum = 0, maximum = 9223372036854775807_u64)]
    pub offset: Option<u64>,
}

/// List alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = AlertList), (status = 400, description = "`invalid_query`")),
    security(("bearer" = [])))]
pub async fn list_alerts(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<AlertQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    let query = query.into_inner();
    let (limit, offset) = page(query.limit, query.offset)?;
    let mut select = alerts::Entity::find();
    if let Some(status) = query.status {
        one_of("status", &status, &AlertStatus::NAMES)?;
        select = select.filter(alerts::Column::Status.eq(status));
    }
    if let Some(severity) = query.severity {
        one_of("severity", &severity, &Severity::NAMES)?;
        select = select.filter(alerts::Column::Severity.eq(severity));
    }
    if let Some(device_id) = query.device_id {
        let device_id = Uuid::parse_str(&device_id)
            .map_err(|_| ApiError::new(Code::InvalidQuery, "device_id must be a UUID"))?;
        select = select.filter(alerts::Column::DeviceId.eq(device_id));
    }
    let total = select.clone().count(&state.db).await?;
    let alerts = select
        .order_by_desc(alerts::Column::CreatedAt)
        .order_by_desc(alerts::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(&state.db)
        .await?;
    Ok(HttpResponse::Ok().json(AlertList {
        alerts: alerts.into_iter().map(AlertResponse::from).collect(),
        total,
        limit,
        offset,
    }))
}

async fn find_alert(state: &AppState, id: Uuid) -> Result<alerts::Model, ApiError> {
    alerts::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::AlertNotFound, format!("no alert with id {id}")))
}

/// One alert.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    responses((status = 200, body = AlertResponse), (status = 404, description = "`alert_not_found`")),
    security(("bearer" = [])))]
pub async fn get_alert(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(AlertResponse::from(find_alert(&state, *id).await?)))
}

/// Acknowledge an active alert (operator+): someone is on it. Acknowledging again changes nothing;
/// a resolved alert cannot be acknowledged (409 `alert_resolved`).
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    responses((status = 200, body = AlertResponse), (status = 404, description = "`alert_not_found`"),
              (status = 409, description = "`alert_resolved`")),
    security(("bearer" = [])))]
pub async fn acknowledge_alert(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Operator)?;
    let handled = state
        .pipeline
        .alerts()
        .acknowledge(*id, &user.email, Utc::now())
        .await?;
    if let Handled::Changed(alert) = &handled {
        record(&state, &req, &user, "alert.acknowledge", alert).await;
    }
    Ok(HttpResponse::Ok().json(AlertResponse::from(handled.into_alert())))
}

/// Resolve an alert by hand (operator+): its rule's actions are notified (`event: resolved`),
/// as when its condition clears. Resolving again changes nothing.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    responses((status = 200, body = AlertResponse), (status = 404, description = "`alert_not_found`")),
    security(("bearer" = [])))]
pub async fn resolve_alert(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Operator)?;
    let handled = state
        .pipeline
        .alerts()
        .resolve_by_hand(*id, Utc::now())
        .await?;
    if let Handled::Changed(alert) = &handled {
        record(&state, &req, &user, "alert.resolve", alert).await;
    }
    Ok(HttpResponse::Ok().json(AlertResponse::from(handled.into_alert())))
}

impl From<AlertError> for ApiError {
    fn from(err: AlertError) -> Self {
        match err {
            AlertError::NotFound(_) => ApiError::new(Code::AlertNotFound, err.to_string()),
            AlertError::Resolved => ApiError::new(Code::AlertResolved, err.to_string()),
            AlertError::Db(err) => err.into(),
        }
    }
}

async fn record(
    state: &AppState,
    req: &HttpRequest,
    user: &AuthUser,
    action: &'static str,
    alert: &alerts::Model,
) {
    Audit::by(action, user, req)
        .target("alert", alert.id)
        .details(json!({ "device_id": alert.device_id, "severity": alert.severity }))
        .record(&state.db)
        .await;
}
