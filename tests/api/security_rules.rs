//! The security boundaries of rules, alerts, notifications and reports: write-only webhook
//! secrets, MQTT actions confined to their device's command topic, bounded alert chatter, CSV
//! cells that never run as formulas, and the webhook guard against internal addresses.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, As, TestApp};
use crate::webhooks::{hmac_hex, Receiver};

async fn app_allowing_loopback_webhooks() -> TestApp {
    spawn_app_with(|s| {
        s.webhooks.allow_private = true;
        s.webhooks.retry_base_ms = 100;
    })
    .await
}

async fn send(app: &TestApp, token: &str, device: &str, pressure: f64) {
    app.send_reading(token, device, json!({"pressure": pressure}))
        .await;
}

#[actix_web::test]
async fn webhook_secrets_and_header_values_are_shown_to_no_role() {
    let app = app_allowing_loopback_webhooks().await;
    let (token, _) = app
        .watched_wellhead(json!({"type": "webhook", "url": "https://hooks.example/x",
            "secret": "s3cret-value", "headers": {"Authorization": "Bearer hidden-token"}}))
        .await;
    let mut callers = vec![token.clone()];
    for role in ["viewer", "operator", "engineer"] {
        callers.push(app.user_with_role(&token, role).await.2);
    }
    for caller in &callers {
        let list = app.get("/api/v1/rules", As::Bearer(caller)).await;
        assert_eq!(list.status, StatusCode::OK);
        let rule = &list.body["rules"][0];
        let one = app
            .get(
                &format!("/api/v1/rules/{}", rule["id"].as_str().expect("id")),
                As::Bearer(caller),
            )
            .await;
        for shown in [rule, &one.body] {
            let text = shown.to_string();
            assert!(!text.contains("s3cret-value"), "{text}");
            assert!(!text.contains("hidden-token"), "{text}");
            assert_eq!(shown["actions"][0]["secret"], "***");
            assert_eq!(shown["actions"][0]["headers"]["Authorization"], "***");
        }
    }

    // The answers to a change do not show them either.
    let id = app.get("/api/v1/rules", As::Bearer(&token)).await.body["rules"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let changed = app
        .put(
            &format!("/api/v1/rules/{id}"),
            As::Bearer(&token),
            &json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert!(!changed.body.to_string().contains("s3cret-value"));
    let created = app
        .post(
            "/api/v1/rules",
            As::Bearer(&token),
            &json!({"name": "Other", "device_type": "pressure", "key": "pressure",
                "condition": ">", "threshold": 1,
                "actions": [{"type": "webhook", "url": "https://hooks.example/y", "secret": "second-secret"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert!(!created.body.to_string().contains("second-secret"));
}

#[actix_web::test]
async fn a_change_that_omits_or_sends_back_masked_secrets_keeps_them() {
    let receiver = Receiver::start(0, 200);
    let app = app_allowing_loopback_webhooks().await;
    let (token, device) = app
        .watched_wellhead(json!({"type": "webhook", "url": receiver.url,
            "secret": "s3cret", "headers": {"X-Site": "north-field"}}))
        .await;
    let rule = app.get("/api/v1/rules", As::Bearer(&token)).await.body["rules"][0].clone();
    let path = format!("/api/v1/rules/{}", rule["id"].as_str().expect("id"));

    // Renamed without naming the actions, then the masked actions sent back as read.
    let renamed = app
        .put(&path, As::Bearer(&token), &json!({"name": "Renamed"}))
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
    let sent_back = app
        .put(
            &path,
            As::Bearer(&token),
            &json!({"actions": renamed.body["actions"]}),
        )
        .await;
    assert_eq!(sent_back.status, StatusCode::OK, "{sent_back:?}");

    send(&app, &token, &device, 95.0).await;
    receiver.wait_for(1, "the raised webhook").await;
    assert_eq!(
        receiver.header(0, "x-insa-signature"),
        Some(hmac_hex("s3cret", &receiver.raw(0))),
        "signed with the secret first given"
    );
    assert_eq!(receiver.header(0, "x-site").as_deref(), Some("north-field"));

    // A masked secret cannot follow the webhook to another URL.
    let moved = app
        .put(
            &path,
            As::Bearer(&token),
            &json!({"actions": [{"type": "webhook", "url": "https://elsewhere.example/",
                "secret": "***", "headers": {"X-Site": "***"}}]}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::UNPROCESSABLE_ENTITY, "{moved:?}");
    assert_eq!(
        moved.fields(),
        vec!["actions[0].secret", "actions[0].headers"]
    );
}

#[actix_web::test]
async fn an_mqtt_action_may_publish_only_to_its_own_devices_command_topic() {
    let app = app_allowing_loopback_webhooks().await;
    let token = app.admin_token().await;
    let device = app
        .create_device_id(&token, json!({"name": "Pump 1", "type": "pump"}))
        .await;
    let other = app
        .create_device_id(&token, json!({"name": "Pump 2", "type": "pump"}))
        .await;
    let engineer = app.user_with_role(&token, "engineer").await.2;
    let rule = |target: Value, topic: &str| {
        let mut body = json!({"name": "Valve", "key": "pressure", "condition": ">",
            "threshold": 1, "actions": [{"type": "mqtt", "topic": topic, "payload": {"open": false}}]});
        for (k, v) in target.as_object().expect("target") {
            body[k] = v.clone();
        }
        body
    };
    let one = json!({"device_id": device});
    let several = json!({"device_type": "pump"});
    for (target, topic) in [
        (&one, "$CONTROL/dynamic-security/v1".to_string()),
        (&one, "$SYS/broker/clients".to_string()),
        (&one, format!("devices/{other}/commands")),
        (&one, format!("devices/{device}/telemetry")),
        (&one, format!("devices/{device}/commands/#")),
        (&one, "devices/+/commands".to_string()),
        (&several, format!("devices/{device}/commands")),
        (&several, "plant/valves".to_string()),
    ] {
        let refused = app
            .post(
                "/api/v1/rules",
                As::Bearer(&engineer),
                &rule(target.clone(), &topic),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{topic}: {refused:?}"
        );
        assert_eq!(refused.fields(), vec!["actions[0].topic"], "{topic}");
    }
    for (target, topic) in [
        (&one, format!("devices/{device}/commands")),
        (&one, format!("devices/{device}/commands/valve")),
        (&one, "devices/{device_id}/commands".to_string()),
        (&several, "devices/{device_id}/commands/valve".to_string()),
    ] {
        let accepted = app
            .post(
                "/api/v1/rules",
                As::Bearer(&engineer),
                &rule(target.clone(), &topic),
            )
            .await;
        assert_eq!(
            accepted.status,
            StatusCode::CREATED,
            "{topic}: {accepted:?}"
        );
    }
}

/// A device named `name` with readings an attacker chose: a formula as key, unit and text, and
/// a negative number. (token, device id, start, end) of the period holding them.
async fn hostile_readings(app: &TestApp, name: &str) -> (String, String, String, String) {
    let token = app.admin_token().await;
    let device = app
        .create_device_id(&token, json!({"name": name, "type": "pump"}))
        .await;
    let now = chrono::Utc::now();
    let stored = app
        .post(
            "/api/v1/telemetry",
            As::Bearer(&token),
            &json!({"device_id": device, "timestamp": now.to_rfc3339(), "telemetry": {
                "+cmd": {"value": -5.5, "unit": "-bar"},
                "note": "=HYPERLINK(\"http://evil.example/\",\"click\")",
                "tab": "\tx"}}),
        )
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{stored:?}");
    let period = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339().replace('+', "%2B");
    (
        token,
        device,
        period(now - chrono::Duration::minutes(1)),
        period(now + chrono::Duration::minutes(1)),
    )
}

async fn report_bytes(app: &TestApp, token: &str, path: &str) -> Vec<u8> {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body = response.bytes().await.expect("body").to_vec();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    body
}

#[actix_web::test]
async fn device_text_in_a_csv_report_cannot_run_as_a_formula_and_numbers_stay_numbers() {
    let app = spawn_app_with(|_| {}).await;
    let (token, device, start, end) = hostile_readings(&app, "@evil device").await;
    let body = report_bytes(
        &app,
        &token,
        &format!("/api/v1/reports/telemetry?device_id={device}&start={start}&end={end}&format=csv"),
    )
    .await;
    let mut reader = csv::Reader::from_reader(body.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a record")).collect();
    let row = |key: &str| {
        rows.iter()
            .find(|r| r.get(3).is_some_and(|k| k.trim_start_matches('\'') == key))
            .unwrap_or_else(|| panic!("a row for {key}: {rows:?}"))
            .clone()
    };
    let number = row("+cmd");
    assert_eq!(&number[2], "'@evil device");
    assert_eq!(&number[3], "'+cmd");
    assert_eq!(&number[4], "-5.5", "a negative number stays a number");
    assert_eq!(&number[5], "'-bar");
    assert_eq!(
        &row("note")[7],
        "'=HYPERLINK(\"http://evil.example/\",\"click\")"
    );
    assert_eq!(&row("tab")[7], "'\tx");
}

#[actix_web::test]
async fn an_excel_report_holds_device_text_as_text_and_accepts_an_emoji_device_name() {
    use calamine::{Data, Reader, Xlsx};
    let app = spawn_app_with(|_| {}).await;
    let name = "🔥".repeat(20);
    let (token, device, start, end) = hostile_readings(&app, &name).await;
    // The ZIP holds a workbook too.
    report_bytes(
        &app,
        &token,
        &format!("/api/v1/reports/telemetry?device_id={device}&start={start}&end={end}&format=zip"),
    )
    .await;
    let body = report_bytes(
        &app,
        &token,
        &format!(
            "/api/v1/reports/telemetry?device_id={device}&start={start}&end={end}&format=xlsx"
        ),
    )
    .await;
    let mut book: Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(body)).expect("an xlsx");
    let sheet = book.sheet_names()[1].clone();
    assert!(sheet.encode_utf16().count() <= 31, "{sheet}");
    assert!(sheet.starts_with('🔥'));
    let formulas = book.worksheet_formula(&sheet).expect("formulas");
    assert!(
        formulas.used_cells().all(|(_, _, f)| f.is_empty()),
        "no formula in the sheet"
    );
    let cells = book.worksheet_range(&sheet).expect("the device sheet");
    let texts: Vec<&Data> = cells.rows().skip(1).flatten().collect();
    assert!(texts.contains(&&Data::String(
        "=HYPERLINK(\"http://evil.example/\",\"click\")".into()
    )));
    assert!(texts.contains(&&Data::Float(-5.5)));
}

#[actix_web::test]
async fn a_flapping_condition_notifies_at_most_five_times_and_counts_its_raises_on_the_alert() {
    let receiver = Receiver::start(0, 200);
    let app = app_allowing_loopback_webhooks().await;
    let (token, device) = app
        .watched_wellhead(json!({"type": "webhook", "url": receiver.url}))
        .await;
    // One request: 200 readings alternating across the threshold (80, hysteresis 5).
    let start = chrono::Utc::now();
    let records: Vec<Value> = (0..200)
        .map(|i| {
            json!({"timestamp": (start + chrono::Duration::milliseconds(i)).to_rfc3339(),
                   "telemetry": {"pressure": if i % 2 == 0 { 95.0 } else { 70.0 }}})
        })
        .collect();
    let stored = app
        .post(
            "/api/v1/telemetry",
            As::Bearer(&token),
            &json!({"device_id": device, "records": records}),
        )
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{stored:?}");

    // Every one of the 100 raises is counted on an alert...
    let alerts = crate::helpers::eventually(
        std::time::Duration::from_secs(20),
        "100 raises recorded",
        || async {
            let list = app
                .get(
                    &format!("/api/v1/alerts?device_id={device}"),
                    As::Bearer(&token),
                )
                .await;
            let alerts = list.body["alerts"].as_array().cloned().unwrap_or_default();
            let raises: i64 = alerts
                .iter()
                .filter_map(|a| a["raise_count"].as_i64())
                .sum();
            let all_resolved = alerts.iter().all(|a| a["status"] == "resolved");
            (raises == 100 && all_resolved).then_some(alerts)
        },
    )
    .await;
    let chattering = alerts
        .iter()
        .find(|a| a["chattering"] == true)
        .expect("the chattering alert");
    assert_eq!(chattering["raise_count"], 98, "{chattering}");
    let one = app
        .get(
            &format!("/api/v1/alerts/{}", chattering["id"].as_str().expect("id")),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(one.body["chattering"], true);
    assert_eq!(one.body["raise_count"], 98);

    // ... but only five changes were notified, each delivered.
    crate::helpers::eventually(
        std::time::Duration::from_secs(15),
        "every queued notification sent",
        || async {
            let log = app.get("/api/v1/notifications", As::Bearer(&token)).await;
            let log = log.body["notifications"].as_array().cloned()?;
            (!log.is_empty() && log.iter().all(|d| d["status"] == "sent")).then_some(())
        },
    )
    .await;
    assert_eq!(receiver.count(), 5);
    // Delivered side by side, so in any order: the first three raises, the first two clears.
    let raised = (0..5)
        .filter(|i| receiver.body(*i)["event"] == "raised")
        .count();
    assert_eq!(raised, 3);
}

#[actix_web::test]
async fn a_webhook_to_a_name_of_an_internal_address_is_refused_without_revealing_the_address() {
    let receiver = Receiver::start(0, 200);
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .expect("port")
        .to_string();
    let app = spawn_app_with(|s| s.webhooks.retry_base_ms = 100).await;
    let (token, device) = app
        .watched_wellhead(
            json!({"type": "webhook", "url": format!("http://localhost:{port}/hooks")}),
        )
        .await;
    send(&app, &token, &device, 95.0).await;
    let refused = crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        "the delivery refused",
        || async {
            let log = app.get("/api/v1/notifications", As::Bearer(&token)).await;
            log.body["notifications"]
                .as_array()?
                .iter()
                .find(|d| d["status"] == "failed")
                .cloned()
        },
    )
    .await;
    let error = refused["last_error"].as_str().expect("an error");
    assert!(error.contains("internal address"), "{error}");
    for address in ["127.0.0.1", "::1", "[::"] {
        assert!(!error.contains(address), "{error}");
    }
    assert_eq!(receiver.count(), 0, "nothing was sent");
}

/// Stores a report job of `user` that the runner is writing (it leaves running jobs alone).
async fn running_job_of(app: &TestApp, user: uuid::Uuid) {
    use insa_entities::report_jobs;
    use sea_orm::{ActiveModelTrait, Set};
    report_jobs::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        kind: Set("telemetry".into()),
        format: Set("csv".into()),
        query: Set(json!({})),
        status: Set("running".into()),
        rows: Set(Some(10)),
        rows_done: Set(0),
        file_name: Set(Some("telemetry-report.csv".into())),
        file_size: Set(None),
        error: Set(None),
        created_by: Set(Some(user)),
        schedule_id: Set(None),
        created_at: Set(chrono::Utc::now()),
        started_at: Set(Some(chrono::Utc::now())),
        finished_at: Set(None),
        expires_at: Set(None),
    }
    .insert(&app.db)
    .await
    .expect("a job");
}

#[actix_web::test]
async fn a_user_with_too_many_report_jobs_waiting_is_told_to_retry_before_anything_is_measured() {
    let app = spawn_app_with(|s| s.reports.max_queued_jobs_per_user = 2).await;
    let admin = app.admin_token().await;
    let viewer = app.user_with_role(&admin, "viewer").await.2;
    let me = app.get("/api/v1/auth/me", As::Bearer(&viewer)).await;
    let viewer_id: uuid::Uuid = me.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("my id");
    for _ in 0..2 {
        running_job_of(&app, viewer_id).await;
    }
    // A request that would otherwise fail reading its devices: refused before that.
    let unknown_device = json!({"kind": "telemetry", "device_id": [uuid::Uuid::new_v4()]});
    let refused = app
        .post("/api/v1/reports", As::Bearer(&viewer), &unknown_device)
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(refused.code(), "too_many_report_jobs");
    assert_eq!(refused.body["error"]["details"]["limit"], 2);
    assert!(refused.header("retry-after").is_some());

    // Another user's queue is their own.
    let alerts = json!({"kind": "alerts"});
    let queued = app
        .post("/api/v1/reports", As::Bearer(&admin), &alerts)
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{queued:?}");
}

#[cfg(unix)]
#[actix_web::test]
async fn the_data_dir_the_sqlite_file_and_report_files_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let mut data_dir = None;
    let app = spawn_app_with(|s| {
        s.data_dir = s.data_dir.join("private");
        if s.database.is_sqlite() {
            s.database.url = insa_iiot::settings::Secret::new(format!(
                "sqlite://{}/insa.db?mode=rwc",
                s.data_dir.join("db").display()
            ));
        }
        data_dir = Some(s.data_dir.clone());
    })
    .await;
    let data_dir = data_dir.expect("the data dir");
    let token = app.admin_token().await;
    let queued = app
        .post(
            "/api/v1/reports",
            As::Bearer(&token),
            &json!({"kind": "alerts"}),
        )
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{queued:?}");
    let id = queued.body["id"].as_str().expect("id").to_string();
    crate::helpers::eventually(
        std::time::Duration::from_secs(20),
        "the job done",
        || async {
            let job = app
                .get(&format!("/api/v1/reports/{id}"), As::Bearer(&token))
                .await;
            (job.body["status"] == "done").then_some(())
        },
    )
    .await;

    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&data_dir.join("reports")), 0o700);
    assert_eq!(mode(&data_dir.join("reports").join(&id)), 0o600);
    if std::env::var("DATABASE_URL").map_or(true, |url| url.is_empty()) {
        assert_eq!(mode(&data_dir.join("db")), 0o700);
        assert_eq!(mode(&data_dir.join("db/insa.db")), 0o600);
        let wal = data_dir.join("db/insa.db-wal");
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600);
        }
    }
}
