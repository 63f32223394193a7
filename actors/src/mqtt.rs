//! MQTT ingest: the platform's subscriber on `devices/+/telemetry`, and [`store_message`] for the
//! embedded broker.
//!
//! Each message goes through the same [`Pipeline`] as HTTP readings. A QoS 1 message is
//! acknowledged (PUBACK) only after its points are committed, in the order messages arrived; a
//! persistent session makes the broker redeliver anything unacknowledged after a crash.
//!
//! Three tasks: `receive` polls the connection and never waits (keep-alive answers and PUBACKs
//! only move while it polls); `submit` hands messages to the pipeline in order and waits while
//! the writer is saturated; `acknowledge` sends PUBACKs in order once stored. The broker's
//! in-flight window bounds the QoS 1 messages held between them; QoS 0 messages beyond
//! `max_unacked` waiting are shed and counted. Malformed messages are counted, logged with the
//! device, acknowledged (there is nothing to store) and never stop the ingest.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::payload::{self, Limits};
use crate::pipeline::{IngestError, Pipeline};
use crate::writer::WriteError;
use crate::DeviceEvent;

pub const TELEMETRY_FILTER: &str = "devices/+/telemetry";

#[derive(Debug, Clone)]
pub struct MqttIngestConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    /// Keep the session (and the broker's queue for it) across disconnects.
    pub persistent_session: bool,
    /// Messages received and not yet acknowledged that the platform is sized for. The broker's
    /// in-flight window (the embedded broker's is set to this) is what actually bounds them.
    pub max_unacked: usize,
    pub max_packet_bytes: usize,
    pub limits: Limits,
    /// Subscribe to `devices/+/telemetry`. Off with the embedded broker, which hands telemetry
    /// to the pipeline itself ([`store_message`]) and answers the device only once it is stored.
    pub subscribe_telemetry: bool,
}

/// Counters for status and metrics.
#[derive(Debug, Default)]
pub struct MqttStats {
    pub connected: AtomicBool,
    pub connections: AtomicU64,
    pub received: AtomicU64,
    pub stored: AtomicU64,
    pub malformed: AtomicU64,
    /// Well-formed messages for devices this platform does not know.
    pub unknown_device: AtomicU64,
    /// QoS 0 messages dropped because the writer was saturated (QoS 1 ones wait in the broker).
    pub shed: AtomicU64,
}

/// A running subscriber.
#[derive(Clone)]
pub struct MqttIngest {
    pub stats: Arc<MqttStats>,
    pub client: AsyncClient,
}

/// The device of a `devices/{id}/telemetry` topic.
pub fn device_of_topic(topic: &str) -> Option<Uuid> {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("devices"), Some(id), Some("telemetry"), None) => Uuid::parse_str(id).ok(),
        _ => None,
    }
}

type Done = oneshot::Receiver<Result<(), WriteError>>;

/// A received message, in arrival order, on its way to the writer.
struct Received {
    publish: Publish,
    /// The connection it came on: a packet id is only meaningful on its own connection.
    generation: u64,
}

/// A submitted message waiting for its acknowledgement, in arrival order.
struct Pending {
    received: Received,
    /// `None`: nothing to store (malformed); acknowledge in turn.
    done: Option<Done>,
}

/// Starts the subscriber on the current actix arbiter.
pub fn start(pipeline: Pipeline, config: MqttIngestConfig) -> MqttIngest {
    start_with(pipeline, config, Arc::default())
}

