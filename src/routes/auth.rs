//! `/auth`: login, token refresh (rotating), logout, the current user, password change.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use insa_domain::text::{self, EMAIL_MAX_CHARS};
use insa_entities::{audit_log, refresh_tokens, users};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::{self, check_password};
use crate::audit::Audit;
use crate::auth::extract::{bearer_token, client_ip};
use crate::auth::password::MAX_PASSWORD_CHARS;
use crate::auth::password::{decoy_hash, verify_password};
use crate::auth::revocation::Revoked;
use crate::auth::throttle::{Tally, Throttled};
use crate::auth::tokens::TokenKind;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code, FieldProblem};
use crate::state::AppState;
use crate::web::answers::UserResponse;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/login", web::post().to(login))
        .route("/auth/refresh", web::post().to(refresh))
        .route("/auth/logout", web::post().to(logout))
        .route("/auth/me", web::get().to(me))
        .route("/auth/password", web::post().to(change_password));
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "admin@insa.com", max_length = 254)]
    pub email: String,
    #[schema(max_length = 1024)]
    pub password: String,
}

/// The seed's login answer, plus `token_type` and `expires_in`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
    pub user: TokenUser,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenUser {
    pub id: Uuid,
    pub email: String,
    #[schema(example = "admin")]
    pub role: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    pub message: String,
}

/// Issues an access token and a refresh token in session `family`, storing the refresh token.
async fn issue_pair(
    state: &AppState,
    db: &impl sea_orm::ConnectionTrait,
    user: &users::Model,
    family: Uuid,
) -> Result<(TokenResponse, Uuid), ApiError> {
    let jti = Uuid::new_v4();
    let now = Utc::now();
    refresh_tokens::ActiveModel {
        id: Set(jti),
        user_id: Set(user.id),
        family_id: Set(family),
        expires_at: Set(now
            + Duration::seconds(i64::try_from(state.jwt.refresh_ttl_secs).unwrap_or(i64::MAX / 2))),
        revoked_at: Set(None),
        replaced_by: Set(None),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    let role = user.role.as_str();
    let access = state.jwt.issue(
        TokenKind::Access,
        user.id,
        family,
        Uuid::new_v4(),
        Some(role),
    )?;
    let refresh = state
        .jwt
        .issue(TokenKind::Refresh, user.id, family, jti, None)?;
    Ok((
        TokenResponse {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: state.jwt.access_ttl_secs,
            refresh_expires_in: state.jwt.refresh_ttl_secs,
            user: TokenUser {
                id: user.id,
                email: user.email.clone(),
                role,
            },
        },
        jti,
    ))
}

/// Audits a throttled attempt: the first refusal of a window writes `entry` (failed,
/// `rate_limited`); the others are counted, and the count is written to that entry when the
/// window (`auth.throttled_audit_window_secs`) ends. Does not hold up the answer.
fn audit_refusal(state: &web::Data<AppState>, entry: Audit, hit: Throttled, subject: &str) {
    let window = std::time::Duration::from_secs(state.settings.auth.throttled_audit_window_secs);
    let Tally::First(refused) = state
        .login_throttle
        .refusals
        .tally(hit.per, subject, window)
    else {
        return;
    };
    let details = move |refused: u64| {
        json!({ "reason": "rate_limited", "per": hit.per, "refused": refused,
                "window_secs": window.as_secs() })
    };
    let entry = entry.failed().details(details(1));
    let db = state.db.clone();
    actix_web::rt::spawn(async move {
        let Some(id) = entry.record_returning_id(&db).await else {
            return;
        };
        tokio::time::sleep(window).await;
        let refused = refused.load(std::sync::atomic::Ordering::Relaxed);
        if refused > 1 {
            let result = audit_log::Entity::update_many()
                .col_expr(audit_log::Column::Details, Expr::value(details(refused)))
                .filter(audit_log::Column::Id.eq(id))
                .exec(&db)
                .await;
            if let Err(err) = result {
                tracing::error!(error = %err, "cannot write the audit log");
            }
        }
    });
}

/// Log in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)"),
        (status = 403, description = "Account disabled (`account_disabled`)"),
        (status = 422, description = "Email longer than 254 or password longer than 1024 characters"),
        (status = 429, description = "Too many attempts (`login_rate_limited`), with Retry-After"),
    ))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: crate::body::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { email, password } = body.into_inner();
    let problems: Vec<FieldProblem> = [
        text::check_len("email", &email, EMAIL_MAX_CHARS),
        text::check_len("password", &password, MAX_PASSWORD_CHARS),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let email = accounts::normalize_email(&email);
    let ip = client_ip(&req);
    if let Err(hit) = state.login_throttle.check(&email, ip) {
        let subject = match hit.per {
            "address" => ip.map(|ip| ip.to_string()).unwrap_or_default(),
            _ => email.clone(),
        };
        audit_refusal(
            &state,
            Audit::new("auth.login").actor(None, &email).ip(ip),
            hit,
            &subject,
        );
        return Err(ApiError::new(
            Code::LoginRateLimited,
            format!(
                "too many login attempts for this {}; try again in {} s",
                hit.per, hit.retry_after_secs
            ),
        )
        .with_details(json!({ "limit": format!("per_{}", hit.per), "retry_after_secs": hit.retry_after_secs }))
        .retry_after(hit.retry_after_secs));
    }

    let user = accounts::find_by_email(&state.db, &email).await?;
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_string(), |u| u.password_hash.clone());
    let matches = web::block(move || verify_password(&password, &hash)).await?;
    let user = match user {
        Some(user) if matches => user,
        found => {
            Audit::new("auth.login")
                .actor(found.map(|u| u.id), &email)
                .ip(ip)
                .failed()
                .details(json!({ "reason": "invalid_credentials" }))
                .record(&state.db)
                .await;
            return Err(ApiError::new(
                Code::InvalidCredentials,
                "wrong email or password",
            ));
        }
    };
    if !user.is_active {
        Audit::new("auth.login")
            .actor(Some(user.id), &email)
            .ip(ip)
            .failed()
            .details(json!({ "reason": "account_disabled" }))
            .record(&state.db)
            .await;
        return Err(ApiError::new(
            Code::AccountDisabled,
            "this account is disabled",
        ));
    }

    let (tokens, _) = issue_pair(&state, &state.db, &user, Uuid::new_v4()).await?;
    let user_id = user.id;
    let mut active: users::ActiveModel = user.into();
    active.last_login_at = Set(Some(Utc::now()));
    active.update(&state.db).await?;
    Audit::new("auth.login")
        .actor(Some(user_id), &email)
        .ip(ip)
        .record(&state.db)
        .await;
    Ok(HttpResponse::Ok().json(tokens))
}

