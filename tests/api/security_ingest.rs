//! The telemetry and device boundary: what one device (or person) sends must never stop another
//! device's readings being stored, on either database. Text the databases cannot store (U+0000)
//! is refused at the edge with 422 naming the field; a batch the database refuses for its data
//! is stored in parts so only the offending readings fail; an MQTT message that cannot be stored
//! is dropped, counted and acknowledged; a device has a bounded number of distinct keys.

use std::time::Duration;

use chrono::Utc;
use insa_actors::writer::WriteError;
use insa_actors::Point;
use reqwest::StatusCode;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    eventually, seed_device, spawn_app, spawn_app_with, stall_telemetry_writes, with_mqtt, As,
    TestApp,
};

/// A device and a write key bound to it: (device id, key).
async fn device_with_key(app: &TestApp, token: &str) -> (String, String) {
    let device = app.create_device(token, seed_device()).await;
    let id = device["id"].as_str().expect("id").to_string();
    let (key, _) = app
        .create_api_key(
            token,
            json!({"name": "device", "device_id": id, "rate_limit": 100000,
                   "permissions": {"read": true, "write": true}}),
        )
        .await;
    (id, key)
}

fn is_postgres(app: &TestApp) -> bool {
    app.db.get_database_backend() == DbBackend::Postgres
}

