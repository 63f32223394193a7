use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, seed_device, spawn_app, As};

/// The product README's "Create API Key" body, with its device and expiry filled in.
fn seed_api_key(device_id: &Value, expires_at: &str) -> Value {
    json!({
        "name": "Production Sensor Key",
        "device_id": device_id,
        "permissions": {"read": true, "write": true},
        "rate_limit": 10000,
        "expires_at": expires_at
    })
}

#[actix_web::test]
async fn the_seeds_create_api_key_example_returns_the_key_once_with_a_warning() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let reply = app
        .post(
            "/api/v1/api-keys",
            As::Bearer(&token),
            &seed_api_key(&device["id"], "2099-10-27T00:00:00Z"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let body = &reply.body;
    assert_eq!(body["message"], "API key created successfully");
    assert_eq!(
        body["warning"],
        "Save this API key securely. It cannot be retrieved later."
    );
    let key = body["api_key"].as_str().expect("api_key");
    assert_eq!(key.len(), 43, "256 bits in base64url");
    assert!(key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert_eq!(body["key_info"]["name"], "Production Sensor Key");
    assert!(body["key_info"]["id"].is_string());
    assert!(body["key_info"]["created_at"].is_string());
    assert_eq!(body["key_info"]["device_id"], device["id"]);
    assert_eq!(body["key_info"]["rate_limit"], 10000);
    assert_eq!(body["key_info"]["prefix"], &key[..8]);

    // Listed and fetched without the secret.
    let list = app.get("/api/v1/api-keys", As::Bearer(&token)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["total"], 1);
    let listed = &list.body["api_keys"][0];
    assert_eq!(listed["prefix"], &key[..8]);
    assert!(listed.get("expires_at").is_some() && listed.get("revoked_at").is_some());
    assert!(listed.get("last_used_at").is_some());
    let text = list.body.to_string();
    assert!(!text.contains(key), "the secret must never be listed");
    assert!(!text.contains("hash"), "no hash in the listing");
    let id = listed["id"].as_str().expect("id");
    let one = app
        .get(&format!("/api/v1/api-keys/{id}"), As::Bearer(&token))
        .await;
    assert!(!one.body.to_string().contains(key));
}

#[actix_web::test]
async fn a_key_reads_its_own_device_only() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let mine = app.create_device(&token, seed_device()).await;
    let other = app
        .create_device(&token, json!({"name": "Other", "type": "flow"}))
        .await;
    let (key, _) = app
        .create_api_key(&token, json!({"name": "k", "device_id": mine["id"], "permissions": {"read": true, "write": true}}))
        .await;
    let own = app
        .get(
            &format!("/api/v1/devices/{}", mine["id"].as_str().expect("id")),
            As::ApiKey(&key),
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{own:?}");
    assert_eq!(own.body["name"], "Temperature Sensor 01");
    let foreign = app
        .get(
            &format!("/api/v1/devices/{}", other["id"].as_str().expect("id")),
            As::ApiKey(&key),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    // A device key is not a user: it cannot list devices or manage anything.
    let list = app.get("/api/v1/devices", As::ApiKey(&key)).await;
    assert_eq!(list.status, StatusCode::UNAUTHORIZED);

    let (write_only, _) = app
        .create_api_key(&token, json!({"name": "w", "device_id": mine["id"]}))
        .await;
    let reply = app
        .get(
            &format!("/api/v1/devices/{}", mine["id"].as_str().expect("id")),
            As::ApiKey(&write_only),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "default permissions are write-only"
    );
}

#[actix_web::test]
async fn unknown_revoked_and_expired_keys_are_401() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let path = format!("/api/v1/devices/{}", device["id"].as_str().expect("id"));

    let unknown = app
        .get(
            &path,
            As::ApiKey("B5FSug5OUcxNFGyMYyI_HOhWx1fPBXnxhD6GkoQ-SS4"),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.code(), "invalid_api_key");

    let (key, info) = app
        .create_api_key(
            &token,
            json!({"name": "r", "device_id": device["id"], "permissions": {"read": true}}),
        )
        .await;
    assert_eq!(
        app.get(&path, As::ApiKey(&key)).await.status,
        StatusCode::OK
    );
    let id = info["id"].as_str().expect("id");
    let revoked = app
        .delete(&format!("/api/v1/api-keys/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    let revoked_at = revoked.body["key_info"]["revoked_at"].clone();
    assert!(revoked_at.is_string());
    let reply = app.get(&path, As::ApiKey(&key)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "api_key_revoked");
    let again = app
        .delete(&format!("/api/v1/api-keys/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(
        again.body["key_info"]["revoked_at"], revoked_at,
        "revoking twice keeps the first time"
    );

    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (expiring, _) = app
        .create_api_key(&token, json!({"name": "e", "device_id": device["id"], "permissions": {"read": true}, "expires_at": soon}))
        .await;
    assert_eq!(
        app.get(&path, As::ApiKey(&expiring)).await.status,
        StatusCode::OK
    );
    let expired = eventually(Duration::from_secs(6), "key expiry", || async {
        let reply = app.get(&path, As::ApiKey(&expiring)).await;
        (reply.status == StatusCode::UNAUTHORIZED).then_some(reply)
    })
    .await;
    assert_eq!(expired.code(), "api_key_expired");
}

#[actix_web::test]
async fn use_of_a_key_is_recorded() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let (key, info) = app
        .create_api_key(
            &token,
            json!({"name": "r", "device_id": device["id"], "permissions": {"read": true}}),
        )
        .await;
    assert!(info["last_used_at"].is_null());
    app.get(
        &format!("/api/v1/devices/{}", device["id"].as_str().expect("id")),
        As::ApiKey(&key),
    )
    .await;
    let path = format!("/api/v1/api-keys/{}", info["id"].as_str().expect("id"));
    eventually(Duration::from_secs(5), "last_used_at", || async {
        let reply = app.get(&path, As::Bearer(&token)).await;
        reply.body["last_used_at"].is_string().then_some(())
    })
    .await;
}

#[actix_web::test]
async fn invalid_key_requests_are_named_in_a_422() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let cases = [
        (json!({"permissions": {"read": true}}), "name"),
        (
            json!({"name": "k", "device_id": uuid::Uuid::new_v4()}),
            "device_id",
        ),
        (json!({"name": "k", "rate_limit": 0}), "rate_limit"),
        (
            json!({"name": "k", "permissions": {"read": false, "write": false}}),
            "permissions",
        ),
    ];
    for (body, field) in cases {
        let reply = app
            .post("/api/v1/api-keys", As::Bearer(&token), &body)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {reply:?}"
        );
        assert_eq!(reply.fields()[0], field, "{body}");
    }
    let bad_date = app
        .post(
            "/api/v1/api-keys",
            As::Bearer(&token),
            &json!({"name": "k", "expires_at": "next tuesday"}),
        )
        .await;
    assert_eq!(bad_date.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/api/v1/api-keys", As::Bearer(&token)).await.body["total"],
        0
    );
    let missing = app
        .delete(
            &format!("/api/v1/api-keys/{}", uuid::Uuid::new_v4()),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(missing.code(), "api_key_not_found");
}

#[actix_web::test]
async fn a_key_created_already_expired_is_accepted_with_a_notice_and_refused_in_use() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    // The product README's example date, which has passed.
    let reply = app
        .post(
            "/api/v1/api-keys",
            As::Bearer(&token),
            &seed_api_key(&device["id"], "2026-10-27T00:00:00Z"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert!(reply.body["notice"]
        .as_str()
        .is_some_and(|n| n.contains("expired")));
    let key = reply.body["api_key"].as_str().expect("key");
    let path = format!("/api/v1/devices/{}", device["id"].as_str().expect("id"));
    let used = app.get(&path, As::ApiKey(key)).await;
    assert_eq!(used.status, StatusCode::UNAUTHORIZED);
    assert_eq!(used.code(), "api_key_expired");

    let fresh = app
        .post(
            "/api/v1/api-keys",
            As::Bearer(&token),
            &json!({"name": "fresh"}),
        )
        .await;
    assert!(
        fresh.body.get("notice").is_none(),
        "no notice for a valid key"
    );
}
