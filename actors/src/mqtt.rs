//! MQTT ingest: the platform's subscriber on `devices/+/telemetry`, and [`store_message`] for the
//! embedded broker.
//!
//! Each message goes through the same [`Pipeline`] as HTTP readings. A QoS 1 message is
//! acknowledged (PUBACK) only after its points are committed, in the order messages arrived; a
//! persistent session makes the broker redeliver anything unacknowledged after a crash.
//!
//! Three tasks: `receive` polls the connection and never waits on the writer (keep-alive answers
//! and PUBACKs only move while it polls), except at `max_unacked` messages in hand; `submit`
//! hands messages to the pipeline in order and waits while the writer is saturated;
//! `acknowledge` sends PUBACKs in order once stored. Malformed messages are counted, logged with
//! the device, acknowledged (there is nothing to store) and never stop the ingest. So are messages
//! that cannot be stored for what they hold (refused by the database, or bringing keys beyond the
//! device's limit): sending them again would be refused again, so they are dropped, never retried
//! and never hold back the acknowledgements queued behind them. Only a passing failure (the
//! database unreachable, the writer saturated) keeps a message unacknowledged, to retry it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, PubAck, Publish, QoS, Subscribe,
    SubscribeReasonCode,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Notify};
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
    /// Messages received and not yet acknowledged, at most (<= 65535, the packet id space). The
    /// subscriber stops reading at this bound whatever the broker's in-flight window says.
    pub max_unacked: usize,
    pub max_packet_bytes: usize,
    pub limits: Limits,
    /// Subscribe to `devices/+/telemetry`. Off with the embedded broker, which hands telemetry
    /// to the pipeline itself ([`store_message`]) and answers the device only once it is stored.
    pub subscribe_telemetry: bool,
    /// TLS for both connections (`mqtts://`); `None`: plain TCP.
    pub tls: Option<rumqttc::TlsConfiguration>,
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
    /// Messages received and not yet acknowledged (or, for QoS 0, stored); at most
    /// `max_unacked`.
    pub in_hand: AtomicUsize,
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

/// The acknowledgement of a stored QoS 1 message, for the receive loop to send.
struct Ack {
    pkid: u16,
    generation: u64,
}

const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The wait between reconnection attempts: 100 ms, doubled each time, at most 5 s.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Self::FIRST)
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    /// Waits, and makes the next wait longer.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }

    /// Connected: the next wait starts short again.
    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// Starts the subscriber on the current actix arbiter.
pub fn start(pipeline: Pipeline, config: MqttIngestConfig) -> MqttIngest {
    start_with(pipeline, config, Arc::default())
}

/// Options for a connection of the platform's to the broker at `host:port` as `client_id`, with
/// its credentials and TLS when it has them; each caller adds what its connection needs
/// (keep-alive, session, acknowledgements).
pub fn broker_options(
    client_id: impl Into<String>,
    host: impl Into<String>,
    port: u16,
    credentials: Option<&(String, String)>,
    tls: Option<&rumqttc::TlsConfiguration>,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    if let Some((user, password)) = credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(tls) = tls {
        options.set_transport(rumqttc::Transport::tls_with_config(tls.clone()));
    }
    options
}