/// Exchange a refresh token (as Bearer) for a new pair; the old refresh token stops working.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Missing, invalid, expired or already used refresh token"),
    ),
    security(("refresh_token" = [])))]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = bearer_token(&req)?.ok_or_else(|| {
        ApiError::new(
            Code::MissingCredentials,
            "send the refresh token as `Authorization: Bearer <refresh token>`",
        )
    })?;
    let claims = state.jwt.verify(&token, TokenKind::Refresh)?;
    let row = refresh_tokens::Entity::find_by_id(claims.jti)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::InvalidToken, "unknown refresh token"))?;
    if row.revoked_at.is_some() {
        // A rotated token came back: someone holds a copy. End the whole session.
        revoke_family(&state, row.family_id).await?;
        Audit::new("auth.refresh_reuse")
            .actor(Some(row.user_id), &row.user_id.to_string())
            .ip(client_ip(&req))
            .failed()
            .details(json!({ "session": row.family_id }))
            .record(&state.db)
            .await;
        return Err(ApiError::new(
            Code::InvalidToken,
            "this refresh token was already used; the session has been ended, log in again",
        ));
    }
    let user = users::Entity::find_by_id(row.user_id)
        .one(&state.db)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(|| ApiError::new(Code::InvalidToken, "the account is gone or disabled"))?;

    let txn = state.db.begin().await?;
    let (tokens, new_jti) = issue_pair(&state, &txn, &user, row.family_id).await?;
    // Only one of two concurrent refreshes with the same token may win.
    let claimed = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .col_expr(refresh_tokens::Column::ReplacedBy, Expr::value(new_jti))
        .filter(refresh_tokens::Column::Id.eq(row.id))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        txn.rollback().await?;
        return Err(ApiError::new(
            Code::InvalidToken,
            "this refresh token was already used",
        ));
    }
    txn.commit().await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// Ends a session: its refresh tokens, and (announced) its live connections.
