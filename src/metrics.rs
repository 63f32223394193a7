//! Prometheus metrics: `GET /metrics` in the text format. Names start with `insa_` and carry
//! their unit; docs/OPERATIONS.md lists them.
//!
//! Counters and histograms are recorded where things happen (HTTP middleware, writer, notifier);
//! gauges and the counters kept elsewhere (writer and MQTT statistics) are read when scraped.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use insa_domain::{AlertStatus, DeviceStatus, Severity};
use insa_entities::{alerts, devices};
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::error::ApiError;
use crate::state::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let points = [1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("insa_writer_batch_points".into()),
                        &points,
                    )
                })
                .and_then(|b| b.install_recorder())
                .map_err(|err| tracing::error!(error = %err, "metrics are not available"))
                .ok()
                .inspect(|_| describe())
        })
        .as_ref()
}

/// HELP text for every family (Prometheus tooling expects it; `promtool check metrics` is run on
/// a scrape by the tests). A new metric gets its line here and in docs/OPERATIONS.md.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "insa_http_requests_total",
        "HTTP requests by method (standard methods, else OTHER), route pattern and status"
    );
    describe_histogram!(
        "insa_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request handling time by method and route pattern"
    );
    describe_counter!(
        "insa_telemetry_messages_total",
        "Telemetry messages accepted, by transport"
    );
    describe_counter!(
        "insa_telemetry_points_total",
        "Data points accepted over HTTP"
    );
    describe_counter!(
        "insa_writer_points_total",
        "Data points committed to the database (all transports)"
    );
    describe_counter!(
        "insa_writer_batches_total",
        "Writer batches by outcome (written, failed)"
    );
    describe_histogram!("insa_writer_batch_points", "Data points per writer batch");
    describe_histogram!(
        "insa_writer_commit_seconds",
        Unit::Seconds,
        "Time to store one writer batch"
    );
    describe_gauge!(
        "insa_ingest_pending_points",
        "Data points accepted and not yet stored"
    );
    describe_counter!(
        "insa_mqtt_messages_total",
        "MQTT ingest messages by outcome (received, stored, malformed, unknown_device)"
    );
    describe_gauge!(
        "insa_mqtt_messages_in_hand",
        "MQTT messages received and not yet stored and acknowledged"
    );
    describe_gauge!(
        "insa_mqtt_connected",
        "1 when the MQTT subscriber is connected and subscribed"
    );
    describe_gauge!("insa_device_actors_active", "Device actors in memory");
    describe_counter!(
        "insa_device_actor_restarts_total",
        "Device actors recreated after a crash"
    );
    describe_gauge!("insa_devices", "Devices by status");
    describe_counter!(
        "insa_alerts_total",
        "Alert changes by event (raised, acknowledged, resolved) and severity"
    );
    describe_gauge!("insa_alerts_open", "Alerts not resolved, by severity");
    describe_counter!(
        "insa_notifications_total",
        "Notification attempts by channel and outcome (sent, retry, failed)"
    );
    describe_gauge!("insa_live_clients", "Open WebSocket live-feed connections");
    describe_gauge!(
        "insa_device_certificates",
        "Device certificates accepted and not expired (active), and those of them expiring within ca.expiry_warning_days (expiring)"
    );
    describe_counter!(
        "insa_mqtts_handshakes_total",
        "MQTTS handshakes on the embedded broker, by outcome (ok, refused, timeout, busy)"
    );
    describe_counter!(
        "insa_tls_reloads_total",
        "HTTPS certificate re-reads (SIGHUP or file change), by outcome"
    );
    describe_counter!(
        "insa_reports_total",
        "Reports generated, by kind (telemetry, alerts) and format"
    );
}

/// The `method` label: the standard methods by name, anything else `OTHER` (a client choosing
/// method names must not create series).
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("OTHER", Method::as_str)
}

/// Counts every HTTP request by method, route pattern (or `unmatched`) and status, and times it.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    // Route patterns come from the route table, statuses from the handlers: both bounded.
    let status = response.status().as_u16().to_string();
    counter!("insa_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("insa_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// `GET /metrics`.
pub async fn scrape(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(handle) = install() else {
        return Ok(HttpResponse::ServiceUnavailable().body("metrics are not available\n"));
    };
    refresh(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render()))
}

/// Reads the gauges and the counters kept by other parts.
async fn refresh(state: &AppState) -> Result<(), ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let pipeline = &state.pipeline;
    let writer = pipeline.stats();
    gauge!("insa_ingest_pending_points").set(pipeline.pending_points() as f64);
    gauge!("insa_device_actors_active").set(pipeline.registry().active() as f64);
    counter!("insa_device_actor_restarts_total").absolute(pipeline.registry().restarts());
    counter!("insa_writer_points_total").absolute(writer.points_written.load(Relaxed));
    counter!("insa_writer_batches_total", "outcome" => "written")
        .absolute(writer.batches_written.load(Relaxed));
    counter!("insa_writer_batches_total", "outcome" => "failed")
        .absolute(writer.batches_failed.load(Relaxed));
    if let Some(stats) = state.mqtt.get().and_then(|m| m.stats.as_ref()) {
        gauge!("insa_mqtt_connected").set(if stats.connected.load(Relaxed) {
            1.0
        } else {
            0.0
        });
        gauge!("insa_mqtt_messages_in_hand").set(stats.in_hand.load(Relaxed) as f64);
        for (outcome, value) in [
            ("received", &stats.received),
            ("stored", &stats.stored),
            ("malformed", &stats.malformed),
            ("unknown_device", &stats.unknown_device),
        ] {
            counter!("insa_mqtt_messages_total", "outcome" => outcome)
                .absolute(value.load(Relaxed));
        }
        counter!("insa_telemetry_messages_total", "transport" => "mqtt")
            .absolute(stats.stored.load(Relaxed));
    }
    let by_status: Vec<(DeviceStatus, i64)> = devices::Entity::find()
        .select_only()
        .column(devices::Column::Status)
        .column_as(devices::Column::Id.count(), "n")
        .group_by(devices::Column::Status)
        .into_tuple()
        .all(&state.db)
        .await?;
    for status in DeviceStatus::ALL {
        let n = by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        gauge!("insa_devices", "status" => status.as_str()).set(n as f64);
    }
    let open: Vec<(Severity, i64)> = alerts::Entity::find()
        .select_only()
        .column(alerts::Column::Severity)
        .column_as(alerts::Column::Id.count(), "n")
        .filter(alerts::Column::Status.ne(AlertStatus::Resolved))
        .group_by(alerts::Column::Severity)
        .into_tuple()
        .all(&state.db)
        .await?;
    for severity in Severity::ALL {
        let n = open
            .iter()
            .find(|(s, _)| *s == severity)
            .map_or(0, |(_, n)| *n);
        gauge!("insa_alerts_open", "severity" => severity.as_str()).set(n as f64);
    }
    gauge!("insa_live_clients").set(state.live.clients() as f64);
    let warning = chrono::Duration::days(i64::from(state.settings.ca.expiry_warning_days));
    let (active, expiring) = state.certificates.counts(warning);
    gauge!("insa_device_certificates", "state" => "active").set(active as f64);
    gauge!("insa_device_certificates", "state" => "expiring").set(expiring as f64);
    Ok(())
}
