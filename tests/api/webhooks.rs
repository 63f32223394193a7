//! Webhook notifications against a real HTTP receiver listening on loopback: signed, once per
//! alert change, retried with backoff, refused for internal addresses unless allowed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{eventually, spawn_app_with, As, TestApp};

/// What the receiver got: (headers, body).
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A real HTTP server on loopback that records every request and answers `fail` for the first
/// `fail_first` of them, then 200.
pub(crate) struct Receiver {
    pub url: String,
    received: Received,
}

impl Receiver {
    /// A receiver on a port of its own (bound on port 0 here, then handed over).
    pub(crate) fn start(fail_first: usize, fail: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        Self::start_on(listener, fail_first, fail)
    }

    /// A receiver serving on `listener`, already bound (and listening) by the caller.
    pub(crate) fn start_on(listener: std::net::TcpListener, fail_first: usize, fail: u16) -> Self {
        let port = listener.local_addr().expect("bound address").port();
        let received: Received = Arc::default();
        let log = received.clone();
        let server = HttpServer::new(move || {
            let log = log.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let log = log.clone();
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    let n = {
                        let mut log = log.lock().expect("log");
                        log.push((headers, body.to_vec()));
                        log.len()
                    };
                    if n <= fail_first {
                        HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(fail).expect("status"),
                        )
                        .finish()
                    } else {
                        HttpResponse::Ok().finish()
                    }
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .expect("serve on the listener")
        .run();
        actix_web::rt::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/hooks/insa"),
            received,
        }
    }

    /// Waits until `n` requests have arrived.
    pub(crate) async fn wait_for(&self, n: usize, what: &str) {
        eventually(Duration::from_secs(15), what, || async {
            (self.count() == n).then_some(())
        })
        .await;
    }

    pub(crate) fn count(&self) -> usize {
        self.received.lock().expect("log").len()
    }

    pub(crate) fn body(&self, i: usize) -> Value {
        let log = self.received.lock().expect("log");
        serde_json::from_slice(&log[i].1).expect("JSON body")
    }

