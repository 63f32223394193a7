//! The telemetry writer: one actor batches points from every device and stores each batch with one
//! COPY / multi-row INSERT (group commit). A reading is acknowledged only when its batch has
//! committed; a failed batch fails every reading in it, so nothing unstored is ever acknowledged.
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

/// Why a batch was not stored (the readings in it were not acknowledged).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the batch was not stored: {0}")]
pub struct WriteError(pub String);

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
            (result, points.len(), started.elapsed())
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |(result, n, took), act, ctx| {
                    act.in_flight -= 1;
                    let outcome = match result {
                        Ok(()) => {
                            act.stats
                                .points_written
                                .fetch_add(n as u64, Ordering::Relaxed);
                            act.stats.batches_written.fetch_add(1, Ordering::Relaxed);
                            act.stats
                                .last_batch_micros
                                .store(took.as_micros() as u64, Ordering::Relaxed);
                            metrics::histogram!("insa_writer_batch_points").record(n as f64);
                            metrics::histogram!("insa_writer_commit_seconds")
                                .record(took.as_secs_f64());
                            Ok(())
                        }
                        Err(err) => {
                            act.stats.batches_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %err, points = n, "telemetry batch not stored");
                            Err(WriteError(err.to_string()))
                        }
                    };
                    for waiter in waiters {
                        // The reader may have given up (client gone); the points are stored regardless.
                        let _ = waiter.ack.send(outcome.clone());
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
        self.buffer.extend(msg.points);
        self.waiters.push(Waiter {
            ack: msg.ack,
            _admission: msg.admission,
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
