use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{eventually, spawn_app, spawn_app_with, As, ADMIN_EMAIL, ADMIN_PASSWORD};

#[actix_web::test]
async fn login_returns_the_seeds_tokens_and_user() {
    let app = spawn_app().await;
    let reply = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let body = &reply.body;
    assert!(body["access_token"]
        .as_str()
        .is_some_and(|t| t.starts_with("eyJ")));
    assert!(body["refresh_token"]
        .as_str()
        .is_some_and(|t| t.starts_with("eyJ")));
    assert_ne!(body["access_token"], body["refresh_token"]);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["user"]["email"], ADMIN_EMAIL);
    assert_eq!(body["user"]["role"], "admin");
    assert!(uuid::Uuid::parse_str(body["user"]["id"].as_str().unwrap_or_default()).is_ok());

    // The seed's "Use Token in Requests".
    let token = body["access_token"].as_str().unwrap_or_default();
    let devices = app.get("/api/v1/devices", As::Bearer(token)).await;
    assert_eq!(devices.status, StatusCode::OK, "{devices:?}");
}

#[actix_web::test]
async fn login_email_is_case_insensitive() {
    let app = spawn_app().await;
    let reply = app.login("  Admin@INSA.com ", ADMIN_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

#[actix_web::test]
async fn there_is_no_built_in_default_password() {
    let app = spawn_app().await;
    let reply = app.login(ADMIN_EMAIL, "admin123").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn failed_logins_are_401_and_written_to_the_audit_log() {
    let app = spawn_app().await;
    let wrong = app.login(ADMIN_EMAIL, "not-the-password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "invalid_credentials");
    let unknown = app.login("ghost@insa.com", "whatever-123").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.code(), "invalid_credentials");
    assert_eq!(
        wrong.body["error"]["message"],
        unknown.body["error"]["message"]
    );

    let token = app.admin_token().await;
    let log = app
        .get(
            "/api/v1/audit-log?action=auth.login&success=false",
            As::Bearer(&token),
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{log:?}");
    let actors: Vec<&str> = log.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert!(actors.contains(&ADMIN_EMAIL), "{actors:?}");
    assert!(actors.contains(&"ghost@insa.com"), "{actors:?}");
    assert!(log.body["entries"][0]["ip"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("127.")));
}

#[actix_web::test]
async fn refresh_rotates_and_the_old_refresh_token_stops_working() {
    let app = spawn_app().await;
    let login = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.body;
    let first = login["refresh_token"].as_str().expect("refresh");

    let refreshed = app
        .post("/api/v1/auth/refresh", As::Bearer(first), &json!({}))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{refreshed:?}");
    let second = refreshed.body["refresh_token"]
        .as_str()
        .expect("new refresh");
    let access = refreshed.body["access_token"].as_str().expect("new access");
    assert_ne!(first, second);
    assert_eq!(
        app.get("/api/v1/auth/me", As::Bearer(access)).await.status,
        StatusCode::OK
    );

    let again = app
        .post("/api/v1/auth/refresh", As::Bearer(first), &json!({}))
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{again:?}");
    assert_eq!(again.code(), "invalid_token");
}

#[actix_web::test]
async fn replaying_a_rotated_refresh_token_ends_the_whole_session() {
    let app = spawn_app().await;
    let login = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.body;
    let stolen = login["refresh_token"].as_str().expect("refresh");
    let rotated = app
        .post("/api/v1/auth/refresh", As::Bearer(stolen), &json!({}))
        .await
        .body;
    let current = rotated["refresh_token"].as_str().expect("refresh");
    let access = rotated["access_token"].as_str().expect("access");

    let replay = app
        .post("/api/v1/auth/refresh", As::Bearer(stolen), &json!({}))
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);

    let legit = app
        .post("/api/v1/auth/refresh", As::Bearer(current), &json!({}))
        .await;
    assert_eq!(legit.status, StatusCode::UNAUTHORIZED, "{legit:?}");
    let me = app.get("/api/v1/auth/me", As::Bearer(access)).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.code(), "session_ended");
}

#[actix_web::test]
async fn an_access_token_is_not_a_refresh_token_nor_the_reverse() {
    let app = spawn_app().await;
    let login = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.body;
    let access = login["access_token"].as_str().expect("access");
    let refresh = login["refresh_token"].as_str().expect("refresh");

    let as_refresh = app
        .post("/api/v1/auth/refresh", As::Bearer(access), &json!({}))
        .await;
    assert_eq!(as_refresh.status, StatusCode::UNAUTHORIZED);
    assert_eq!(as_refresh.code(), "invalid_token");

    let as_access = app.get("/api/v1/devices", As::Bearer(refresh)).await;
    assert_eq!(as_access.status, StatusCode::UNAUTHORIZED);
    assert_eq!(as_access.code(), "invalid_token");
}

#[actix_web::test]
async fn tampered_and_garbage_tokens_are_rejected() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    for bad in [tampered.as_str(), "not.a.jwt", "eyJhbGciOiJub25lIn0.e30."] {
        let reply = app.get("/api/v1/devices", As::Bearer(bad)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad}: {reply:?}");
        assert_eq!(reply.code(), "invalid_token");
    }
    let basic = app
        .client
        .get(app.url("/api/v1/devices"))
        .header("Authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .expect("send");
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    let missing = app.get("/api/v1/devices", As::Nobody).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.code(), "missing_credentials");
}

#[actix_web::test]
async fn an_expired_access_token_is_rejected_and_refresh_gets_a_new_one() {
    let app = spawn_app_with(|s| {
        s.auth.access_token_ttl_secs = 1;
        s.auth.refresh_token_ttl_secs = 600;
    })
    .await;
    let login = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.body;
    let access = login["access_token"].as_str().expect("access").to_string();
    let refresh = login["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert_eq!(login["expires_in"], 1);

    let expired = eventually(Duration::from_secs(5), "access token expiry", || async {
        let reply = app.get("/api/v1/auth/me", As::Bearer(&access)).await;
        (reply.status == StatusCode::UNAUTHORIZED).then_some(reply)
    })
    .await;
    assert_eq!(expired.code(), "token_expired");

    let renewed = app
        .post("/api/v1/auth/refresh", As::Bearer(&refresh), &json!({}))
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{renewed:?}");
    let fresh = renewed.body["access_token"].as_str().expect("access");
    assert_eq!(
        app.get("/api/v1/auth/me", As::Bearer(fresh)).await.status,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn logout_ends_the_session_for_both_tokens() {
    let app = spawn_app().await;
    let login = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.body;
    let access = login["access_token"].as_str().expect("access");
    let refresh = login["refresh_token"].as_str().expect("refresh");
    let other_session = app.admin_token().await;

    let out = app
        .post("/api/v1/auth/logout", As::Bearer(access), &json!({}))
        .await;
    assert_eq!(out.status, StatusCode::OK, "{out:?}");

    let me = app.get("/api/v1/auth/me", As::Bearer(access)).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.code(), "session_ended");
    let renewed = app
        .post("/api/v1/auth/refresh", As::Bearer(refresh), &json!({}))
        .await;
    assert_eq!(renewed.status, StatusCode::UNAUTHORIZED);
    // Other logins of the same user are other sessions.
    assert_eq!(
        app.get("/api/v1/auth/me", As::Bearer(&other_session))
            .await
            .status,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn me_returns_the_current_user_without_secrets() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = app.get("/api/v1/auth/me", As::Bearer(&token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], ADMIN_EMAIL);
    assert_eq!(me.body["role"], "admin");
    assert!(me.body["last_login_at"].is_string());
    assert!(me.body.get("password_hash").is_none());
}

#[actix_web::test]
async fn changing_ones_password_needs_the_current_one_and_ends_other_sessions() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let other = app.admin_token().await;

    let wrong = app
        .post(
            "/api/v1/auth/password",
            As::Bearer(&token),
            &json!({"current_password": "nope-nope", "new_password": "a-new-password"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.code(), "wrong_password");

    let short = app
        .post(
            "/api/v1/auth/password",
            As::Bearer(&token),
            &json!({"current_password": ADMIN_PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);

    let changed = app
        .post(
            "/api/v1/auth/password",
            As::Bearer(&token),
            &json!({"current_password": ADMIN_PASSWORD, "new_password": "a-new-password"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_eq!(
        app.get("/api/v1/auth/me", As::Bearer(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/auth/me", As::Bearer(&other)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(ADMIN_EMAIL, "a-new-password").await.status,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn login_is_throttled_per_account_with_retry_after() {
    let app = spawn_app_with(|s| s.auth.login_attempts_per_account_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(
            app.login(ADMIN_EMAIL, "wrong-password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let blocked = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS, "{blocked:?}");
    assert_eq!(blocked.code(), "login_rate_limited");
    let retry: u64 = blocked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(blocked.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("account"));

    // Another account from the same address is not affected.
    let other = app.login("someone@insa.com", "wrong-password").await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn login_is_throttled_per_address_across_accounts() {
    let app = spawn_app_with(|s| s.auth.login_attempts_per_address_per_minute = 4).await;
    for i in 0..4 {
        let reply = app
            .login(&format!("user{i}@insa.com"), "wrong-password")
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("address"));
    assert!(blocked.header("retry-after").is_some());
}

#[actix_web::test]
async fn a_disabled_user_cannot_log_in_and_their_tokens_stop_working() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (email, password, token) = app.user_with_role(&admin, "operator").await;
    let me = app.get("/api/v1/auth/me", As::Bearer(&token)).await;
    let id = me.body["id"].as_str().expect("id").to_string();

    let disabled = app
        .put(
            &format!("/api/v1/users/{id}"),
            As::Bearer(&admin),
            &json!({"is_active": false}),
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
    assert_eq!(disabled.body["is_active"], false);

    let reply = app.get("/api/v1/devices", As::Bearer(&token)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.code(), "account_disabled");
    let login = app.login(&email, &password).await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
    assert_eq!(login.code(), "account_disabled");
}
