//! Events device actors publish for the live feed, alerts and the MQTT status topic.

use chrono::{DateTime, Utc};
use insa_entities::{alerts, DeviceStatus};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    /// A device's status changed, by itself (first reading, inactivity) or by a person.
    StatusChanged {
        device_id: Uuid,
        from: DeviceStatus,
        to: DeviceStatus,
        at: DateTime<Utc>,
    },
    /// An alert was raised (`resolved: false`) or resolved by its rule (`resolved: true`).
    Alert {
        alert: Box<alerts::Model>,
        resolved: bool,
    },
}
