//! Telemetry payloads, shared by HTTP and MQTT ingest: decoding and checking, with no I/O.
//!
//! Accepted shapes (docs/API.md "Ingest", docs/MQTT.md "Payload"):
//! - single: `{"device_id", "timestamp"?, "telemetry": {...}}`
//! - batch: `{"device_id", "records": [{"timestamp"?, "telemetry": {...}}, ...]}`
//! - bare (MQTT only): the `telemetry` object alone, the device taken from the topic.
//!
//! A value is a number, a boolean (stored 1/0), a string (kept in `metadata.text`, no number) or
//! `{"value": number|boolean, "unit"?: string, "quality"?: 0..=100}`.
//!
//! What decodes can be stored on both databases: no key, unit or text holds a character they
//! refuse ([`insa_domain::text`]), and no timestamp lies outside what they store (1970 up to a day ahead
//! of the server clock).

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::point::Point;
use insa_domain::text::{self, shown};

/// Bounds on one payload; anything beyond is refused, never truncated.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Keys in one reading.
    pub max_keys: usize,
    /// Records in one batch.
    pub max_records: usize,
    /// Points in one payload (records x keys).
    pub max_points: usize,
    /// How far ahead of the server clock a timestamp may be.
    pub max_future: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_keys: 256,
            max_records: 10_000,
            max_points: 100_000,
            max_future: Duration::hours(24),
        }
    }
}

pub const MAX_KEY_LEN: usize = 100;
pub const MAX_UNIT_LEN: usize = 20;
pub const MAX_TEXT_LEN: usize = 1024;
/// The earliest timestamp accepted: the Unix epoch (PostgreSQL refuses year 0, and no device
/// measured anything before 1970).
pub const MIN_TIMESTAMP: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// What is wrong with a payload, and where (`telemetry.temperature.value`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PayloadError {
    pub field: String,
    pub message: String,
}

fn fail<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, PayloadError> {
    Err(PayloadError {
        field: field.into(),
        message: message.into(),
    })
}

/// A decoded payload: the device it names (if any) and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub device_id: Option<Uuid>,
    pub points: Vec<Point>,
}

/// Decodes a payload. `default_device` fills in points when the payload names no device (MQTT topic,
/// device-bound key); `allow_bare` accepts the telemetry object alone (MQTT).
pub fn decode(
    body: &Value,
    default_device: Option<Uuid>,
    allow_bare: bool,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Decoded, PayloadError> {
    let Some(object) = body.as_object() else {
        return fail("body", "must be a JSON object");
    };
    let full = object.contains_key("telemetry") || object.contains_key("records");
    if !full {
        if allow_bare {
            let device = default_device.ok_or_else(|| PayloadError {
                field: "device_id".into(),
                message: "is required".into(),
            })?;
            let mut points = Vec::new();
            reading(object, device, now, "telemetry", limits, &mut points)?;
            return Ok(Decoded {
                device_id: None,
                points,
            });
        }
        return fail("telemetry", "is required (or `records` for a batch)");
    }
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "device_id" | "timestamp" | "telemetry" | "records"
        ) {
            return fail(
                shown(key),
                "is not a known field (device_id, timestamp, telemetry, records)",
            );
        }
    }
    let named = match object.get("device_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(id) => Some(id),
            Err(_) => return fail("device_id", "must be a UUID"),
        },
        Some(_) => return fail("device_id", "must be a UUID string"),
    };
    let Some(device) = named.or(default_device) else {
        return fail("device_id", "is required");
    };
    let mut points = Vec::new();
    match (object.get("telemetry"), object.get("records")) {
        (Some(_), Some(_)) => {
            return fail("records", "send either `telemetry` or `records`, not both")
        }
        (Some(telemetry), None) => {
            let ts = timestamp(object.get("timestamp"), now, "timestamp", limits)?;
            let Some(telemetry) = telemetry.as_object() else {
                return fail("telemetry", "must be an object of key: value");
            };
            reading(telemetry, device, ts, "telemetry", limits, &mut points)?;
        }
        (None, Some(records)) => {
            if object.contains_key("timestamp") {
                return fail("timestamp", "belongs inside each record of a batch");
            }
            let Some(records) = records.as_array() else {
                return fail("records", "must be an array");
            };
            if records.is_empty() {
                return fail("records", "must not be empty");
            }
            if records.len() > limits.max_records {
                return fail(
                    "records",
                    format!("at most {} records per payload", limits.max_records),
                );
            }
            for (i, record) in records.iter().enumerate() {
                let at = format!("records[{i}]");
                let Some(record) = record.as_object() else {
                    return fail(at, "must be an object with `telemetry`");
                };
                if let Some(key) = record
                    .keys()
                    .find(|k| !matches!(k.as_str(), "timestamp" | "telemetry"))
                {
                    return fail(
                        format!("{at}.{}", shown(key)),
                        "is not a known field (timestamp, telemetry)",
                    );
                }
                let ts = timestamp(
                    record.get("timestamp"),
                    now,
                    &format!("{at}.timestamp"),
                    limits,
                )?;
                let Some(telemetry) = record.get("telemetry").and_then(Value::as_object) else {
                    return fail(
                        format!("{at}.telemetry"),
                        "is required: an object of key: value",
                    );
                };
                reading(
                    telemetry,
                    device,
                    ts,
                    &format!("{at}.telemetry"),
                    limits,
                    &mut points,
                )?;
                if points.len() > limits.max_points {
                    return fail(
                        "records",
                        format!("at most {} points per payload", limits.max_points),
                    );
                }
            }
        }
        (None, None) => unreachable_shape()?,
    }
    Ok(Decoded {
        device_id: named,
        points,
    })
}

