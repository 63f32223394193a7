//! `/api-keys`: device credentials. The key is shown once, at creation; only its hash is kept.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use insa_domain::text::{required_text, NAME_MAX_CHARS};
use insa_entities::{api_keys, Role};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::api_keys::{generate_key, hash_key, prefix};
use crate::auth::AuthUser;
use crate::error::{ApiError, Code, FieldProblem};
use crate::state::AppState;
use crate::web::list::{list_query, Items, Listed, Paged};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api-keys")
            .route(web::get().to(list_api_keys))
            .route(web::post().to(create_api_key)),
    )
    .service(
        web::resource("/api-keys/{id}")
            .route(web::get().to(get_api_key))
            .route(web::delete().to(revoke_api_key)),
    );
}

const MAX_RATE_LIMIT: u32 = 10_000_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub write: bool,
}

/// A key without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key.
    pub prefix: String,
    pub device_id: Option<Uuid>,
    pub permissions: Permissions,
    /// Requests per hour.
    pub rate_limit: i32,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<api_keys::Model> for ApiKeyInfo {
    fn from(key: api_keys::Model) -> Self {
        let flag = |name: &str| {
            key.permissions
                .get(name)
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        };
        Self {
            permissions: Permissions {
                read: flag("read"),
                write: flag("write"),
            },
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            device_id: key.device_id,
            rate_limit: key.rate_limit,
            created_at: key.created_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            last_used_at: key.last_used_at,
        }
    }
}

/// The seed's creation answer: the key once, with a warning.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub message: &'static str,
    /// The key itself. It cannot be retrieved later.
    pub api_key: String,
    pub key_info: ApiKeyInfo,
    pub warning: &'static str,
    /// Present when `expires_at` is already past: the key exists but will be refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<&'static str>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(
        example = "Production Sensor Key",
        required = true,
        nullable = false,
        pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000]*$",
        max_length = 255
    )]
    pub name: Option<String>,
    /// Binds the key to one device.
    pub device_id: Option<Uuid>,
    /// Default `{"read": false, "write": true}`.
    pub permissions: Option<Permissions>,
    /// Requests per hour; default from settings (1000).
    #[schema(minimum = 1, maximum = 10000000)]
    pub rate_limit: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Items for ApiKeyInfo {
    const FIELD: &'static str = "api_keys";
    const LIST: &'static str = "ApiKeyList";
}

/// `{api_keys, total, limit, offset}`.
pub type ApiKeyList = Listed<ApiKeyInfo>;

list_query! {
    pub struct ApiKeyQuery {
        pub device_id: Option<Uuid>,
    }
}

/// Create a key for a device (or for any device when `device_id` is omitted).
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 422, description = "`validation_failed`")),
    security(("bearer" = [])))]
pub async fn create_api_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: crate::body::Json<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let body = body.into_inner();
    let mut problems = Vec::new();
    let name = required_text(&mut problems, "name", body.name, NAME_MAX_CHARS);
    let rate_limit = body
        .rate_limit
        .unwrap_or(state.settings.api_keys.default_rate_limit);
    if !(1..=MAX_RATE_LIMIT).contains(&rate_limit) {
        problems.push(FieldProblem::new(
            "rate_limit",
            format!("requests per hour, between 1 and {MAX_RATE_LIMIT}"),
        ));
    }
    let permissions = body.permissions.unwrap_or(Permissions {
        read: false,
        write: true,
    });
    if !permissions.read && !permissions.write {
        problems.push(FieldProblem::new(
            "permissions",
            "grant read, write or both",
        ));
    }
    if let Some(device_id) = body.device_id {
        if !crate::devices::device_exists(&state.db, device_id).await? {
            problems.push(FieldProblem::new(
                "device_id",
                format!("no device with id {device_id}"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }

    // Accepted (the request is well-formed), but said plainly: the key will not work.
    let already_expired = body.expires_at.is_some_and(|at| at <= Utc::now());
    let key = generate_key();
    let created = api_keys::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(name.unwrap_or_default()),
        key_hash: Set(hash_key(&key)),
        prefix: Set(prefix(&key)),
        device_id: Set(body.device_id),
        permissions: Set(json!(permissions)),
        rate_limit: Set(i32::try_from(rate_limit).unwrap_or(i32::MAX)),
        expires_at: Set(body.expires_at),
        revoked_at: Set(None),
        last_used_at: Set(None),
        created_by: Set(Some(user.id)),
        created_at: Set(Utc::now()),
    }
    .insert(&state.db)
    .await?;
    if let Some(dynsec) = state.dynsec() {
        dynsec.key_created(&created, &key).await;
    }
    Audit::by("api_key.create", &user, &req)
        .target("api_key", created.id)
        .details(json!({ "name": created.name, "device_id": created.device_id }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/api-keys/{}", created.id)))
        .json(CreatedApiKey {
            message: "API key created successfully",
            api_key: key,
            key_info: created.into(),
            warning: "Save this API key securely. It cannot be retrieved later.",
            notice: already_expired.then_some(
                "expires_at is in the past: this key is already expired and will be refused",
            ),
        }))
}

/// List keys (never their secrets), newest first, revoked ones included.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(ApiKeyQuery),
    responses((status = 200, body = ApiKeyList)),
    security(("bearer" = [])))]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<ApiKeyQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let page = query.page()?;
    let mut select = api_keys::Entity::find();
    if let Some(device_id) = query.device_id {
        select = select.filter(api_keys::Column::DeviceId.eq(device_id));
    }
    let listed = page
        .fetch(&state.db, select.order_by_desc(api_keys::Column::CreatedAt))
        .await?;
    Ok(HttpResponse::Ok().json(listed.map(ApiKeyInfo::from)))
}

async fn find_key(state: &AppState, id: Uuid) -> Result<api_keys::Model, ApiError> {
    api_keys::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::ApiKeyNotFound, format!("no API key with id {id}")))
}

/// One key (without its secret).
#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path, description = "API key id")),
    responses((status = 200, body = ApiKeyInfo), (status = 404, description = "`api_key_not_found`")),
    security(("bearer" = [])))]
pub async fn get_api_key(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    Ok(HttpResponse::Ok().json(ApiKeyInfo::from(find_key(&state, *id).await?)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedApiKey {
    pub message: &'static str,
    pub key_info: ApiKeyInfo,
}

/// Revoke a key: it stops working at once. Revoking twice keeps the first time.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path, description = "API key id")),
    responses((status = 200, body = RevokedApiKey), (status = 404, description = "`api_key_not_found`")),
    security(("bearer" = [])))]
pub async fn revoke_api_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let key = find_key(&state, *id).await?;
    let key = if key.revoked_at.is_some() {
        key
    } else {
        let mut active: api_keys::ActiveModel = key.into();
        active.revoked_at = Set(Some(Utc::now()));
        let key = active.update(&state.db).await?;
        state.keys.evict(key.id);
        state.credentials_ended(crate::auth::revocation::Revoked::Key(key.id));
        if let Some(dynsec) = state.dynsec() {
            dynsec.key_removed(key.id).await;
        }
        Audit::by("api_key.revoke", &user, &req)
            .target("api_key", key.id)
            .details(json!({ "name": key.name }))
            .record(&state.db)
            .await;
        key
    };
    Ok(HttpResponse::Ok().json(RevokedApiKey {
        message: "API key revoked",
        key_info: key.into(),
    }))
}
