use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{seed_device, spawn_app, spawn_app_with, As};

fn names(list: &Value) -> Vec<&str> {
    list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect()
}

#[actix_web::test]
async fn the_seeds_create_device_example_works_as_written() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let reply = app
        .post("/api/v1/devices", As::Bearer(&token), &seed_device())
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let device = &reply.body;
    let id = device["id"].as_str().expect("id");
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/devices/{id}").as_str())
    );
    assert_eq!(device["name"], "Temperature Sensor 01");
    assert_eq!(device["type"], "temperature");
    assert_eq!(device["area"], "Empaque");
    assert_eq!(device["location"], "Zone A");
    assert_eq!(device["protocol"], "mqtt");
    assert_eq!(
        device["config"],
        json!({"sampling_rate": 60, "alert_threshold": 50})
    );
    assert_eq!(device["metadata"]["manufacturer"], "Honeywell");
    assert_eq!(device["status"], "offline");
    assert_eq!(device["last_seen"], Value::Null);

    let fetched = app
        .get(&format!("/api/v1/devices/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(&fetched.body, device);
}

#[actix_web::test]
async fn the_seeds_list_filters_work_as_written() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    app.create_device(&token, seed_device()).await;
    let online = app
        .create_device(&token, json!({"name": "Separator level", "type": "level", "area": "Empaque", "protocol": "modbus"}))
        .await;
    app.create_device(&token, json!({"name": "Wellhead pressure", "type": "pressure", "area": "Pozo 3", "protocol": "mqtt"}))
        .await;
    // Only the device itself turns online; simulate its first reading in the database.
    let id = uuid::Uuid::parse_str(online["id"].as_str().expect("id")).expect("uuid");
    use sea_orm::{ActiveModelTrait, Set};
    insa_entities::devices::ActiveModel {
        id: Set(id),
        status: Set(insa_entities::DeviceStatus::Online),
        ..Default::default()
    }
    .update(&app.db)
    .await
    .expect("set online");

    let all = app.get("/api/v1/devices", As::Bearer(&token)).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body["total"], 3);
    assert_eq!(all.body["limit"], 100);
    assert_eq!(all.body["offset"], 0);

    let reply = app
        .get("/api/v1/devices?status=online", As::Bearer(&token))
        .await;
    assert_eq!(names(&reply.body), ["Separator level"]);

    let reply = app
        .get("/api/v1/devices?area=Empaque&limit=50", As::Bearer(&token))
        .await;
    assert_eq!(reply.body["limit"], 50);
    assert_eq!(
        names(&reply.body),
        ["Separator level", "Temperature Sensor 01"]
    );

    let reply = app
        .get("/api/v1/devices?type=pressure", As::Bearer(&token))
        .await;
    assert_eq!(names(&reply.body), ["Wellhead pressure"]);
    let reply = app
        .get(
            "/api/v1/devices?protocol=mqtt&area=Empaque",
            As::Bearer(&token),
        )
        .await;
    assert_eq!(names(&reply.body), ["Temperature Sensor 01"]);
    let reply = app
        .get("/api/v1/devices?q=SENSOR", As::Bearer(&token))
        .await;
    assert_eq!(names(&reply.body), ["Temperature Sensor 01"]);
    let reply = app.get("/api/v1/devices?q=%25", As::Bearer(&token)).await;
    assert_eq!(reply.body["total"], 0, "a % in the search is literal");
}

#[actix_web::test]
async fn lists_are_paged_with_total_limit_and_offset() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for i in 0..5 {
        app.create_device(
            &token,
            json!({"name": format!("Sensor {i}"), "type": "temperature"}),
        )
        .await;
    }
    let page = app
        .get("/api/v1/devices?limit=2&offset=2", As::Bearer(&token))
        .await;
    assert_eq!(page.body["total"], 5);
    assert_eq!(names(&page.body), ["Sensor 2", "Sensor 3"]);
    let last = app
        .get("/api/v1/devices?limit=2&offset=4", As::Bearer(&token))
        .await;
    assert_eq!(names(&last.body), ["Sensor 4"]);
}

#[actix_web::test]
async fn bad_list_parameters_are_400() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for query in [
        "limit=1001",
        "limit=0",
        "limit=abc",
        "status=broken",
        "offset=-1",
        "colour=red",
    ] {
        let reply = app
            .get(&format!("/api/v1/devices?{query}"), As::Bearer(&token))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {reply:?}");
        assert_eq!(reply.code(), "invalid_query", "{query}");
    }
    let max = app
        .get("/api/v1/devices?limit=1000", As::Bearer(&token))
        .await;
    assert_eq!(max.status, StatusCode::OK);
}

