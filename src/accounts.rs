//! User accounts, shared by the REST API, the CLI and first start. Knows nothing of HTTP: its
//! refusals are [`AccountError`]s, which the web layer answers (`src/error/from_domain.rs`).

use chrono::Utc;
use insa_domain::FieldProblem;
use insa_entities::{refresh_tokens, users, Role};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, Set,
};
use uuid::Uuid;

use crate::auth::password::{generate_password, hash_password};
use crate::settings::AuthSettings;

/// Why an account could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The address belongs to another account (409 `email_taken`).
    #[error("a user with email {0} already exists")]
    EmailTaken(String),
    /// A new password breaks the rules (422 `validation_failed`, naming the field).
    #[error("{}: {}", .0.field, .0.message)]
    Password(FieldProblem),
    /// Hashing failed: unexpected, answered as an internal error.
    #[error("password hashing: {0}")]
    Hashing(String),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// Emails are compared and stored lower-cased and trimmed.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Hashes off the async workers (argon2 takes tens of milliseconds on purpose).
pub async fn hash_blocking(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|err| AccountError::Hashing(format!("blocking task: {err}")))?
        .map_err(|err| AccountError::Hashing(err.to_string()))
}

/// Checks a new password against the rules, naming `field` in the 422.
pub fn check_password(field: &str, password: &str) -> Result<(), AccountError> {
    match crate::auth::password_problem(password) {
        Some(problem) => Err(AccountError::Password(FieldProblem::new(field, problem))),
        None => Ok(()),
    }
}

/// The account of an address, compared as stored (normalised).
pub async fn find_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find()
        .filter(users::Column::Email.eq(normalize_email(email)))
        .one(db)
        .await
}

/// Creates a user; [`AccountError::EmailTaken`] if the address is in use.
pub async fn create_user(
    db: &DatabaseConnection,
    email: &str,
    password: &str,
    role: Role,
    name: Option<String>,
) -> Result<users::Model, AccountError> {
    let email = normalize_email(email);
    if find_by_email(db, &email).await?.is_some() {
        return Err(AccountError::EmailTaken(email));
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
) -> Result<users::Model, AccountError> {
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
) -> Result<(), DbErr> {
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
pub async fn active_admins(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    users::Entity::find()
        .filter(users::Column::Role.eq(Role::Admin))
        .filter(users::Column::IsActive.eq(true))
        .count(db)
        .await
}

/// On first start (no users at all) creates the administrator. Returns the generated password
/// when none was configured, so the caller prints it once.
pub async fn bootstrap_admin(
    db: &DatabaseConnection,
    settings: &AuthSettings,
) -> Result<Option<(String, Option<String>)>, AccountError> {
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
