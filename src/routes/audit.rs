//! `/audit-log`: who did what, for administrators.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use insa_entities::{audit_log, Role};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::routes::page;
use crate::state::AppState;

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

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub action: Option<String>,
    /// Only failures (`false`) or successes (`true`).
    pub success: Option<bool>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    #[param(minimum = 0, maximum = 9223372036854775807_u64)]
    pub offset: Option<u64>,
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
    let (limit, offset) = page(query.limit, query.offset)?;
    let mut select = audit_log::Entity::find();
    if let Some(action) = query.action {
        select = select.filter(audit_log::Column::Action.eq(action));
    }
    if let Some(success) = query.success {
        select = select.filter(audit_log::Column::Success.eq(success));
    }
    let total = select.clone().count(&state.db).await?;
    let entries = select
        .order_by_desc(audit_log::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(&state.db)
        .await?;
    Ok(HttpResponse::Ok().json(AuditList {
        entries: entries.into_iter().map(AuditEntry::from).collect(),
        total,
        limit,
        offset,
    }))
}
