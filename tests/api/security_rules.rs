//! The security boundaries of rules, alerts, notifications and reports: write-only webhook
//! secrets, MQTT actions confined to their device's command topic, bounded alert chatter, CSV
//! cells that never run as formulas, and the webhook guard against internal addresses.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{free_port, spawn_app_with, As, TestApp};
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
    let receiver = Receiver::start_on(free_port(), 0, 200);
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
        .create_device(&token, json!({"name": "Pump 1", "type": "pump"}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let other = app
        .create_device(&token, json!({"name": "Pump 2", "type": "pump"}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_string();
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
