//! People's sessions and the HTTP server at their boundary: a live connection ends with its
//! credentials, no credential reaches a log line, metric labels stay bounded, login and password
//! attempts are throttled and audited without flooding, slow clients are cut off, and
//! `X-Forwarded-For` is believed only from trusted proxies.

use std::io::{Read, Write};

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use insa_entities::{audit_log, refresh_tokens};
use reqwest::StatusCode;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::helpers::{eventually, seed_device, spawn_app, spawn_app_with, As, TestApp};
use crate::live::{hear, say, Socket};

fn ws_url(app: &TestApp, query: &str) -> String {
    format!(
        "{}{query}",
        app.url("/api/v1/ws").replace("http://", "ws://")
    )
}

/// A single-use ticket for the live feed, asked with `token`.
async fn ticket(app: &TestApp, token: &str) -> String {
    let reply = app
        .post("/api/v1/ws/ticket", As::Bearer(token), &json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.body["expires_in"].as_u64().is_some_and(|s| s > 0));
    reply.body["ticket"].as_str().expect("ticket").to_string()
}

/// Opens the feed with a fresh ticket for `token`.
async fn watch(app: &TestApp, token: &str) -> Socket {
    let ticket = ticket(app, token).await;
    let (_, socket) = awc::Client::new()
        .ws(ws_url(app, &format!("?ticket={ticket}")))
        .connect()
        .await
        .expect("WebSocket with a ticket");
    socket
}

/// Subscribes to `device` and waits for the answer.
async fn subscribe(socket: &mut Socket, device: &str) {
    say(
        socket,
        json!({"action": "subscribe", "device_ids": [device]}),
    )
    .await;
    let ack = hear(socket, Duration::from_secs(5)).await.expect("ack");
    assert_eq!(ack["type"], "subscribed", "{ack}");
}

/// Reads until the server closes; returns the close code and every text message heard before.
async fn closed_within(socket: &mut Socket, within: Duration) -> (u16, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut heard = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("not closed within {within:?}; heard {heard:?}"));
        match frame {
            Some(Ok(awc::ws::Frame::Close(reason))) => {
                let code = reason.map_or(0, |r| u16::from(r.code));
                return (code, heard);
            }
            Some(Ok(awc::ws::Frame::Text(text))) => {
                heard.push(serde_json::from_slice(&text).unwrap_or(Value::Null))
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => panic!("socket error before the close frame: {err}"),
            None => panic!("connection dropped without a close frame; heard {heard:?}"),
        }
    }
}

/// A device and a socket of `token` subscribed to it.
async fn watching_a_device(app: &TestApp, token: &str) -> (String, Socket) {
    let admin = app.admin_token().await;
    let device = app.create_device(&admin, seed_device()).await;
    let device = device["id"].as_str().expect("id").to_string();
    let mut socket = watch(app, token).await;
    subscribe(&mut socket, &device).await;
    (device, socket)
}

/// After `revoke`, the socket closes with 1008 within 5 s and carries no reading sent after.
async fn assert_closed_after(app: &TestApp, socket: &mut Socket, device: &str) {
    let admin = app.admin_token().await;
    app.send_reading(&admin, device, json!({"after_revocation": 1}))
        .await;
    let (code, heard) = closed_within(socket, Duration::from_secs(5)).await;
    assert_eq!(code, 1008, "close code; heard {heard:?}");
    assert!(
        heard.iter().all(|m| m["type"] != "telemetry"),
        "sent after revocation: {heard:?}"
    );
}

#[actix_web::test]
async fn logging_out_closes_the_sessions_live_feed_with_1008_and_nothing_more_is_sent() {
    let app = spawn_app().await;
    let login = app
        .login(crate::helpers::ADMIN_EMAIL, crate::helpers::ADMIN_PASSWORD)
        .await;
    let token = login.body["access_token"].as_str().expect("token");
    let (device, mut socket) = watching_a_device(&app, token).await;
    let logout = app
        .post("/api/v1/auth/logout", As::Bearer(token), &json!({}))
        .await;
    assert_eq!(logout.status, StatusCode::OK, "{logout:?}");
    assert_closed_after(&app, &mut socket, &device).await;
}

