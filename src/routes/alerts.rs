//! Alerts: `GET /alerts?status&severity&device_id&limit&offset` (the product README's queries),
//! `GET /alerts/{id}`, `POST /alerts/{id}/acknowledge`, `POST /alerts/{id}/resolve`.
//!
//! Every role reads alerts; operators, engineers and admins acknowledge and resolve them.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use insa_actors::alerts::Handled;
use insa_domain::{AlertStatus, Severity};
use insa_entities::{alerts, Role};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code};
use crate::state::AppState;
use crate::web::answers::AlertResponse;
use crate::web::list::{list_query, one_of, Items, Listed, Paged};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/alerts").route(web::get().to(list_alerts)))
        .service(web::resource("/alerts/{id}").route(web::get().to(get_alert)))
        .service(web::resource("/alerts/{id}/acknowledge").route(web::post().to(acknowledge_alert)))
        .service(web::resource("/alerts/{id}/resolve").route(web::post().to(resolve_alert)));
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
        let status = one_of("status", &status, AlertStatus::ALL)?;
        select = select.filter(alerts::Column::Status.eq(status));
    }
    if let Some(severity) = query.severity {
        let severity = one_of("severity", &severity, Severity::ALL)?;
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
