//! The telemetry writer: one actor batches points from every device and stores each batch with one
//! COPY / multi-row INSERT (group commit). A reading is acknowledged only when its batch has
//! committed; a batch that fails for a passing reason (the database unreachable) fails every
//! reading in it, so nothing unstored is ever acknowledged. A batch the database refuses for what
//! it holds (a data error) is halved until each refused reading stands alone: only those fail,
//! the others are stored (one device's bad reading never costs another device its readings).
//!
//! Memory is bounded by the [`Gate`]: callers reserve room for their points before sending, and the
//! reservation ([`Admission`]) is released only when the batch holding them is done (or dropped on
//! the way, e.g. by a crashed device actor). A full gate means "slow down": HTTP 503, MQTT pauses.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;

use crate::point::Point;
use crate::store;

/// Why readings were not stored (and not acknowledged).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// A passing reason (the database unreachable, the writer saturated): a retry may store them.
    #[error("the batch was not stored: {0}")]
    NotStored(String),
    /// The database refused the readings themselves: the same readings are refused again.
    #[error("the database refused these readings: {0}")]
    Refused(String),
    /// The readings bring new keys to a device that has reached its limit of distinct keys.
    #[error("the device may have at most {limit} distinct telemetry keys (devices.max_keys); these readings bring {new} new ones, and only known keys are accepted")]
    TooManyKeys { limit: usize, new: usize },
}

impl WriteError {
    /// Whether sending the same readings again is pointless (they are refused, not delayed).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, WriteError::NotStored(_))
    }
}

/// The answer a reading waits for.
pub type WriteAck = oneshot::Sender<Result<(), WriteError>>;

/// Bounds the points accepted but not yet stored.
#[derive(Debug)]
pub struct Gate {
    pending: AtomicUsize,
    max: usize,
}

impl Gate {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            pending: AtomicUsize::new(0),
            max: max.max(1),
        })
    }

    /// Reserves room for `n` points, or `None` when the writer is saturated.
    pub fn try_admit(self: &Arc<Self>, n: usize) -> Option<Admission> {
        let before = self.pending.fetch_add(n, Ordering::AcqRel);
        // A payload larger than the whole gate still passes when nothing else is pending.
        if before > 0 && before + n > self.max {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            return None;
        }
        Some(Admission {
            gate: self.clone(),
            points: n,
        })
    }

    /// Points accepted and not yet stored.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// Room reserved in the [`Gate`]; released when dropped.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<Gate>,
    points: usize,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.gate.pending.fetch_sub(self.points, Ordering::AcqRel);
    }
}

/// Counters for `/api/v1/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub points_written: AtomicU64,
    pub batches_written: AtomicU64,
    pub batches_failed: AtomicU64,
    pub last_batch_micros: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Flush when this many points are buffered.
    pub batch_max_points: usize,
    /// Flush this long after the first point of a batch arrived, full or not.
    pub batch_max_delay: Duration,
    /// Batches being written at once (1 for SQLite, which has a single writer anyway).
    pub max_in_flight: usize,
    pub mailbox: usize,
}

/// Store these points, then answer `ack`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StorePoints {
    pub points: Vec<Point>,
    pub ack: WriteAck,
    pub admission: Admission,
}

struct Waiter {
    ack: WriteAck,
    _admission: Admission,
    /// Its points in the batch: they are stored or refused together.
    points: usize,
}

pub struct TelemetryWriter {
    db: DatabaseConnection,
    config: WriterConfig,
    buffer: Vec<Point>,
    waiters: Vec<Waiter>,
    in_flight: usize,
    timer: Option<SpawnHandle>,
    stats: Arc<WriterStats>,
}

