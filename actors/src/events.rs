//! Events device actors publish for the live feed, alerts and the MQTT status topic.

use std::sync::OnceLock;

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
    /// An alert was raised, acknowledged or resolved; `alert` is as it now stands.
    Alert {
        alert: Box<alerts::Model>,
        event: AlertEvent,
    },
}

/// What happened to an alert (the domain's: notifications carry it too).
pub use insa_domain::AlertEvent;

/// Readings a device sent, for live views (only built while someone listens).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryEvent {
    pub device_id: Uuid,
    /// The newest timestamp among the readings.
    pub timestamp: DateTime<Utc>,
    /// (key, value, unit) per point, in the order received: the number as sent (booleans 1/0),
    /// or the text of a text value.
    pub values: Vec<(String, serde_json::Value, Option<String>)>,
    /// The live-feed message, rendered by the first client that sends it and shared by the rest.
    message: OnceLock<String>,
}

impl TelemetryEvent {
    pub fn new(
        device_id: Uuid,
        timestamp: DateTime<Utc>,
        values: Vec<(String, serde_json::Value, Option<String>)>,
    ) -> Self {
        Self {
            device_id,
            timestamp,
            values,
            message: OnceLock::new(),
        }
    }

    /// The live feed's `{"type":"telemetry","device_id","timestamp","telemetry":{...}}`: a
    /// value alone, or `{"value","unit"}` when a unit was sent.
    pub fn message(&self) -> &str {
        self.message.get_or_init(|| {
            let telemetry: serde_json::Map<String, serde_json::Value> = self
                .values
                .iter()
                .map(|(key, value, unit)| {
                    let value = match unit {
                        Some(unit) => serde_json::json!({"value": value, "unit": unit}),
                        None => value.clone(),
                    };
                    (key.clone(), value)
                })
                .collect();
            serde_json::json!({"type": "telemetry", "device_id": self.device_id,
                               "timestamp": self.timestamp, "telemetry": telemetry})
            .to_string()
        })
    }
}