fn unreachable_shape() -> Result<(), PayloadError> {
    fail("telemetry", "is required")
}

fn timestamp(
    value: Option<&Value>,
    now: DateTime<Utc>,
    field: &str,
    limits: &Limits,
) -> Result<DateTime<Utc>, PayloadError> {
    match value {
        None | Some(Value::Null) => Ok(now),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(ts) => {
                let ts = ts.with_timezone(&Utc);
                if ts > now + limits.max_future {
                    fail(field, "is more than 24 hours ahead of the server clock")
                } else if ts < MIN_TIMESTAMP {
                    fail(field, "is before 1970-01-01T00:00:00Z")
                } else {
                    Ok(ts)
                }
            }
            Err(_) => fail(field, "must be an RFC 3339 time, e.g. 2025-10-27T16:30:00Z"),
        },
        Some(_) => fail(field, "must be an RFC 3339 time string"),
    }
}

fn reading(
    telemetry: &Map<String, Value>,
    device: Uuid,
    ts: DateTime<Utc>,
    at: &str,
    limits: &Limits,
    points: &mut Vec<Point>,
) -> Result<(), PayloadError> {
    if telemetry.is_empty() {
        return fail(at, "must have at least one key");
    }
    if telemetry.len() > limits.max_keys {
        return fail(at, format!("at most {} keys per reading", limits.max_keys));
    }
    for (key, value) in telemetry {
        let field = format!("{at}.{}", shown(key));
        if key.is_empty() || key.chars().count() > MAX_KEY_LEN {
            return fail(field, format!("keys are 1 to {MAX_KEY_LEN} characters"));
        }
        if !text::storable(key) {
            return fail(field, text::REFUSED_MESSAGE);
        }
        let mut point = Point {
            device_id: device,
            timestamp: ts,
            key: key.clone(),
            value: None,
            unit: None,
            quality: None,
            metadata: None,
        };
        match value {
            Value::Number(_) | Value::Bool(_) => point.value = Some(number(value, &field)?),
            Value::String(text) => {
                if text.chars().count() > MAX_TEXT_LEN {
                    return fail(
                        field,
                        format!("text values are at most {MAX_TEXT_LEN} characters"),
                    );
                }
                if !text::storable(text) {
                    return fail(field, text::REFUSED_MESSAGE);
                }
                point.metadata = Some(json!({ "text": text }));
            }
            Value::Object(object) => {
                for name in object.keys() {
                    if !matches!(name.as_str(), "value" | "unit" | "quality") {
                        return fail(
                            format!("{field}.{}", shown(name)),
                            "is not a known field (value, unit, quality)",
                        );
                    }
                }
                let Some(inner) = object.get("value") else {
                    return fail(format!("{field}.value"), "is required");
                };
                point.value = Some(number(inner, &format!("{field}.value"))?);
                match object.get("unit") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(unit)) if !text::storable(unit) => {
                        return fail(format!("{field}.unit"), text::REFUSED_MESSAGE)
                    }
                    Some(Value::String(unit)) if unit.chars().count() <= MAX_UNIT_LEN => {
                        point.unit = Some(unit.clone())
                    }
                    Some(_) => {
                        return fail(
                            format!("{field}.unit"),
                            format!("must be a string of at most {MAX_UNIT_LEN} characters"),
                        )
                    }
                }
                match object.get("quality") {
                    None | Some(Value::Null) => {}
                    Some(q) => match q.as_i64() {
                        Some(q @ 0..=100) => point.quality = Some(q as i32),
                        _ => {
                            return fail(
                                format!("{field}.quality"),
                                "must be an integer from 0 to 100",
                            )
                        }
                    },
                }
            }
            Value::Null | Value::Array(_) => {
                return fail(
                    field,
                    "must be a number, a boolean, a string or {value, unit, quality}",
                )
            }
        }
        points.push(point);
    }
    Ok(())
}