/// Starts the subscriber with counters shared with another ingest path (the embedded broker's).
pub fn start_with(
    pipeline: Pipeline,
    config: MqttIngestConfig,
    stats: Arc<MqttStats>,
) -> MqttIngest {
    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(!config.persistent_session)
        .set_manual_acks(true)
        .set_max_packet_size(config.max_packet_bytes, config.max_packet_bytes)
        .set_inflight(1000);
    if let Some((user, password)) = &config.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    // The request channel (acks, subscribe, status) must hold every outstanding ack, so the
    // acknowledger never waits on it: acks only leave it while the receive loop polls.
    let (client, eventloop) = AsyncClient::new(options, config.max_unacked * 2 + 8192);
    let generation = Arc::new(AtomicU64::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let (inbox, received) = mpsc::unbounded_channel();
    let (queue, pending) = mpsc::unbounded_channel();

    actix::spawn(acknowledge(
        pending,
        client.clone(),
        pipeline.clone(),
        config.limits.clone(),
        stats.clone(),
        generation.clone(),
    ));
    actix::spawn(submit(
        received,
        pipeline.clone(),
        config.limits.clone(),
        stats.clone(),
        waiting.clone(),
        queue,
    ));
    actix::spawn(publish_status(pipeline.subscribe(), client.clone()));
    actix::spawn(receive(
        eventloop,
        client.clone(),
        config,
        stats.clone(),
        generation,
        waiting,
        inbox,
    ));
    MqttIngest { stats, client }
}

/// Polls the connection without ever waiting on the writer: a paused poll would hold back the
/// keep-alive answer and the PUBACKs waiting in the request channel, and the broker would drop the
/// connection. QoS 1 messages are bounded by the broker's in-flight window (they are acknowledged
/// only once stored); QoS 0 ones have no such bound and are shed, counted, beyond
/// `max_unacked` messages waiting for the writer.
async fn receive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    config: MqttIngestConfig,
    stats: Arc<MqttStats>,
    generation: Arc<AtomicU64>,
    waiting: Arc<AtomicUsize>,
    inbox: mpsc::UnboundedSender<Received>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut last_shed_warning: Option<Instant> = None;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                generation.fetch_add(1, Ordering::AcqRel);
                stats.connected.store(true, Ordering::Release);
                stats.connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(host = %config.host, port = config.port, "MQTT ingest connected");
                if !config.subscribe_telemetry {
                    continue;
                }
                if let Err(err) = client.try_subscribe(TELEMETRY_FILTER, QoS::AtLeastOnce) {
                    tracing::error!(error = %err, "cannot subscribe to {TELEMETRY_FILTER}");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                if publish.qos == QoS::AtMostOnce
                    && waiting.load(Ordering::Acquire) >= config.max_unacked
                {
                    stats.shed.fetch_add(1, Ordering::Relaxed);
                    if last_shed_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                        last_shed_warning = Some(Instant::now());
                        tracing::warn!(
                            topic = %publish.topic,
                            "writer saturated: QoS 0 MQTT messages are being shed (see mqtt.messages_shed)"
                        );
                    }
                    continue;
                }
                waiting.fetch_add(1, Ordering::AcqRel);
                let received = Received {
                    publish,
                    generation: generation.load(Ordering::Acquire),
                };
                if inbox.send(received).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(err) => {
                if stats.connected.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %err, "MQTT ingest disconnected; reconnecting");
                } else {
                    tracing::debug!(error = %err, "MQTT broker not reachable; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Hands received messages to the pipeline in arrival order, waiting while the writer is
/// saturated (the broker holds what it has not sent).
async fn submit(
    mut received: mpsc::UnboundedReceiver<Received>,
    pipeline: Pipeline,
    limits: Limits,
    stats: Arc<MqttStats>,
    waiting: Arc<AtomicUsize>,
    queue: mpsc::UnboundedSender<Pending>,
) {
    while let Some(received) = received.recv().await {
        let publish = &received.publish;
        let done = take(&pipeline, &publish.topic, &publish.payload, &limits, &stats).await;
        waiting.fetch_sub(1, Ordering::AcqRel);
        if queue.send(Pending { received, done }).is_err() {
            return;
        }
    }
}

/// Decodes and submits one message; waits while the writer is saturated. `None`: nothing to store.
async fn take(
    pipeline: &Pipeline,
    topic: &str,
    payload: &[u8],
    limits: &Limits,
    stats: &MqttStats,
) -> Option<Done> {
    let malformed = |device: Option<Uuid>, why: &str| {
        stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%topic, device_id = ?device, reason = why, "malformed MQTT message dropped");
    };
    let Some(device) = device_of_topic(topic) else {
        malformed(None, "topic is not devices/{uuid}/telemetry");
        return None;
    };
    let mut delay = Duration::from_millis(2);
    loop {
        let points = match decode(payload, device, limits) {
            Ok(points) => points,
            Err(why) => {
                malformed(Some(device), &why);
                return None;
            }
        };
        match pipeline.submit(device, points).await {
            Ok(done) => return Some(done),
            Err(IngestError::Saturated) | Err(IngestError::Database(_)) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            Err(IngestError::DeviceNotFound(_)) => {
                stats.unknown_device.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(device_id = %device, "MQTT message for an unknown device dropped");
                return None;
            }
            Err(IngestError::NotStored(err)) => {
                tracing::warn!(device_id = %device, error = %err, "retrying MQTT reading");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Waits until a submitted message is stored, resubmitting it after a failed batch.
async fn stored(
    mut done: Option<Done>,
    pipeline: &Pipeline,
    topic: &str,
    payload: &[u8],
    limits: &Limits,
    stats: &MqttStats,
) {
    while let Some(waiting) = done {
        match waiting.await {
            Ok(Ok(())) => {
                stats.stored.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                done = take(pipeline, topic, payload, limits, stats).await;
            }
        }
    }
}

/// Stores one message published on a telemetry topic and returns once its points are committed
/// (or it was dropped as malformed or for an unknown device, counted). The embedded broker calls
/// this before it answers the device's PUBACK.
pub async fn store_message(
    pipeline: &Pipeline,
    topic: &str,
    payload: &[u8],
    limits: &Limits,
    stats: &MqttStats,
) {
    stats.received.fetch_add(1, Ordering::Relaxed);
    let done = take(pipeline, topic, payload, limits, stats).await;
    stored(done, pipeline, topic, payload, limits, stats).await;
}

fn decode(payload: &[u8], device: Uuid, limits: &Limits) -> Result<Vec<crate::Point>, String> {
    let body: Value = serde_json::from_slice(payload).map_err(|err| format!("not JSON: {err}"))?;
    let decoded = payload::decode(&body, Some(device), true, Utc::now(), limits)
        .map_err(|err| err.to_string())?;
    if decoded.device_id.is_some_and(|named| named != device) {
        return Err("device_id in the payload is not the topic's device".into());
    }
    Ok(decoded.points)
}

/// Acknowledges messages in arrival order once their points are stored; a failed batch is
/// resubmitted until it is stored (the message stays unacknowledged meanwhile).
async fn acknowledge(
    mut pending: mpsc::UnboundedReceiver<Pending>,
    client: AsyncClient,
    pipeline: Pipeline,
    limits: Limits,
    stats: Arc<MqttStats>,
    generation: Arc<AtomicU64>,
) {
    while let Some(Pending { received, done }) = pending.recv().await {
        let publish = &received.publish;
        stored(
            done,
            &pipeline,
            &publish.topic,
            &publish.payload,
            &limits,
            &stats,
        )
        .await;
        if publish.qos == QoS::AtMostOnce {
            continue;
        }
        if received.generation != generation.load(Ordering::Acquire) {
            // Received on an earlier connection: the broker redelivers it; acking now would
            // acknowledge another message with the same packet id.
            continue;
        }
        if let Err(err) = client.ack(publish).await {
            tracing::warn!(error = %err, "cannot send PUBACK");
        }
    }
}

/// Publishes device status changes, retained, on `devices/{id}/status`.
async fn publish_status(
    mut events: tokio::sync::broadcast::Receiver<DeviceEvent>,
    client: AsyncClient,
) {
    loop {
        match events.recv().await {
            Ok(DeviceEvent::StatusChanged {
                device_id, to, at, ..
            }) => {
                let body = json!({ "device_id": device_id, "status": to.as_str(), "at": at });
                let topic = format!("devices/{device_id}/status");
                if let Err(err) = client
                    .publish(topic, QoS::AtLeastOnce, true, body.to_string())
                    .await
                {
                    tracing::warn!(error = %err, "cannot publish device status");
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "status publisher fell behind");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::device_of_topic;
    use uuid::Uuid;

    #[test]
    fn only_device_telemetry_topics_name_a_device() {
        let id = Uuid::new_v4();
        assert_eq!(
            device_of_topic(&format!("devices/{id}/telemetry")),
            Some(id)
        );
        assert_eq!(device_of_topic(&format!("devices/{id}/status")), None);
        assert_eq!(device_of_topic(&format!("devices/{id}/telemetry/x")), None);
        assert_eq!(device_of_topic("devices/pump-7/telemetry"), None);
        assert_eq!(device_of_topic("other/topic"), None);
    }
}
