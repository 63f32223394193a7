use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, As, ADMIN_EMAIL};

async fn admin_id(app: &crate::helpers::TestApp, token: &str) -> String {
    let me = app.get("/api/v1/auth/me", As::Bearer(token)).await;
    me.body["id"].as_str().expect("id").to_string()
}

#[actix_web::test]
async fn an_admin_creates_lists_updates_and_deletes_users() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app
        .post(
            "/api/v1/users",
            As::Bearer(&token),
            &json!({"email": "Maria.Lopez@insa.com", "password": "pump-station-7", "role": "engineer", "name": "María López"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.body["email"], "maria.lopez@insa.com");
    assert_eq!(created.body["role"], "engineer");
    assert_eq!(created.body["name"], "María López");
    assert!(created.body.get("password_hash").is_none());
    let id = created.body["id"].as_str().expect("id").to_string();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/users/{id}").as_str())
    );

    let list = app.get("/api/v1/users", As::Bearer(&token)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["total"], 2);
    let engineers = app
        .get("/api/v1/users?role=engineer", As::Bearer(&token))
        .await;
    assert_eq!(engineers.body["total"], 1);
    assert_eq!(engineers.body["users"][0]["id"], id.as_str());

    let updated = app
        .put(
            &format!("/api/v1/users/{id}"),
            As::Bearer(&token),
            &json!({"role": "operator", "name": null}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{updated:?}");
    assert_eq!(updated.body["role"], "operator");
    assert_eq!(updated.body["name"], Value::Null);
    assert_eq!(updated.body["email"], "maria.lopez@insa.com");

    assert!(!app
        .token_for("maria.lopez@insa.com", "pump-station-7")
        .await
        .is_empty());

    let fetched = app
        .get(&format!("/api/v1/users/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(fetched.body["role"], "operator");

    let deleted = app
        .delete(&format!("/api/v1/users/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app
        .get(&format!("/api/v1/users/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "user_not_found");
    assert_eq!(
        app.login("maria.lopez@insa.com", "pump-station-7")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let audit = app.get("/api/v1/audit-log", As::Bearer(&token)).await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["user.create", "user.update", "user.delete"] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
}

#[actix_web::test]
async fn a_taken_email_is_a_conflict() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let reply = app
        .post(
            "/api/v1/users",
            As::Bearer(&token),
            &json!({"email": "ADMIN@insa.com", "password": "another-password", "role": "viewer"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code(), "email_taken");
}

#[actix_web::test]
async fn invalid_user_fields_are_named_in_a_422() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let reply = app
        .post(
            "/api/v1/users",
            As::Bearer(&token),
            &json!({"email": "not-an-email", "password": "short", "role": "superuser"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.code(), "validation_failed");
    assert_eq!(reply.fields(), ["email", "password", "role"]);
}

#[actix_web::test]
async fn the_last_admin_cannot_be_demoted_disabled_or_deleted() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let id = admin_id(&app, &token).await;
    for change in [json!({"role": "viewer"}), json!({"is_active": false})] {
        let reply = app
            .put(&format!("/api/v1/users/{id}"), As::Bearer(&token), &change)
            .await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{change}: {reply:?}");
        assert_eq!(reply.code(), "last_admin");
    }
    let me = app.get("/api/v1/auth/me", As::Bearer(&token)).await;
    assert_eq!(me.body["role"], "admin");

    // With a second admin the first may step down; nobody may delete their own account.
    let (_, _, second) = app.user_with_role(&token, "admin").await;
    let second_id = admin_id(&app, &second).await;
    let demoted = app
        .put(
            &format!("/api/v1/users/{id}"),
            As::Bearer(&token),
            &json!({"role": "engineer"}),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK, "{demoted:?}");
    let self_delete = app
        .delete(&format!("/api/v1/users/{second_id}"), As::Bearer(&second))
        .await;
    assert_eq!(self_delete.status, StatusCode::CONFLICT);
    assert_eq!(self_delete.code(), "cannot_delete_self");
}

#[actix_web::test]
async fn a_role_change_applies_to_existing_tokens_at_once() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, _, token) = app.user_with_role(&admin, "engineer").await;
    let id = admin_id(&app, &token).await;
    let body = json!({"name": "Flow meter", "type": "flow"});
    assert_eq!(
        app.post("/api/v1/devices", As::Bearer(&token), &body)
            .await
            .status,
        StatusCode::CREATED
    );

    app.put(
        &format!("/api/v1/users/{id}"),
        As::Bearer(&admin),
        &json!({"role": "viewer"}),
    )
    .await;
    let reply = app.post("/api/v1/devices", As::Bearer(&token), &body).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
}

#[actix_web::test]
async fn an_admin_password_reset_ends_the_users_sessions() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (email, old_password, token) = app.user_with_role(&admin, "viewer").await;
    let id = admin_id(&app, &token).await;
    let reply = app
        .put(
            &format!("/api/v1/users/{id}"),
            As::Bearer(&admin),
            &json!({"password": "reset-by-admin-1"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        app.get("/api/v1/auth/me", As::Bearer(&token)).await.code(),
        "session_ended"
    );
    assert_eq!(
        app.login(&email, &old_password).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&email, "reset-by-admin-1").await.status,
        StatusCode::OK
    );
    // The user's sessions, not the admin's who reset the password.
    let me = app.get("/api/v1/auth/me", As::Bearer(&admin)).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.body["email"], ADMIN_EMAIL);
}
