//! The device actor: one per active device. It holds the device's status, `last_seen` and newest
//! value per key, turns the device online on a reading and offline after its inactivity timeout (its
//! own timer, not a periodic scan), forwards readings to the writer in arrival order, and stops
//! itself (passivates) once the device is idle and not online.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use insa_entities::DeviceStatus;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::events::DeviceEvent;
use crate::point::Point;
use crate::state::{DeviceSeen, DeviceStatusChanged, StateWriter};
use crate::writer::{Admission, StorePoints, TelemetryWriter, WriteAck, WriteError};

/// What every device actor shares.
pub(crate) struct Shared {
    pub writer: Addr<TelemetryWriter>,
    pub state: Addr<StateWriter>,
    pub events: broadcast::Sender<DeviceEvent>,
    pub actors: Arc<DashMap<Uuid, Addr<DeviceActor>>>,
    pub default_inactivity: Duration,
    /// `last_seen` is sent to the state writer at most this often per device.
    pub seen_interval: Duration,
    pub mailbox: usize,
    /// Actors that died without being asked to stop (panics), counted.
    pub restarts: Arc<AtomicU64>,
    /// Where such a device is sent to be recreated from the database at once (its inactivity
    /// timer must keep running even if it never sends again).
    pub recreate: mpsc::UnboundedSender<Uuid>,
    /// Set when the pipeline stops: actors stopping then are not crashes.
    pub shutting_down: AtomicBool,
}

/// The newest value of one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub timestamp: DateTime<Utc>,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub quality: Option<i32>,
}

/// The inactivity timeout of a device: `config.inactivity_timeout` seconds, else three sampling
/// periods (`config.sampling_rate`), else the platform default.
pub fn inactivity_timeout(config: Option<&Value>, default: Duration) -> Duration {
    let seconds = |key: &str| {
        config
            .and_then(|c| c.get(key))
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s > 0.0)
    };
    if let Some(timeout) = seconds("inactivity_timeout") {
        Duration::from_secs_f64(timeout.min(1e9))
    } else if let Some(rate) = seconds("sampling_rate") {
        Duration::from_secs_f64((rate * 3.0).min(1e9))
    } else {
        default
    }
}

/// Store these readings (already admitted by the writer's gate) and answer `ack` after commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordReadings {
    pub points: Vec<Point>,
    pub ack: WriteAck,
    pub admission: Admission,
}

/// A person changed the device (status, config); the actor adopts it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeviceChanged {
    pub status: DeviceStatus,
    pub config: Option<Value>,
}

/// The device was deleted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopDevice;

/// What the actor knows.
#[derive(Message)]
#[rtype(result = "DeviceSnapshot")]
pub struct GetDeviceState;

#[derive(Debug, Clone, MessageResponse)]
pub struct DeviceSnapshot {
    pub status: DeviceStatus,
    pub last_seen: Option<DateTime<Utc>>,
    pub latest: HashMap<String, Latest>,
    pub inactivity_timeout: Duration,
}

/// Panics inside the actor, to prove that the registry recreates it.
#[cfg(feature = "test-hooks")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

pub struct DeviceActor {
    id: Uuid,
    status: DeviceStatus,
    last_seen: Option<DateTime<Utc>>,
    /// When the last reading arrived, on the monotonic clock the inactivity timer uses.
    last_reading: Instant,
    seen_sent: Option<Instant>,
    inactivity: Duration,
    latest: HashMap<String, Latest>,
    timer: Option<SpawnHandle>,
    /// Set when the actor stops on purpose; a stop without it is a crash.
    stopping_on_purpose: bool,
    shared: Arc<Shared>,
}

impl DeviceActor {
    pub(crate) fn new(
        id: Uuid,
        status: DeviceStatus,
        last_seen: Option<DateTime<Utc>>,
        config: Option<&Value>,
        latest: HashMap<String, Latest>,
        shared: Arc<Shared>,
    ) -> Self {
        // After a restart, an online device has as long as it had left before the restart.
        let since = last_seen
            .and_then(|at| (Utc::now() - at).to_std().ok())
            .unwrap_or_default();
        let now = Instant::now();
        Self {
            id,
            status,
            last_seen,
            last_reading: now.checked_sub(since).unwrap_or(now),
            seen_sent: None,
            inactivity: inactivity_timeout(config, shared.default_inactivity),
            latest,
            timer: None,
            stopping_on_purpose: false,
            shared,
        }
    }

    fn set_status(&mut self, to: DeviceStatus, persist: bool) {
        if self.status == to {
            return;
        }
        let from = std::mem::replace(&mut self.status, to);
        tracing::info!(device_id = %self.id, from = from.as_str(), to = to.as_str(), "device status changed");
        if persist {
            self.shared.state.do_send(DeviceStatusChanged {
                device_id: self.id,
                status: to,
            });
        }
        let _ = self.shared.events.send(DeviceEvent::StatusChanged {
            device_id: self.id,
            from,
            to,
            at: Utc::now(),
        });
    }

