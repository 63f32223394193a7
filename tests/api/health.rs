use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{seed_device, spawn_app, As};

#[actix_web::test]
async fn health_reports_the_database_as_ok() {
    let app = spawn_app().await;
    let reply = app.get("/health", As::Nobody).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["status"], "ok");
    assert_eq!(reply.body["database"], "ok");
    assert_eq!(reply.body["version"], env!("CARGO_PKG_VERSION"));
}

#[actix_web::test]
async fn health_answers_503_when_the_database_is_down() {
    let app = spawn_app().await;
    app.db.clone().close().await.expect("close the pool");
    let reply = app.get("/health", As::Nobody).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.body["database"], "unavailable");
    assert!(reply.header("retry-after").is_some());

    // Other endpoints answer a JSON 503 too, not a hang or a panic.
    let status = app.get("/api/v1/status", As::Nobody).await;
    assert_eq!(status.status, StatusCode::SERVICE_UNAVAILABLE, "{status:?}");
    assert_eq!(status.code(), "database_unavailable");
}

#[actix_web::test]
async fn status_reports_version_uptime_and_device_counts_by_status() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let first = app.create_device(&token, seed_device()).await;
    app.create_device(
        &token,
        json!({"name": "Pump 7 pressure", "type": "pressure"}),
    )
    .await;
    let id = first["id"].as_str().expect("id");
    let reply = app
        .put(
            &format!("/api/v1/devices/{id}"),
            As::Bearer(&token),
            &json!({"status": "maintenance"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let status = app.get("/api/v1/status", As::Nobody).await;
    assert_eq!(status.status, StatusCode::OK, "{status:?}");
    let body = &status.body;
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].as_u64().is_some());
    assert_eq!(body["devices"]["total"], 2);
    assert_eq!(body["devices"]["by_status"]["offline"], 1);
    assert_eq!(body["devices"]["by_status"]["maintenance"], 1);
    assert_eq!(body["devices"]["by_status"]["online"], 0);
    assert_eq!(body["partitions"], 64);
}

#[actix_web::test]
async fn the_dashboard_is_served_from_the_binary_under_a_strict_content_policy() {
    let app = spawn_app().await;
    for (path, content_type, marker) in [
        ("/", "text/html", "<script src=\"/app.js\""),
        ("/app.js", "text/javascript", "/api/v1/ws"),
        ("/app.css", "text/css", "--online"),
    ] {
        let response = app.client.get(app.url(path)).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        let policy = header("content-security-policy");
        assert!(policy.contains("default-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        let body = response.text().await.expect("body");
        assert!(body.contains(marker), "{path} is the dashboard's");
    }
    // Unknown paths stay JSON errors, not the page.
    let missing = app.get("/no-such-page", As::Nobody).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");
}
