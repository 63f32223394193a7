//! `GET /metrics`: valid Prometheus text, and counters that move with traffic.

use std::io::Write;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{eventually, seed_device, spawn_app, As, TestApp};

/// The scrape as text, checked to be served as Prometheus text.
async fn scrape_text(app: &TestApp) -> String {
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
    response.text().await.expect("body")
}

/// The scrape, parsed by an independent Prometheus text-format parser.
async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    let text = scrape_text(app).await;
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

#[actix_web::test]
async fn made_up_http_methods_do_not_add_metric_series() {
    let app = spawn_app().await;
    for n in 0..30 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{n}").as_bytes()).expect("method");
        app.client
            .request(method, app.url("/health"))
            .send()
            .await
            .expect("request");
    }
    let text = scrape_text(&app).await;
    assert!(!text.contains("MADEUP"), "a made-up method became a label");
    assert!(
        text.lines()
            .any(|l| l.starts_with("insa_http_requests_total") && l.contains("method=\"OTHER\"")),
        "they are counted as OTHER"
    );
}

#[actix_web::test]
async fn the_metrics_scrape_passes_promtool_check() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let device = device["id"].as_str().expect("id");
    app.send_reading(&token, device, json!({"temperature": 20}))
        .await;
    app.get("/no/such/page", As::Nobody).await;
    let text = scrape_text(&app).await;
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut promtool = match promtool {
        Ok(child) => child,
        Err(err) => {
            assert!(
                std::env::var("INSA_PROMTOOL").as_deref() != Ok("required"),
                "promtool is required here (INSA_PROMTOOL=required) but cannot run: {err}"
            );
            eprintln!("note: promtool not found ({err}); scripts/ensure-promtool.sh installs it");
            return;
        }
    };
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = promtool.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}
