//! The telemetry pipeline as the rest of the platform sees it: start it once, hand it readings, tell
//! it about device changes, listen to its events.
//!
//! A reading goes: caller -> [`Gate`] (room reserved, else "saturated") -> the device's actor (in
//! order, per device) -> [`TelemetryWriter`] (batched, committed) -> the caller's acknowledgement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use insa_entities::{devices, telemetry_latest, DeviceStatus};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::device::{
    DeviceActor, DeviceChanged, DeviceSnapshot, GetDeviceState, Latest, RecordReadings, Shared,
    StopDevice,
};
use crate::events::DeviceEvent;
use crate::point::Point;
use crate::registry::DeviceRegistry;
use crate::state::{FlushState, StateWriter};
use crate::writer::{Gate, TelemetryWriter, WriteError, WriterConfig, WriterStats};

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub partitions: u32,
    pub writer: WriterConfig,
    /// Points accepted but not yet stored, at most; beyond, ingest is refused as saturated.
    pub max_pending_points: usize,
    pub device_mailbox: usize,
    /// Used when a device's config gives no inactivity timeout nor sampling rate.
    pub default_inactivity: Duration,
    /// How often status and `last_seen` are written.
    pub state_flush: Duration,
    /// Device actors run on this many threads (0 = one per core).
    pub threads: usize,
}