fn number(value: &Value, field: &str) -> Result<f64, PayloadError> {
    match value {
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => Ok(f),
            _ => fail(field, "must be a finite number"),
        },
        _ => fail(field, "must be a number or a boolean"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-10-27T17:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn device() -> Uuid {
        Uuid::from_u128(7)
    }

    #[test]
    fn the_seeds_body_decodes_to_three_points() {
        let body = json!({
            "device_id": device().to_string(),
            "timestamp": "2025-10-27T16:30:00Z",
            "telemetry": {
                "temperature": {"value": 25.5, "unit": "C", "quality": 100},
                "humidity": {"value": 65, "unit": "%"},
                "pressure": {"value": 1013, "unit": "hPa"}
            }
        });
        let decoded = decode(&body, None, false, now(), &Limits::default()).expect("valid");
        assert_eq!(decoded.device_id, Some(device()));
        assert_eq!(decoded.points.len(), 3);
        let temperature = decoded
            .points
            .iter()
            .find(|p| p.key == "temperature")
            .expect("temperature");
        assert_eq!(temperature.value, Some(25.5));
        assert_eq!(temperature.unit.as_deref(), Some("C"));
        assert_eq!(temperature.quality, Some(100));
        assert_eq!(
            temperature.timestamp.to_rfc3339(),
            "2025-10-27T16:30:00+00:00"
        );
    }

    #[test]
    fn bare_values_booleans_and_text_are_accepted_and_time_defaults_to_now() {
        let body = json!({"device_id": device().to_string(), "telemetry": {"flow": 12, "running": true, "mode": "auto"}});
        let decoded = decode(&body, None, false, now(), &Limits::default()).expect("valid");
        let by_key = |k: &str| {
            decoded
                .points
                .iter()
                .find(|p| p.key == k)
                .cloned()
                .expect("key")
        };
        assert_eq!(by_key("flow").value, Some(12.0));
        assert_eq!(by_key("running").value, Some(1.0));
        assert_eq!(by_key("mode").value, None);
        assert_eq!(by_key("mode").metadata, Some(json!({"text": "auto"})));
        assert!(decoded.points.iter().all(|p| p.timestamp == now()));
    }

    #[test]
    fn batches_carry_a_timestamp_per_record() {
        let body = json!({"device_id": device().to_string(), "records": [
            {"timestamp": "2025-10-27T16:00:00Z", "telemetry": {"t": 1}},
            {"timestamp": "2025-10-27T16:01:00Z", "telemetry": {"t": 2, "p": 3}}
        ]});
        let decoded = decode(&body, None, false, now(), &Limits::default()).expect("valid");
        assert_eq!(decoded.points.len(), 3);
        assert_eq!(
            decoded.points[2].timestamp.to_rfc3339(),
            "2025-10-27T16:01:00+00:00"
        );
    }

    #[test]
    fn the_bare_telemetry_object_is_for_mqtt_only() {
        let body = json!({"temperature": 21.5});
        let mqtt = decode(&body, Some(device()), true, now(), &Limits::default()).expect("mqtt");
        assert_eq!(mqtt.points[0].device_id, device());
        let http = decode(&body, Some(device()), false, now(), &Limits::default());
        assert_eq!(http.expect_err("http").field, "telemetry");
    }

    #[test]
    fn bad_payloads_name_the_field() {
        let limits = Limits {
            max_keys: 2,
            max_records: 2,
            ..Limits::default()
        };
        let id = device().to_string();
        let cases = [
            (json!([1, 2]), "body"),
            (json!({"device_id": id, "telemetry": {}}), "telemetry"),
            (
                json!({"device_id": "nope", "telemetry": {"t": 1}}),
                "device_id",
            ),
            (json!({"telemetry": {"t": 1}}), "device_id"),
            (
                json!({"device_id": id, "telemetry": {"t": {"value": "hot"}}}),
                "telemetry.t.value",
            ),
            (
                json!({"device_id": id, "telemetry": {"t": {"unit": "C"}}}),
                "telemetry.t.value",
            ),
            (
                json!({"device_id": id, "telemetry": {"t": {"value": 1, "quality": 101}}}),
                "telemetry.t.quality",
            ),
            (
                json!({"device_id": id, "telemetry": {"t": {"value": 1, "nested": {"a": 1}}}}),
                "telemetry.t.nested",
            ),
            (
                json!({"device_id": id, "telemetry": {"t": null}}),
                "telemetry.t",
            ),
            (
                json!({"device_id": id, "telemetry": {"t": [1]}}),
                "telemetry.t",
            ),
            (
                json!({"device_id": id, "telemetry": {"a": 1, "b": 2, "c": 3}}),
                "telemetry",
            ),
            (
                json!({"device_id": id, "timestamp": "yesterday", "telemetry": {"t": 1}}),
                "timestamp",
            ),
            (
                json!({"device_id": id, "timestamp": "2025-10-29T17:00:01Z", "telemetry": {"t": 1}}),
                "timestamp",
            ),
            (
                json!({"device_id": id, "telemetry": {"t": 1}, "extra": 1}),
                "extra",
            ),
            (json!({"device_id": id, "records": []}), "records"),
            (
                json!({"device_id": id, "records": [{"t": 1}, {"t": 2}, {"t": 3}]}),
                "records",
            ),
            (
                json!({"device_id": id, "records": [{"telemetry": {"t": 1}, "x": 1}]}),
                "records[0].x",
            ),
            (
                json!({"device_id": id, "records": [{"timestamp": "2025-10-27T16:00:00Z"}]}),
                "records[0].telemetry",
            ),
            (json!({"device_id": id, "telemetry": {"": 1}}), "telemetry."),
            (
                json!({"device_id": id, "telemetry": {"k\u{0}": 1}}),
                "telemetry.k\\u0000",
            ),
            (
                json!({"device_id": id, "telemetry": {"mode": "au\u{0}to"}}),
                "telemetry.mode",
            ),
            (
                json!({"device_id": id, "telemetry": {"t": {"value": 1, "unit": "\u{0}C"}}}),
                "telemetry.t.unit",
            ),
            (
                json!({"device_id": id, "timestamp": "0000-01-01T00:00:00Z", "telemetry": {"t": 1}}),
                "timestamp",
            ),
            (
                json!({"device_id": id, "timestamp": "1969-12-31T23:59:59Z", "telemetry": {"t": 1}}),
                "timestamp",
            ),
        ];
        for (body, field) in cases {
            let err = decode(&body, None, false, now(), &limits).expect_err(&body.to_string());
            assert_eq!(err.field, field, "{body}: {err}");
        }
    }

    mod properties {
        use super::*;
        use crate::arbitrary::{holds_nul, json};
        use proptest::prelude::*;

        /// Strings a payload is made of: its field names, times, and any text (NUL included).
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "device_id",
                    "timestamp",
                    "telemetry",
                    "records",
                    "value",
                    "unit",
                    "quality",
                    "00000000-0000-0000-0000-000000000007",
                    "2025-10-27T16:30:00Z",
                    "0000-01-01T00:00:00Z",
                    "0001-01-01T00:30:00+01:00",
                    "9999-12-31T23:59:59-14:00",
                ])
                .prop_map(str::to_string),
                "[a-z\\x00\\t\\\\\"é😀]{0,6}",
                any::<String>(),
            ]
        }

        /// A reading's value: mostly of the accepted kinds (with any text), sometimes anything.
        fn reading_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<f64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
                text().prop_map(Value::from),
                (any::<f64>(), text(), -1i64..=101).prop_map(
                    |(value, unit, quality)| json!({"value": value, "unit": unit, "quality": quality})
                ),
                (any::<bool>(), text()).prop_map(|(value, unit)| json!({"value": value, "unit": unit})),
                json(text),
            ]
        }

        fn reading() -> impl Strategy<Value = Value> {
            prop::collection::vec((text(), reading_value()), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
        }

        fn timestamp() -> impl Strategy<Value = Value> {
            prop_oneof![Just(Value::Null), text().prop_map(Value::from), json(text)]
        }

        /// Bodies near the accepted shapes, so that decoding goes deep, and anything at all.
        fn body() -> impl Strategy<Value = Value> {
            prop_oneof![
                (timestamp(), reading()).prop_map(|(timestamp, telemetry)| {
                    json!({"device_id": device().to_string(), "timestamp": timestamp, "telemetry": telemetry})
                }),
                (timestamp(), reading()).prop_map(
                    |(timestamp, telemetry)| json!({"timestamp": timestamp, "telemetry": telemetry})
                ),
                prop::collection::vec((timestamp(), reading()), 0..4).prop_map(|records| {
                    let records: Vec<Value> = records
                        .into_iter()
                        .map(|(timestamp, telemetry)| json!({"timestamp": timestamp, "telemetry": telemetry}))
                        .collect();
                    json!({"device_id": device().to_string(), "records": records})
                }),
                reading(),
                json(text),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_body_decodes_to_storable_points_or_names_a_field(
                body in body(),
                bare in any::<bool>(),
                with_device in any::<bool>(),
            ) {
                let limits = Limits::default();
                let default_device = with_device.then(device);
                match decode(&body, default_device, bare, now(), &limits) {
                    Ok(decoded) => {
                        for point in &decoded.points {
                            prop_assert!(!point.key.contains('\0'), "{point:?}");
                            prop_assert!((1..=MAX_KEY_LEN).contains(&point.key.chars().count()));
                            prop_assert!(!point.unit.as_deref().unwrap_or_default().contains('\0'));
                            prop_assert!(!point.metadata.as_ref().is_some_and(holds_nul), "{point:?}");
                            prop_assert!(point.value.is_none_or(f64::is_finite));
                            prop_assert!(point.quality.is_none_or(|q| (0..=100).contains(&q)));
                            prop_assert!(point.timestamp >= MIN_TIMESTAMP);
                            prop_assert!(point.timestamp <= now() + limits.max_future);
                        }
                    }
                    Err(err) => prop_assert!(!err.message.is_empty()),
                }
            }
        }
    }
}