/// Starts the subscriber with counters shared with another ingest path (the embedded broker's).
///
/// Two connections: the ingest one (client id `mqtt.client_id`, persistent session, telemetry
/// subscription, manual acknowledgements) and a status one (`{client_id}-status`) that publishes
/// device status, so that status traffic never waits behind ingest flow control.
pub fn start_with(
    pipeline: Pipeline,
    config: MqttIngestConfig,
    stats: Arc<MqttStats>,
) -> MqttIngest {
    let options = |client_id: String, clean: bool| {
        let mut options = broker_options(
            client_id,
            config.host.clone(),
            config.port,
            config.credentials.as_ref(),
            config.tls.as_ref(),
        );
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(clean)
            .set_manual_acks(true)
            .set_max_packet_size(config.max_packet_bytes, config.max_packet_bytes);
        options
    };
    let (client, status_loop) =
        AsyncClient::new(options(format!("{}-status", config.client_id), true), 1024);
    actix::spawn(drive_status(
        status_loop,
        (!config.subscribe_telemetry).then(|| stats.clone()),
    ));
    actix::spawn(publish_status(pipeline.subscribe(), client.clone()));
    if !config.subscribe_telemetry {
        return MqttIngest { stats, client };
    }

    // rumqttc's event loop connects; the receive loop then drives the connection itself.
    let (_requests, eventloop) = AsyncClient::new(
        options(config.client_id.clone(), !config.persistent_session),
        1,
    );
    // Signalled whenever a message leaves the platform's hands.
    let room = Arc::new(Notify::new());
    let (inbox, received) = mpsc::unbounded_channel();
    let (queue, pending) = mpsc::unbounded_channel();
    let (acks, ready) = mpsc::unbounded_channel();

    actix::spawn(acknowledge(
        pending,
        acks,
        pipeline.clone(),
        config.limits.clone(),
        stats.clone(),
        room.clone(),
    ));
    actix::spawn(submit(
        received,
        pipeline.clone(),
        config.limits.clone(),
        stats.clone(),
        queue,
    ));
    actix::spawn(receive(
        eventloop,
        config,
        stats.clone(),
        room,
        inbox,
        ready,
    ));
    MqttIngest { stats, client }
}