    pub(crate) fn header(&self, i: usize, name: &str) -> Option<String> {
        let log = self.received.lock().expect("log");
        log[i]
            .0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn raw(&self, i: usize) -> Vec<u8> {
        self.received.lock().expect("log")[i].1.clone()
    }
}

async fn app(allow_private: bool) -> TestApp {
    spawn_app_with(|s| {
        s.webhooks.allow_private = allow_private;
        s.webhooks.retry_base_ms = 100;
        s.webhooks.max_attempts = 4;
    })
    .await
}

/// A watched wellhead with a webhook to `receiver`, its alert raised and posted:
/// (token, device id, rule id).
async fn raised(app: &TestApp, receiver: &Receiver) -> (String, String, String) {
    let (token, id) = app
        .watched_wellhead(json!({"type": "webhook", "url": receiver.url}))
        .await;
    send(app, &token, &id, 95.0).await;
    receiver.wait_for(1, "raised").await;
    let rules = app.get("/api/v1/rules", As::Bearer(&token)).await;
    let rule = rules.body["rules"][0]["id"]
        .as_str()
        .expect("rule id")
        .to_string();
    (token, id, rule)
}

async fn send(app: &TestApp, token: &str, device: &str, pressure: f64) {
    app.send_reading(token, device, json!({"pressure": pressure}))
        .await;
}

async fn deliveries(app: &TestApp, token: &str) -> Vec<Value> {
    let reply = app.get("/api/v1/notifications", As::Bearer(token)).await;
    reply.body["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The delivery log once nothing in it is pending (every row sent or failed for good).
async fn settled(app: &TestApp, token: &str) -> Vec<Value> {
    eventually(Duration::from_secs(15), "no delivery pending", || async {
        let log = deliveries(app, token).await;
        log.iter().all(|d| d["status"] != "pending").then_some(log)
    })
    .await
}

pub(crate) fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[actix_web::test]
async fn a_breach_and_its_resolution_are_each_posted_once_and_signed() {
    let receiver = Receiver::start(0, 200);
    let app = app(true).await;
    let (token, id) = app
        .watched_wellhead(
            json!({"type": "webhook", "url": receiver.url, "secret": "s3cret",
               "headers": {"X-Site": "north-field"}}),
        )
        .await;

    send(&app, &token, &id, 85.0).await;
    send(&app, &token, &id, 90.0).await;
    receiver.wait_for(1, "the raised webhook").await;
    let raised = receiver.body(0);
    assert_eq!(raised["event"], "raised");
    assert_eq!(raised["alert"]["severity"], "critical");
    assert_eq!(raised["alert"]["value"], 85.0);
    assert_eq!(raised["alert"]["threshold"], 80.0);
    assert_eq!(raised["device"]["name"], "Wellhead 9");
    assert_eq!(raised["device"]["area"], "North");
    assert_eq!(raised["rule"]["name"], "High pressure");
    assert!(raised.get("action").is_none(), "the secret stays home");
    assert_eq!(
        receiver.header(0, "x-insa-signature"),
        Some(hmac_hex("s3cret", &receiver.raw(0)))
    );
    assert_eq!(receiver.header(0, "x-site").as_deref(), Some("north-field"));
    assert_eq!(
        receiver.header(0, "x-insa-event").as_deref(),
        Some("raised")
    );

    // An operator acknowledges: the webhook hears of it.
    let alert_id = raised["alert"]["id"].as_str().expect("alert id");
    let acked = app
        .post(
            &format!("/api/v1/alerts/{alert_id}/acknowledge"),
            As::Bearer(&token),
            &Value::Null,
        )
        .await;
    assert_eq!(acked.status, StatusCode::OK);
    receiver.wait_for(2, "the acknowledged webhook").await;
    assert_eq!(receiver.body(1)["event"], "acknowledged");
    assert_eq!(receiver.body(1)["alert"]["status"], "acknowledged");

    send(&app, &token, &id, 70.0).await;
    receiver.wait_for(3, "the resolved webhook").await;
    assert_eq!(receiver.body(2)["event"], "resolved");
    assert!(receiver.body(2)["alert"]["resolved_at"].is_string());

    // The receiver has the third request before the notifier records its answer: read the log
    // once nothing is pending (every row must then be `sent`).
    let log = settled(&app, &token).await;
    assert_eq!(log.len(), 3);
    for delivery in &log {
        assert_eq!(delivery["channel"], "webhook");
        assert_eq!(delivery["status"], "sent");
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["target"], receiver.url.as_str());
    }
    // One delivery per alert change, and nothing more of these three: a fourth change (a new
    // breach) is the next thing posted, and once the outbox has nothing pending, the receiver has
    // had exactly one request per row.
    send(&app, &token, &id, 95.0).await;
    receiver.wait_for(4, "the next breach's webhook").await;
    assert_eq!(receiver.body(3)["event"], "raised");
    assert_ne!(receiver.body(3)["alert"]["id"], raised["alert"]["id"]);
    let log = settled(&app, &token).await;
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(receiver.count(), 4);
}

#[actix_web::test]
async fn a_failing_receiver_gets_the_webhook_after_retries() {
    let receiver = Receiver::start(2, 503);
    let app = app(true).await;
    let (token, id) = app
        .watched_wellhead(json!({"type": "webhook", "url": receiver.url}))
        .await;
    send(&app, &token, &id, 95.0).await;
    let delivered = eventually(
        Duration::from_secs(15),
        "delivered after retries",
        || async {
            let log = deliveries(&app, &token).await;
            log.into_iter().find(|d| d["status"] == "sent")
        },
    )
    .await;
    assert_eq!(delivered["attempts"], 3);
    assert_eq!(receiver.count(), 3);
    assert!(
        receiver.header(0, "x-insa-signature").is_none(),
        "no secret, no signature"
    );
}

#[actix_web::test]
async fn a_receiver_refusing_the_request_is_not_asked_again() {
    let receiver = Receiver::start(usize::MAX, 400);
    let app = app(true).await;
    let (token, id) = app
        .watched_wellhead(json!({"type": "webhook", "url": receiver.url}))
        .await;
    send(&app, &token, &id, 95.0).await;
    let failed = eventually(Duration::from_secs(10), "failed for good", || async {
        deliveries(&app, &token)
            .await
            .into_iter()
            .find(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(failed["attempts"], 1);
    assert!(failed["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("400")));

    // An operator may try again.
    let retried = app
        .post(
            &format!(
                "/api/v1/notifications/{}/retry",
                failed["id"].as_str().expect("id")
            ),
            As::Bearer(&token),
            &Value::Null,
        )
        .await;
    assert_eq!(retried.status, StatusCode::OK);
    receiver.wait_for(2, "asked again").await;
}

#[actix_web::test]
async fn webhooks_to_internal_addresses_are_refused_unless_allowed() {
    let receiver = Receiver::start(0, 200);
    let app = app(false).await;
    let (token, id) = app
        .watched_wellhead(json!({"type": "webhook", "url": receiver.url}))
        .await;
    send(&app, &token, &id, 95.0).await;
    let refused = eventually(Duration::from_secs(10), "refused", || async {
        deliveries(&app, &token)
            .await
            .into_iter()
            .find(|d| d["status"] == "failed")
    })
    .await;
    assert!(
        refused["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("internal address")),
        "{refused}"
    );
    assert_eq!(receiver.count(), 0, "nothing was sent");
}

#[actix_web::test]
async fn deleting_a_rule_resolves_its_alert_and_says_so() {
    let receiver = Receiver::start(0, 200);
    let app = app(true).await;
    let (token, id, rule) = raised(&app, &receiver).await;
    let deleted = app
        .delete(&format!("/api/v1/rules/{rule}"), As::Bearer(&token))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    receiver.wait_for(2, "resolved").await;
    assert_eq!(receiver.body(1)["event"], "resolved");
    let open = app
        .get(
            &format!("/api/v1/alerts?device_id={id}&status=active"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(open.body["total"], 0);
}

#[actix_web::test]
async fn resolving_an_alert_by_hand_tells_the_rules_receivers() {
    let receiver = Receiver::start(0, 200);
    let app = app(true).await;
    let (token, _, _) = raised(&app, &receiver).await;
    let alert_id = receiver.body(0)["alert"]["id"]
        .as_str()
        .expect("alert id")
        .to_string();
    let (_, _, operator) = app.user_with_role(&token, "operator").await;
    let resolved = app
        .post(
            &format!("/api/v1/alerts/{alert_id}/resolve"),
            As::Bearer(&operator),
            &Value::Null,
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{resolved:?}");
    assert_eq!(resolved.body["status"], "resolved");

    receiver.wait_for(2, "the resolved webhook").await;
    let body = receiver.body(1);
    assert_eq!(body["event"], "resolved");
    assert_eq!(body["alert"]["id"], alert_id.as_str());
    assert_eq!(body["alert"]["status"], "resolved");
    assert!(body["alert"]["resolved_at"].is_string());
    assert_eq!(body["rule"]["name"], "High pressure");
    assert_eq!(
        receiver.header(1, "x-insa-event").as_deref(),
        Some("resolved")
    );
    let log = app
        .get(
            &format!("/api/v1/notifications?alert_id={alert_id}"),
            As::Bearer(&token),
        )
        .await;
    let events: Vec<&str> = log.body["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter_map(|d| d["event"].as_str())
        .collect();
    assert_eq!(events, ["resolved", "raised"], "newest first");

    // Resolving again changes nothing and tells no one.
    let again = app
        .post(
            &format!("/api/v1/alerts/{alert_id}/resolve"),
            As::Bearer(&operator),
            &Value::Null,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["resolved_at"], resolved.body["resolved_at"]);
    let log = app
        .get(
            &format!("/api/v1/notifications?alert_id={alert_id}"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(log.body["total"], 2);
}

#[actix_web::test]
async fn editing_a_raised_rule_keeps_its_alert() {
    let receiver = Receiver::start(0, 200);
    let app = app(true).await;
    let (token, id, rule) = raised(&app, &receiver).await;
    let edited = app
        .put(
            &format!("/api/v1/rules/{rule}"),
            As::Bearer(&token),
            &json!({"severity": "warning", "threshold": 85}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{edited:?}");
    // Still breaching the edited rule: nothing resolves, nothing is raised again. A value that
    // clears the edited rule comes next; the device's alert changes are made in order, so the
    // first change after the edit must be the resolve of the alert raised before it.
    send(&app, &token, &id, 96.0).await;
    send(&app, &token, &id, 70.0).await;
    receiver.wait_for(2, "the resolved webhook").await;
    let resolved = receiver.body(1);
    assert_eq!(resolved["event"], "resolved", "{resolved}");
    assert_eq!(resolved["alert"]["id"], receiver.body(0)["alert"]["id"]);
    let log = settled(&app, &token).await;
    assert_eq!(log.len(), 2, "{log:?}");
    let alerts = app
        .get(
            &format!("/api/v1/alerts?device_id={id}"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(alerts.body["total"], 1, "{alerts:?}");
}
