//! Devices as the platform knows them, for whoever needs one: a device by id, whether one exists,
//! and a device with the live state its actor holds. The `/devices` resource is `routes/devices.rs`.

use insa_actors::Pipeline;
use insa_entities::devices;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QuerySelect};
use uuid::Uuid;

/// Why a device could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// There is no such device (404 `device_not_found`).
    #[error("no device with id {0}")]
    NotFound(Uuid),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// The device `id`, as stored.
pub async fn find_device(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<devices::Model, DeviceError> {
    devices::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(DeviceError::NotFound(id))
}

/// Whether the device `id` exists (a body naming a device that is not there is refused by
/// field, not answered 404). Reads the key only.
pub async fn device_exists(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    let found: Option<Uuid> = devices::Entity::find_by_id(id)
        .select_only()
        .column(devices::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// The device with the status and last reading time its actor holds, when it is active: the
/// table is written behind (at most `devices.state_flush_ms`), the actor is exact.
pub async fn with_live_state(pipeline: &Pipeline, mut device: devices::Model) -> devices::Model {
    if let Some(live) = pipeline.device_liveness(device.id).await {
        device.status = live.status;
        device.last_seen = live.last_seen;
    }
    device
}