impl TelemetryWriter {
    pub fn new(db: DatabaseConnection, config: WriterConfig, stats: Arc<WriterStats>) -> Self {
        Self {
            db,
            buffer: Vec::with_capacity(config.batch_max_points),
            config,
            waiters: Vec::new(),
            in_flight: 0,
            timer: None,
            stats,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.buffer.is_empty() || self.in_flight >= self.config.max_in_flight {
            return;
        }
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        let points = std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(self.config.batch_max_points),
        );
        let waiters = std::mem::take(&mut self.waiters);
        self.in_flight += 1;
        let db = self.db.clone();
        let work = async move {
            let started = Instant::now();
            let result = store::write_points(&db, &points).await;
            let outcomes = match result {
                Ok(()) => vec![Ok(()); waiters.len()],
                Err(err) if store::is_data_error(&err) => {
                    let sizes: Vec<usize> = waiters.iter().map(|w| w.points).collect();
                    tracing::warn!(error = %err, points = points.len(), readings = sizes.len(),
                        "the database refused a telemetry batch for its data; storing it in parts");
                    write_apart(&db, &points, &sizes, err.to_string()).await
                }
                Err(err) => {
                    tracing::error!(error = %err, points = points.len(), "telemetry batch not stored");
                    vec![Err(WriteError::NotStored(err.to_string())); waiters.len()]
                }
            };
            (outcomes, waiters, started.elapsed())
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |(outcomes, waiters, took), act, ctx| {
                    act.in_flight -= 1;
                    let stored: usize = waiters
                        .iter()
                        .zip(&outcomes)
                        .filter(|(_, outcome)| outcome.is_ok())
                        .map(|(waiter, _)| waiter.points)
                        .sum();
                    if stored > 0 {
                        act.stats
                            .points_written
                            .fetch_add(stored as u64, Ordering::Relaxed);
                        act.stats.batches_written.fetch_add(1, Ordering::Relaxed);
                        act.stats
                            .last_batch_micros
                            .store(took.as_micros() as u64, Ordering::Relaxed);
                        metrics::histogram!("insa_writer_batch_points").record(stored as f64);
                        metrics::histogram!("insa_writer_commit_seconds")
                            .record(took.as_secs_f64());
                    }
                    if outcomes.iter().any(Result::is_err) {
                        act.stats.batches_failed.fetch_add(1, Ordering::Relaxed);
                    }
                    for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                        // The reader may have given up (client gone); the points are stored regardless.
                        let _ = waiter.ack.send(outcome);
                    }
                    // What arrived during this commit goes now (group commit).
                    act.flush(ctx);
                }),
        );
    }
}

impl Actor for TelemetryWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.config.mailbox);
    }
}

impl Handler<StorePoints> for TelemetryWriter {
    type Result = ();

    fn handle(&mut self, msg: StorePoints, ctx: &mut Self::Context) {
        let points = msg.points.len();
        self.buffer.extend(msg.points);
        self.waiters.push(Waiter {
            ack: msg.ack,
            _admission: msg.admission,
            points,
        });
        // An idle writer commits at once; a busy one gathers what arrives until a commit ends,
        // or until the batch is full or `batch_max_delay` has passed (then on another
        // connection, up to `max_in_flight`).
        if self.in_flight == 0 || self.buffer.len() >= self.config.batch_max_points {
            self.flush(ctx);
        } else if self.timer.is_none() {
            self.timer = Some(ctx.run_later(self.config.batch_max_delay, |act, ctx| {
                act.timer = None;
                act.flush(ctx);
            }));
        }
    }
}

/// Stores a batch the database refused for its data in parts: halves of it, each halved again
/// while refused, until every refused reading stands alone. Returns each reading's outcome (in
/// the order of `sizes`, the points of each reading in `points`). A part that fails for a passing
/// reason (an outage meanwhile) fails as a whole, as any batch would.
async fn write_apart(
    db: &DatabaseConnection,
    points: &[Point],
    sizes: &[usize],
    first_error: String,
) -> Vec<Result<(), WriteError>> {
    let mut starts = Vec::with_capacity(sizes.len() + 1);
    starts.push(0);
    for size in sizes {
        starts.push(starts[starts.len() - 1] + size);
    }
    let mut outcomes = vec![Ok(()); sizes.len()];
    if sizes.len() == 1 {
        outcomes[0] = Err(WriteError::Refused(first_error));
        return outcomes;
    }
    // Ranges of readings known to hold a refused one, each with more than one reading.
    let mut refused = vec![(0, sizes.len())];
    while let Some((from, to)) = refused.pop() {
        let middle = from + (to - from) / 2;
        for (a, b) in [(middle, to), (from, middle)] {
            match store::write_points(db, &points[starts[a]..starts[b]]).await {
                Ok(()) => {}
                Err(err) if store::is_data_error(&err) => {
                    if b - a == 1 {
                        tracing::warn!(error = %err, device_id = ?points.get(starts[a]).map(|p| p.device_id),
                            "telemetry reading refused by the database");
                        outcomes[a] = Err(WriteError::Refused(err.to_string()));
                    } else {
                        refused.push((a, b));
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "telemetry batch not stored");
                    for outcome in &mut outcomes[a..b] {
                        *outcome = Err(WriteError::NotStored(err.to_string()));
                    }
                }
            }
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::Gate;

    #[test]
    fn the_gate_bounds_pending_points_and_releases_on_drop() {
        let gate = Gate::new(100);
        let a = gate.try_admit(60).expect("room");
        assert!(gate.try_admit(50).is_none(), "over the bound");
        let b = gate.try_admit(40).expect("exactly full");
        assert_eq!(gate.pending(), 100);
        drop(a);
        assert_eq!(gate.pending(), 40);
        drop(b);
        assert_eq!(gate.pending(), 0);
        let huge = gate
            .try_admit(500)
            .expect("alone, an oversized payload passes");
        assert!(gate.try_admit(1).is_none());
        drop(huge);
    }
}
