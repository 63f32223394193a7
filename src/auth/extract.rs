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

use super::device_key::{authenticate_key, DeviceKey};
use super::rank;
use super::tokens::TokenKind;
use super::AuthUser;
use crate::audit::Origin;
use crate::error::{ApiError, Code};
use crate::state::AppState;

/// The header devices send their key in.
pub const API_KEY_HEADER: &str = "X-API-Key";

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

/// Whether a key still works, read from the database (for connections that outlive a request).
pub async fn key_still_valid(state: &AppState, key_id: Uuid) -> Result<bool, ApiError> {
    let now = Utc::now();
    Ok(api_keys::Entity::find_by_id(key_id)
        .one(&state.db)
        .await?
        .is_some_and(|row| row.revoked_at.is_none() && row.expires_at.is_none_or(|at| at > now)))
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
            Ok(authenticate_key(&state.db, &state.keys, &key).await?)
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
                (None, Some(key)) => Ok(Caller::Device(
                    authenticate_key(&state.db, &state.keys, &key).await?,
                )),
                (None, None) => Err(missing_credentials()),
            }
        })
    }
}