#[actix_web::test]
async fn a_password_change_closes_the_users_other_sessions_live_feeds() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (email, password, other_session) = app.user_with_role(&admin, "viewer").await;
    let (device, mut socket) = watching_a_device(&app, &other_session).await;
    let this_session = app.token_for(&email, &password).await;
    let mut own = watch(&app, &this_session).await;
    let changed = app
        .post(
            "/api/v1/auth/password",
            As::Bearer(&this_session),
            &json!({"current_password": password, "new_password": "a-new-password-2"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_closed_after(&app, &mut socket, &device).await;
    // The session that changed the password keeps its feed.
    say(&mut own, json!({"action": "subscribe", "alerts": true})).await;
    let ack = hear(&mut own, Duration::from_secs(5)).await;
    assert_eq!(ack.expect("still open")["type"], "subscribed");
}

#[actix_web::test]
async fn disabling_deleting_or_resetting_a_user_closes_their_live_feeds() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for change in ["disable", "delete", "reset password"] {
        let (_, _, token) = app.user_with_role(&admin, "operator").await;
        let me = app.get("/api/v1/auth/me", As::Bearer(&token)).await;
        let path = format!("/api/v1/users/{}", me.body["id"].as_str().expect("id"));
        let (device, mut socket) = watching_a_device(&app, &token).await;
        let reply = match change {
            "disable" => {
                app.put(&path, As::Bearer(&admin), &json!({"is_active": false}))
                    .await
            }
            "delete" => app.delete(&path, As::Bearer(&admin)).await,
            _ => {
                app.put(
                    &path,
                    As::Bearer(&admin),
                    &json!({"password": "reset-password-9"}),
                )
                .await
            }
        };
        assert!(reply.status.is_success(), "{change}: {reply:?}");
        assert_closed_after(&app, &mut socket, &device).await;
    }
}

#[actix_web::test]
async fn a_session_ended_outside_the_api_closes_its_live_feed_within_5_s() {
    // As the command line does (`user set-password` ends sessions in the database directly).
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (_, mut socket) = watching_a_device(&app, &token).await;
    refresh_tokens::Entity::update_many()
        .col_expr(
            refresh_tokens::Column::RevokedAt,
            Expr::value(chrono::Utc::now()),
        )
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&app.db)
        .await
        .expect("end every session");
    let (code, _) = closed_within(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(code, 1008);
}

/// A feed opened with a `read` key of `device`.
async fn watch_with_key(app: &TestApp, key: &str, device: &str) -> Socket {
    let (_, mut socket) = awc::Client::new()
        .ws(ws_url(app, ""))
        .set_header("X-API-Key", key)
        .connect()
        .await
        .expect("WebSocket with a key");
    subscribe(&mut socket, device).await;
    socket
}

#[actix_web::test]
async fn revoking_a_key_or_deleting_its_device_closes_the_keys_live_feed() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for change in ["revoke", "delete device"] {
        let device = app.create_device(&admin, seed_device()).await;
        let device = device["id"].as_str().expect("id").to_string();
        let (key, info) = app
            .create_api_key(
                &admin,
                json!({"name": "watcher", "device_id": device,
                       "permissions": {"read": true, "write": true}}),
            )
            .await;
        let mut socket = watch_with_key(&app, &key, &device).await;
        let reply = match change {
            "revoke" => {
                let id = info["id"].as_str().expect("key id");
                app.delete(&format!("/api/v1/api-keys/{id}"), As::Bearer(&admin))
                    .await
            }
            _ => {
                app.delete(&format!("/api/v1/devices/{device}"), As::Bearer(&admin))
                    .await
            }
        };
        assert!(reply.status.is_success(), "{change}: {reply:?}");
        if change == "revoke" {
            assert_closed_after(&app, &mut socket, &device).await;
        } else {
            let (code, _) = closed_within(&mut socket, Duration::from_secs(5)).await;
            assert_eq!(code, 1008, "{change}");
        }
    }
}

