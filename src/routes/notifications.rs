//! The notification delivery log: `GET /notifications?status&alert_id&limit&offset` (every role)
//! and `POST /notifications/{id}/retry` (operator+), which makes a failed delivery due again.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use insa_domain::{Channel, DeliveryStatus};
use insa_entities::{notification_deliveries as deliveries, Role};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code};
use crate::state::AppState;
use crate::web::list::{list_query, one_of, Items, Listed, Paged};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/notifications").route(web::get().to(list_notifications)))
        .service(
            web::resource("/notifications/{id}/retry").route(web::post().to(retry_notification)),
        );
}

/// One delivery (its payload, which may hold a webhook secret, is not shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResponse {
    pub id: Uuid,
    pub alert_id: Option<Uuid>,
    /// `email`, `webhook` or `mqtt`.
    #[schema(value_type = String)]
    pub channel: Channel,
    /// Addresses, URL or topic.
    pub target: String,
    /// The alert event: `raised` or `resolved`.
    pub event: Option<String>,
    /// `pending`, `sent` or `failed`.
    #[schema(value_type = String)]
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<deliveries::Model> for DeliveryResponse {
    fn from(d: deliveries::Model) -> Self {
        Self {
            event: Some(d.payload.event().to_string()),
            id: d.id,
            alert_id: d.alert_id,
            channel: d.channel,
            target: d.target,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error,
            sent_at: d.sent_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

impl Items for DeliveryResponse {
    const FIELD: &'static str = "notifications";
    const LIST: &'static str = "DeliveryList";
}

/// `{notifications, total, limit, offset}`.
pub type DeliveryList = Listed<DeliveryResponse>;

list_query! {
    pub struct DeliveryQuery {
        /// `pending`, `sent` or `failed`.
        #[param(pattern = "^(pending|sent|failed)$")]
        pub status: Option<String>,
        pub alert_id: Option<Uuid>,
    }
}

/// The delivery log, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", params(DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 400, description = "`invalid_query`")),
    security(("bearer" = [])))]
pub async fn list_notifications(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    let query = query.into_inner();
    let page = query.page()?;
    let mut select = deliveries::Entity::find();
    if let Some(status) = query.status {
        let status = one_of("status", &status, DeliveryStatus::ALL)?;
        select = select.filter(deliveries::Column::Status.eq(status));
    }
    if let Some(alert_id) = query.alert_id {
        select = select.filter(deliveries::Column::AlertId.eq(alert_id));
    }
    let select = select
        .order_by_desc(deliveries::Column::CreatedAt)
        .order_by_desc(deliveries::Column::Id);
    let listed = page.fetch(&state.db, select).await?;
    Ok(HttpResponse::Ok().json(listed.map(DeliveryResponse::from)))
}

/// Try a delivery again now (operator+): a failed one gets a fresh round of attempts.
#[utoipa::path(post, path = "/api/v1/notifications/{id}/retry", tag = "notifications",
    params(("id" = Uuid, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryResponse), (status = 404, description = "`not_found`")),
    security(("bearer" = [])))]
pub async fn retry_notification(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Operator)?;
    let delivery = deliveries::Entity::find_by_id(*id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no notification with id {id}")))?;
    let delivery = if delivery.status == DeliveryStatus::Sent {
        delivery
    } else {
        let mut row: deliveries::ActiveModel = delivery.into();
        row.status = Set(DeliveryStatus::Pending);
        row.attempts = Set(0);
        row.next_attempt_at = Set(Some(Utc::now()));
        row.updated_at = Set(Utc::now());
        let row = row.update(&state.db).await?;
        Audit::by("notification.retry", &user, &req)
            .target("notification", row.id)
            .details(json!({ "channel": row.channel, "target": row.target }))
            .record(&state.db)
            .await;
        row
    };
    Ok(HttpResponse::Ok().json(DeliveryResponse::from(delivery)))
}
