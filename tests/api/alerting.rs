//! Rules evaluated by the device actors as readings arrive: one alert per breach, hysteresis,
//! `for` durations, maintenance, the built-in `config.alert_threshold`, offline rules.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, seed_device, spawn_app, As, TestApp};

/// A device of `type` pressure in `area` (no built-in threshold): its id.
async fn device(app: &TestApp, token: &str, area: &str, config: Value) -> String {
    let device = app
        .create_device(
            token,
            json!({"name": "Wellhead 7", "type": "pressure", "area": area, "config": config}),
        )
        .await;
    device["id"].as_str().expect("id").to_string()
}

async fn send(app: &TestApp, token: &str, device: &str, telemetry: Value) {
    app.send_reading(token, device, telemetry).await;
}

async fn create_rule(app: &TestApp, token: &str, rule: Value) -> String {
    let reply = app.post("/api/v1/rules", As::Bearer(token), &rule).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body["id"].as_str().expect("id").to_string()
}

async fn alerts_of(app: &TestApp, token: &str, device: &str) -> Vec<Value> {
    let reply = app
        .get(
            &format!("/api/v1/alerts?device_id={device}"),
            As::Bearer(token),
        )
        .await;
    reply.body["alerts"].as_array().cloned().unwrap_or_default()
}

/// Waits until the device has `n` alerts of which `open` are not resolved.
async fn wait_for(app: &TestApp, token: &str, device: &str, n: usize, open: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(10),
        &format!("{n} alerts, {open} open"),
        || async {
            let all = alerts_of(app, token, device).await;
            let still = all.iter().filter(|a| a["status"] != "resolved").count();
            (all.len() == n && still == open).then_some(all)
        },
    )
    .await
}

#[actix_web::test]
async fn a_breach_raises_one_alert_and_it_resolves_only_past_the_hysteresis() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let id = device(&app, &token, "North", json!({})).await;
    // The device is active before the rule exists: the rule reaches its actor.
    send(&app, &token, &id, json!({"pressure": 60})).await;
    let rule = create_rule(
        &app,
        &token,
        json!({"name": "High pressure", "device_id": id, "key": "pressure", "condition": ">",
               "threshold": 80, "hysteresis": 5, "severity": "critical"}),
    )
    .await;

    send(&app, &token, &id, json!({"pressure": 85})).await;
    let raised = wait_for(&app, &token, &id, 1, 1).await;
    let alert = &raised[0];
    assert_eq!(alert["rule_id"], rule.as_str());
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["value"], 85.0);
    assert_eq!(alert["threshold"], 80.0);
    assert_eq!(alert["status"], "active");
    assert!(alert["message"]
        .as_str()
        .is_some_and(|m| m.contains("High pressure")));

    // Repeated breaches and a value inside the band (75..80) change nothing: had 78 resolved the
    // alert, the breach after it would raise a second one and the count below would be 2.
    for value in [90, 95, 78, 85] {
        send(&app, &token, &id, json!({"pressure": value})).await;
    }
    send(&app, &token, &id, json!({"pressure": 74})).await;
    let resolved = wait_for(&app, &token, &id, 1, 0).await;
    assert!(resolved[0]["resolved_at"].is_string());

    // A new breach is a new alert.
    send(&app, &token, &id, json!({"pressure": 88})).await;
    wait_for(&app, &token, &id, 2, 1).await;
}

#[actix_web::test]
async fn a_condition_must_hold_for_its_duration() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let id = device(&app, &token, "North", json!({})).await;
    let sustained = create_rule(
        &app,
        &token,
        json!({"name": "Sustained pressure", "device_id": id, "key": "pressure",
               "condition": ">", "threshold": 80, "for": 1}),
    )
    .await;
    // A witness on another key that holds longer: its alert can only come after the spike's
    // `for` would have ended (the `for` itself is the behaviour here: one second, the least).
    let witness = create_rule(
        &app,
        &token,
        json!({"name": "Witness", "device_id": id, "key": "level",
               "condition": ">", "threshold": 80, "for": 2}),
    )
    .await;
    let mut events = app.pipeline.subscribe();
    // A spike shorter than `for` raises nothing: the witness's alert is the first one raised.
    send(&app, &token, &id, json!({"pressure": 90})).await;
    send(&app, &token, &id, json!({"pressure": 70})).await;
    send(&app, &token, &id, json!({"level": 90})).await;
    let first = next_raised(&mut events).await;
    assert_eq!(
        first.rule_id.map(|r| r.to_string()),
        Some(witness),
        "a short spike raised an alert"
    );

    // ... a breach that lasts does, once `for` has passed.
    let breached = std::time::Instant::now();
    send(&app, &token, &id, json!({"pressure": 91})).await;
    send(&app, &token, &id, json!({"pressure": 92})).await;
    let raised = next_raised(&mut events).await;
    assert_eq!(raised.rule_id.map(|r| r.to_string()), Some(sustained));
    assert!(
        breached.elapsed() >= Duration::from_secs(1),
        "raised before `for` passed"
    );
    assert_eq!(alerts_of(&app, &token, &id).await.len(), 2);
}

