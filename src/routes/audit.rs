//! `/audit-log`: who did what, for administrators.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use insa_entities::{audit_log, Role};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::list::{list_query, Items, Listed, Paged};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit-log", web::get().to(list_audit_log));
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor: Option<String>,
    /// e.g. `auth.login`, `user.create`, `api_key.revoke`
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub success: bool,
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

impl From<audit_log::Model> for AuditEntry {
    fn from(e: audit_log::Model) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor_id: e.actor_id,
            actor: e.actor,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            ip: e.ip,
            success: e.success,
            details: e.details,
        }
    }
}

impl Items for AuditEntry {
    const FIELD: &'static str = "entries";
    const LIST: &'static str = "AuditList";
}

/// `{entries, total, limit, offset}`.
pub type AuditList = Listed<AuditEntry>;

list_query! {
    pub struct AuditQuery {
        pub action: Option<String>,
        /// Only failures (`false`) or successes (`true`).
        pub success: Option<bool>,
    }
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 403, description = "Not an admin")),
    security(("bearer" = [])))]
pub async fn list_audit_log(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Admin)?;
    let query = query.into_inner();
    let page = query.page()?;
    let mut select = audit_log::Entity::find();
    if let Some(action) = query.action {
        select = select.filter(audit_log::Column::Action.eq(action));
    }
    if let Some(success) = query.success {
        select = select.filter(audit_log::Column::Success.eq(success));
    }
    let listed = page
        .fetch(&state.db, select.order_by_desc(audit_log::Column::Id))
        .await?;
    Ok(HttpResponse::Ok().json(listed.map(AuditEntry::from)))
}
