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
use insa_domain::Rule;
use insa_entities::DeviceStatus;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::alerts::{AlertCommand, NewAlert, RuleRef};
use crate::events::DeviceEvent;
use crate::point::Point;
use crate::state::{DeviceSeen, DeviceStatusChanged, StateWriter};
use crate::watch::{Effect, Watch};
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
    /// Distinct telemetry keys a device may have; readings bringing more new keys are refused
    /// whole (the keys already known keep being accepted).
    pub max_keys: usize,
    /// Actors that died without being asked to stop (panics), counted.
    pub restarts: Arc<AtomicU64>,
    /// Where such a device is sent to be recreated from the database at once (its inactivity
    /// timer must keep running even if it never sends again).
    pub recreate: mpsc::UnboundedSender<Uuid>,
    /// Set when the pipeline stops: actors stopping then are not crashes.
    pub shutting_down: AtomicBool,
    /// The enabled rules of every device ([`crate::Pipeline::reload_rules`]).
    pub rules: std::sync::RwLock<Arc<Vec<Rule>>>,
    /// Where alerts are raised and resolved, in order ([`crate::alerts::keeper`]); bounded
    /// (`alerts.queue_capacity`): when full, the rule forgets where it stood and its next value
    /// decides again (raise and resolve are idempotent).
    pub alerts: mpsc::Sender<AlertCommand>,
    /// Alert changes dropped because that queue was full.
    pub alerts_dropped: AtomicU64,
    /// Readings for live views; events are built only while someone subscribes.
    pub telemetry: broadcast::Sender<Arc<crate::events::TelemetryEvent>>,
    /// The status each device last took, ahead of the database (the state writer is behind):
    /// an actor started again — after passivating as it went offline, say — begins from here,
    /// not from a row that may still read `online`.
    pub statuses: DashMap<Uuid, DeviceStatus>,
}

/// What the device is, for rules: its type, area and config (built-in rule).
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub device_type: String,
    pub area: Option<String>,
    pub config: Option<Value>,
}

/// A rule that applies to this device, where it stands (on the clock the actor's timers run
/// on), and the timer of its `for` hold while one runs.
#[derive(Debug)]
struct Watched {
    rule: Rule,
    watch: Watch<tokio::time::Instant>,
    hold: Option<SpawnHandle>,
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

/// A person changed the device (status, type, area, config); the actor adopts it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeviceChanged {
    pub status: DeviceStatus,
    pub profile: Profile,
}

/// The rules changed: the actor takes those that apply to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RulesChanged(pub Arc<Vec<Rule>>);

/// The device was deleted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopDevice;

/// What the actor knows.
#[derive(Message)]
#[rtype(result = "DeviceSnapshot")]
pub struct GetDeviceState;

/// Only the status and the last reading time (what API answers show; cheap to ask often).
#[derive(Message)]
#[rtype(result = "DeviceLiveness")]
pub struct GetLiveness;

#[derive(Debug, Clone, Copy, PartialEq, MessageResponse)]
pub struct DeviceLiveness {
    pub status: DeviceStatus,
    pub last_seen: Option<DateTime<Utc>>,
}

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
    profile: Profile,
    /// The rules that apply to this device, with where each stands.
    rules: Vec<Watched>,
    shared: Arc<Shared>,
}