/// The next alert raised, from the pipeline's event stream.
async fn next_raised(
    events: &mut tokio::sync::broadcast::Receiver<insa_actors::DeviceEvent>,
) -> insa_entities::alerts::Model {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an alert raised within 10 s")
            .expect("event stream open");
        if let insa_actors::DeviceEvent::Alert {
            alert,
            event: insa_actors::AlertEvent::Raised,
        } = event
        {
            return *alert;
        }
    }
}

#[actix_web::test]
async fn devices_in_maintenance_raise_nothing_and_a_fleet_rule_covers_its_area() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let serviced = device(&app, &token, "South", json!({})).await;
    let working = device(&app, &token, "South", json!({})).await;
    create_rule(
        &app,
        &token,
        json!({"name": "South pressure", "area": "South", "key": "pressure",
               "condition": ">", "threshold": 80}),
    )
    .await;
    let put = app
        .put(
            &format!("/api/v1/devices/{serviced}"),
            As::Bearer(&token),
            &json!({"status": "maintenance"}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    send(&app, &token, &serviced, json!({"pressure": 99})).await;
    send(&app, &token, &working, json!({"pressure": 99})).await;
    // Alerts are stored in the order they are raised: once the working device's is there, the
    // serviced device's would be too.
    wait_for(&app, &token, &working, 1, 1).await;
    assert!(alerts_of(&app, &token, &serviced).await.is_empty());
}

#[actix_web::test]
async fn the_readme_devices_alert_threshold_raises_without_a_rule() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let id = device["id"].as_str().expect("id").to_string();
    send(
        &app,
        &token,
        &id,
        json!({"temperature": 49.5, "humidity": 80}),
    )
    .await;
    send(
        &app,
        &token,
        &id,
        json!({"temperature": 55.2, "humidity": 81}),
    )
    .await;
    let raised = wait_for(&app, &token, &id, 1, 1).await;
    assert_eq!(raised[0]["rule_id"], Value::Null);
    assert_eq!(raised[0]["severity"], "warning");
    assert_eq!(raised[0]["value"], 55.2);
    assert_eq!(raised[0]["threshold"], 50.0);
    send(&app, &token, &id, json!({"temperature": 45})).await;
    wait_for(&app, &token, &id, 1, 0).await;
}

#[actix_web::test]
async fn an_offline_rule_raises_when_the_device_goes_silent() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let id = device(&app, &token, "East", json!({"inactivity_timeout": 1})).await;
    create_rule(
        &app,
        &token,
        json!({"name": "Wellhead silent", "device_id": id, "condition": "offline",
               "severity": "critical"}),
    )
    .await;
    send(&app, &token, &id, json!({"pressure": 50})).await;
    let raised = wait_for(&app, &token, &id, 1, 1).await;
    assert_eq!(raised[0]["severity"], "critical");
    let first = raised[0]["id"].clone();
    send(&app, &token, &id, json!({"pressure": 51})).await;
    // The device spoke: its alert resolves. A second one-second silence may raise a new alert
    // meanwhile (a new silence, not a duplicate: raised after the first was resolved).
    let all = eventually(Duration::from_secs(10), "the alert resolved", || async {
        let all = alerts_of(&app, &token, &id).await;
        all.iter()
            .any(|a| a["id"] == first && a["status"] == "resolved")
            .then_some(all)
    })
    .await;
    let resolved_at = all
        .iter()
        .find(|a| a["id"] == first)
        .and_then(|a| a["resolved_at"].as_str())
        .expect("resolved_at")
        .to_string();
    for other in all.iter().filter(|a| a["id"] != first) {
        let raised_at = other["created_at"].as_str().expect("created_at");
        assert!(
            raised_at
                .parse::<chrono::DateTime<chrono::Utc>>()
                .expect("time")
                >= resolved_at
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .expect("time"),
            "a second alert raised before the first resolved: {all:?}"
        );
    }
}

#[actix_web::test]
async fn alert_changes_and_status_changes_come_through_one_event_stream() {
    use insa_actors::{AlertEvent, DeviceEvent};
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let id = device(&app, &token, "West", json!({})).await;
    create_rule(
        &app,
        &token,
        json!({"name": "High pressure", "device_id": id, "key": "pressure", "condition": ">",
               "threshold": 80}),
    )
    .await;
    let mut events = app.pipeline.subscribe();
    let mut next_alert = async || loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("stream open");
        match event {
            DeviceEvent::Alert { alert, event } => return (event, alert.status, alert.id),
            DeviceEvent::StatusChanged { to, .. } => assert_eq!(to.as_str(), "online"),
        }
    };
    send(&app, &token, &id, json!({"pressure": 90})).await;
    let (event, status, alert) = next_alert().await;
    assert_eq!((event, status.as_str()), (AlertEvent::Raised, "active"));

    let acked = app
        .post(
            &format!("/api/v1/alerts/{alert}/acknowledge"),
            As::Bearer(&token),
            &Value::Null,
        )
        .await;
    assert_eq!(acked.status, StatusCode::OK);
    let (event, status, _) = next_alert().await;
    assert_eq!(
        (event, status.as_str()),
        (AlertEvent::Acknowledged, "acknowledged")
    );

    let resolved = app
        .post(
            &format!("/api/v1/alerts/{alert}/resolve"),
            As::Bearer(&token),
            &Value::Null,
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK);
    let (event, status, _) = next_alert().await;
    assert_eq!((event, status.as_str()), (AlertEvent::Resolved, "resolved"));
}
