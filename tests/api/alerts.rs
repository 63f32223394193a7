//! Alerts as operators see them: the product README's queries, acknowledging and resolving.
//! The alerts are written straight into the database here, as the rule engine would.

use chrono::{Duration, Utc};
use insa_actors::alerts::{raise, resolve_open, NewAlert};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{seed_device, spawn_app, As, TestApp};

/// A rule on the device, through the API: alerts of different rules may be open together.
async fn rule(app: &TestApp, token: &str, device: &str) -> Uuid {
    let reply = app
        .post(
            "/api/v1/rules",
            As::Bearer(token),
            &json!({"name": "High pressure", "device_id": device, "key": "pressure",
                    "condition": ">", "threshold": 80}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    Uuid::parse_str(reply.body["id"].as_str().expect("id")).expect("uuid")
}

fn new_alert(device: &str, rule: Option<Uuid>, severity: &str, minutes_ago: i64) -> NewAlert {
    NewAlert {
        device_id: Uuid::parse_str(device).expect("device id"),
        rule_id: rule,
        severity: insa_domain::Severity::parse(severity).expect("a severity"),
        message: format!("{severity} alert"),
        value: Some(91.5),
        threshold: Some(80.0),
        metadata: None,
        at: Utc::now() - Duration::minutes(minutes_ago),
    }
}

/// An alert as the rule engine raises it; `resolved` ones are resolved straight away.
async fn alert(
    app: &TestApp,
    device: &str,
    rule: Uuid,
    severity: &str,
    status: &str,
    minutes_ago: i64,
) -> String {
    let raised = raise(
        &app.db,
        new_alert(device, Some(rule), severity, minutes_ago),
    )
    .await
    .expect("raise")
    .expect("no open alert yet");
    if status == "resolved" {
        resolve_open(&app.db, raised.device_id, Some(rule), Utc::now())
            .await
            .expect("resolve");
    }
    raised.id.to_string()
}

fn ids(reply: &Value) -> Vec<&str> {
    reply["alerts"]
        .as_array()
        .map(|all| all.iter().filter_map(|a| a["id"].as_str()).collect())
        .unwrap_or_default()
}

#[actix_web::test]
async fn the_readme_alert_queries_answer_as_written() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, _, viewer) = app.user_with_role(&admin, "viewer").await;
    let one = app.create_device(&admin, seed_device()).await;
    let two = app.create_device(&admin, seed_device()).await;
    let (one, two) = (
        one["id"].as_str().expect("id"),
        two["id"].as_str().expect("id"),
    );
    let old = alert(
        &app,
        one,
        rule(&app, &admin, one).await,
        "critical",
        "resolved",
        30,
    )
    .await;
    let critical = alert(
        &app,
        one,
        rule(&app, &admin, one).await,
        "critical",
        "active",
        1,
    )
    .await;
    let warning = alert(
        &app,
        one,
        rule(&app, &admin, one).await,
        "warning",
        "active",
        2,
    )
    .await;
    let other = alert(
        &app,
        two,
        rule(&app, &admin, two).await,
        "info",
        "active",
        3,
    )
    .await;

    let active = app
        .get("/api/v1/alerts?status=active", As::Bearer(&viewer))
        .await;
    assert_eq!(active.status, StatusCode::OK);
    assert_eq!(
        ids(&active.body),
        [critical.as_str(), warning.as_str(), other.as_str()],
        "newest first"
    );
    assert_eq!(active.body["total"], 3);
    let first = &active.body["alerts"][0];
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["value"], 91.5);
    assert_eq!(first["threshold"], 80.0);
    assert_eq!(first["device_id"], one);

    let critical_active = app
        .get(
            "/api/v1/alerts?severity=critical&status=active",
            As::Bearer(&viewer),
        )
        .await;
    assert_eq!(ids(&critical_active.body), [critical.as_str()]);
    let device = app
        .get(
            &format!("/api/v1/alerts?device_id={one}"),
            As::Bearer(&viewer),
        )
        .await;
    assert_eq!(
        ids(&device.body),
        [critical.as_str(), warning.as_str(), old.as_str()]
    );
    let paged = app
        .get(
            &format!("/api/v1/alerts?device_id={one}&limit=1&offset=1"),
            As::Bearer(&viewer),
        )
        .await;
    assert_eq!(ids(&paged.body), [warning.as_str()]);
    assert_eq!(paged.body["total"], 3);

    for bad in [
        "status=open",
        "severity=urgent",
        "device_id=DEVICE_ID",
        "limit=0",
    ] {
        let reply = app
            .get(&format!("/api/v1/alerts?{bad}"), As::Bearer(&viewer))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {reply:?}");
        assert_eq!(reply.code(), "invalid_query");
    }
    let anonymous = app.get("/api/v1/alerts?status=active", As::Nobody).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn operators_acknowledge_and_resolve_and_viewers_may_not() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (operator_email, _, operator) = app.user_with_role(&admin, "operator").await;
    let (_, _, viewer) = app.user_with_role(&admin, "viewer").await;
    let device = app.create_device(&admin, seed_device()).await;
    let device = device["id"].as_str().expect("id");
    let rule = rule(&app, &admin, device).await;
    let id = alert(&app, device, rule, "critical", "active", 0).await;
    let path = format!("/api/v1/alerts/{id}");

    for action in ["acknowledge", "resolve"] {
        let refused = app
            .post(
                &format!("{path}/{action}"),
                As::Bearer(&viewer),
                &Value::Null,
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{action}: {refused:?}"
        );
    }
    assert_eq!(
        app.get(&path, As::Bearer(&viewer)).await.body["status"],
        "active"
    );

    let acked = app
        .post(
            &format!("{path}/acknowledge"),
            As::Bearer(&operator),
            &Value::Null,
        )
        .await;
    assert_eq!(acked.status, StatusCode::OK, "{acked:?}");
    assert_eq!(acked.body["status"], "acknowledged");
    assert_eq!(acked.body["acknowledged_by"], operator_email.as_str());
    assert!(acked.body["acknowledged_at"].is_string());
    let again = app
        .post(
            &format!("{path}/acknowledge"),
            As::Bearer(&admin),
            &Value::Null,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.body["acknowledged_by"],
        operator_email.as_str(),
        "first acknowledgement kept"
    );
    assert_eq!(again.body["acknowledged_at"], acked.body["acknowledged_at"]);

    let resolved = app
        .post(
            &format!("{path}/resolve"),
            As::Bearer(&operator),
            &Value::Null,
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK);
    assert_eq!(resolved.body["status"], "resolved");
    assert!(resolved.body["resolved_at"].is_string());
    let late = app
        .post(
            &format!("{path}/acknowledge"),
            As::Bearer(&operator),
            &Value::Null,
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.code(), "alert_resolved");

    let missing = app
        .post(
            &format!("/api/v1/alerts/{}/resolve", Uuid::new_v4()),
            As::Bearer(&operator),
            &Value::Null,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "alert_not_found");
}

