//! User accounts, shared by the REST API, the CLI and first start.

use chrono::Utc;
use insa_entities::{refresh_tokens, users, Role};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, Set,
};
use uuid::Uuid;

use crate::auth::password::{generate_password, hash_password};
use crate::error::{ApiError, Code, FieldProblem};
use crate::settings::AuthSettings;

/// Emails are compared and stored lower-cased and trimmed.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Hashes off the async workers (argon2 takes tens of milliseconds on purpose).
pub async fn hash_blocking(password: String) -> Result<String, ApiError> {
    actix_web::web::block(move || hash_password(&password))
        .await?
        .map_err(ApiError::internal)
}

/// Checks a new password against the rules, naming `field` in the 422.
pub fn check_password(field: &str, password: &str) -> Result<(), ApiError> {
    match crate::auth::password_problem(password) {
        Some(problem) => Err(ApiError::validation(vec![FieldProblem::new(
            field, problem,
        )])),
        None => Ok(()),
    }
}

pub async fn find_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<users::Model>, ApiError> {
    Ok(users::Entity::find()
        .filter(users::Column::Email.eq(normalize_email(email)))
        .one(db)
        .await?)
}

/// Creates a user; 409 `email_taken` if the address is in use.
pub async fn create_user(
    db: &DatabaseConnection,
    email: &str,
    password: &str,
    role: Role,
    name: Option<String>,
) -> Result<users::Model, ApiError> {
    let email = normalize_email(email);
    if find_by_email(db, &email).await?.is_some() {
        return Err(ApiError::new(
            Code::EmailTaken,
            format!("a user with email {email} already exists"),
        ));
    }
    let hash = hash_blocking(password.to_string()).await?;
    let now = Utc::now();
    let user = users::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(email),
        password_hash: Set(hash),
        role: Set(role),
        name: Set(name),
        is_active: Set(true),
        last_login_at: Set(None),
        password_changed_at: Set(Some(now)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(user.insert(db).await?)
}

/// Sets a new password and ends every session of the user except `keep_session`.
pub async fn set_password(
    db: &DatabaseConnection,
    user: users::Model,
    password: &str,
    keep_session: Option<Uuid>,
) -> Result<users::Model, ApiError> {
    let hash = hash_blocking(password.to_string()).await?;
    let user_id = user.id;
    let now = Utc::now();
    let mut active: users::ActiveModel = user.into();
    active.password_hash = Set(hash);
    active.password_changed_at = Set(Some(now));
    active.updated_at = Set(now);
    let user = active.update(db).await?;
    end_sessions(db, user_id, keep_session).await?;
    Ok(user)
}

/// Revokes the user's open refresh tokens (all sessions but `keep_session`).
pub async fn end_sessions(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    keep_session: Option<Uuid>,
) -> Result<(), ApiError> {
    let mut update = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::UserId.eq(user_id))
        .filter(refresh_tokens::Column::RevokedAt.is_null());
    if let Some(keep) = keep_session {
        update = update.filter(refresh_tokens::Column::FamilyId.ne(keep));
    }
    update.exec(db).await?;
    Ok(())
}

/// How many active admins there are (the last one may not be removed or demoted).
pub async fn active_admins(db: &impl ConnectionTrait) -> Result<u64, ApiError> {
    Ok(users::Entity::find()
        .filter(users::Column::Role.eq(Role::Admin))
        .filter(users::Column::IsActive.eq(true))
        .count(db)
        .await?)
}

/// On first start (no users at all) creates the administrator. Returns the generated password
/// when none was configured, so the caller prints it once.
pub async fn bootstrap_admin(
    db: &DatabaseConnection,
    settings: &AuthSettings,
) -> Result<Option<(String, Option<String>)>, ApiError> {
    if users::Entity::find().count(db).await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match &settings.admin_password {
        Some(password) => (password.expose().to_string(), false),
        None => (generate_password(), true),
    };
    let admin = create_user(
        db,
        &settings.admin_email,
        &password,
        Role::Admin,
        Some("Administrator".into()),
    )
    .await?;
    tracing::info!(email = %admin.email, "created the administrator account");
    Ok(Some((admin.email, generated.then_some(password))))
}
