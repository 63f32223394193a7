//! Alert rules: who may manage them, what a valid rule is, partial updates.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{seed_device, spawn_app, As, TestApp};

/// A device and an admin token: (token, device id).
async fn setup(app: &TestApp) -> (String, String) {
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    (token, device["id"].as_str().expect("id").to_string())
}

fn pressure_rule(device: &str) -> Value {
    json!({
        "name": "High wellhead pressure",
        "device_id": device,
        "key": "pressure",
        "condition": ">",
        "threshold": 80.0,
        "for": 30,
        "hysteresis": 2.5,
        "severity": "critical",
        "actions": [
            {"type": "email", "to": ["ops@example.com", "shift.lead@example.com"]},
            {"type": "webhook", "url": "https://scada.example.com/hooks/insa", "secret": "s3cret",
             "headers": {"X-Site": "north-field"}},
            {"type": "mqtt", "payload": {"command": "close_valve"}}
        ]
    })
}

#[actix_web::test]
async fn engineers_manage_rules_and_everyone_reads_them() {
    let app = spawn_app().await;
    let (admin, device) = setup(&app).await;
    let (_, _, engineer) = app.user_with_role(&admin, "engineer").await;
    let (_, _, operator) = app.user_with_role(&admin, "operator").await;
    let (_, _, viewer) = app.user_with_role(&admin, "viewer").await;

    let created = app
        .post(
            "/api/v1/rules",
            As::Bearer(&engineer),
            &pressure_rule(&device),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let rule = &created.body;
    let id = rule["id"].as_str().expect("id");
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/rules/{id}").as_str())
    );
    assert_eq!(rule["condition"], ">");
    assert_eq!(rule["threshold"], 80.0);
    assert_eq!(rule["for"], 30);
    assert_eq!(rule["hysteresis"], 2.5);
    assert_eq!(rule["severity"], "critical");
    assert_eq!(rule["auto_resolve"], true);
    assert_eq!(rule["enabled"], true);
    assert_eq!(rule["actions"].as_array().map(Vec::len), Some(3));
    assert_eq!(rule["actions"][1]["secret"], "***", "write-only");

    for reader in [&operator, &viewer] {
        let list = app.get("/api/v1/rules", As::Bearer(reader)).await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.body["total"], 1);
        assert_eq!(list.body["rules"][0]["id"], id);
        let one = app
            .get(&format!("/api/v1/rules/{id}"), As::Bearer(reader))
            .await;
        assert_eq!(one.body["name"], "High wellhead pressure");
        for refused in [
            app.post("/api/v1/rules", As::Bearer(reader), &pressure_rule(&device))
                .await,
            app.put(
                &format!("/api/v1/rules/{id}"),
                As::Bearer(reader),
                &json!({"threshold": 1}),
            )
            .await,
            app.delete(&format!("/api/v1/rules/{id}"), As::Bearer(reader))
                .await,
        ] {
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
        }
    }
    let anonymous = app.get("/api/v1/rules", As::Nobody).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let filtered = app
        .get(
            &format!("/api/v1/rules?device_id={device}&severity=critical"),
            As::Bearer(&viewer),
        )
        .await;
    assert_eq!(filtered.body["total"], 1);
    let none = app
        .get("/api/v1/rules?severity=info", As::Bearer(&viewer))
        .await;
    assert_eq!(none.body["total"], 0);
    let bad = app
        .get("/api/v1/rules?severity=urgent", As::Bearer(&viewer))
        .await;
    assert_eq!(bad.code(), "invalid_query");
}

