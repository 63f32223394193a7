//! One data point, as stored in the `telemetry` table.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub device_id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub key: String,
    /// Numbers as sent; booleans 1/0; `None` for text values.
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub quality: Option<i32>,
    /// `{"text": ...}` for text values.
    pub metadata: Option<Value>,
}

impl Point {
    /// The value as a live view shows it: the number, else the text of a text value, else null.
    pub fn live_value(&self) -> Value {
        match (self.value, &self.metadata) {
            (Some(value), _) => Value::from(value),
            (None, Some(metadata)) => metadata.get("text").cloned().unwrap_or(Value::Null),
            (None, None) => Value::Null,
        }
    }
}