#[actix_web::test]
async fn the_seeds_update_example_changes_only_given_fields_and_merges_config() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let id = device["id"].as_str().expect("id");
    let reply = app
        .put(
            &format!("/api/v1/devices/{id}"),
            As::Bearer(&token),
            &json!({
                "status": "maintenance",
                "location": "Zone B",
                "config": {
                    "sampling_rate": 30
                }
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let updated = &reply.body;
    assert_eq!(updated["status"], "maintenance");
    assert_eq!(updated["location"], "Zone B");
    assert_eq!(
        updated["config"],
        json!({"sampling_rate": 30, "alert_threshold": 50})
    );
    assert_eq!(updated["name"], device["name"]);
    assert_eq!(updated["area"], device["area"]);
    assert_eq!(updated["metadata"], device["metadata"]);
    assert_eq!(updated["created_at"], device["created_at"]);
    assert_ne!(updated["updated_at"], device["updated_at"]);

    // RFC 7396: null removes a key; a null field clears it.
    let reply = app
        .put(
            &format!("/api/v1/devices/{id}"),
            As::Bearer(&token),
            &json!({"config": {"alert_threshold": null}, "metadata": {"firmware": "v2.2.0"}, "location": null}),
        )
        .await;
    assert_eq!(reply.body["config"], json!({"sampling_rate": 30}));
    assert_eq!(reply.body["metadata"]["firmware"], "v2.2.0");
    assert_eq!(reply.body["metadata"]["model"], "T6800");
    assert_eq!(reply.body["location"], Value::Null);

    let stored = app
        .get(&format!("/api/v1/devices/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(stored.body, reply.body);
}

#[actix_web::test]
async fn invalid_device_fields_are_named_in_a_422_and_nothing_is_stored() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let cases = [
        (json!({"type": "temperature"}), "name"),
        (json!({"name": "No type"}), "type"),
        (json!({"name": "  ", "type": "flow"}), "name"),
        (json!({"name": "x".repeat(256), "type": "flow"}), "name"),
        (json!({"name": "Long type", "type": "t".repeat(51)}), "type"),
        (
            json!({"name": "Area", "type": "flow", "area": "a".repeat(101)}),
            "area",
        ),
        (
            json!({"name": "Config", "type": "flow", "config": [1, 2]}),
            "config",
        ),
        (
            json!({"name": "Meta", "type": "flow", "metadata": "text"}),
            "metadata",
        ),
        (
            json!({"name": "Status", "type": "flow", "status": "online"}),
            "status",
        ),
        (
            json!({"name": "Status", "type": "flow", "status": "broken"}),
            "status",
        ),
    ];
    for (body, field) in cases {
        let reply = app.post("/api/v1/devices", As::Bearer(&token), &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {reply:?}"
        );
        assert_eq!(reply.code(), "validation_failed");
        assert_eq!(reply.fields()[0], field, "{body}");
    }
    let typo = app
        .post(
            "/api/v1/devices",
            As::Bearer(&token),
            &json!({"name": "Typo", "type": "flow", "locaton": "Zone A"}),
        )
        .await;
    assert_eq!(typo.status, StatusCode::UNPROCESSABLE_ENTITY, "{typo:?}");
    assert!(typo.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("locaton"));
    let wrong_type = app
        .post(
            "/api/v1/devices",
            As::Bearer(&token),
            &json!({"name": 7, "type": "flow"}),
        )
        .await;
    assert_eq!(
        wrong_type.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{wrong_type:?}"
    );

    let list = app.get("/api/v1/devices", As::Bearer(&token)).await;
    assert_eq!(list.body["total"], 0);
}

#[actix_web::test]
async fn invalid_updates_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let path = format!("/api/v1/devices/{}", device["id"].as_str().expect("id"));
    for body in [
        json!({"status": "exploded"}),
        json!({"status": null}),
        json!({"name": null}),
        json!({"name": ""}),
        json!({"config": 5}),
    ] {
        let reply = app.put(&path, As::Bearer(&token), &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {reply:?}"
        );
    }
    assert_eq!(app.get(&path, As::Bearer(&token)).await.body, device);
    for status in ["online", "offline", "maintenance", "error"] {
        let reply = app
            .put(&path, As::Bearer(&token), &json!({"status": status}))
            .await;
        assert_eq!(reply.body["status"], status);
    }
}

#[actix_web::test]
async fn unknown_devices_are_404_and_malformed_ids_400() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let unknown = format!("/api/v1/devices/{}", uuid::Uuid::new_v4());
    for reply in [
        app.get(&unknown, As::Bearer(&token)).await,
        app.put(&unknown, As::Bearer(&token), &json!({"location": "x"}))
            .await,
        app.delete(&unknown, As::Bearer(&token)).await,
    ] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
        assert_eq!(reply.code(), "device_not_found");
    }
    let malformed = app
        .get("/api/v1/devices/not-a-uuid", As::Bearer(&token))
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.code(), "invalid_id");
}

#[actix_web::test]
async fn deleting_a_device_removes_it_and_its_api_keys() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let id = device["id"].as_str().expect("id");
    let (key, _) = app
        .create_api_key(
            &token,
            json!({"name": "k", "device_id": id, "permissions": {"read": true, "write": true}}),
        )
        .await;
    assert_eq!(
        app.get(&format!("/api/v1/devices/{id}"), As::ApiKey(&key))
            .await
            .status,
        StatusCode::OK
    );

    let reply = app
        .delete(&format!("/api/v1/devices/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/v1/devices/{id}"), As::Bearer(&token))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let with_key = app
        .get(&format!("/api/v1/devices/{id}"), As::ApiKey(&key))
        .await;
    assert_eq!(with_key.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/v1/api-keys", As::Bearer(&token)).await.body["total"],
        0
    );
}

#[actix_web::test]
async fn a_device_reads_online_the_moment_its_first_reading_is_stored() {
    // The table is written behind (here a minute behind); the answers come from the actor.
    let app = spawn_app_with(|settings| settings.devices.state_flush_ms = 60_000).await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let id = device["id"].as_str().expect("id");
    assert_eq!(device["status"], "offline");

    app.send_reading(&token, id, json!({"temperature": 21.5}))
        .await;
    let one = app
        .get(&format!("/api/v1/devices/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(one.body["status"], "online", "{one:?}");
    assert!(one.body["last_seen"].is_string(), "{one:?}");
    let list = app.get("/api/v1/devices", As::Bearer(&token)).await;
    assert_eq!(list.body["devices"][0]["status"], "online", "{list:?}");
    assert_eq!(list.body["devices"][0]["last_seen"], one.body["last_seen"]);
}
