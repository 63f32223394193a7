//! `/users`: accounts, for administrators.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use insa_domain::text::{self, NAME_MAX_CHARS};
use insa_entities::{users, Role};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, Iterable, QueryFilter, QueryOrder, Set};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::{self, check_password};
use crate::audit::Audit;
use crate::auth::extract::client_ip;
use crate::auth::revocation::Revoked;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code, FieldProblem};
use crate::state::AppState;
use crate::web::answers::UserResponse;
use crate::web::list::{list_query, one_of, Items, Listed, Paged};
use crate::web::patch::present;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/users")
            .route(web::get().to(list_users))
            .route(web::post().to(create_user)),
    )
    .service(
        web::resource("/users/{id}")
            .route(web::get().to(get_user))
            .route(web::put().to(update_user))
            .route(web::delete().to(delete_user)),
    );
}

impl Items for UserResponse {
    const FIELD: &'static str = "users";
    const LIST: &'static str = "UserList";
}

/// `{users, total, limit, offset}`.
pub type UserList = Listed<UserResponse>;

list_query! {
    pub struct UserQuery {
        /// admin, engineer, operator or viewer
        #[param(pattern = "^(admin|engineer|operator|viewer)$")]
        pub role: Option<String>,
    }
}

fn parse_role(field: &str, role: &str) -> Result<Role, ApiError> {
    Role::parse(role).ok_or_else(|| {
        ApiError::validation(vec![FieldProblem::new(
            field,
            "must be one of admin, engineer, operator, viewer",
        )])
    })
}

async fn find_user(state: &AppState, id: Uuid) -> Result<users::Model, ApiError> {
    users::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::UserNotFound, format!("no user with id {id}")))
}

/// List users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UserQuery),
    responses((status = 200, body = UserList), (status = 403, description = "Not an admin")),
    security(("bearer" = [])))]
pub async fn list_users(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Admin)?;
    let page = query.page()?;
    let mut select = users::Entity::find();
    if let Some(role) = &query.role {
        let role = one_of("role", role, Role::iter())?;
        select = select.filter(users::Column::Role.eq(role));
    }
    let listed = page
        .fetch(&state.db, select.order_by_asc(users::Column::Email))
        .await?;
    Ok(HttpResponse::Ok().json(listed.map(UserResponse::from)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(
        required = true,
        nullable = false,
        pattern = "^[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^@\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+@[^@\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$",
        max_length = 254
    )]
    pub email: Option<String>,
    #[schema(required = true, nullable = false, min_length = 8, max_length = 1024)]
    pub password: Option<String>,
    /// admin, engineer, operator or viewer (default viewer)
    #[schema(pattern = "^(admin|engineer|operator|viewer)$")]
    pub role: Option<String>,
    #[schema(max_length = 255)]
    pub name: Option<String>,
}

/// Create a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserResponse), (status = 409, description = "`email_taken`"),
              (status = 422, description = "Invalid fields")),
    security(("bearer" = [])))]
pub async fn create_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AuthUser,
    body: crate::body::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Role::Admin)?;
    let body = body.into_inner();
    let mut problems = Vec::new();
    let email = body.email.unwrap_or_default();
    if let Err(problem) = text::check_email("email", &email) {
        problems.push(problem);
    }
    let password = body.password.unwrap_or_default();
    if let Some(problem) = crate::auth::password_problem(&password) {
        problems.push(FieldProblem::new("password", problem));
    }
    let role = match body.role.as_deref() {
        None => Some(Role::Viewer),
        Some(role) => Role::parse(role),
    };
    if role.is_none() {
        problems.push(FieldProblem::new(
            "role",
            "must be one of admin, engineer, operator, viewer",
        ));
    }
    text::check_optional(&mut problems, "name", body.name.as_deref(), NAME_MAX_CHARS);
    let (Some(role), true) = (role, problems.is_empty()) else {
        return Err(ApiError::validation(problems));
    };
    let created = accounts::create_user(&state.db, &email, &password, role, body.name).await?;
    Audit::new("user.create")
        .actor(Some(admin.id), &admin.email)
        .target("user", created.id)
        .ip(client_ip(&req))
        .details(json!({ "email": created.email, "role": role.as_str() }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/users/{}", created.id)))
        .json(UserResponse::from(created)))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = UserResponse), (status = 404, description = "`user_not_found`")),
    security(("bearer" = [])))]