async fn revoke_family(state: &AppState, family: Uuid) -> Result<(), ApiError> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::FamilyId.eq(family))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&state.db)
        .await?;
    state.credentials_ended(Revoked::Session(family));
    Ok(())
}

/// End the session of the given token (access or refresh, as Bearer); both stop working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses(
        (status = 200, description = "Logged out", body = MessageResponse),
        (status = 401, description = "Missing or invalid token"),
    ),
    security(("bearer" = []), ("refresh_token" = [])))]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = bearer_token(&req)?.ok_or_else(|| {
        ApiError::new(Code::MissingCredentials, "send the token to end as Bearer")
    })?;
    let claims = state
        .jwt
        .verify(&token, TokenKind::Access)
        .or_else(|_| state.jwt.verify(&token, TokenKind::Refresh))?;
    revoke_family(&state, claims.sid).await?;
    Audit::new("auth.logout")
        .actor(Some(claims.sub), &claims.sub.to_string())
        .ip(client_ip(&req))
        .record(&state.db)
        .await;
    Ok(HttpResponse::Ok().json(MessageResponse {
        message: "Logged out".into(),
    }))
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, description = "The current user", body = UserResponse),
              (status = 401, description = "Not logged in")),
    security(("bearer" = [])))]
pub async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let model = users::Entity::find_by_id(user.id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::UserNotFound, "user not found"))?;
    Ok(HttpResponse::Ok().json(UserResponse::from(model)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    #[schema(min_length = 8, max_length = 1024)]
    pub new_password: String,
}

/// Change one's own password; other sessions of the user are ended.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth",
    request_body = ChangePasswordRequest,
    responses((status = 200, description = "Changed", body = MessageResponse),
              (status = 403, description = "Current password wrong (`wrong_password`)"),
              (status = 422, description = "New password too short or long"),
              (status = 429, description = "Too many attempts for this account (`rate_limited`), with Retry-After")),
    security(("bearer" = [])))]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: crate::body::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let ChangePasswordRequest {
        current_password,
        new_password,
    } = body.into_inner();
    if let Err(hit) = state.login_throttle.check_password_change(user.id) {
        audit_refusal(
            &state,
            Audit::by("user.password_change", &user, &req).target("user", user.id),
            hit,
            &user.id.to_string(),
        );
        return Err(ApiError::new(
            Code::RateLimited,
            format!(
                "too many password-change attempts for this account; try again in {} s",
                hit.retry_after_secs
            ),
        )
        .with_details(
            json!({ "limit": "password_per_account", "retry_after_secs": hit.retry_after_secs }),
        )
        .retry_after(hit.retry_after_secs));
    }
    check_password("new_password", &new_password)?;
    let model = users::Entity::find_by_id(user.id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::UserNotFound, "user not found"))?;
    let hash = model.password_hash.clone();
    if !web::block(move || verify_password(&current_password, &hash)).await? {
        Audit::by("user.password_change", &user, &req)
            .failed()
            .record(&state.db)
            .await;
        return Err(ApiError::new(
            Code::WrongPassword,
            "the current password is wrong",
        ));
    }
    accounts::set_password(&state.db, model, &new_password, Some(user.session_id)).await?;
    state.credentials_ended(Revoked::User {
        user: user.id,
        except: Some(user.session_id),
    });
    Audit::by("user.password_change", &user, &req)
        .target("user", user.id)
        .record(&state.db)
        .await;
    Ok(HttpResponse::Ok().json(MessageResponse {
        message: "Password changed; other sessions have been logged out".into(),
    }))
}