#[actix_web::test]
async fn at_most_one_alert_is_open_per_device_and_rule_even_when_raised_at_once() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let device = app.create_device(&admin, seed_device()).await;
    let device = device["id"].as_str().expect("id");
    let rule = rule(&app, &admin, device).await;

    let raises = (0..20).map(|_| raise(&app.db, new_alert(device, Some(rule), "critical", 0)));
    let raised: Vec<_> = futures_util::future::join_all(raises)
        .await
        .into_iter()
        .map(|r| r.expect("raise"))
        .collect();
    assert_eq!(
        raised.iter().filter(|r| r.is_some()).count(),
        1,
        "one alert stored"
    );
    let open = app
        .get(
            &format!("/api/v1/alerts?device_id={device}&status=active"),
            As::Bearer(&admin),
        )
        .await;
    assert_eq!(open.body["total"], 1);

    // Acknowledged is still open; once resolved, the condition may raise a new alert.
    let id = open.body["alerts"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.post(
        &format!("/api/v1/alerts/{id}/acknowledge"),
        As::Bearer(&admin),
        &Value::Null,
    )
    .await;
    let again = raise(&app.db, new_alert(device, Some(rule), "critical", 0))
        .await
        .expect("raise");
    assert!(again.is_none(), "an acknowledged alert is still open");
    resolve_open(
        &app.db,
        Uuid::parse_str(device).expect("uuid"),
        Some(rule),
        Utc::now(),
    )
    .await
    .expect("resolve");
    let next = raise(&app.db, new_alert(device, Some(rule), "critical", 0))
        .await
        .expect("raise");
    assert!(
        next.is_some(),
        "a new alert after the last one was resolved"
    );

    // The built-in rule (no rule id): one open alert per device as well.
    let builtin = (0..5).map(|_| raise(&app.db, new_alert(device, None, "warning", 0)));
    let builtin: Vec<_> = futures_util::future::join_all(builtin).await;
    assert_eq!(
        builtin.iter().filter(|r| matches!(r, Ok(Some(_)))).count(),
        1
    );

    // Deleting the rule resolves its open alert (it does not turn into a rule-less one).
    let deleted = app
        .delete(&format!("/api/v1/rules/{rule}"), As::Bearer(&admin))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    let open = app
        .get(
            &format!("/api/v1/alerts?device_id={device}&status=active"),
            As::Bearer(&admin),
        )
        .await;
    assert_eq!(
        open.body["total"], 1,
        "only the built-in rule's alert is open: {open:?}"
    );
    assert_eq!(open.body["alerts"][0]["rule_id"], Value::Null);
}