/// Why readings were not taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no device with id {0}")]
    DeviceNotFound(Uuid),
    #[error("the platform is saturated; retry shortly")]
    Saturated,
    #[error(transparent)]
    NotStored(#[from] WriteError),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// A handle on the running pipeline; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    registry: DeviceRegistry,
    shared: Arc<Shared>,
    gate: Arc<Gate>,
    stats: Arc<WriterStats>,
    /// The threads of the pipeline, stopped with it.
    arbiters: Vec<ArbiterHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Actors stopped by this are not crashes; do not recreate them.
        self.shared.shutting_down.store(true, Ordering::Release);
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl Pipeline {
    /// Starts the writers and the device threads. Must run inside an actix `System`.
    pub fn start(db: DatabaseConnection, config: PipelineConfig) -> Self {
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            config.threads
        };
        let arbiters: Vec<_> = (0..threads).map(|_| Arbiter::new().handle()).collect();
        let io = Arbiter::new().handle();
        let stats = Arc::new(WriterStats::default());
        let writer = {
            let (db, writer_config, stats) = (db.clone(), config.writer.clone(), stats.clone());
            TelemetryWriter::start_in_arbiter(&io, move |_| {
                TelemetryWriter::new(db, writer_config, stats)
            })
        };
        let state = {
            let (db, interval) = (db.clone(), config.state_flush);
            StateWriter::start_in_arbiter(&io, move |_| StateWriter::new(db, interval))
        };
        let mut threads = arbiters.clone();
        threads.push(io);
        let registry = DeviceRegistry::single_node(config.partitions, arbiters);
        let (events, _) = broadcast::channel(4096);
        let (recreate, mut recreate_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            restarts: registry.restarts.clone(),
            recreate,
            shutting_down: AtomicBool::new(false),
            writer,
            state,
            events,
            actors: registry.actors.clone(),
            default_inactivity: config.default_inactivity,
            seen_interval: config.state_flush,
            mailbox: config.device_mailbox,
        });
        let pipeline = Self {
            inner: Arc::new(Inner {
                db,
                registry,
                shared,
                gate: Gate::new(config.max_pending_points),
                stats,
                arbiters: threads,
            }),
        };
        // Weak: the pipeline stops when its last handle goes, not when this task does.
        let supervisor = Arc::downgrade(&pipeline.inner);
        actix::spawn(async move {
            while let Some(device_id) = recreate_rx.recv().await {
                let Some(inner) = supervisor.upgrade() else {
                    break;
                };
                let pipeline = Pipeline { inner };
                if let Err(err) = pipeline.actor(device_id).await {
                    tracing::warn!(%device_id, error = %err, "cannot recreate device actor");
                }
            }
        });
        pipeline
    }

    pub fn registry(&self) -> &DeviceRegistry {
        &self.inner.registry
    }

    pub fn stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Points accepted and not yet stored.
    pub fn pending_points(&self) -> usize {
        self.inner.gate.pending()
    }

    /// Status changes and other device events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Takes readings for a device and returns what to await for their commit. The readings are
    /// queued in order behind the device's earlier ones.
    pub async fn submit(
        &self,
        device_id: Uuid,
        points: Vec<Point>,
    ) -> Result<oneshot::Receiver<Result<(), WriteError>>, IngestError> {
        let admission = self
            .inner
            .gate
            .try_admit(points.len())
            .ok_or(IngestError::Saturated)?;
        let mut message = {
            let (ack, done) = oneshot::channel();
            (
                RecordReadings {
                    points,
                    ack,
                    admission,
                },
                done,
            )
        };
        // A second attempt covers an actor that died between lookup and send.
        for _ in 0..2 {
            let addr = self.actor(device_id).await?;
            match addr.try_send(message.0) {
                Ok(()) => return Ok(message.1),
                Err(SendError::Full(_)) => return Err(IngestError::Saturated),
                Err(SendError::Closed(returned)) => message.0 = returned,
            }
        }
        Err(IngestError::Saturated)
    }

    /// Takes readings and waits until they are stored.
    pub async fn ingest(&self, device_id: Uuid, points: Vec<Point>) -> Result<usize, IngestError> {
        let n = points.len();
        let done = self.submit(device_id, points).await?;
        match done.await {
            Ok(result) => result.map(|()| n).map_err(IngestError::from),
            // The batch was dropped on the way (an actor died): not stored, say so.
            Err(_) => Err(IngestError::NotStored(WriteError(
                "the reading was dropped before it was stored".into(),
            ))),
        }
    }

    /// The live actor of a device, started (state loaded from the database) if needed.
    async fn actor(&self, device_id: Uuid) -> Result<Addr<DeviceActor>, IngestError> {
        if let Some(addr) = self.inner.registry.live(device_id) {
            return Ok(addr);
        }
        let device = devices::Entity::find_by_id(device_id)
            .one(&self.inner.db)
            .await?
            .ok_or(IngestError::DeviceNotFound(device_id))?;
        let latest = load_latest(&self.inner.db, device_id).await?;
        let shared = self.inner.shared.clone();
        Ok(self.inner.registry.get_or_start(device_id, move || {
            DeviceActor::new(
                device_id,
                device.status,
                device.last_seen,
                device.config.as_ref(),
                latest,
                shared,
            )
        }))
    }

    /// What the device's actor knows, if it is active.
    pub async fn device_state(&self, device_id: Uuid) -> Option<DeviceSnapshot> {
        let addr = self.inner.registry.live(device_id)?;
        addr.send(GetDeviceState).await.ok()
    }

    /// A person changed a device: its actor (if active) adopts the change, and a status change is
    /// announced.
    pub fn device_changed(
        &self,
        device_id: Uuid,
        previous: DeviceStatus,
        status: DeviceStatus,
        config: Option<Value>,
    ) {
        match self.inner.registry.live(device_id) {
            Some(addr) => addr.do_send(DeviceChanged { status, config }),
            None if previous != status => {
                let _ = self.inner.shared.events.send(DeviceEvent::StatusChanged {
                    device_id,
                    from: previous,
                    to: status,
                    at: Utc::now(),
                });
            }
            None => {}
        }
    }

    /// A device was deleted: its actor stops.
    pub fn device_removed(&self, device_id: Uuid) {
        if let Some(addr) = self.inner.registry.remove(device_id) {
            addr.do_send(StopDevice);
        }
    }

    /// Starts the actors of devices the database says are online, so their inactivity timers run
    /// after a restart (a device that stayed silent goes offline on time).
    pub async fn resume_online_devices(&self) -> Result<usize, DbErr> {
        let online: Vec<Uuid> = devices::Entity::find()
            .select_only()
            .column(devices::Column::Id)
            .filter(devices::Column::Status.eq(DeviceStatus::Online))
            .into_tuple()
            .all(&self.inner.db)
            .await?;
        for id in &online {
            if let Err(err) = self.actor(*id).await {
                tracing::warn!(device_id = %id, error = %err, "cannot resume device actor");
            }
        }
        Ok(online.len())
    }

    /// Writes pending status and `last_seen` now.
    pub fn flush_state(&self) {
        self.inner.shared.state.do_send(FlushState);
    }

    /// Crashes a device's actor (a panic in its handler), for tests of supervision.
    #[cfg(feature = "test-hooks")]
    pub fn crash_device(&self, device_id: Uuid) -> bool {
        match self.inner.registry.live(device_id) {
            Some(addr) => {
                addr.do_send(crate::device::Crash);
                true
            }
            None => false,
        }
    }
}

async fn load_latest(
    db: &DatabaseConnection,
    device_id: Uuid,
) -> Result<HashMap<String, Latest>, DbErr> {
    Ok(telemetry_latest::Entity::find()
        .filter(telemetry_latest::Column::DeviceId.eq(device_id))
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            (
                row.key,
                Latest {
                    timestamp: row.timestamp,
                    value: row.value,
                    unit: row.unit,
                    quality: row.quality,
                },
            )
        })
        .collect())
}
