//! The state writer: device status and `last_seen`, coalesced and written behind (one statement per
//! flush), so a reading never waits for, nor causes, a per-message device update.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use insa_entities::DeviceStatus;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::store;

/// A device sent something at `at` (sent at most about once per flush interval per device).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeviceSeen {
    pub device_id: Uuid,
    pub at: DateTime<Utc>,
}

/// A device's status changed by itself. Never overrides `maintenance` in the database.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeviceStatusChanged {
    pub device_id: Uuid,
    pub status: DeviceStatus,
}

/// Write what is pending now (used on shutdown and by tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushState;

pub struct StateWriter {
    db: DatabaseConnection,
    interval: Duration,
    seen: HashMap<Uuid, DateTime<Utc>>,
    statuses: HashMap<Uuid, DeviceStatus>,
    flushing: bool,
    /// A flush for a status change is scheduled.
    soon: bool,
}

/// How soon a status change is written.
const STATUS_DELAY: Duration = Duration::from_millis(20);

impl StateWriter {
    pub fn new(db: DatabaseConnection, interval: Duration) -> Self {
        Self {
            db,
            interval,
            seen: HashMap::new(),
            statuses: HashMap::new(),
            flushing: false,
            soon: false,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || (self.seen.is_empty() && self.statuses.is_empty()) {
            return;
        }
        self.flushing = true;
        let seen: Vec<_> = self.seen.drain().collect();
        let statuses: Vec<_> = self.statuses.drain().collect();
        let db = self.db.clone();
        let work = async move {
            let result = store::write_device_state(&db, &seen, &statuses).await;
            (result, seen, statuses)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(|(result, seen, statuses), act, _| {
                    act.flushing = false;
                    if let Err(err) = result {
                        tracing::warn!(error = %err, "device state not written; retrying");
                        // Keep the newest knowledge: entries that arrived meanwhile win.
                        for (id, at) in seen {
                            act.seen.entry(id).or_insert(at);
                        }
                        for (id, status) in statuses {
                            act.statuses.entry(id).or_insert(status);
                        }
                    }
                }),
        );
    }
}

impl Actor for StateWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
        ctx.run_interval(self.interval, |act, ctx| act.flush(ctx));
    }
}

impl Handler<DeviceSeen> for StateWriter {
    type Result = ();

    fn handle(&mut self, msg: DeviceSeen, _: &mut Self::Context) {
        let entry = self.seen.entry(msg.device_id).or_insert(msg.at);
        if msg.at > *entry {
            *entry = msg.at;
        }
    }
}

impl Handler<DeviceStatusChanged> for StateWriter {
    type Result = ();

    fn handle(&mut self, msg: DeviceStatusChanged, ctx: &mut Self::Context) {
        self.statuses.insert(msg.device_id, msg.status);
        // Status changes are rare and people watch them: write them within moments, still
        // coalescing a burst (many devices going offline together) into one statement.
        if !self.soon {
            self.soon = true;
            ctx.run_later(STATUS_DELAY, |act, ctx| {
                act.soon = false;
                act.flush(ctx);
            });
        }
    }
}

impl Handler<FlushState> for StateWriter {
    type Result = ();

    fn handle(&mut self, _: FlushState, ctx: &mut Self::Context) {
        self.flush(ctx);
    }
}
