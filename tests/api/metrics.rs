//! `GET /metrics`: valid Prometheus text, and counters that move with traffic.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{eventually, seed_device, spawn_app, TestApp};

/// The scrape, parsed by an independent Prometheus text-format parser.
async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    let text = response.text().await.expect("body");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
}

/// The value of `name` with these labels (counters, gauges), 0 when absent.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[actix_web::test]
async fn metrics_parse_and_move_with_traffic() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let id = device["id"].as_str().expect("id").to_string();
    let before = scrape(&app).await;

    app.send_reading(
        &token,
        &id,
        json!({"temperature": 21.5, "humidity": 40, "pressure": 1013}),
    )
    .await;
    let after = scrape(&app).await;

    let http = [("transport", "http")];
    // The recorder is process-wide: other tests add to it too, so these only grow.
    assert!(
        value(&after, "insa_telemetry_messages_total", &http)
            >= value(&before, "insa_telemetry_messages_total", &http) + 1.0
    );
    assert!(
        value(&after, "insa_telemetry_points_total", &http)
            >= value(&before, "insa_telemetry_points_total", &http) + 3.0
    );
    let posted = [
        ("method", "POST"),
        ("route", "/api/v1/telemetry"),
        ("status", "201"),
    ];
    assert!(
        value(&after, "insa_http_requests_total", &posted)
            >= value(&before, "insa_http_requests_total", &posted) + 1.0
    );
    assert!(value(&after, "insa_writer_points_total", &[]) >= 3.0);
    assert!(value(&after, "insa_device_actors_active", &[]) >= 1.0);
    // Status is written behind (within moments): the devices gauge follows.
    eventually(
        std::time::Duration::from_secs(5),
        "one device online",
        || async {
            (value(&scrape(&app).await, "insa_devices", &[("status", "online")]) >= 1.0)
                .then_some(())
        },
    )
    .await;
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric.starts_with("insa_http_request_duration_seconds")),
        "request latency histogram"
    );
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric.starts_with("insa_writer_commit_seconds")),
        "commit latency histogram"
    );
}
