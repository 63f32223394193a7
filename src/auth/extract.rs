//! Extractors: a handler names who may call it in its signature.
//!
//! - [`AuthUser`]: a person with a valid access token (`Authorization: Bearer ...`) whose session
//!   is still open; the role is read from the database, so a role change applies at once.
//! - [`DeviceKey`]: a device with a valid `X-API-Key` (unknown, expired or revoked -> 401).
//! - [`Caller`]: either, for endpoints devices may also use.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use chrono::Utc;
use insa_entities::{api_keys, refresh_tokens, users, Role};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use super::api_keys::hash_key;
use super::key_cache::RateInfo;
use super::rank;
use super::tokens::TokenKind;
use super::AuthUser;
use crate::audit::Origin;
use crate::error::{ApiError, Code};
use crate::state::AppState;

/// The header devices send their key in.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// `last_used_at` is written at most this often per key, so ingest does not write per request.
const LAST_USED_GRANULARITY_SECS: u64 = 60;

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl AuthUser {
    /// Refuses with 403 unless the user's role is at least `min`.
    pub fn require(&self, min: Role) -> Result<(), ApiError> {
        if rank(self.role) >= rank(min) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role or higher; you are {}",
                min.as_str(),
                self.role.as_str()
            ))
            .with_details(serde_json::json!({
                "required_role": min.as_str(),
                "role": self.role.as_str(),
            })))
        }
    }
}

/// A device authenticated by its API key.
#[derive(Debug, Clone)]
pub struct DeviceKey {
    pub key_id: Uuid,
    pub name: String,
    /// When set, the key may only act for this device.
    pub device_id: Option<Uuid>,
    pub read: bool,
    pub write: bool,
    /// When the key stops working, if it expires.
    pub expires_at: Option<chrono::DateTime<Utc>>,
    /// This request's place in the key's hourly allowance.
    pub rate: RateInfo,
}

impl DeviceKey {
    /// Whether the key may act for `device`.
    pub fn covers(&self, device: Uuid) -> bool {
        self.device_id.is_none_or(|own| own == device)
    }

    /// The `X-RateLimit-*` headers for the answer.
    pub fn rate_headers(&self) -> [(&'static str, String); 2] {
        [
            ("X-RateLimit-Limit", self.rate.limit.to_string()),
            ("X-RateLimit-Remaining", self.rate.remaining.to_string()),
        ]
    }
}

/// A person or a device.
#[derive(Debug, Clone)]
pub enum Caller {
    User(AuthUser),
    Device(DeviceKey),
}

/// The client's address: the socket peer, or what a trusted proxy (`server.trusted_proxies`)
/// says in `X-Forwarded-For`.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.trusted_proxies.as_slice())
        .unwrap_or_default();
    Some(super::client_address::client_address(
        peer,
        req.headers(),
        trusted,
    ))
}

/// Where a request came from, for the audit log.
impl From<&HttpRequest> for Origin {
    fn from(req: &HttpRequest) -> Origin {
        Origin { ip: client_ip(req) }
    }
}

/// The token of an `Authorization: Bearer` header; `Ok(None)` when there is no such header.
pub fn bearer_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default().trim();
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_string()))
        }
        _ => Err(ApiError::new(
            Code::InvalidToken,
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state is not registered"))
}

fn missing_credentials() -> ApiError {
    ApiError::new(
        Code::MissingCredentials,
        "authentication required: send `Authorization: Bearer <access token>`",
    )
}

/// Checks an access token and the session and user behind it.
pub async fn authenticate_user(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    let claims = state.jwt.verify(token, TokenKind::Access)?;
    session_user(state, claims.sub, claims.sid).await
}

/// The user of an open session: the account exists and is active, and the session `sid` has not
/// ended (logout, password change) nor expired.
pub async fn session_user(state: &AppState, user: Uuid, sid: Uuid) -> Result<AuthUser, ApiError> {
    let user = users::Entity::find_by_id(user)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::InvalidToken, "the token's user no longer exists"))?;
    if !user.is_active {
        return Err(ApiError::new(
            Code::AccountDisabled,
            "this account is disabled",
        ));
    }
    let open = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::FamilyId.eq(sid))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .filter(refresh_tokens::Column::ExpiresAt.gt(Utc::now()))
        .count(&state.db)
        .await?;
    if open == 0 {
        return Err(ApiError::new(
            Code::SessionEnded,
            "this session has ended (logged out); log in again",
        ));
    }
    Ok(AuthUser {
        id: user.id,
        email: user.email,
        role: user.role,
        session_id: sid,
    })
}