    fn send_seen(&mut self) {
        if let Some(at) = self.last_seen {
            let sent = self.shared.state.try_send(DeviceSeen {
                device_id: self.id,
                at,
            });
            if sent.is_ok() {
                self.seen_sent = Some(Instant::now());
            }
        }
    }

    /// Arms the inactivity timer if it is not running; it re-arms itself for the time left.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        if self.timer.is_some() {
            return;
        }
        let left = self.inactivity.saturating_sub(self.last_reading.elapsed());
        self.timer = Some(ctx.run_later(left, |act, ctx| {
            act.timer = None;
            if act.last_reading.elapsed() < act.inactivity {
                act.arm_timer(ctx);
                return;
            }
            if act.status == DeviceStatus::Online {
                act.send_seen();
                act.set_status(DeviceStatus::Offline, true);
            }
            // Idle and not online: free the memory; the next reading starts it again.
            act.stopping_on_purpose = true;
            ctx.stop();
        }));
    }
}

impl Actor for DeviceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.shared.mailbox);
        self.arm_timer(ctx);
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        let me = ctx.address();
        self.shared
            .actors
            .remove_if(&self.id, |_, addr| *addr == me);
        if !self.stopping_on_purpose && !self.shared.shutting_down.load(Ordering::Acquire) {
            // A handler panicked (actix still runs `stopped` while dropping the actor).
            self.shared.restarts.fetch_add(1, Ordering::Relaxed);
            tracing::error!(device_id = %self.id, "device actor died; recreating it from the database");
            let _ = self.shared.recreate.send(self.id);
        }
    }
}

impl Handler<RecordReadings> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: RecordReadings, ctx: &mut Self::Context) {
        for point in &msg.points {
            let newer = self
                .latest
                .get(&point.key)
                .is_none_or(|current| point.timestamp >= current.timestamp);
            if newer {
                self.latest.insert(
                    point.key.clone(),
                    Latest {
                        timestamp: point.timestamp,
                        value: point.value,
                        unit: point.unit.clone(),
                        quality: point.quality,
                    },
                );
            }
        }
        self.last_seen = Some(Utc::now());
        self.last_reading = Instant::now();
        if self.status != DeviceStatus::Maintenance {
            self.set_status(DeviceStatus::Online, true);
        }
        if self
            .seen_sent
            .is_none_or(|at| at.elapsed() >= self.shared.seen_interval)
        {
            self.send_seen();
        }
        self.arm_timer(ctx);
        let store = StorePoints {
            points: msg.points,
            ack: msg.ack,
            admission: msg.admission,
        };
        if let Err(err) = self.shared.writer.try_send(store) {
            let refused = match err {
                SendError::Full(store) | SendError::Closed(store) => store,
            };
            let _ = refused
                .ack
                .send(Err(WriteError("the telemetry writer is saturated".into())));
        }
    }
}

impl Handler<DeviceChanged> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: DeviceChanged, ctx: &mut Self::Context) {
        self.inactivity = inactivity_timeout(msg.config.as_ref(), self.shared.default_inactivity);
        // The API already stored the new status; only tell the world.
        self.set_status(msg.status, false);
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        self.arm_timer(ctx);
    }
}

impl Handler<StopDevice> for DeviceActor {
    type Result = ();

    fn handle(&mut self, _: StopDevice, ctx: &mut Self::Context) {
        self.stopping_on_purpose = true;
        ctx.stop();
    }
}

impl Handler<GetDeviceState> for DeviceActor {
    type Result = DeviceSnapshot;

    fn handle(&mut self, _: GetDeviceState, _: &mut Self::Context) -> DeviceSnapshot {
        DeviceSnapshot {
            status: self.status,
            last_seen: self.last_seen,
            latest: self.latest.clone(),
            inactivity_timeout: self.inactivity,
        }
    }
}

#[cfg(feature = "test-hooks")]
impl Handler<Crash> for DeviceActor {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Self::Context) {
        panic!("device actor {} crashed on purpose (test hook)", self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inactivity_comes_from_config_then_sampling_rate_then_default() {
        let default = Duration::from_secs(300);
        assert_eq!(
            inactivity_timeout(
                Some(&json!({"inactivity_timeout": 5, "sampling_rate": 60})),
                default
            ),
            Duration::from_secs(5)
        );
        assert_eq!(
            inactivity_timeout(Some(&json!({"sampling_rate": 60})), default),
            Duration::from_secs(180)
        );
        assert_eq!(
            inactivity_timeout(Some(&json!({"sampling_rate": "fast"})), default),
            default
        );
        assert_eq!(inactivity_timeout(None, default), default);
        assert_eq!(
            inactivity_timeout(Some(&json!({"inactivity_timeout": 0.5})), default),
            Duration::from_millis(500)
        );
    }
}