#[actix_web::test]
async fn a_reading_holding_nul_is_refused_with_422_naming_the_field_on_every_database() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (id, key) = device_with_key(&app, &token).await;
    for (telemetry, field) in [
        (json!({"k\u{0}": 1}), "telemetry.k\\u0000"),
        (json!({"mode": "au\u{0}to"}), "telemetry.mode"),
        (
            json!({"t": {"value": 1, "unit": "\u{0}C"}}),
            "telemetry.t.unit",
        ),
    ] {
        let reply = app
            .post(
                "/api/v1/telemetry",
                As::ApiKey(&key),
                &json!({"device_id": id, "telemetry": telemetry}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
        assert_eq!(reply.code(), "validation_failed");
        assert_eq!(reply.fields(), [field], "{reply:?}");
    }
    // A timestamp PostgreSQL cannot store (year 0) is refused alike.
    let reply = app
        .post(
            "/api/v1/telemetry",
            As::ApiKey(&key),
            &json!({"device_id": id, "timestamp": "0000-01-01T00:00:00Z", "telemetry": {"t": 1}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.fields(), ["timestamp"]);
    assert_eq!(app.stored_rows(&token, &id).await, 0, "nothing stored");
}

#[actix_web::test]
async fn devices_and_other_stored_bodies_holding_nul_are_refused_with_422_naming_the_field() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let mut device = seed_device();
    device["metadata"]["firmware"] = json!("v2\u{0}");
    let reply = app
        .post("/api/v1/devices", As::Bearer(&token), &device)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.fields(), ["metadata.firmware"]);

    let id = app.create_device_id(&token, seed_device()).await;
    let path = format!("/api/v1/devices/{id}");
    for (body, field) in [
        (json!({"name": "Pump\u{0}"}), "name"),
        (json!({"location": "\u{0}"}), "location"),
        (json!({"config": {"a\u{0}": 1}}), "config.a\\u0000"),
        (
            json!({"metadata": {"tags": ["ok", "\u{0}"]}}),
            "metadata.tags[1]",
        ),
    ] {
        let reply = app.put(&path, As::Bearer(&token), &body).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
        assert_eq!(reply.fields(), [field], "{body}");
    }
    let stored = app.get(&path, As::Bearer(&token)).await;
    assert_eq!(stored.body["name"], "Temperature Sensor 01");
    assert_eq!(stored.body["metadata"]["firmware"], "v2.1.0");

    for (path, body, field) in [
        (
            "/api/v1/users",
            json!({"email": "nul@insa.com", "password": "a-long-password", "role": "viewer", "name": "N\u{0}"}),
            "name",
        ),
        (
            "/api/v1/api-keys",
            json!({"name": "key\u{0}", "device_id": id}),
            "name",
        ),
        (
            "/api/v1/auth/login",
            json!({"email": "admin\u{0}@insa.com", "password": "x"}),
            "email",
        ),
        (
            "/api/v1/rules",
            json!({"name": "High\u{0}", "device_id": id, "key": "t", "condition": ">", "threshold": 1}),
            "name",
        ),
        (
            "/api/v1/reports",
            json!({"kind": "telemetry", "device_id": [id], "key": ["t\u{0}"]}),
            "key[0]",
        ),
    ] {
        let reply = app.post(path, As::Bearer(&token), &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {reply:?}"
        );
        assert_eq!(reply.fields(), [field], "{path}");
    }
}

#[actix_web::test]
async fn a_query_holding_nul_is_refused_with_400_not_a_database_error() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let id = app.create_device_id(&token, seed_device()).await;
    for path in [
        "/api/v1/devices?q=%00".to_string(),
        "/api/v1/devices?area=a%00".to_string(),
        format!("/api/v1/telemetry?device_id={id}&key=k%00"),
        format!("/api/v1/telemetry/latest?device_id={id}&key=%00"),
    ] {
        let reply = app.get(&path, As::Bearer(&token)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {reply:?}");
        assert_eq!(reply.code(), "invalid_query", "{path}");
    }
    let reply = app.get("/api/v1/devices/%00", As::Bearer(&token)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
}

#[actix_web::test]
async fn while_one_device_sends_nul_in_a_loop_another_devices_readings_are_all_stored() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (bad_id, bad_key) = device_with_key(&app, &token).await;
    let (good_id, good_key) = device_with_key(&app, &token).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let (client, url, stop) = (
            app.client.clone(),
            app.url("/api/v1/telemetry"),
            stop.clone(),
        );
        actix_web::rt::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = client
                    .post(&url)
                    .header("X-API-Key", &bad_key)
                    .json(&json!({"device_id": bad_id, "telemetry": {"k\u{0}": 1, "ok": 2}}))
                    .send()
                    .await
                    .expect("sent");
                answers.push(reply.status());
            }
            answers
        })
    };
    let mut stored = 0;
    for n in 0..100 {
        let reply = app
            .post(
                "/api/v1/telemetry",
                As::ApiKey(&good_key),
                &json!({"device_id": good_id, "telemetry": {"pressure": n}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "reading {n}: {reply:?}");
        stored += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = attacker.await.expect("attacker ran");
    assert!(!answers.is_empty());
    assert!(
        answers
            .iter()
            .all(|status| *status == StatusCode::UNPROCESSABLE_ENTITY),
        "{answers:?}"
    );
    assert_eq!(app.stored_rows(&token, &good_id).await, stored);
}

/// A point of `key` = 1 for `device`, now.
fn point(device: Uuid, key: &str) -> Point {
    Point {
        device_id: device,
        timestamp: Utc::now(),
        key: key.into(),
        value: Some(1.0),
        unit: None,
        quality: None,
        metadata: None,
    }
}

/// Spawns an app whose writer writes one batch at a time, so that what is submitted while a
/// batch is held back is written together in the next one.
async fn app_with_one_batch_in_flight() -> TestApp {
    spawn_app_with(|s| {
        s.ingest.max_in_flight_batches = 1;
        s.ingest.batch_max_delay_ms = 1;
    })
    .await
}

/// Submits `first` and, while its batch is held back by a stalled table, `rest` (these then
/// share the next batch); returns each one's outcome once the stall ends.
async fn in_one_batch(
    app: &TestApp,
    first: (Uuid, Vec<Point>),
    rest: Vec<(Uuid, Vec<Point>)>,
) -> Vec<Result<(), WriteError>> {
    let stall = stall_telemetry_writes(app).await;
    // With one batch in flight at a time, the rest gather behind the first while it is held
    // back (or join it, if they reach the writer first): either way they share a batch.
    let mut waiting = vec![app
        .pipeline
        .submit(first.0, first.1)
        .await
        .expect("submitted")];
    for (device, points) in rest {
        waiting.push(
            app.pipeline
                .submit(device, points)
                .await
                .expect("submitted"),
        );
    }
    stall.rollback().await.expect("stall ends");
    let mut outcomes = Vec::new();
    for done in waiting {
        let outcome = tokio::time::timeout(Duration::from_secs(10), done)
            .await
            .expect("answered in time")
            .expect("answered");
        outcomes.push(outcome);
    }
    outcomes
}

#[actix_web::test]
async fn a_batch_refused_for_one_devices_data_still_stores_the_other_devices_readings() {
    let app = app_with_one_batch_in_flight().await;
    let token = app.admin_token().await;
    let (gone, _) = device_with_key(&app, &token).await;
    let (good, _) = device_with_key(&app, &token).await;
    let (other, _) = device_with_key(&app, &token).await;
    let [gone, good, other] = [gone, good, other].map(|id| Uuid::parse_str(&id).expect("uuid"));
    // The device actor of `gone` is alive, but its row is deleted behind the platform's back:
    // the database refuses its points (foreign key), a data error, on either database.
    app.pipeline
        .ingest(gone, vec![point(gone, "warm")])
        .await
        .expect("stored while it exists");
    insa_entities::devices::Entity::delete_by_id(gone)
        .exec(&app.db)
        .await
        .expect("deleted");
    let outcomes = in_one_batch(
        &app,
        (other, vec![point(other, "first")]),
        vec![
            (good, vec![point(good, "a"), point(good, "b")]),
            (gone, vec![point(gone, "x")]),
            (other, vec![point(other, "c")]),
        ],
    )
    .await;
    assert_eq!(outcomes[0], Ok(()));
    assert_eq!(outcomes[1], Ok(()), "the good device's readings are stored");
    assert!(
        matches!(outcomes[2], Err(WriteError::Refused(_))),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(outcomes[3], Ok(()));
    assert_eq!(app.stored_rows(&token, &good.to_string()).await, 2);
    assert_eq!(app.stored_rows(&token, &other.to_string()).await, 2);
}

#[actix_web::test]
async fn a_reading_holding_nul_past_the_edge_fails_alone_and_its_batch_is_stored() {
    let app = app_with_one_batch_in_flight().await;
    if !is_postgres(&app) {
        eprintln!("not applicable: SQLite stores U+0000; the edge refuses it on both databases");
        return;
    }
    let token = app.admin_token().await;
    let (bad, _) = device_with_key(&app, &token).await;
    let (good, _) = device_with_key(&app, &token).await;
    let [bad, good] = [bad, good].map(|id| Uuid::parse_str(&id).expect("uuid"));
    let mut text = point(bad, "mode");
    text.value = None;
    text.metadata = Some(json!({"text": "a\u{0}b"}));
    let outcomes = in_one_batch(
        &app,
        (good, vec![point(good, "first")]),
        vec![
            (bad, vec![point(bad, "k\u{0}")]),
            (good, vec![point(good, "a")]),
            (bad, vec![text]),
            (good, vec![point(good, "b")]),
        ],
    )
    .await;
    assert_eq!(outcomes[0], Ok(()));
    assert!(matches!(outcomes[1], Err(WriteError::Refused(_))));
    assert_eq!(outcomes[2], Ok(()));
    assert!(matches!(outcomes[3], Err(WriteError::Refused(_))));
    assert_eq!(outcomes[4], Ok(()));
    assert_eq!(app.stored_rows(&token, &good.to_string()).await, 3);
    assert_eq!(app.stored_rows(&token, &bad.to_string()).await, 0);
}

#[actix_web::test]
async fn a_batch_cut_off_by_an_outage_fails_whole_to_be_sent_again_never_refused() {
    let app = app_with_one_batch_in_flight().await;
    if !is_postgres(&app) {
        eprintln!("not applicable: the test ends the writer's PostgreSQL connection");
        return;
    }
    let token = app.admin_token().await;
    let (id, _) = device_with_key(&app, &token).await;
    let device = Uuid::parse_str(&id).expect("uuid");
    let stall = stall_telemetry_writes(&app).await;
    let done = app
        .pipeline
        .submit(device, vec![point(device, "a"), point(device, "b")])
        .await
        .expect("submitted");
    // The writer's connection waits for the stalled table; the database then ends it.
    let ended = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND wait_event_type = 'Lock'";
    eventually(
        Duration::from_secs(10),
        "the writer's connection ended",
        || async {
            let ended = stall
                .query_one(sea_orm::Statement::from_string(DbBackend::Postgres, ended))
                .await
                .expect("query");
            ended.is_some().then_some(())
        },
    )
    .await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("answered in time")
        .expect("answered");
    assert!(
        matches!(outcome, Err(WriteError::NotStored(_))),
        "an outage is passing, not a refusal: {outcome:?}"
    );
    stall.rollback().await.expect("stall ends");
    assert_eq!(app.stored_rows(&token, &id).await, 0);
    app.pipeline
        .ingest(device, vec![point(device, "a"), point(device, "b")])
        .await
        .expect("stored when sent again");
    assert_eq!(app.stored_rows(&token, &id).await, 2);
}

#[actix_web::test]
async fn a_device_has_at_most_max_keys_distinct_keys_and_keeps_its_known_ones_after_a_restart() {
    let app = spawn_app_with(|s| s.devices.max_keys = 3).await;
    let token = app.admin_token().await;
    let (id, key) = device_with_key(&app, &token).await;
    let post = |telemetry: Value| {
        let (app, key, id) = (&app, key.clone(), id.clone());
        async move {
            app.post(
                "/api/v1/telemetry",
                As::ApiKey(&key),
                &json!({"device_id": id, "telemetry": telemetry}),
            )
            .await
        }
    };
    assert_eq!(
        post(json!({"a": 1, "b": 2})).await.status,
        StatusCode::CREATED
    );
    let refused = post(json!({"a": 1, "c": 3, "d": 4})).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "too_many_keys");
    assert_eq!(refused.body["error"]["details"]["limit"], 3);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("devices.max_keys")),
        "{refused:?}"
    );
    assert_eq!(
        post(json!({"a": 1, "c": 3})).await.status,
        StatusCode::CREATED
    );
    assert_eq!(post(json!({"d": 4})).await.code(), "too_many_keys");

    // The limit holds for an actor started again from the database.
    let device_id = Uuid::parse_str(&id).expect("uuid");
    let before = app.pipeline.registry().live(device_id).expect("alive");
    assert!(app.pipeline.crash_device(device_id));
    eventually(Duration::from_secs(5), "actor recreated", || async {
        app.pipeline
            .registry()
            .live(device_id)
            .filter(|addr| *addr != before)
    })
    .await;
    assert_eq!(post(json!({"d": 4})).await.code(), "too_many_keys");
    assert_eq!(
        post(json!({"a": 5, "b": 6, "c": 7})).await.status,
        StatusCode::CREATED
    );
    assert_eq!(app.stored_rows(&token, &id).await, 7);
}

