//! Alerts: `GET /alerts?status&severity&device_id&limit&offset` (the product README's queries),
//! `GET /alerts/{id}`, `POST /alerts/{id}/acknowledge`, `POST /alerts/{id}/resolve`.
//!
//! Every role reads alerts; operators, engineers and admins acknowledge and resolve them.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use insa_actors::{AlertEvent, DeviceEvent};
use insa_entities::{alerts, devices, rules, Role};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code};
use crate::state::AppState;
use crate::web::list::{list_query, one_of, Items, Listed, Paged};
use insa_actors::rules::SEVERITIES;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/alerts").route(web::get().to(list_alerts)))
        .service(web::resource("/alerts/{id}").route(web::get().to(get_alert)))
        .service(web::resource("/alerts/{id}/acknowledge").route(web::post().to(acknowledge_alert)))
        .service(web::resource("/alerts/{id}/resolve").route(web::post().to(resolve_alert)));
}

pub const STATUSES: [&str; 3] = ["active", "acknowledged", "resolved"];

/// An alert as the API shows it (the product README's columns).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertResponse {
    pub id: Uuid,
    pub device_id: Uuid,
    pub rule_id: Option<Uuid>,
    #[schema(example = "critical")]
    pub severity: String,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// `active`, `acknowledged` or `resolved`.
    pub status: String,
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

impl Items for AlertResponse {
    const FIELD: &'static str = "alerts";
    const LIST: &'static str = "AlertList";
}

/// `{alerts, total, limit, offset}`.
pub type AlertList = Listed<AlertResponse>;

list_query! {
    pub struct AlertQuery {
        /// `active`, `acknowledged` or `resolved`.
        #[param(pattern = "^(active|acknowledged|resolved)$")]
        pub status: Option<String>,
        /// `info`, `warning` or `critical`.
        #[param(pattern = "^(info|warning|critical)$")]
        pub severity: Option<String>,
        #[param(value_type = Option<Uuid>)]
        pub device_id: Option<String>,
    }
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
    let page = query.page()?;
    let mut select = alerts::Entity::find();
    if let Some(status) = query.status {
        let status = one_of("status", &status, STATUSES)?;
        select = select.filter(alerts::Column::Status.eq(status));
    }
    if let Some(severity) = query.severity {
        let severity = one_of("severity", &severity, SEVERITIES)?;
        select = select.filter(alerts::Column::Severity.eq(severity));
    }
    if let Some(device_id) = query.device_id {
        let device_id = Uuid::parse_str(&device_id)
            .map_err(|_| ApiError::new(Code::InvalidQuery, "device_id must be a UUID"))?;
        select = select.filter(alerts::Column::DeviceId.eq(device_id));
    }
    let select = select
        .order_by_desc(alerts::Column::CreatedAt)
        .order_by_desc(alerts::Column::Id);
    let listed = page.fetch(&state.db, select).await?;
    Ok(HttpResponse::Ok().json(listed.map(AlertResponse::from)))
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
    let alert = find_alert(&state, *id).await?;
    let alert = match alert.status.as_str() {
        "active" => {
            let txn = state.db.begin().await?;
            let mut active: alerts::ActiveModel = alert.into();
            active.status = Set("acknowledged".into());
            active.acknowledged_by = Set(Some(user.email.clone()));
            active.acknowledged_at = Set(Some(Utc::now()));
            let alert = active.update(&txn).await?;
            // Webhooks of the rule hear about it (`event: acknowledged`), with the alert.
            let outgoing = acknowledged_webhooks(&txn, &alert).await?;
            insa_actors::alerts::enqueue(&txn, alert.id, outgoing, Utc::now()).await?;
            txn.commit().await?;
            record(&state, &req, &user, "alert.acknowledge", &alert).await;
            announce(&state, &alert, AlertEvent::Acknowledged);
            alert
        }
        "resolved" => {
            return Err(ApiError::new(
                Code::AlertResolved,
                "this alert is resolved; it can no longer be acknowledged",
            ))
        }
        _ => alert,
    };
    Ok(HttpResponse::Ok().json(AlertResponse::from(alert)))
}

/// Resolve an alert by hand (operator+). Resolving again changes nothing.
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
    let alert = find_alert(&state, *id).await?;
    let alert = if alert.status == "resolved" {
        alert
    } else {
        let mut active: alerts::ActiveModel = alert.into();
        active.status = Set("resolved".into());
        active.resolved_at = Set(Some(Utc::now()));
        let alert = active.update(&state.db).await?;
        record(&state, &req, &user, "alert.resolve", &alert).await;
        announce(&state, &alert, AlertEvent::Resolved);
        alert
    };
    Ok(HttpResponse::Ok().json(AlertResponse::from(alert)))
}

fn announce(state: &AppState, alert: &alerts::Model, event: AlertEvent) {
    state.pipeline.announce(DeviceEvent::Alert {
        alert: Box::new(alert.clone()),
        event,
    });
}

async fn acknowledged_webhooks(
    db: &impl sea_orm::ConnectionTrait,
    alert: &alerts::Model,
) -> Result<Vec<insa_actors::alerts::Outgoing>, ApiError> {
    let Some(rule_id) = alert.rule_id else {
        return Ok(Vec::new());
    };
    let Some(rule) = rules::Entity::find_by_id(rule_id).one(db).await? else {
        return Ok(Vec::new());
    };
    // Only webhooks hear of acknowledgements.
    let mut rule = insa_actors::device::RuleRef::from(&rule);
    rule.actions.retain(|action| action["type"] == "webhook");
    if rule.actions.is_empty() {
        return Ok(Vec::new());
    }
    let device = devices::Entity::find_by_id(alert.device_id).one(db).await?;
    Ok(insa_actors::device::notifications(
        "acknowledged",
        alert,
        device.as_ref(),
        &rule,
    ))
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