pub async fn get_user(
    state: web::Data<AppState>,
    admin: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(UserResponse::from(find_user(&state, *id).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[schema(
        pattern = "^[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^@\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+@[^@\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$",
        max_length = 254
    )]
    pub email: Option<String>,
    #[schema(pattern = "^(admin|engineer|operator|viewer)$")]
    pub role: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 255)]
    pub name: Option<Option<String>>,
    pub is_active: Option<bool>,
    /// Sets a new password and logs the user out everywhere.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: Option<String>,
}

/// Change a user: only the fields given. The last active admin cannot be demoted or disabled.
#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "users", request_body = UpdateUser,
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = UserResponse), (status = 404, description = "`user_not_found`"),
              (status = 409, description = "`email_taken` or `last_admin`")),
    security(("bearer" = [])))]
pub async fn update_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AuthUser,
    id: web::Path<Uuid>,
    body: crate::body::Json<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Role::Admin)?;
    let body = body.into_inner();
    let existing = find_user(&state, *id).await?;
    let role = body
        .role
        .as_deref()
        .map(|r| parse_role("role", r))
        .transpose()?;
    if let Some(password) = &body.password {
        check_password("password", password)?;
    }
    let loses_admin = existing.role == Role::Admin
        && existing.is_active
        && (role.is_some_and(|r| r != Role::Admin) || body.is_active == Some(false));
    if loses_admin && accounts::active_admins(&state.db).await? <= 1 {
        return Err(ApiError::new(
            Code::LastAdmin,
            "this is the last active admin; make another admin first",
        ));
    }
    let mut active: users::ActiveModel = existing.clone().into();
    if let Some(email) = &body.email {
        text::check_email("email", email).map_err(|problem| ApiError::validation(vec![problem]))?;
        let email = accounts::normalize_email(email);
        if email != existing.email {
            if accounts::find_by_email(&state.db, &email).await?.is_some() {
                return Err(ApiError::new(
                    Code::EmailTaken,
                    format!("a user with email {email} already exists"),
                ));
            }
            active.email = Set(email);
        }
    }
    if let Some(role) = role {
        active.role = Set(role);
    }
    if let Some(name) = body.name {
        if let Some(name) = &name {
            text::check_len("name", name, NAME_MAX_CHARS)
                .map_err(|problem| ApiError::validation(vec![problem]))?;
        }
        active.name = Set(name);
    }
    if let Some(is_active) = body.is_active {
        active.is_active = Set(is_active);
    }
    active.updated_at = Set(Utc::now());
    let mut updated = active.update(&state.db).await?;
    if let Some(password) = &body.password {
        updated = accounts::set_password(&state.db, updated, password, None).await?;
    }
    if body.is_active == Some(false) {
        accounts::end_sessions(&state.db, updated.id, None).await?;
    }
    if body.is_active == Some(false) || body.password.is_some() {
        state.credentials_ended(Revoked::User {
            user: updated.id,
            except: None,
        });
    }
    Audit::new("user.update")
        .actor(Some(admin.id), &admin.email)
        .target("user", updated.id)
        .ip(client_ip(&req))
        .details(json!({
            "role": role.map(Role::as_str),
            "is_active": body.is_active,
            "password_changed": body.password.is_some(),
        }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::Ok().json(UserResponse::from(updated)))
}

/// Delete a user (not oneself, not the last admin).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "`user_not_found`"),
              (status = 409, description = "`cannot_delete_self` or `last_admin`")),
    security(("bearer" = [])))]
pub async fn delete_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Role::Admin)?;
    let existing = find_user(&state, *id).await?;
    if existing.id == admin.id {
        return Err(ApiError::new(
            Code::CannotDeleteSelf,
            "you cannot delete your own account",
        ));
    }
    if existing.role == Role::Admin
        && existing.is_active
        && accounts::active_admins(&state.db).await? <= 1
    {
        return Err(ApiError::new(
            Code::LastAdmin,
            "this is the last active admin",
        ));
    }
    users::Entity::delete_by_id(existing.id)
        .exec(&state.db)
        .await?;
    state.credentials_ended(Revoked::User {
        user: existing.id,
        except: None,
    });
    Audit::new("user.delete")
        .actor(Some(admin.id), &admin.email)
        .target("user", existing.id)
        .ip(client_ip(&req))
        .details(json!({ "email": existing.email }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::NoContent().finish())
}