#[actix_web::test]
async fn an_mqtt_message_that_cannot_be_stored_is_counted_acknowledged_and_holds_nothing_back() {
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.devices.max_keys = 2;
    })
    .await;
    let token = app.admin_token().await;
    let (id, key) = device_with_key(&app, &token).await;
    eventually(
        Duration::from_secs(10),
        "platform on the broker",
        || async {
            let status = app.get("/api/v1/status", As::Nobody).await;
            (status.body["mqtt"]["connected"] == true).then_some(())
        },
    )
    .await;
    let (host, port) = app.mqtt.clone().expect("MQTT is on");
    let mut options = MqttOptions::new(format!("{id}-{}", Uuid::new_v4().simple()), host, port);
    options
        .set_credentials(id.clone(), key.clone())
        .set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    actix_web::rt::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::PubAck(_)) = event {
                let _ = acks_tx.send(());
            }
        }
    });
    let topic = format!("devices/{id}/telemetry");
    let messages = [
        json!({"k\u{0}": 1}).to_string(),
        json!({"t": {"value": 1, "unit": "\u{0}"}}).to_string(),
        json!({"a": 1, "b": 2, "c": 3}).to_string(),
        json!({"a": 1, "b": 2}).to_string(),
        json!({"c": 3}).to_string(),
        json!({"a": 7}).to_string(),
    ];
    for message in &messages {
        client
            .publish(&topic, QoS::AtLeastOnce, false, message.clone())
            .await
            .expect("publish");
    }
    for n in 1..=messages.len() {
        tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .unwrap_or_else(|_| panic!("PUBACK {n} of {} in time", messages.len()))
            .expect("connection up");
    }
    let status = eventually(Duration::from_secs(10), "every message handled", || async {
        let status = app.get("/api/v1/status", As::Nobody).await;
        (status.body["mqtt"]["messages_stored"] == 2).then_some(status)
    })
    .await;
    assert_eq!(
        status.body["mqtt"]["messages_malformed"], 4,
        "{}",
        status.body
    );
    assert_eq!(app.stored_rows(&token, &id).await, 3);
}
