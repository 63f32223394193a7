use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{read, spawn_app, spawn_app_with, As};

#[actix_web::test]
async fn malformed_json_is_400_invalid_json() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let reply = read(
        app.client
            .post(app.url("/api/v1/devices"))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body(r#"{"name": "Sensor", "type": "#)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_eq!(reply.code(), "invalid_json");
    assert!(reply.body["error"]["message"].is_string());
    assert!(reply.body["error"].get("details").is_some());
}

#[actix_web::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let reply = read(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("Content-Type", "text/plain")
            .body("email=admin@insa.com")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{reply:?}"
    );
    assert_eq!(reply.code(), "unsupported_media_type");
}

#[actix_web::test]
async fn an_oversized_body_is_413_and_nothing_is_stored() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 4096).await;
    let token = app.admin_token().await;
    let big = json!({"name": "Big", "type": "flow", "metadata": {"notes": "x".repeat(5000)}});
    let reply = app.post("/api/v1/devices", As::Bearer(&token), &big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
    assert_eq!(reply.code(), "payload_too_large");
    assert_eq!(
        app.get("/api/v1/devices", As::Bearer(&token)).await.body["total"],
        0
    );
}

#[actix_web::test]
async fn unknown_routes_and_wrong_methods_answer_json_errors() {
    let app = spawn_app().await;
    let missing = app.get("/api/v1/nothing-here", As::Nobody).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");
    let token = app.admin_token().await;
    let wrong = app
        .send(
            reqwest::Method::PATCH,
            "/api/v1/devices",
            As::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED, "{wrong:?}");
    assert_eq!(wrong.code(), "method_not_allowed");
}

#[actix_web::test]
async fn every_error_has_code_message_and_details() {
    let app = spawn_app().await;
    for reply in [
        app.get("/api/v1/devices", As::Nobody).await,
        app.login("admin@insa.com", "wrong-password").await,
        app.get("/api/v1/nope", As::Nobody).await,
    ] {
        let error = &reply.body["error"];
        assert!(error["code"].is_string(), "{reply:?}");
        assert!(error["message"].is_string(), "{reply:?}");
        assert!(error.get("details").is_some(), "{reply:?}");
    }
}

#[actix_web::test]
async fn a_wrong_method_on_a_single_route_path_is_405_with_allow() {
    let app = spawn_app().await;
    let reply = app
        .send(reqwest::Method::DELETE, "/health", As::Nobody, None)
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{reply:?}");
    assert_eq!(reply.code(), "method_not_allowed");
    let token = app.admin_token().await;
    let reply = app
        .client
        .request(reqwest::Method::TRACE, app.url("/api/v1/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(reply.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers()["allow"], "GET");
}

#[actix_web::test]
async fn an_offset_past_what_the_database_takes_is_400_for_every_list() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for list in [
        "/api/v1/devices",
        "/api/v1/users",
        "/api/v1/api-keys",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/notifications",
        "/api/v1/audit-log",
        "/api/v1/reports",
        "/api/v1/report-schedules",
    ] {
        let reply = app
            .get(
                &format!("{list}?offset=9223372036854775808"),
                As::Bearer(&token),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{list}: {reply:?}");
        assert_eq!(reply.code(), "invalid_query", "{list}");
        // The largest offset the database takes still answers (an empty page).
        let reply = app
            .get(
                &format!("{list}?offset=9223372036854775807"),
                As::Bearer(&token),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{list}: {reply:?}");
    }
}

#[actix_web::test]
async fn a_caller_who_may_not_list_is_told_so_before_the_page_is_checked() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, _, viewer) = app.user_with_role(&admin, "viewer").await;
    for list in ["/api/v1/users", "/api/v1/audit-log", "/api/v1/api-keys"] {
        let reply = app
            .get(&format!("{list}?limit=0"), As::Bearer(&viewer))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{list}: {reply:?}");
        let reply = app
            .get(&format!("{list}?limit=0"), As::Bearer(&admin))
            .await;
        assert_eq!(reply.code(), "invalid_query", "{list}: {reply:?}");
    }
}

#[actix_web::test]
async fn an_empty_report_or_history_parameter_is_refused_by_name_not_read_as_absent() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for path in [
        "/api/v1/reports/alerts?severity=",
        "/api/v1/reports/alerts?start=",
        "/api/v1/telemetry?device_id=00000000-0000-0000-0000-000000000000&agg=",
    ] {
        let reply = app.get(path, As::Bearer(&token)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {reply:?}");
        assert_eq!(reply.code(), "invalid_query", "{path}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("is empty")),
            "{path}: {reply:?}"
        );
    }
}
