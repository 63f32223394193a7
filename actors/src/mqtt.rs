//! MQTT ingest: the platform's subscriber on `devices/+/telemetry`.
//!
//! Each message goes through the same [`Pipeline`] as HTTP readings. A QoS 1 message is
//! acknowledged (PUBACK) only after its points are committed, in the order messages arrived; a
//! persistent session makes the broker redeliver anything unacknowledged after a crash. The broker's
//! in-flight window bounds the messages held unacknowledged; when the writer is saturated the
//! subscriber stops taking messages (the broker holds the rest) and resumes when there is room. Malformed messages are counted, logged with the device, acknowledged (there is
//! nothing to store) and never stop the ingest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// A received message waiting for its acknowledgement, in arrival order.
struct Pending {
    publish: Publish,
    /// `None`: nothing to store (malformed); acknowledge in turn.
    done: Option<(Uuid, Done)>,
    /// The connection it came on: a packet id is only meaningful on its own connection.
    generation: u64,
}

/// Starts the subscriber on the current actix arbiter.
pub fn start(pipeline: Pipeline, config: MqttIngestConfig) -> MqttIngest {
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
    let stats = Arc::new(MqttStats::default());
    let generation = Arc::new(AtomicU64::new(0));
    let (queue, pending) = mpsc::unbounded_channel();

    actix::spawn(acknowledge(
        pending,
        client.clone(),
        pipeline.clone(),
        config.limits.clone(),
        stats.clone(),
        generation.clone(),
    ));
    actix::spawn(publish_status(pipeline.subscribe(), client.clone()));
    actix::spawn(receive(
        eventloop,
        client.clone(),
        pipeline,
        config,
        stats.clone(),
        generation,
        queue,
    ));
    MqttIngest { stats, client }
}

async fn receive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    pipeline: Pipeline,
    config: MqttIngestConfig,
    stats: Arc<MqttStats>,
    generation: Arc<AtomicU64>,
    queue: mpsc::UnboundedSender<Pending>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                generation.fetch_add(1, Ordering::AcqRel);
                stats.connected.store(true, Ordering::Release);
                stats.connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(host = %config.host, port = config.port, "MQTT ingest connected");
                if let Err(err) = client.try_subscribe(TELEMETRY_FILTER, QoS::AtLeastOnce) {
                    tracing::error!(error = %err, "cannot subscribe to {TELEMETRY_FILTER}");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                let done = take(&pipeline, &publish, &config.limits, &stats).await;
                let pending = Pending {
                    publish,
                    done,
                    generation: generation.load(Ordering::Acquire),
                };
                // Never wait on the acknowledger here: only polling drains the acks it sends. The
                // broker bounds what is unacknowledged (its in-flight window), and so this queue.
                if queue.send(pending).is_err() {
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

/// Decodes and submits one message; waits (without reading more) while the writer is saturated.
async fn take(
    pipeline: &Pipeline,
    publish: &Publish,
    limits: &Limits,
    stats: &MqttStats,
) -> Option<(Uuid, Done)> {
    let malformed = |device: Option<Uuid>, why: &str| {
        stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(topic = %publish.topic, device_id = ?device, reason = why, "malformed MQTT message dropped");
    };
    let Some(device) = device_of_topic(&publish.topic) else {
        malformed(None, "topic is not devices/{uuid}/telemetry");
        return None;
    };
    let mut delay = Duration::from_millis(2);
    loop {
        let points = match decode(publish, device, limits) {
            Ok(points) => points,
            Err(why) => {
                malformed(Some(device), &why);
                return None;
            }
        };
        match pipeline.submit(device, points).await {
            Ok(done) => return Some((device, done)),
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

fn decode(publish: &Publish, device: Uuid, limits: &Limits) -> Result<Vec<crate::Point>, String> {
    let body: Value =
        serde_json::from_slice(&publish.payload).map_err(|err| format!("not JSON: {err}"))?;
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
    while let Some(item) = pending.recv().await {
        if let Some((_, mut done)) = item.done {
            loop {
                match done.await {
                    Ok(Ok(())) => {
                        stats.stored.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match take(&pipeline, &item.publish, &limits, &stats).await {
                            Some((_, again)) => done = again,
                            None => break,
                        }
                    }
                }
            }
        }
        if item.publish.qos == QoS::AtMostOnce {
            continue;
        }
        if item.generation != generation.load(Ordering::Acquire) {
            // Received on an earlier connection: the broker redelivers it; acking now would
            // acknowledge another message with the same packet id.
            continue;
        }
        if let Err(err) = client.ack(&item.publish).await {
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
