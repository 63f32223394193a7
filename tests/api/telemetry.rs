//! Readings in over HTTP, stored durably, queried back.

use std::time::Duration;

use insa_entities::telemetry;
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{json, Value};

use crate::helpers::{
    eventually, seed_device, seed_reading, spawn_app, spawn_app_with, stall_telemetry_writes, As,
    TestApp,
};

/// A device and a read+write key bound to it: (admin token, device id, key).
async fn device_with_key(app: &TestApp, extra: Value) -> (String, String, String) {
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let id = device["id"].as_str().expect("id").to_string();
    let mut body = json!({"name": "sensor key", "device_id": id, "permissions": {"read": true, "write": true}, "rate_limit": 100000});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (key, _) = app.create_api_key(&token, body).await;
    (token, id, key)
}

async fn stored_rows(app: &TestApp) -> u64 {
    telemetry::Entity::find()
        .count(&app.db)
        .await
        .expect("count")
}

#[actix_web::test]
async fn the_seeds_ingest_example_is_stored_and_queryable_as_written() {
    let app = spawn_app().await;
    let (token, id, key) = device_with_key(&app, json!({})).await;

    let reply = app
        .post("/api/v1/telemetry", As::ApiKey(&key), &seed_reading(&id))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body, json!({"accepted": 3}));
    // Acknowledged means committed: the rows are there the moment the answer arrives.
    assert_eq!(stored_rows(&app).await, 3);

    // The README's "Latest values".
    let latest = app
        .get(
            &format!("/api/v1/telemetry/latest?device_id={id}"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(latest.status, StatusCode::OK, "{latest:?}");
    assert_eq!(latest.body["device_id"], id.as_str());
    assert_eq!(latest.body["status"], "online");
    assert!(latest.body["last_seen"].is_string());
    let temperature = &latest.body["values"]["temperature"];
    assert_eq!(temperature["value"], 25.5);
    assert_eq!(temperature["unit"], "C");
    assert_eq!(temperature["quality"], 100);
    assert_eq!(temperature["timestamp"], "2025-10-27T16:30:00Z");
    assert_eq!(latest.body["values"]["humidity"]["value"], 65.0);
    assert_eq!(latest.body["values"]["pressure"]["unit"], "hPa");

    // The README's "Historical data".
    let history = app
        .get(
            &format!("/api/v1/telemetry?device_id={id}&start=2025-10-27T00:00:00Z&end=2025-10-27T23:59:59Z&limit=1000"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(history.status, StatusCode::OK, "{history:?}");
    assert_eq!(history.body["count"], 3);
    assert_eq!(history.body["data"].as_array().map(Vec::len), Some(3));
    let outside = app
        .get(
            &format!("/api/v1/telemetry?device_id={id}&start=2025-10-28T00:00:00Z&end=2025-10-28T23:59:59Z"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(outside.body["count"], 0);

    // The README's "Specific keys".
    let keys = app
        .get(
            &format!("/api/v1/telemetry?device_id={id}&key=temperature&key=humidity"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(keys.status, StatusCode::OK, "{keys:?}");
    let mut names: Vec<&str> = keys.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["humidity", "temperature"]);

    // The device turned online on its first reading, and that is persisted.
    let device = eventually(Duration::from_secs(5), "status persisted", || async {
        let reply = app
            .get(&format!("/api/v1/devices/{id}"), As::Bearer(&token))
            .await;
        (reply.body["status"] == "online" && reply.body["last_seen"].is_string()).then_some(reply)
    })
    .await;
    assert_eq!(device.body["status"], "online");
}

#[actix_web::test]
async fn batches_values_and_text_are_stored_and_aggregated_in_sql() {
    let app = spawn_app().await;
    let (token, id, key) = device_with_key(&app, json!({})).await;
    // Two hours of one reading a minute: value = minute of the day.
    let records: Vec<Value> = (0..120)
        .map(|m| {
            json!({
                "timestamp": format!("2025-10-27T{:02}:{:02}:00Z", 10 + m / 60, m % 60),
                "telemetry": {"flow": m, "running": m % 2 == 0}
            })
        })
        .collect();
    let reply = app
        .post(
            "/api/v1/telemetry",
            As::ApiKey(&key),
            &json!({"device_id": id, "records": records}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["accepted"], 240);
    let text = app
        .post(
            "/api/v1/telemetry",
            As::ApiKey(&key),
            &json!({"device_id": id, "telemetry": {"mode": "auto"}}),
        )
        .await;
    assert_eq!(text.status, StatusCode::CREATED);

    let base = format!("/api/v1/telemetry?device_id={id}&start=2025-10-27T10:00:00Z&end=2025-10-27T12:00:00Z&interval=1h&key=flow");
    let expect = [
        ("avg", [29.5, 89.5]),
        ("min", [0.0, 60.0]),
        ("max", [59.0, 119.0]),
        ("sum", [1770.0, 5370.0]),
        ("count", [60.0, 60.0]),
    ];
    for (agg, values) in expect {
        let reply = app
            .get(&format!("{base}&agg={agg}"), As::Bearer(&token))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{agg}: {reply:?}");
        let data = reply.body["data"].as_array().expect("data");
        assert_eq!(data.len(), 2, "{agg}: {reply:?}");
        assert_eq!(data[0]["timestamp"], "2025-10-27T10:00:00Z");
        assert_eq!(data[1]["timestamp"], "2025-10-27T11:00:00Z");
        assert_eq!(data[0]["value"], values[0], "{agg}");
        assert_eq!(data[1]["value"], values[1], "{agg}");
        assert_eq!(data[0]["count"], 60);
    }
    let minutes = app
        .get(&format!("/api/v1/telemetry?device_id={id}&start=2025-10-27T10:00:00Z&end=2025-10-27T10:10:00Z&interval=5m&agg=avg&key=running&order=desc"), As::Bearer(&token))
        .await;
    let data = minutes.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["timestamp"], "2025-10-27T10:05:00Z", "descending");
    assert_eq!(data[1]["value"], 0.6, "booleans are stored as 1/0");

    let latest = app
        .get(
            &format!("/api/v1/telemetry/latest?device_id={id}&key=mode"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(latest.body["values"]["mode"]["text"], "auto");
    assert_eq!(latest.body["values"]["mode"]["value"], Value::Null);
    assert!(
        latest.body["values"].get("flow").is_none(),
        "only the asked key"
    );

    let rows = app
        .get(
            &format!("/api/v1/telemetry?device_id={id}&key=flow&limit=5&order=asc"),
            As::Bearer(&token),
        )
        .await;
    let data = rows.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 5);
    assert_eq!(data[0]["value"], 0.0);
    assert_eq!(data[4]["timestamp"], "2025-10-27T10:04:00Z");
}

#[actix_web::test]
async fn too_many_buckets_get_a_400_suggesting_a_coarser_interval() {
    let app = spawn_app().await;
    let (token, id, _) = device_with_key(&app, json!({})).await;
    let reply = app
        .get(
            &format!("/api/v1/telemetry?device_id={id}&start=2025-01-01T00:00:00Z&end=2026-01-01T00:00:00Z&interval=1m&agg=avg"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_eq!(reply.code(), "invalid_query");
    assert_eq!(reply.body["error"]["details"]["suggested_interval"], "1h");
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("interval=1h"));
    let fine = app
        .get(
            &format!("/api/v1/telemetry?device_id={id}&start=2025-01-01T00:00:00Z&end=2026-01-01T00:00:00Z&interval=1h&agg=max"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(fine.status, StatusCode::OK);
    for query in [
        "interval=0h",
        "interval=1w",
        "interval=1h&agg=median",
        "agg=avg",
        "order=up",
        "limit=0",
        "start=yesterday",
        "colour=red",
    ] {
        let reply = app
            .get(
                &format!("/api/v1/telemetry?device_id={id}&{query}"),
                As::Bearer(&token),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {reply:?}");
    }
    let no_device = app.get("/api/v1/telemetry?key=x", As::Bearer(&token)).await;
    assert_eq!(no_device.code(), "invalid_query");
    let unknown = app
        .get(
            &format!(
                "/api/v1/telemetry/latest?device_id={}",
                uuid::Uuid::new_v4()
            ),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(unknown.code(), "device_not_found");
}

#[actix_web::test]
async fn keys_write_only_their_device_and_need_write_permission() {
    let app = spawn_app().await;
    let (token, id, key) = device_with_key(&app, json!({})).await;
    let other = app
        .create_device(&token, json!({"name": "Other", "type": "flow"}))
        .await;
    let other_id = other["id"].as_str().expect("id");

    let foreign = app
        .post(
            "/api/v1/telemetry",
            As::ApiKey(&key),
            &seed_reading(other_id),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN, "{foreign:?}");
    let read_other = app
        .get(
            &format!("/api/v1/telemetry/latest?device_id={other_id}"),
            As::ApiKey(&key),
        )
        .await;
    assert_eq!(read_other.status, StatusCode::FORBIDDEN);
    let read_own = app
        .get(
            &format!("/api/v1/telemetry/latest?device_id={id}"),
            As::ApiKey(&key),
        )
        .await;
    assert_eq!(read_own.status, StatusCode::OK, "{read_own:?}");

    let (read_only, _) = app
        .create_api_key(
            &token,
            json!({"name": "ro", "device_id": id, "permissions": {"read": true}}),
        )
        .await;
    let denied = app
        .post(
            "/api/v1/telemetry",
            As::ApiKey(&read_only),
            &seed_reading(&id),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    // A device-bound key may leave device_id out.
    let implied = app
        .post(
            "/api/v1/telemetry",
            As::ApiKey(&key),
            &json!({"telemetry": {"temperature": 20}}),
        )
        .await;
    assert_eq!(implied.status, StatusCode::CREATED, "{implied:?}");

    // A gateway key (no device) writes any device, but not one that does not exist.
    let (gateway, _) = app.create_api_key(&token, json!({"name": "gw"})).await;
    let ok = app
        .post(
            "/api/v1/telemetry",
            As::ApiKey(&gateway),
            &seed_reading(other_id),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let missing = app
        .post(
            "/api/v1/telemetry",
            As::ApiKey(&gateway),
            &seed_reading(&uuid::Uuid::new_v4().to_string()),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "device_not_found");

    // People: engineers may post, viewers may not.
    let engineer = app.user_with_role(&token, "engineer").await.2;
    let viewer = app.user_with_role(&token, "viewer").await.2;
    assert_eq!(
        app.post(
            "/api/v1/telemetry",
            As::Bearer(&engineer),
            &seed_reading(&id)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post("/api/v1/telemetry", As::Bearer(&viewer), &seed_reading(&id))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // A revoked key stops at once.
    let keys = app
        .get(
            &format!("/api/v1/api-keys?device_id={id}"),
            As::Bearer(&token),
        )
        .await;
    let key_id = keys.body["api_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "sensor key")
        .and_then(|k| k["id"].as_str())
        .expect("key id")
        .to_string();
    app.delete(&format!("/api/v1/api-keys/{key_id}"), As::Bearer(&token))
        .await;
    let revoked = app
        .post("/api/v1/telemetry", As::ApiKey(&key), &seed_reading(&id))
        .await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(revoked.code(), "api_key_revoked");
    // implied (1) + gateway (3) + engineer (3); every refused request stored nothing.
    assert_eq!(stored_rows(&app).await, 1 + 3 + 3);
}

#[actix_web::test]
async fn a_keys_rate_limit_answers_429_with_headers() {
    let app = spawn_app().await;
    let (_, id, key) = device_with_key(&app, json!({"rate_limit": 3})).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let reply = app
            .post("/api/v1/telemetry", As::ApiKey(&key), &seed_reading(&id))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        remaining.push(
            reply
                .header("x-ratelimit-remaining")
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let over = app
        .post("/api/v1/telemetry", As::ApiKey(&key), &seed_reading(&id))
        .await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{over:?}");
    assert_eq!(over.code(), "rate_limited");
    assert!(over.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("API key rate limit"));
    assert_eq!(over.body["error"]["details"]["limit"], "api_key");
    assert_eq!(over.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = over
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!(retry >= 1);
    assert_eq!(
        stored_rows(&app).await,
        9,
        "the refused request stored nothing"
    );
}

#[actix_web::test]
async fn bad_readings_get_a_clear_4xx_and_nothing_is_stored() {
    let app = spawn_app_with(|s| {
        s.ingest.max_keys_per_reading = 4;
        s.ingest.max_records_per_request = 3;
        s.ingest.max_body_bytes = 8192;
    })
    .await;
    let (_, id, key) = device_with_key(&app, json!({})).await;
    let many_keys: serde_json::Map<String, Value> =
        (0..5).map(|i| (format!("k{i}"), json!(i))).collect();
    let cases = [
        (json!({"device_id": id}), "telemetry"),
        (json!({"device_id": id, "telemetry": {}}), "telemetry"),
        (
            json!({"device_id": id, "telemetry": {"t": {"value": "hot"}}}),
            "telemetry.t.value",
        ),
        (
            json!({"device_id": id, "telemetry": {"t": {"value": 1, "quality": 500}}}),
            "telemetry.t.quality",
        ),
        (
            json!({"device_id": id, "timestamp": "27/10/2025", "telemetry": {"t": 1}}),
            "timestamp",
        ),
        (
            json!({"device_id": id, "telemetry": many_keys}),
            "telemetry",
        ),
        (
            json!({"device_id": id, "records": [{"telemetry": {"t": 1}}, {"telemetry": {"t": 1}}, {"telemetry": {"t": 1}}, {"telemetry": {"t": 1}}]}),
            "records",
        ),
        (
            json!({"device_id": "pump-7", "telemetry": {"t": 1}}),
            "device_id",
        ),
        (
            json!({"device_id": id, "telemetry": {"t": {"value": 1, "deeper": {"x": 1}}}}),
            "telemetry.t.deeper",
        ),
        (
            json!({"device_id": id, "telemetry": {"t": 1}, "records": []}),
            "records",
        ),
    ];
    for (body, field) in cases {
        let reply = app.post("/api/v1/telemetry", As::ApiKey(&key), &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {reply:?}"
        );
        assert_eq!(reply.fields(), [field], "{body}");
    }
    let nested = format!(
        "{{\"device_id\":\"{id}\",\"telemetry\":{{\"t\":{}1{}}}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let deep = crate::helpers::read(
        app.client
            .post(app.url("/api/v1/telemetry"))
            .header("X-API-Key", &key)
            .header("Content-Type", "application/json")
            .body(nested)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert!(deep.status.is_client_error(), "deeply nested: {deep:?}");
    let large = json!({"device_id": id, "telemetry": {"note": "x".repeat(9000)}});
    let too_large = app
        .post("/api/v1/telemetry", As::ApiKey(&key), &large)
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    let garbage = crate::helpers::read(
        app.client
            .post(app.url("/api/v1/telemetry"))
            .header("X-API-Key", &key)
            .header("Content-Type", "application/json")
            .body("{\"device_id\": ")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(stored_rows(&app).await, 0);
}

#[actix_web::test]
async fn a_device_goes_offline_after_its_inactivity_timeout_and_maintenance_is_kept() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let mut body = seed_device();
    body["config"]["inactivity_timeout"] = json!(1);
    let device = app.create_device(&token, body).await;
    let id = device["id"].as_str().expect("id").to_string();
    let (key, _) = app
        .create_api_key(&token, json!({"name": "k", "device_id": id}))
        .await;
    let mut events = app.pipeline.subscribe();

    let sent = std::time::Instant::now();
    assert_eq!(
        app.post("/api/v1/telemetry", As::ApiKey(&key), &seed_reading(&id))
            .await
            .status,
        StatusCode::CREATED
    );
    let mut seen = Vec::new();
    let offline_after = loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("a status event within 5 s")
            .expect("event stream open");
        let insa_actors::DeviceEvent::StatusChanged { to, .. } = event else {
            continue;
        };
        seen.push(to.as_str());
        if to.as_str() == "offline" {
            break sent.elapsed();
        }
    };
    assert_eq!(seen, ["online", "offline"]);
    // The actor's own timer, never before the timeout (the timeout is the behaviour here: one
    // second, the least). How long after depends on the machine, so it is not bounded.
    assert!(
        offline_after >= Duration::from_secs(1),
        "offline after {offline_after:?}"
    );
    let path = format!("/api/v1/devices/{id}");
    eventually(Duration::from_secs(5), "offline persisted", || async {
        let reply = app.get(&path, As::Bearer(&token)).await;
        (reply.body["status"] == "offline" && reply.body["last_seen"].is_string()).then_some(())
    })
    .await;

    // Maintenance is kept by readings and by the timer: the reading starts the device's actor
    // again (it stopped when the device went offline), which takes maintenance from the database
    // and keeps it; when its timer ends it, it stops without a status change of its own. The
    // event stream says so: after offline, the person's change is the only status change.
    let reply = app
        .put(&path, As::Bearer(&token), &json!({"status": "maintenance"}))
        .await;
    assert_eq!(reply.body["status"], "maintenance");
    let reading = json!({"device_id": id, "telemetry": {"temperature": 26.0}});
    assert_eq!(
        app.post("/api/v1/telemetry", As::ApiKey(&key), &reading)
            .await
            .status,
        StatusCode::CREATED
    );
    let device_id = uuid::Uuid::parse_str(&id).expect("uuid");
    eventually(
        Duration::from_secs(10),
        "the actor stopped by its timer",
        || async {
            app.pipeline
                .registry()
                .live(device_id)
                .is_none()
                .then_some(())
        },
    )
    .await;
    let mut after_offline = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let insa_actors::DeviceEvent::StatusChanged { to, .. } = event {
            after_offline.push(to.as_str());
        }
    }
    assert_eq!(after_offline, ["maintenance"]);
    let after = app.get(&path, As::Bearer(&token)).await;
    assert_eq!(after.body["status"], "maintenance");
}

#[actix_web::test]
async fn a_crashed_device_actor_is_recreated_from_the_database() {
    let app = spawn_app().await;
    let (token, id, key) = device_with_key(&app, json!({})).await;
    let device_id = uuid::Uuid::parse_str(&id).expect("uuid");
    assert_eq!(
        app.post("/api/v1/telemetry", As::ApiKey(&key), &seed_reading(&id))
            .await
            .status,
        StatusCode::CREATED
    );
    let before = app
        .pipeline
        .registry()
        .live(device_id)
        .expect("actor alive");

    assert!(app.pipeline.crash_device(device_id));
    // The registry notices the death and recreates the actor from the database on its own.
    let after = eventually(Duration::from_secs(5), "actor recreated", || async {
        app.pipeline
            .registry()
            .live(device_id)
            .filter(|addr| *addr != before)
    })
    .await;
    assert!(!before.connected());
    assert!(after.connected());
    let reply = app
        .post(
            "/api/v1/telemetry",
            As::ApiKey(&key),
            &json!({"device_id": id, "telemetry": {"temperature": 30.0}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(app.pipeline.registry().restarts(), 1);
    let state = app
        .pipeline
        .device_state(device_id)
        .await
        .expect("live again");
    assert_eq!(state.status.as_str(), "online");
    assert_eq!(
        state.latest["pressure"].value,
        Some(1013.0),
        "reloaded from the database"
    );
    assert_eq!(state.latest["temperature"].value, Some(30.0));
    let status = app.get("/api/v1/status", As::Bearer(&token)).await;
    assert_eq!(status.body["ingest"]["actor_restarts"], 1);
}

#[actix_web::test]
async fn a_saturated_writer_answers_503_and_stores_only_what_it_acknowledged() {
    let app = spawn_app_with(|s| {
        s.ingest.batch_max_points = 5;
        s.ingest.max_pending_points = 5;
    })
    .await;
    let (_, id, key) = device_with_key(&app, json!({})).await;
    let stall = stall_telemetry_writes(&app).await;
    let first = {
        let (client, url, key, body) = (
            app.client.clone(),
            app.url("/api/v1/telemetry"),
            key.clone(),
            seed_reading(&id),
        );
        actix_web::rt::spawn(async move {
            client
                .post(url)
                .header("X-API-Key", key)
                .json(&body)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    eventually(Duration::from_secs(5), "first batch pending", || async {
        (app.pipeline.pending_points() == 3).then_some(())
    })
    .await;
    let refused = app
        .post("/api/v1/telemetry", As::ApiKey(&key), &seed_reading(&id))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "ingest_saturated");
    assert_eq!(refused.header("retry-after"), Some("1"));
    stall.rollback().await.expect("release the database");
    let first = first.await.expect("task").expect("first request");
    assert_eq!(first, StatusCode::CREATED);
    assert_eq!(stored_rows(&app).await, 3);
    assert_eq!(app.pipeline.pending_points(), 0);
}