/// Checks an API key (from the cache when fresh) and counts the request against its rate limit.
pub async fn authenticate_key(state: &AppState, key: &str) -> Result<DeviceKey, ApiError> {
    let invalid = || ApiError::new(Code::InvalidApiKey, "the API key is not valid");
    if key.is_empty() || key.len() > 256 {
        return Err(invalid());
    }
    let hash = hash_key(key);
    let cached = match state.keys.get(&hash) {
        Some(cached) => cached,
        None => {
            let row = api_keys::Entity::find()
                .filter(api_keys::Column::KeyHash.eq(hash.as_str()))
                .one(&state.db)
                .await?
                .ok_or_else(invalid)?;
            state.keys.put(hash.clone(), row)
        }
    };
    let row = &cached.row;
    let now = Utc::now();
    if row.revoked_at.is_some() {
        return Err(ApiError::new(
            Code::ApiKeyRevoked,
            "the API key has been revoked",
        ));
    }
    if row.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::new(
            Code::ApiKeyExpired,
            "the API key has expired",
        ));
    }
    let rate_limit = u32::try_from(row.rate_limit).unwrap_or(1);
    let rate = state.keys.check_rate(row.id, rate_limit).map_err(|over| {
        ApiError::new(
            Code::RateLimited,
            format!(
                "API key rate limit exceeded: {} requests per hour; retry in {} s",
                over.limit, over.retry_after_secs
            ),
        )
        .with_details(serde_json::json!({
            "limit": "api_key",
            "requests_per_hour": over.limit,
            "retry_after_secs": over.retry_after_secs,
        }))
        .retry_after(over.retry_after_secs)
        .header("X-RateLimit-Limit", over.limit)
        .header("X-RateLimit-Remaining", 0)
    })?;
    let stale = cached
        .touched
        .is_none_or(|at| at.elapsed().as_secs() >= LAST_USED_GRANULARITY_SECS);
    if stale {
        state.keys.mark_touched(&hash);
        touch_key(state.db.clone(), row.id);
    }
    let permission = |name: &str| {
        row.permissions
            .get(name)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    Ok(DeviceKey {
        key_id: row.id,
        name: row.name.clone(),
        device_id: row.device_id,
        read: permission("read"),
        write: permission("write"),
        expires_at: row.expires_at,
        rate,
    })
}

/// Whether a key still works, read from the database (for connections that outlive a request).
pub async fn key_still_valid(state: &AppState, key_id: Uuid) -> Result<bool, ApiError> {
    let now = Utc::now();
    Ok(api_keys::Entity::find_by_id(key_id)
        .one(&state.db)
        .await?
        .is_some_and(|row| row.revoked_at.is_none() && row.expires_at.is_none_or(|at| at > now)))
}

/// Records use of a key without holding up the request (on whichever runtime the caller runs:
/// an HTTP worker or the embedded broker).
fn touch_key(db: sea_orm::DatabaseConnection, key_id: Uuid) {
    tokio::spawn(async move {
        let result = api_keys::Entity::update_many()
            .col_expr(
                api_keys::Column::LastUsedAt,
                sea_orm::sea_query::Expr::value(Utc::now()),
            )
            .filter(api_keys::Column::Id.eq(key_id))
            .exec(&db)
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, %key_id, "cannot record API key use");
        }
    });
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let prepared = state(req).and_then(|state| Ok((state, bearer_token(req)?)));
        Box::pin(async move {
            let (state, token) = prepared?;
            let token = token.ok_or_else(missing_credentials)?;
            authenticate_user(&state, &token).await
        })
    }
}

fn api_key_header(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(API_KEY_HEADER)
        .map(|v| v.to_str().unwrap_or_default().trim().to_string())
}

impl FromRequest for DeviceKey {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let prepared = state(req);
        let key = api_key_header(req);
        Box::pin(async move {
            let state = prepared?;
            let key = key.ok_or_else(|| {
                ApiError::new(
                    Code::MissingCredentials,
                    format!("authentication required: send the `{API_KEY_HEADER}` header"),
                )
            })?;
            authenticate_key(&state, &key).await
        })
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let prepared = state(req).and_then(|state| Ok((state, bearer_token(req)?)));
        let key = api_key_header(req);
        Box::pin(async move {
            let (state, token) = prepared?;
            match (token, key) {
                (Some(token), _) => Ok(Caller::User(authenticate_user(&state, &token).await?)),
                (None, Some(key)) => Ok(Caller::Device(authenticate_key(&state, &key).await?)),
                (None, None) => Err(missing_credentials()),
            }
        })
    }
}
