//! The whole role x endpoint matrix of the platform's access rules (docs/API.md, "Authentication": the roles table).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{seed_device, spawn_app, As};

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug)]
enum Allowed {
    Anyone,
    AnyUser,
    Viewer,
    Engineer,
    Admin,
}

const ROLES: [&str; 4] = ["viewer", "operator", "engineer", "admin"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap_or(0)
}

fn permits(allowed: Allowed, role: Option<&str>) -> bool {
    match (allowed, role) {
        (Allowed::Anyone, _) => true,
        (_, None) => false,
        (Allowed::AnyUser | Allowed::Viewer, Some(_)) => true,
        (Allowed::Engineer, Some(role)) => rank(role) >= rank("engineer"),
        (Allowed::Admin, Some(role)) => role == "admin",
    }
}

#[actix_web::test]
async fn every_endpoint_enforces_its_roles() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let mut tokens = Vec::new();
    for role in ["viewer", "operator", "engineer"] {
        tokens.push((role, app.user_with_role(&admin, role).await.2));
    }
    tokens.push(("admin", admin.clone()));

    let device = app.create_device(&admin, seed_device()).await;
    let device_id = device["id"].as_str().expect("id").to_string();
    let (_, key) = app
        .create_api_key(&admin, json!({"name": "k", "device_id": device_id}))
        .await;
    let key_id = key["id"].as_str().expect("id").to_string();
    let target = app
        .post(
            "/api/v1/users",
            As::Bearer(&admin),
            &json!({"email": "target@insa.com", "password": "target-password", "role": "viewer"}),
        )
        .await;
    let user_id = target.body["id"].as_str().expect("id").to_string();

    let new_device = json!({"name": "Matrix device", "type": "flow"});
    let matrix: Vec<(Method, String, Option<Value>, Allowed)> = vec![
        (Method::GET, "/health".into(), None, Allowed::Anyone),
        (Method::GET, "/api/v1/status".into(), None, Allowed::Anyone),
        (
            Method::GET,
            "/api/v1/openapi.json".into(),
            None,
            Allowed::Anyone,
        ),
        (
            Method::GET,
            "/api/v1/auth/me".into(),
            None,
            Allowed::AnyUser,
        ),
        (
            Method::POST,
            "/api/v1/auth/password".into(),
            Some(json!({"current_password": "x", "new_password": "short"})),
            Allowed::AnyUser,
        ),
        (Method::GET, "/api/v1/devices".into(), None, Allowed::Viewer),
        (
            Method::GET,
            format!("/api/v1/devices/{device_id}"),
            None,
            Allowed::Viewer,
        ),
        (
            Method::POST,
            "/api/v1/devices".into(),
            Some(new_device),
            Allowed::Engineer,
        ),
        (
            Method::PUT,
            format!("/api/v1/devices/{device_id}"),
            Some(json!({"location": "Zone C"})),
            Allowed::Engineer,
        ),
        (
            Method::GET,
            "/api/v1/api-keys".into(),
            None,
            Allowed::Engineer,
        ),
        (
            Method::GET,
            format!("/api/v1/api-keys/{key_id}"),
            None,
            Allowed::Engineer,
        ),
        (
            Method::POST,
            "/api/v1/api-keys".into(),
            Some(json!({"name": "matrix", "device_id": device_id})),
            Allowed::Engineer,
        ),
        (
            Method::DELETE,
            format!("/api/v1/api-keys/{key_id}"),
            None,
            Allowed::Engineer,
        ),
        (Method::GET, "/api/v1/users".into(), None, Allowed::Admin),
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"email": "new@insa.com", "password": "new-password", "role": "viewer"})),
            Allowed::Admin,
        ),
        (
            Method::GET,
            format!("/api/v1/users/{user_id}"),
            None,
            Allowed::Admin,
        ),
        (
            Method::PUT,
            format!("/api/v1/users/{user_id}"),
            Some(json!({"name": "Target"})),
            Allowed::Admin,
        ),
        (
            Method::GET,
            "/api/v1/audit-log".into(),
            None,
            Allowed::Admin,
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/{user_id}"),
            None,
            Allowed::Admin,
        ),
        (
            Method::DELETE,
            format!("/api/v1/devices/{device_id}"),
            None,
            Allowed::Engineer,
        ),
    ];

    let mut checked = 0;
    for (method, path, body, allowed) in &matrix {
        let callers = std::iter::once((None, As::Nobody)).chain(
            tokens
                .iter()
                .map(|(role, token)| (Some(*role), As::Bearer(token))),
        );
        for (role, who) in callers {
            let reply = app.send(method.clone(), path, who, body.as_ref()).await;
            let label = format!("{method} {path} as {}", role.unwrap_or("nobody"));
            if permits(*allowed, role) {
                assert!(
                    reply.status != StatusCode::UNAUTHORIZED
                        && reply.status != StatusCode::FORBIDDEN,
                    "{label} should be allowed: {reply:?}"
                );
            } else if role.is_none() {
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{label}: {reply:?}");
                assert_eq!(reply.code(), "missing_credentials", "{label}");
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{label}: {reply:?}");
                assert_eq!(reply.code(), "forbidden", "{label}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, matrix.len() * 5);

    // Logout: anyone logged in, nobody without a token.
    let out = app
        .post("/api/v1/auth/logout", As::Nobody, &json!({}))
        .await;
    assert_eq!(out.status, StatusCode::UNAUTHORIZED);
    for (role, token) in &tokens {
        let out = app
            .post("/api/v1/auth/logout", As::Bearer(token), &json!({}))
            .await;
        assert_eq!(out.status, StatusCode::OK, "logout as {role}");
    }
}
