//! The live feed over a real WebSocket: what a client subscribed to, and nothing else.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};

use insa_entities::telemetry;
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::helpers::{seed_device, spawn_app, spawn_app_with, As, TestApp};

pub(crate) type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

async fn connect(app: &TestApp, token: &str) -> Socket {
    let url = format!(
        "{}?token={token}",
        app.url("/api/v1/ws").replace("http://", "ws://")
    );
    let (_, socket) = awc::Client::new()
        .ws(url)
        .max_frame_size(1 << 20)
        .connect()
        .await
        .expect("WebSocket");
    socket
}

pub(crate) async fn say(socket: &mut Socket, message: Value) {
    socket
        .send(awc::ws::Message::Text(message.to_string().into()))
        .await
        .expect("send");
}

/// The next JSON message (skipping pings); `None` when nothing comes within `wait` or the
/// server closes.
pub(crate) async fn hear(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??
        {
            Ok(awc::ws::Frame::Text(text)) => return serde_json::from_slice(&text).ok(),
            Ok(awc::ws::Frame::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[actix_web::test]
async fn a_client_hears_what_it_subscribed_to_and_nothing_else() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let watched = app.create_device(&token, seed_device()).await;
    let other = app.create_device(&token, seed_device()).await;
    let (watched, other) = (
        watched["id"].as_str().expect("id").to_string(),
        other["id"].as_str().expect("id").to_string(),
    );
    let mut socket = connect(&app, &token).await;
    say(
        &mut socket,
        json!({"action": "subscribe", "device_ids": [watched]}),
    )
    .await;
    let ack = hear(&mut socket, Duration::from_secs(5))
        .await
        .expect("ack");
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["device_ids"], json!([watched]));

    app.send_reading(&token, &other, json!({"temperature": 21}))
        .await;
    app.send_reading(
        &token,
        &watched,
        json!({"temperature": {"value": 22.5, "unit": "°C"}, "humidity": 40, "mode": "RUNNING"}),
    )
    .await;
    let mut heard = Vec::new();
    while let Some(message) = hear(&mut socket, Duration::from_millis(700)).await {
        heard.push(message);
    }
    let telemetry: Vec<&Value> = heard.iter().filter(|m| m["type"] == "telemetry").collect();
    assert_eq!(telemetry.len(), 1, "{heard:?}");
    assert_eq!(telemetry[0]["device_id"], watched.as_str());
    assert_eq!(telemetry[0]["telemetry"]["temperature"]["value"], 22.5);
    assert_eq!(telemetry[0]["telemetry"]["temperature"]["unit"], "°C");
    assert_eq!(telemetry[0]["telemetry"]["humidity"], 40.0);
    assert_eq!(telemetry[0]["telemetry"]["mode"], "RUNNING");
    let status: Vec<&Value> = heard.iter().filter(|m| m["type"] == "status").collect();
    assert_eq!(status.len(), 1, "{heard:?}");
    assert_eq!(status[0]["device_id"], watched.as_str());
    assert_eq!(status[0]["status"], "online");
    assert!(
        heard.iter().all(|m| m["device_id"] != other.as_str()),
        "{heard:?}"
    );

    // Alerts once subscribed: the seed device's built-in threshold (50).
    say(&mut socket, json!({"action": "subscribe", "alerts": true})).await;
    assert_eq!(
        hear(&mut socket, Duration::from_secs(5))
            .await
            .expect("ack")["alerts"],
        true
    );
    app.send_reading(&token, &other, json!({"temperature": 70}))
        .await;
    let alert = loop {
        let message = hear(&mut socket, Duration::from_secs(5))
            .await
            .expect("the alert");
        if message["type"] == "alert" {
            break message;
        }
    };
    assert_eq!(alert["event"], "raised");
    assert_eq!(alert["alert"]["device_id"], other.as_str());
    assert_eq!(alert["alert"]["severity"], "warning");

    // Unsubscribed: silence.
    say(
        &mut socket,
        json!({"action": "unsubscribe", "device_ids": [watched]}),
    )
    .await;
    hear(&mut socket, Duration::from_secs(5))
        .await
        .expect("ack");
    app.send_reading(&token, &watched, json!({"temperature": 23}))
        .await;
    assert!(hear(&mut socket, Duration::from_millis(500))
        .await
        .is_none());
}

#[actix_web::test]
async fn an_unauthenticated_upgrade_is_refused() {
    let app = spawn_app().await;
    let reply = app.get("/api/v1/ws", As::Nobody).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let url = app
        .url("/api/v1/ws?token=not-a-token")
        .replace("http://", "ws://");
    let refused = awc::Client::new().ws(url).connect().await;
    assert!(refused.is_err(), "a bad token must not open a feed");
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_closed_as_too_slow_while_ingest_goes_on() {
    let app = spawn_app_with(|settings| settings.live.send_timeout_ms = 300).await;
    let token = app.admin_token().await;
    let device = app.create_device(&token, seed_device()).await;
    let device = device["id"].as_str().expect("id").to_string();
    let mut socket = connect(&app, &token).await;
    say(
        &mut socket,
        json!({"action": "subscribe", "device_ids": [device]}),
    )
    .await;
    assert_eq!(
        hear(&mut socket, Duration::from_secs(5))
            .await
            .expect("ack")["type"],
        "subscribed"
    );

    // The client stops reading while the device sends far more than any socket buffer holds:
    // readings of 256 text values of 1 KiB, each a ~290 KB live message, 35 MB in all.
    let text = "x".repeat(1024);
    let reading: serde_json::Map<String, Value> = (0..256)
        .map(|i| (format!("tag-{i:03}-{}", "k".repeat(90)), json!(text)))
        .collect();
    let readings = 120;
    for _ in 0..readings {
        // Every reading is acknowledged (stored) regardless of the stalled client.
        app.send_reading(&token, &device, Value::Object(reading.clone()))
            .await;
    }
    let stored = telemetry::Entity::find()
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(stored, readings * 256);

    // Reading again, the client finds the feed cut short with the reason.
    let mut delivered = 0;
    let close = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the server closes the connection")
            .expect("a frame before the end")
            .expect("a valid frame");
        match frame {
            awc::ws::Frame::Text(_) => delivered += 1,
            awc::ws::Frame::Close(reason) => break reason.expect("a close reason"),
            _ => {}
        }
    };
    assert_eq!(close.code, awc::ws::CloseCode::Policy);
    assert!(
        close
            .description
            .as_deref()
            .is_some_and(|d| d.starts_with("too slow")),
        "{close:?}"
    );
    assert!(
        delivered < readings,
        "all {delivered} messages were delivered"
    );
}