#[actix_web::test]
async fn an_expiring_key_loses_its_live_feed_when_it_expires() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let device = app.create_device(&admin, seed_device()).await;
    let device = device["id"].as_str().expect("id").to_string();
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let (key, _) = app
        .create_api_key(
            &admin,
            json!({"name": "short-lived", "device_id": device, "expires_at": expires_at,
                   "permissions": {"read": true, "write": true}}),
        )
        .await;
    let mut socket = watch_with_key(&app, &key, &device).await;
    let (code, _) = closed_within(&mut socket, Duration::from_secs(3 + 5)).await;
    assert_eq!(code, 1008);
    assert!(chrono::Utc::now() >= expires_at, "closed before expiry");
}

#[actix_web::test]
async fn a_ticket_opens_one_connection_only_and_dies_with_its_session() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let once = ticket(&app, &token).await;
    let url = ws_url(&app, &format!("?ticket={once}"));
    let (_, _first) = awc::Client::new()
        .ws(url.clone())
        .connect()
        .await
        .expect("first use");
    let again = awc::Client::new().ws(url).connect().await;
    assert!(
        matches!(again, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 401),
        "a used ticket must be refused"
    );
    let unused = ticket(&app, &token).await;
    app.post("/api/v1/auth/logout", As::Bearer(&token), &json!({}))
        .await;
    let after_logout = awc::Client::new()
        .ws(ws_url(&app, &format!("?ticket={unused}")))
        .connect()
        .await;
    assert!(
        matches!(after_logout, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 401),
        "a ticket of an ended session must be refused"
    );
    let anonymous = app.post("/api/v1/ws/ticket", As::Nobody, &json!({})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn a_connection_may_watch_only_so_many_devices() {
    let app = spawn_app_with(|s| s.live.max_devices_per_connection = 3).await;
    let token = app.admin_token().await;
    let mut socket = watch(&app, &token).await;
    let ids: Vec<String> = (0..4).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    say(
        &mut socket,
        json!({"action": "subscribe", "device_ids": ids[..2]}),
    )
    .await;
    let ack = hear(&mut socket, Duration::from_secs(5))
        .await
        .expect("ack");
    assert_eq!(ack["device_ids"].as_array().map(Vec::len), Some(2));
    say(
        &mut socket,
        json!({"action": "subscribe", "device_ids": ids[2..]}),
    )
    .await;
    let refused = hear(&mut socket, Duration::from_secs(5))
        .await
        .expect("answer");
    assert_eq!(refused["type"], "error", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("at most 3 devices per connection"),
        "{message}"
    );
    // Nothing of the refused request applied; re-subscribing known ones is fine.
    say(
        &mut socket,
        json!({"action": "subscribe", "device_ids": [ids[0], ids[1], ids[2]]}),
    )
    .await;
    let ack = hear(&mut socket, Duration::from_secs(5))
        .await
        .expect("ack");
    assert_eq!(ack["device_ids"].as_array().map(Vec::len), Some(3), "{ack}");
}

// ------------------------------------------------------------------ logs

/// The binary, run as an operator runs it, with its log (stdout and stderr) collected.
struct Running {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Running {
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        use std::process::{Command, Stdio};
        let mut command = Command::new(env!("CARGO_BIN_EXE_insa-iiot"));
        command
            .current_dir(dir)
            .env_remove("INSA_ENV")
            .env("INSA_SETTINGS_DIR", dir.join("no-settings"))
            .env("INSA__DATA_DIR", dir.join("data"))
            .env("INSA__SERVER__PORT", "0")
            .env("INSA__MQTT__MODE", "off")
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start insa-iiot");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let outputs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for mut output in outputs {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 8192];
                while let Ok(n) = output.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    log.lock().expect("log").push_str(&text);
                }
            });
        }
        Self { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn no_password_token_key_or_ticket_reaches_the_log_of_a_full_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = crate::helpers::fresh_database_url(dir.path()).await;
    let admin_password = "first-admin-Pa55word";
    let jwt_secret = "jwt-secret-that-is-long-enough-0123456789";
    let running = Running::start(
        dir.path(),
        &[
            ("INSA__DATABASE__URL", url.as_str()),
            ("INSA__AUTH__ADMIN_PASSWORD", admin_password),
            ("INSA__AUTH__JWT_SECRET", jwt_secret),
        ],
    );
    let port: u16 = eventually(Duration::from_secs(60), "the listening line", || {
        let log = running.log();
        async move {
            log.lines()
                .find_map(|l| l.split("listening on: 127.0.0.1:").nth(1))
                .and_then(|rest| rest.trim().parse().ok())
        }
    })
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let post = |path: &str, bearer: Option<&str>, body: Value| {
        let mut request = client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let mut secrets: Vec<String> = vec![admin_password.into(), jwt_secret.into()];

    let (status, login) = post(
        "/api/v1/auth/login",
        None,
        json!({"email": "admin@insa.com", "password": admin_password}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let refresh = login["refresh_token"].as_str().expect("refresh");
    let (status, pair) = post("/api/v1/auth/refresh", Some(refresh), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let access = pair["access_token"].as_str().expect("access").to_string();
    secrets.extend(
        [
            &login["access_token"],
            &login["refresh_token"],
            &pair["refresh_token"],
        ]
        .iter()
        .map(|v| v.as_str().expect("token").to_string()),
    );
    secrets.push(access.clone());

    let (_, device) = post("/api/v1/devices", Some(&access), seed_device()).await;
    let device = device["id"].as_str().expect("device").to_string();
    let (status, key) = post(
        "/api/v1/api-keys",
        Some(&access),
        json!({"name": "gateway", "device_id": device}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let api_key = key["api_key"].as_str().expect("key").to_string();
    secrets.push(api_key.clone());
    let stored = client
        .post(format!("{base}/api/v1/telemetry"))
        .header("X-API-Key", &api_key)
        .json(&crate::helpers::seed_reading(&device))
        .send()
        .await
        .expect("ingest");
    assert_eq!(stored.status(), StatusCode::CREATED);

    let (_, ticket) = post("/api/v1/ws/ticket", Some(&access), json!({})).await;
    let ticket = ticket["ticket"].as_str().expect("ticket").to_string();
    secrets.push(ticket.clone());
    let ws = format!("ws://127.0.0.1:{port}/api/v1/ws");
    let (_, mut socket) = awc::Client::new()
        .ws(format!("{ws}?ticket={ticket}"))
        .connect()
        .await
        .expect("WebSocket with a ticket");
    subscribe(&mut socket, &device).await;
    // The older way, still accepted: the token in the URL.
    let (_, mut legacy) = awc::Client::new()
        .ws(format!("{ws}?token={access}"))
        .connect()
        .await
        .expect("WebSocket with ?token=");
    subscribe(&mut legacy, &device).await;

    let (status, user) = post(
        "/api/v1/users",
        Some(&access),
        json!({"email": "ops@insa.com", "password": "ops-initial-Pa55", "role": "operator"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    secrets.push("ops-initial-Pa55".into());
    let (status, _) = post(
        "/api/v1/auth/password",
        Some(&access),
        json!({"current_password": admin_password, "new_password": "second-admin-Pa55word"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    secrets.push("second-admin-Pa55word".into());
    let (status, _) = post(
        "/api/v1/auth/login",
        None,
        json!({"email": "admin@insa.com", "password": "a-wrong-Gue55"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    secrets.push("a-wrong-Gue55".into());
    // A password sent as a number is refused; the refusal quotes it to the client only.
    let (status, _) = post(
        "/api/v1/auth/login",
        None,
        json!({"email": "admin@insa.com", "password": 987_654_321_123_u64}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    secrets.push("987654321123".into());
    // A WebSocket's request line is logged when the connection ends.
    for mut socket in [socket, legacy] {
        socket
            .send(awc::ws::Message::Close(None))
            .await
            .expect("close");
        while let Some(Ok(frame)) = socket.next().await {
            if matches!(frame, awc::ws::Frame::Close(_)) {
                break;
            }
        }
    }
    let logged = eventually(Duration::from_secs(10), "every request logged", || {
        let log = running.log();
        async move {
            (log.matches("/api/v1/auth/login").count() >= 3
                && log.matches("http.target=/api/v1/ws?").count() >= 2)
                .then_some(log)
        }
    })
    .await;
    drop(running);

    let ws_lines: Vec<&str> = logged.lines().filter(|l| l.contains("/ws")).collect();
    assert!(
        logged.contains("/api/v1/ws?ticket=***"),
        "the feed's request is logged, masked: {ws_lines:?}"
    );
    assert!(logged.contains("/api/v1/ws?token=***"));
    for secret in &secrets {
        let line = logged.lines().find(|line| line.contains(secret.as_str()));
        assert!(line.is_none(), "a secret reached the log: {line:?}");
    }
}

// ------------------------------------------------------------------ login and password

/// Audit entries of `action` whose details say `reason`.
async fn audit_rows(app: &TestApp, action: &str, reason: &str) -> Vec<audit_log::Model> {
    audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq(action))
        .all(&app.db)
        .await
        .expect("audit log")
        .into_iter()
        .filter(|row| row.details.as_ref().is_some_and(|d| d["reason"] == reason))
        .collect()
}

#[actix_web::test]
async fn throttled_logins_make_one_audit_entry_per_window_with_their_count() {
    let app = spawn_app_with(|s| {
        s.auth.login_attempts_per_account_per_minute = 5;
        s.auth.throttled_audit_window_secs = 5;
    })
    .await;
    let started = Instant::now();
    for _ in 0..20 {
        app.login("admin@insa.com", "not-the-password").await;
    }
    // The 15 refusals fall in one window unless the machine took longer than a window for the 20
    // attempts: then in no more windows than that time spans, each entry with its own count.
    let windows = started.elapsed().as_secs() / 5 + 1;
    let rows = eventually(
        Duration::from_secs(15),
        "the refusals counted in their windows' entries",
        || async {
            let rows = audit_rows(&app, "auth.login", "rate_limited").await;
            let counted: u64 = rows
                .iter()
                .filter_map(|row| row.details.as_ref()?["refused"].as_u64())
                .sum();
            (counted == 15).then_some(rows)
        },
    )
    .await;
    assert!(
        (1..=windows).contains(&(rows.len() as u64)),
        "{} entries for {windows} window(s)",
        rows.len()
    );
}

#[actix_web::test]
async fn password_changes_are_throttled_per_account() {
    let app = spawn_app_with(|s| s.auth.password_attempts_per_account_per_minute = 2).await;
    let admin = app.admin_token().await;
    let (_, password, token) = app.user_with_role(&admin, "viewer").await;
    for _ in 0..2 {
        let wrong = app
            .post(
                "/api/v1/auth/password",
                As::Bearer(&token),
                &json!({"current_password": "a-guess-123", "new_password": "new-password-1"}),
            )
            .await;
        assert_eq!(wrong.code(), "wrong_password", "{wrong:?}");
    }
    let throttled = app
        .post(
            "/api/v1/auth/password",
            As::Bearer(&token),
            &json!({"current_password": password, "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(
        throttled.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{throttled:?}"
    );
    assert_eq!(throttled.code(), "rate_limited");
    assert!(throttled.header("Retry-After").is_some());
    // Another account is not affected.
    let other = app
        .post(
            "/api/v1/auth/password",
            As::Bearer(&admin),
            &json!({"current_password": "a-guess-123", "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(other.code(), "wrong_password");
}

#[actix_web::test]
async fn emails_longer_than_254_characters_are_refused_with_422() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let long = format!("{}@insa.com", "a".repeat(246));
    assert_eq!(long.len(), 255);
    let login = app.login(&long, "whatever-password").await;
    assert_eq!(login.status, StatusCode::UNPROCESSABLE_ENTITY, "{login:?}");
    assert_eq!(login.fields(), ["email"]);
    let create = app
        .post(
            "/api/v1/users",
            As::Bearer(&admin),
            &json!({"email": long, "password": "long-email-1"}),
        )
        .await;
    assert_eq!(create.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        create.body.to_string().contains("at most 254 characters"),
        "{create:?}"
    );
    let (_, _, _) = app.user_with_role(&admin, "viewer").await;
    let me = app.get("/api/v1/auth/me", As::Bearer(&admin)).await;
    let path = format!("/api/v1/users/{}", me.body["id"].as_str().expect("id"));
    let update = app
        .put(&path, As::Bearer(&admin), &json!({"email": long}))
        .await;
    assert_eq!(update.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(update.fields(), ["email"]);
    let fits = format!("{}@insa.com", "b".repeat(245));
    let created = app
        .post(
            "/api/v1/users",
            As::Bearer(&admin),
            &json!({"email": fits, "password": "long-email-1"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "254 characters fit");
}

#[actix_web::test]
async fn a_client_sending_its_headers_slowly_is_cut_off() {
    let app = spawn_app_with(|s| s.server.client_request_timeout_ms = 1000).await;
    let address = app.address.trim_start_matches("http://").to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let started = Instant::now();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .expect("head");
        let mut answer = Vec::new();
        // One byte every 200 ms, never finishing the headers, until the platform ends the
        // connection (10 s only bounds the test if it never does).
        let mut cut_off = false;
        while started.elapsed() < Duration::from_secs(10) {
            if stream.write_all(b"a").is_err() {
                cut_off = true;
                break;
            }
            let mut buffer = [0u8; 512];
            match stream.read(&mut buffer) {
                Ok(0) => {
                    cut_off = true;
                    break;
                }
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => {
                    cut_off = true;
                    break;
                }
            }
        }
        (cut_off, String::from_utf8_lossy(&answer).into_owned())
    })
    .await
    .expect("slow client");
    let (cut_off, answer) = outcome;
    assert!(cut_off, "the platform held the connection: {answer}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

// ------------------------------------------------------------------ client address

/// A failed login for `email` claiming to come from `forwarded`.
async fn login_from(app: &TestApp, email: &str, forwarded: &str) -> StatusCode {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("X-Forwarded-For", forwarded)
        .json(&json!({"email": email, "password": "not-the-password"}))
        .send()
        .await
        .expect("login")
        .status()
}

/// The address the audit log recorded for the last failed login of `email`.
async fn audited_ip(app: &TestApp, email: &str) -> Option<String> {
    audit_log::Entity::find()
        .filter(audit_log::Column::Actor.eq(email))
        .all(&app.db)
        .await
        .expect("audit")
        .pop()
        .and_then(|row| row.ip)
}

#[actix_web::test]
async fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = spawn_app_with(|s| s.auth.login_attempts_per_address_per_minute = 3).await;
    login_from(&app, "a@insa.com", "203.0.113.9").await;
    assert_eq!(
        audited_ip(&app, "a@insa.com").await.as_deref(),
        Some("127.0.0.1")
    );
    // Rotating the header does not escape the per-address throttle.
    let mut statuses = Vec::new();
    for n in 0..3 {
        statuses
            .push(login_from(&app, &format!("u{n}@insa.com"), &format!("198.51.100.{n}")).await);
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    let behind_proxy = spawn_app_with(|s| {
        s.auth.login_attempts_per_address_per_minute = 3;
        s.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    login_from(&behind_proxy, "a@insa.com", "198.51.100.7, 203.0.113.9").await;
    assert_eq!(
        audited_ip(&behind_proxy, "a@insa.com").await.as_deref(),
        Some("203.0.113.9"),
        "the address the trusted proxy saw"
    );
    for n in 0..3 {
        let status = login_from(
            &behind_proxy,
            &format!("u{n}@insa.com"),
            &format!("198.51.100.{n}"),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "each client has its own quota"
        );
    }
}
