use reqwest::StatusCode;

use crate::helpers::{spawn_app, As};

#[actix_web::test]
async fn the_openapi_document_covers_every_route() {
    let app = spawn_app().await;
    let reply = app.get("/api/v1/openapi.json", As::Nobody).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = &reply.body;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let routes = [
        ("get", "/health"),
        ("get", "/api/v1/status"),
        ("get", "/api/v1/openapi.json"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/auth/me"),
        ("post", "/api/v1/auth/password"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/{id}"),
        ("put", "/api/v1/users/{id}"),
        ("delete", "/api/v1/users/{id}"),
        ("get", "/api/v1/devices"),
        ("post", "/api/v1/devices"),
        ("get", "/api/v1/devices/{id}"),
        ("put", "/api/v1/devices/{id}"),
        ("delete", "/api/v1/devices/{id}"),
        ("get", "/api/v1/api-keys"),
        ("post", "/api/v1/api-keys"),
        ("get", "/api/v1/api-keys/{id}"),
        ("delete", "/api/v1/api-keys/{id}"),
        ("get", "/api/v1/rules"),
        ("post", "/api/v1/rules"),
        ("get", "/api/v1/rules/{id}"),
        ("put", "/api/v1/rules/{id}"),
        ("delete", "/api/v1/rules/{id}"),
        ("get", "/api/v1/alerts"),
        ("get", "/api/v1/alerts/{id}"),
        ("post", "/api/v1/alerts/{id}/acknowledge"),
        ("post", "/api/v1/alerts/{id}/resolve"),
        ("get", "/api/v1/notifications"),
        ("post", "/api/v1/notifications/{id}/retry"),
        ("get", "/api/v1/audit-log"),
        ("get", "/api/v1/ca"),
        ("get", "/api/v1/devices/{id}/certificates"),
        ("post", "/api/v1/devices/{id}/certificates"),
        ("delete", "/api/v1/devices/{id}/certificates/{cert_id}"),
        ("post", "/api/v1/telemetry"),
        ("get", "/api/v1/telemetry"),
        ("get", "/api/v1/telemetry/latest"),
        ("get", "/api/v1/reports/telemetry"),
        ("get", "/api/v1/reports/alerts"),
        ("get", "/api/v1/reports"),
        ("post", "/api/v1/reports"),
        ("get", "/api/v1/reports/{id}"),
        ("get", "/api/v1/reports/{id}/download"),
        ("get", "/api/v1/report-schedules"),
        ("post", "/api/v1/report-schedules"),
        ("get", "/api/v1/report-schedules/{id}"),
        ("put", "/api/v1/report-schedules/{id}"),
        ("delete", "/api/v1/report-schedules/{id}"),
        ("post", "/api/v1/report-schedules/{id}/run"),
        ("post", "/api/v1/ws/ticket"),
    ];
    for (method, path) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the document"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|ops| ops.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "a documented route is not in this list"
    );
    // Every route is also served: none of them is an unknown route.
    for (method, path) in routes {
        if path == "/api/v1/ca" {
            // PEM, not JSON.
            let reply = app.client.get(app.url(path)).send().await.expect("GET /ca");
            assert_eq!(reply.status(), StatusCode::OK, "{path}");
            continue;
        }
        let path = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let reply = app.send(method, &path, As::Nobody, None).await;
        assert_ne!(
            reply.code(),
            "not_found",
            "{path} is documented but not served"
        );
        assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
    assert!(doc["components"]["schemas"]["DeviceResponse"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}
