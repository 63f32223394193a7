//! Alerts as operators see them: the product README's queries, acknowledging and resolving.
//! The alerts are written straight into the database here, as the rule engine would.

use chrono::{Duration, Utc};
use insa_entities::alerts;
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, Set};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{seed_device, spawn_app, As, TestApp};

async fn alert(
    app: &TestApp,
    device: &str,
    severity: &str,
    status: &str,
    minutes_ago: i64,
) -> String {
    let id = Uuid::new_v4();
    alerts::ActiveModel {
        id: Set(id),
        device_id: Set(Uuid::parse_str(device).expect("device id")),
        rule_id: Set(None),
        severity: Set(severity.into()),
        message: Set(format!("{severity} alert")),
        value: Set(Some(91.5)),
        threshold: Set(Some(80.0)),
        status: Set(status.into()),
        acknowledged_by: Set(None),
        acknowledged_at: Set(None),
        resolved_at: Set((status == "resolved").then(Utc::now)),
        created_at: Set(Utc::now() - Duration::minutes(minutes_ago)),
        metadata: Set(None),
    }
    .insert(&app.db)
    .await
    .expect("insert alert");
    id.to_string()
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
    let critical = alert(&app, one, "critical", "active", 1).await;
    let warning = alert(&app, one, "warning", "active", 2).await;
    let old = alert(&app, one, "critical", "resolved", 30).await;
    let other = alert(&app, two, "info", "active", 3).await;

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
    let id = alert(
        &app,
        device["id"].as_str().expect("id"),
        "critical",
        "active",
        0,
    )
    .await;
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
