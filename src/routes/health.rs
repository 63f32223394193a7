//! `/health` (liveness and database) and `/api/v1/status` (version, uptime, device counts).

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use insa_entities::{devices, DeviceStatus};
use sea_orm::{ColumnTrait, EntityTrait, QuerySelect};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn configure_root(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health));
}

pub fn configure_api(cfg: &mut web::ServiceConfig) {
    cfg.route("/status", web::get().to(status));
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`
    pub status: &'static str,
    /// `ok` or `unavailable`
    pub database: &'static str,
    pub version: &'static str,
}

/// Liveness and database reachability: 200 when usable, 503 when the database is down.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    match state.db.ping().await {
        Ok(()) => HttpResponse::Ok().json(Health {
            status: "ok",
            database: "ok",
            version: VERSION,
        }),
        Err(err) => {
            tracing::warn!(error = %err, "health check: database unavailable");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "5"))
                .json(Health {
                    status: "degraded",
                    database: "unavailable",
                    version: VERSION,
                })
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCounts {
    pub total: u64,
    /// Keys: online, offline, maintenance, error.
    pub by_status: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestStatus {
    /// Device actors in memory (devices heard from recently).
    pub active_device_actors: usize,
    /// Device actors found dead and recreated since start.
    pub actor_restarts: u64,
    /// Points accepted and not yet stored (the writer's queue).
    pub pending_points: usize,
    pub points_written: u64,
    pub batches_written: u64,
    pub batches_failed: u64,
}

impl IngestStatus {
    fn of(pipeline: &insa_actors::Pipeline) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = pipeline.stats();
        Self {
            active_device_actors: pipeline.registry().active(),
            actor_restarts: pipeline.registry().restarts(),
            pending_points: pipeline.pending_points(),
            points_written: stats.points_written.load(Relaxed),
            batches_written: stats.batches_written.load(Relaxed),
            batches_failed: stats.batches_failed.load(Relaxed),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MqttStatus {
    /// `embedded`, `external` or `off`.
    pub mode: &'static str,
    /// `host:port` devices connect to (absent when MQTT is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// How device identity is checked: `api_key` (embedded broker), `dynsec` (Mosquitto's dynamic
    /// security kept in step with API keys), `none` (external broker: not checked by the
    /// platform) or `off`.
    pub device_auth: &'static str,
    /// Set when the set-up deserves an operator's attention (e.g. `device_auth` = `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    pub connected: bool,
    pub messages_received: u64,
    pub messages_stored: u64,
    /// Messages dropped (and acknowledged) as malformed: bad topic or payload, or refused for
    /// what they hold (by the database, or new keys beyond `devices.max_keys`).
    pub messages_malformed: u64,
    /// Well-formed messages for devices that are not registered.
    pub messages_unknown_device: u64,
    /// Messages received and not yet stored and acknowledged (at most `mqtt.max_unacked`).
    pub messages_in_hand: usize,
}

impl MqttStatus {
    fn of(state: &AppState) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let info = state.mqtt.get();
        let stats = info.and_then(|i| i.stats.as_ref());
        let broker = info.and_then(|i| i.broker.as_ref());
        Self {
            mode: info.map_or("off", |i| i.mode),
            address: broker.map(|b| b.address.clone()),
            device_auth: broker.map_or("off", |b| b.device_auth),
            warning: broker.and_then(|b| b.warning.clone()),
            connected: stats.is_some_and(|s| s.connected.load(Relaxed)),
            messages_received: stats.map_or(0, |s| s.received.load(Relaxed)),
            messages_stored: stats.map_or(0, |s| s.stored.load(Relaxed)),
            messages_malformed: stats.map_or(0, |s| s.malformed.load(Relaxed)),
            messages_unknown_device: stats.map_or(0, |s| s.unknown_device.load(Relaxed)),
            messages_in_hand: stats.map_or(0, |s| s.in_hand.load(Relaxed)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub name: &'static str,
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    pub uptime_seconds: u64,
    /// `postgres` or `sqlite`
    pub database: &'static str,
    pub partitions: u32,
    pub devices: DeviceCounts,
    pub ingest: IngestStatus,
    pub mqtt: MqttStatus,
}

/// Version, uptime and device counts by status.
#[utoipa::path(get, path = "/api/v1/status", tag = "operations",
    responses((status = 200, body = Status), (status = 503, description = "`database_unavailable`")))]
pub async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts: Vec<(DeviceStatus, i64)> = devices::Entity::find()
        .select_only()
        .column(devices::Column::Status)
        .column_as(devices::Column::Id.count(), "count")
        .group_by(devices::Column::Status)
        .into_tuple()
        .all(&state.db)
        .await?;
    let mut by_status: BTreeMap<&'static str, u64> =
        DeviceStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for (status, count) in counts {
        by_status.insert(status.as_str(), u64::try_from(count).unwrap_or(0));
    }
    let total = by_status.values().sum();
    Ok(HttpResponse::Ok().json(Status {
        name: "insa-iiot",
        version: VERSION,
        started_at: state.started_at,
        uptime_seconds: state.started.elapsed().as_secs(),
        database: if state.settings.database.is_sqlite() {
            "sqlite"
        } else {
            "postgres"
        },
        partitions: state.pipeline.registry().partitions(),
        ingest: IngestStatus::of(&state.pipeline),
        mqtt: MqttStatus::of(&state),
        devices: DeviceCounts { total, by_status },
    }))
}