#[actix_web::test]
async fn an_invalid_rule_is_refused_naming_each_field_at_fault() {
    let app = spawn_app().await;
    let (token, device) = setup(&app).await;
    let post = |body: Value| {
        let (app, token) = (&app, token.clone());
        async move { app.post("/api/v1/rules", As::Bearer(&token), &body).await }
    };
    let with = |patch: Value| {
        let mut rule = pressure_rule(&device);
        json_patch::merge(&mut rule, &patch);
        rule
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            with(json!({"device_id": uuid::Uuid::new_v4()})),
            "device_id",
        ),
        (with(json!({"device_id": null})), "device_id"),
        (with(json!({"device_type": "pressure"})), "device_id"),
        (with(json!({"condition": "above"})), "condition"),
        (with(json!({"threshold": null})), "threshold"),
        (with(json!({"key": null})), "key"),
        (with(json!({"name": " "})), "name"),
        (
            with(json!({"condition": "between", "threshold": null, "low": 10, "high": 5})),
            "high",
        ),
        (
            with(json!({"condition": "outside", "threshold": null, "low": 10})),
            "low",
        ),
        (with(json!({"severity": "urgent"})), "severity"),
        (with(json!({"hysteresis": -1})), "hysteresis"),
        (with(json!({"for": 9_000_000})), "for"),
        (
            with(json!({"actions": [{"type": "email", "to": ["not-an-address"]}]})),
            "actions[0].to[0]",
        ),
        (
            with(json!({"actions": [{"type": "email", "to": []}]})),
            "actions[0].to",
        ),
        (
            with(json!({"actions": [{"type": "webhook", "url": "ftp://example.com/x"}]})),
            "actions[0].url",
        ),
        (
            with(json!({"actions": [{"type": "webhook", "url": "not a url"}]})),
            "actions[0].url",
        ),
        (
            with(json!({"actions": [{"type": "sms", "to": ["+1"]}]})),
            "actions[0].type",
        ),
        (
            with(
                json!({"actions": [{"type": "mqtt", "topic": "devices/+/commands", "payload": 1}]}),
            ),
            "actions[0].topic",
        ),
        (
            with(json!({"actions": [{"type": "mqtt"}]})),
            "actions[0].payload",
        ),
    ];
    for (body, field) in cases {
        let reply = post(body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {reply:?}"
        );
        assert_eq!(reply.code(), "validation_failed");
        assert!(
            reply.fields().contains(&field),
            "{field} not named for {body}: {reply:?}"
        );
    }
    let unknown_field = post(with(json!({"colour": "red"}))).await;
    assert_eq!(unknown_field.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unknown_field.body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("colour")));
    let listed = app.get("/api/v1/rules", As::Bearer(&token)).await;
    assert_eq!(listed.body["total"], 0, "nothing stored");
}

#[actix_web::test]
async fn rules_target_a_type_or_area_and_may_watch_for_offline_devices() {
    let app = spawn_app().await;
    let (token, _) = setup(&app).await;
    let fleet = app
        .post(
            "/api/v1/rules",
            As::Bearer(&token),
            &json!({"name": "Cold separators", "device_type": "temperature", "area": "Separation",
                    "key": "temperature", "condition": "outside", "low": 5, "high": 90}),
        )
        .await;
    assert_eq!(fleet.status, StatusCode::CREATED, "{fleet:?}");
    assert_eq!(fleet.body["low"], 5.0);
    assert_eq!(fleet.body["high"], 90.0);
    assert_eq!(fleet.body["threshold"], Value::Null);
    assert_eq!(fleet.body["severity"], "warning");
    let offline = app
        .post(
            "/api/v1/rules",
            As::Bearer(&token),
            &json!({"name": "Gateway lost", "area": "Separation", "condition": "offline",
                    "severity": "critical"}),
        )
        .await;
    assert_eq!(offline.status, StatusCode::CREATED, "{offline:?}");
    assert_eq!(offline.body["key"], "");
}

#[actix_web::test]
async fn a_rule_changes_only_where_told_and_stays_valid() {
    let app = spawn_app().await;
    let (token, device) = setup(&app).await;
    let created = app
        .post("/api/v1/rules", As::Bearer(&token), &pressure_rule(&device))
        .await;
    let path = format!("/api/v1/rules/{}", created.body["id"].as_str().expect("id"));

    let changed = app
        .put(
            &path,
            As::Bearer(&token),
            &json!({"threshold": 85, "enabled": false}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_eq!(changed.body["threshold"], 85.0);
    assert_eq!(changed.body["enabled"], false);
    assert_eq!(changed.body["severity"], "critical", "untouched");
    assert_eq!(
        changed.body["actions"], created.body["actions"],
        "untouched"
    );

    // From a threshold to a band: the threshold goes.
    let band = app
        .put(
            &path,
            As::Bearer(&token),
            &json!({"condition": "between", "low": 20, "high": 30}),
        )
        .await;
    assert_eq!(band.status, StatusCode::OK, "{band:?}");
    assert_eq!(band.body["threshold"], Value::Null);
    assert_eq!(band.body["low"], 20.0);

    let refused = app
        .put(&path, As::Bearer(&token), &json!({"high": 10}))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert!(refused.fields().contains(&"high"));
    let unknown_field = app
        .put(&path, As::Bearer(&token), &json!({"colour": "red"}))
        .await;
    assert_eq!(unknown_field.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unchanged = app.get(&path, As::Bearer(&token)).await;
    assert_eq!(unchanged.body["high"], 30.0);

    let gone = app.delete(&path, As::Bearer(&token)).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let missing = app.get(&path, As::Bearer(&token)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "rule_not_found");
    let missing = app
        .put(&path, As::Bearer(&token), &json!({"threshold": 1}))
        .await;
    assert_eq!(missing.code(), "rule_not_found");
}