impl DeviceActor {
    pub(crate) fn new(
        id: Uuid,
        profile: Profile,
        status: DeviceStatus,
        last_seen: Option<DateTime<Utc>>,
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
            inactivity: inactivity_timeout(profile.config.as_ref(), shared.default_inactivity),
            latest,
            timer: None,
            stopping_on_purpose: false,
            rules: Vec::new(),
            profile,
            shared,
        }
    }

    /// Takes the pipeline's current rules (see [`Self::adopt_rules`]).
    fn adopt_current_rules(&mut self, ctx: &mut Context<Self>) {
        let rules = self
            .shared
            .rules
            .read()
            .map(|r| r.clone())
            .unwrap_or_default();
        self.adopt_rules(&rules, ctx);
    }

    /// Takes the rules that apply to this device (and its built-in rule). A rule it already had
    /// (same id, even if edited) keeps where it stood, so editing a rule does not resolve and
    /// re-raise its alert; one that no longer applies leaves nothing open behind.
    fn adopt_rules(&mut self, all: &[Rule], ctx: &mut Context<Self>) {
        let mut applying: Vec<Rule> = all
            .iter()
            .filter(|r| {
                r.applies_to(
                    self.id,
                    &self.profile.device_type,
                    self.profile.area.as_deref(),
                )
            })
            .cloned()
            .collect();
        applying.extend(Rule::builtin(
            &self.profile.device_type,
            self.profile.config.as_ref(),
        ));
        let mut old = std::mem::take(&mut self.rules);
        for rule in applying {
            let watched = match old.iter().position(|w| w.rule.id == rule.id) {
                Some(i) => Watched {
                    rule,
                    ..old.swap_remove(i)
                },
                None => Watched {
                    rule,
                    watch: Watch::Unknown,
                    hold: None,
                },
            };
            self.rules.push(watched);
        }
        for Watched { rule, watch, hold } in old {
            if let Some(timer) = hold {
                ctx.cancel_future(timer);
            }
            // Deleted, disabled, or no longer targeting this device (the rules API resolves the
            // alerts of deleted and disabled rules itself, should the queue be full).
            let _ = self.deliver(&rule, watch.on_rule_removed());
        }
    }

    /// Asks for an alert to be raised; false when the queue was full.
    #[must_use]
    fn raise(&self, rule: &Rule, value: Option<f64>) -> bool {
        let alert = NewAlert::by_rule(self.id, rule, value, Utc::now());
        self.queue_alert(AlertCommand::Raise(alert, RuleRef::from(rule)))
    }

    /// Asks for the rule's open alert to be resolved; false when the queue was full.
    #[must_use]
    fn resolve(&self, rule: &Rule) -> bool {
        self.queue_alert(AlertCommand::Resolve {
            device_id: self.id,
            rule: RuleRef::from(rule),
            at: Utc::now(),
        })
    }

    /// Hands an alert change to the keeper; false when its queue is full (then the caller's
    /// rule goes back to [`Watch::Unknown`]: the next value decides again).
    fn queue_alert(&self, command: AlertCommand) -> bool {
        if self.shared.alerts.try_send(command).is_ok() {
            return true;
        }
        let dropped = self.shared.alerts_dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(device_id = %self.id, dropped,
                "alert queue full (alerts.queue_capacity): alert change dropped, re-decided on the next value");
        }
        false
    }

    /// A new newest value of `key`: moves each rule on it along (raise after `for`, resolve past
    /// the hysteresis; [`Watch::on_value`]).
    fn evaluate(&mut self, key: &str, value: f64, ctx: &mut Context<Self>) {
        let now = tokio::time::Instant::now();
        for i in 0..self.rules.len() {
            let Watched { rule, watch, .. } = &mut self.rules[i];
            if rule.key == key {
                let effect = watch.on_value(rule, value, self.status, now);
                self.execute(i, effect, ctx);
            }
        }
    }

    /// A pending rule's `for` has passed with the condition holding throughout: raise.
    fn held(&mut self, rule_id: Option<Uuid>, ctx: &mut Context<Self>) {
        let Some(i) = self
            .rules
            .iter()
            .position(|w| w.rule.id == rule_id && w.watch.is_pending())
        else {
            return;
        };
        let latest = self
            .latest
            .get(&self.rules[i].rule.key)
            .and_then(|l| l.value);
        let Watched { watch, hold, .. } = &mut self.rules[i];
        // This is the timer that ended: there is nothing left to cancel.
        *hold = None;
        let effect = watch.on_hold_elapsed(latest, self.status, tokio::time::Instant::now());
        self.execute(i, effect, ctx);
    }

    /// Offline rules follow the device's status ([`Watch::on_status`]).
    fn status_rules(&mut self, to: DeviceStatus, ctx: &mut Context<Self>) {
        for i in 0..self.rules.len() {
            let Watched { rule, watch, .. } = &mut self.rules[i];
            let effect = watch.on_status(rule, to);
            self.execute(i, effect, ctx);
        }
    }

    /// Carries out what the `i`th rule's watch asked for: its hold timer, or an alert change
    /// (when the queue is full, the watch forgets where it stood). A hold the watch left behind
    /// is cancelled.
    fn execute(&mut self, i: usize, effect: Effect, ctx: &mut Context<Self>) {
        if let Effect::StartHold(hold) = effect {
            let id = self.rules[i].rule.id;
            let timer = ctx.run_later(hold, move |act, ctx| act.held(id, ctx));
            if let Some(stale) = self.rules[i].hold.replace(timer) {
                ctx.cancel_future(stale);
            }
        } else if !self.deliver(&self.rules[i].rule, effect) {
            self.rules[i].watch.undelivered();
        }
        let Watched { watch, hold, .. } = &mut self.rules[i];
        if !watch.is_pending() {
            if let Some(timer) = hold.take() {
                ctx.cancel_future(timer);
            }
        }
    }

    /// Hands the alert change `effect` asks for (if any) to the alert queue; false when the
    /// queue was full.
    #[must_use]
    fn deliver(&self, rule: &Rule, effect: Effect) -> bool {
        match effect {
            Effect::Raise(value) => self.raise(rule, value),
            Effect::Resolve => self.resolve(rule),
            Effect::Nothing | Effect::StartHold(_) => true,
        }
    }

    fn set_status(&mut self, to: DeviceStatus, persist: bool, ctx: &mut Context<Self>) {
        if self.status == to {
            return;
        }
        let from = std::mem::replace(&mut self.status, to);
        self.shared.statuses.insert(self.id, to);
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
        self.status_rules(to, ctx);
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

    /// How many distinct keys of `points` the device has never sent (as far as its latest values
    /// say: loaded from `telemetry_latest` when the actor starts).
    fn new_keys(&self, points: &[Point]) -> usize {
        let mut new: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for point in points {
            if !self.latest.contains_key(&point.key) {
                new.insert(&point.key);
            }
        }
        new.len()
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
                act.set_status(DeviceStatus::Offline, true, ctx);
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
        self.adopt_current_rules(ctx);
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
        // Only a message that could bring the device past its limit is looked at key by key.
        let new = if self.latest.len() + msg.points.len() > self.shared.max_keys {
            self.new_keys(&msg.points)
        } else {
            0
        };
        if new > 0 && self.latest.len() + new > self.shared.max_keys {
            tracing::debug!(device_id = %self.id, known = self.latest.len(), new,
                "readings refused: the device's key limit is reached");
            let _ = msg.ack.send(Err(WriteError::TooManyKeys {
                limit: self.shared.max_keys,
                new,
            }));
            return;
        }
        let watched = !self.rules.is_empty();
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
                // Rules see each value that is the newest of its key when it arrives, in order
                // (not backfilled history).
                if let (true, Some(value)) = (watched, point.value) {
                    self.evaluate(&point.key, value, ctx);
                }
            }
        }
        self.last_seen = Some(Utc::now());
        self.last_reading = Instant::now();
        if self.status != DeviceStatus::Maintenance {
            self.set_status(DeviceStatus::Online, true, ctx);
        }
        if self.shared.telemetry.receiver_count() > 0 {
            if let Some(timestamp) = msg.points.iter().map(|p| p.timestamp).max() {
                let event = crate::events::TelemetryEvent::new(
                    self.id,
                    timestamp,
                    msg.points
                        .iter()
                        .map(|p| (p.key.clone(), p.live_value(), p.unit.clone()))
                        .collect(),
                );
                let _ = self.shared.telemetry.send(Arc::new(event));
            }
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
            let _ = refused.ack.send(Err(WriteError::NotStored(
                "the telemetry writer is saturated".into(),
            )));
        }
    }
}

impl Handler<DeviceChanged> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: DeviceChanged, ctx: &mut Self::Context) {
        self.inactivity =
            inactivity_timeout(msg.profile.config.as_ref(), self.shared.default_inactivity);
        self.profile = msg.profile;
        self.adopt_current_rules(ctx);
        // The API already stored the new status; only tell the world.
        self.set_status(msg.status, false, ctx);
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        self.arm_timer(ctx);
    }
}

impl Handler<RulesChanged> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: RulesChanged, ctx: &mut Self::Context) {
        self.adopt_rules(&msg.0, ctx);
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

impl Handler<GetLiveness> for DeviceActor {
    type Result = DeviceLiveness;

    fn handle(&mut self, _: GetLiveness, _: &mut Self::Context) -> DeviceLiveness {
        DeviceLiveness {
            status: self.status,
            last_seen: self.last_seen,
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