/// Drives the status connection; with `connected`, it is the one `/api/v1/status` reports.
async fn drive_status(mut eventloop: EventLoop, connected: Option<Arc<MqttStats>>) {
    let mut backoff = Backoff::default();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                if let Some(stats) = &connected {
                    stats.connected.store(true, Ordering::Release);
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(_) => {}
            Err(err) => {
                if let Some(stats) = &connected {
                    stats.connected.store(false, Ordering::Release);
                }
                tracing::debug!(error = %err, "MQTT status connection down; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// Owns the ingest connection. rumqttc's event loop connects (and reconnects); after CONNACK
/// this loop reads and writes the connection itself, because reading and acknowledging must be
/// independent: it stops *reading* at `max_unacked` messages in hand (TCP then holds the broker
/// back, whatever its in-flight window says: Mosquitto 2.0.11 was measured sending tens of
/// thousands beyond `max_inflight_messages`), while it keeps writing PUBACKs and keep-alive
/// pings. (rumqttc's own `poll` reads ten packets for each request it sends, so acknowledgements
/// fell behind and a paused poll starved the keep-alive.)
async fn receive(
    mut eventloop: EventLoop,
    config: MqttIngestConfig,
    stats: Arc<MqttStats>,
    room: Arc<Notify>,
    inbox: mpsc::UnboundedSender<Received>,
    mut ready: mpsc::UnboundedReceiver<Ack>,
) {
    let mut backoff = Backoff::default();
    // Counts connections: a packet id is only meaningful on the connection it came on.
    let mut generation = 0u64;
    // A failed TLS handshake is a set-up problem an operator must see: warned once per error.
    let mut tls_failure: Option<String> = None;
    loop {
        eventloop.network = None;
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => tls_failure = None,
            Ok(_) => continue,
            Err(rumqttc::ConnectionError::Tls(err)) => {
                let text = err.to_string();
                if tls_failure.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text,
                        "MQTT: TLS with the broker failed (is its certificate from mqtt.ca_file's CA, \
                         for mqtt.url's host? does it accept mqtt.client_cert_file?); retrying");
                    tls_failure = Some(text);
                }
                backoff.wait().await;
                continue;
            }
            Err(err) => {
                tracing::debug!(error = %err, "MQTT broker not reachable; retrying");
                backoff.wait().await;
                continue;
            }
        }
        let Some(network) = eventloop.network.as_mut() else {
            continue;
        };
        let connected_at = std::time::Instant::now();
        generation += 1;
        let current = generation;
        stats.connections.fetch_add(1, Ordering::Relaxed);

        let mut subscribe = Subscribe::new(TELEMETRY_FILTER, QoS::AtLeastOnce);
        subscribe.pkid = 1; // The only packet id this connection allocates.
        let subscribe = Packet::Subscribe(subscribe);
        let mut outcome = match network.write(subscribe).await {
            Ok(()) => network.flush().await,
            Err(err) => Err(err),
        };
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        while outcome.is_ok() {
            let reading = stats.in_hand.load(Ordering::Acquire) < config.max_unacked;
            outcome = tokio::select! {
                biased;
                Some(first) = ready.recv() => {
                    // Every acknowledgement ready, in one write.
                    let mut next = Some(first);
                    let mut written = Ok(());
                    while let Some(ack) = next.take() {
                        // One from an earlier connection: the broker redelivers that message.
                        if ack.generation == current && written.is_ok() {
                            written = network.write(Packet::PubAck(PubAck::new(ack.pkid))).await;
                        }
                        next = ready.try_recv().ok();
                    }
                    match written {
                        Ok(()) => network.flush().await,
                        Err(err) => Err(err),
                    }
                }
                _ = ping.tick() => match network.write(Packet::PingReq).await {
                    Ok(()) => network.flush().await,
                    Err(err) => Err(err),
                },
                packet = network.read(), if reading => match packet {
                    Ok(Packet::Publish(publish)) => {
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        stats.in_hand.fetch_add(1, Ordering::AcqRel);
                        let received = Received { publish, generation: current };
                        if inbox.send(received).is_err() {
                            return;
                        }
                        Ok(())
                    }
                    Ok(Packet::SubAck(ack)) => {
                        // Connected means subscribed: ready for readings.
                        if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                            tracing::error!("the broker refused the subscription to {TELEMETRY_FILTER}");
                        } else {
                            stats.connected.store(true, Ordering::Release);
                            tracing::info!(host = %config.host, port = config.port, "MQTT ingest connected and subscribed");
                        }
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(err) => Err(err),
                },
                () = room.notified(), if !reading => Ok(()),
            };
        }
        stats.connected.store(false, Ordering::Release);
        if let Err(err) = outcome {
            tracing::warn!(error = %err, "MQTT ingest disconnected; reconnecting");
        }
        // A connection the broker keeps closing must not turn into a busy loop.
        if connected_at.elapsed() > Duration::from_secs(10) {
            backoff.reset();
        }
        backoff.wait().await;
    }
}

/// Hands received messages to the pipeline in arrival order, waiting while the writer is
/// saturated (the broker holds what it has not sent).
async fn submit(
    mut received: mpsc::UnboundedReceiver<Received>,
    pipeline: Pipeline,
    limits: Limits,
    stats: Arc<MqttStats>,
    queue: mpsc::UnboundedSender<Pending>,
) {
    while let Some(received) = received.recv().await {
        let publish = &received.publish;
        let done = take(&pipeline, &publish.topic, &publish.payload, &limits, &stats).await;
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
            Err(IngestError::NotStored(err)) if err.is_permanent() => {
                refused(stats, device, &err);
                return None;
            }
            Err(IngestError::NotStored(err)) => {
                tracing::warn!(device_id = %device, error = %err, "retrying MQTT reading");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A message that cannot be stored for what it holds: counted as malformed and dropped.
fn refused(stats: &MqttStats, device: Uuid, err: &WriteError) {
    stats.malformed.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(device_id = %device, error = %err, "MQTT message refused and dropped");
}

/// Waits until a submitted message is stored, resubmitting it after a failure that may pass; a
/// message refused for what it holds is dropped (counted) instead.
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
            Ok(Err(err)) if err.is_permanent() => {
                refused(stats, device_of_topic(topic).unwrap_or_default(), &err);
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

/// Acknowledges messages in arrival order once their points are stored (or refused for good); a
/// batch that failed for a passing reason is resubmitted until it is stored (the message stays
/// unacknowledged meanwhile).
async fn acknowledge(
    mut pending: mpsc::UnboundedReceiver<Pending>,
    acks: mpsc::UnboundedSender<Ack>,
    pipeline: Pipeline,
    limits: Limits,
    stats: Arc<MqttStats>,
    room: Arc<Notify>,
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
        if publish.qos != QoS::AtMostOnce {
            let ack = Ack {
                pkid: publish.pkid,
                generation: received.generation,
            };
            if acks.send(ack).is_err() {
                return;
            }
        }
        stats.in_hand.fetch_sub(1, Ordering::AcqRel);
        room.notify_one();
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
            Ok(_) => {}
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
