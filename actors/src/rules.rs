//! Alert rules as device actors evaluate them: which devices a rule applies to, when a value
//! breaches it and when (with hysteresis) it has cleared. Pure logic, no I/O.

use std::time::Duration;

use insa_entities::rules;
use serde_json::Value;
use uuid::Uuid;

/// Alert severities, mildest first.
pub const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

/// The placeholder a rule's MQTT topic uses for the alerting device's id.
pub const DEVICE_PLACEHOLDER: &str = "{device_id}";
const TOPIC_MAX: usize = 255;

/// The topic an `mqtt` action of a rule publishes to for `device_id`: `topic` with the
/// placeholder filled (default `devices/{id}/commands`), only if it is that device's own command
/// topic or below it — never a `$` system topic, a wildcard, an empty level or another device's
/// topic (the platform publishes with its own broker login).
pub fn command_topic(topic: Option<&str>, device_id: Uuid) -> Option<String> {
    let Some(topic) = topic else {
        return Some(format!("devices/{device_id}/commands"));
    };
    let topic = match topic.strip_prefix("devices/{device_id}/") {
        Some(rest) => format!("devices/{device_id}/{rest}"),
        None => topic.to_string(),
    };
    if topic.len() > TOPIC_MAX || topic.contains(['+', '#', '$', '\0']) {
        return None;
    }
    let mut levels = topic.split('/');
    let (Some("devices"), Some(id), Some("commands")) =
        (levels.next(), levels.next(), levels.next())
    else {
        return None;
    };
    let own = id.parse::<Uuid>().is_ok_and(|id| id == device_id);
    (own && levels.all(|level| !level.is_empty())).then_some(topic)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    Above,
    AtLeast,
    Below,
    AtMost,
    Equal,
    NotEqual,
    /// Alert while `low <= value <= high`.
    Between,
    /// Alert while `value < low` or `value > high`.
    Outside,
    /// Alert while the device is offline.
    Offline,
}

impl Condition {
    /// Every condition, as written in a rule.
    pub const NAMES: [&str; 9] = [
        ">", ">=", "<", "<=", "==", "!=", "between", "outside", "offline",
    ];

    /// Conditions on a band (`low`..`high`) rather than one threshold.
    pub fn is_band(self) -> bool {
        matches!(self, Self::Between | Self::Outside)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            ">" => Self::Above,
            ">=" => Self::AtLeast,
            "<" => Self::Below,
            "<=" => Self::AtMost,
            "==" => Self::Equal,
            "!=" => Self::NotEqual,
            "between" => Self::Between,
            "outside" => Self::Outside,
            "offline" => Self::Offline,
            _ => return None,
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Self::Above => ">",
            Self::AtLeast => ">=",
            Self::Below => "<",
            Self::AtMost => "<=",
            Self::Equal => "==",
            Self::NotEqual => "!=",
            Self::Between => "between",
            Self::Outside => "outside",
            Self::Offline => "offline",
        }
    }
}

/// A rule ready for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `None`: the built-in rule of a device's `config.alert_threshold`.
    pub id: Option<Uuid>,
    pub name: String,
    pub device_id: Option<Uuid>,
    pub device_type: Option<String>,
    pub area: Option<String>,
    pub key: String,
    pub condition: Condition,
    /// The threshold, or `low` for a band.
    pub threshold: f64,
    pub high: f64,
    pub hold: Duration,
    pub hysteresis: f64,
    pub severity: String,
    pub auto_resolve: bool,
    /// What to do when an alert is raised or resolved (`rules.actions`).
    pub actions: Vec<Value>,
}

impl Rule {
    /// An enabled rule from its row; `None` for a disabled or unusable one.
    pub fn from_model(m: &rules::Model) -> Option<Self> {
        if !m.enabled {
            return None;
        }
        let condition = Condition::parse(&m.condition)?;
        Some(Self {
            id: Some(m.id),
            name: m.name.clone(),
            device_id: m.device_id,
            device_type: m.device_type.clone(),
            area: m.area.clone(),
            key: m.key.clone(),
            condition,
            threshold: m.threshold.unwrap_or(f64::NAN),
            high: m.threshold_high.unwrap_or(f64::NAN),
            hold: Duration::from_secs(u64::try_from(m.for_seconds).unwrap_or(0)),
            hysteresis: m.hysteresis.max(0.0),
            severity: m.severity.clone(),
            auto_resolve: m.auto_resolve,
            actions: m.actions.as_array().cloned().unwrap_or_default(),
        })
    }

    /// A device's built-in rule: `config.alert_threshold` as a `>` rule on `config.alert_key`
    /// (default: the key named like the device's type), severity `config.alert_severity`
    /// (default `warning`).
    pub fn builtin(device_type: &str, config: Option<&Value>) -> Option<Self> {
        let config = config?;
        let threshold = config
            .get("alert_threshold")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite())?;
        let key = config
            .get("alert_key")
            .and_then(Value::as_str)
            .unwrap_or(device_type)
            .to_string();
        let severity = config
            .get("alert_severity")
            .and_then(Value::as_str)
            .filter(|s| SEVERITIES.contains(s))
            .unwrap_or("warning")
            .to_string();
        Some(Self {
            id: None,
            name: format!("{key} above alert_threshold"),
            device_id: None,
            device_type: None,
            area: None,
            key,
            condition: Condition::Above,
            threshold,
            high: f64::NAN,
            hold: Duration::ZERO,
            hysteresis: 0.0,
            severity,
            auto_resolve: true,
            actions: Vec::new(),
        })
    }

    /// Does this rule watch this device?
    pub fn applies_to(&self, device_id: Uuid, device_type: &str, area: Option<&str>) -> bool {
        match self.device_id {
            Some(id) => id == device_id,
            None => {
                (self.device_type.is_some() || self.area.is_some())
                    && self.device_type.as_deref().is_none_or(|t| t == device_type)
                    && self.area.as_deref().is_none_or(|a| Some(a) == area)
            }
        }
    }

    /// Does this rule follow the device's status (offline) rather than its values?
    pub fn is_offline(&self) -> bool {
        self.condition == Condition::Offline
    }

    /// Is the condition met by this value?
    pub fn breached(&self, v: f64) -> bool {
        let (t, high) = (self.threshold, self.high);
        match self.condition {
            Condition::Above => v > t,
            Condition::AtLeast => v >= t,
            Condition::Below => v < t,
            Condition::AtMost => v <= t,
            Condition::Equal => v == t,
            Condition::NotEqual => v != t,
            Condition::Between => t <= v && v <= high,
            Condition::Outside => v < t || v > high,
            Condition::Offline => false,
        }
    }

    /// Has a raised condition cleared: is the value back past the threshold by the hysteresis?
    pub fn cleared(&self, v: f64) -> bool {
        let (t, high, h) = (self.threshold, self.high, self.hysteresis);
        match self.condition {
            Condition::Above | Condition::AtLeast => !self.breached(v + h),
            Condition::Below | Condition::AtMost => !self.breached(v - h),
            Condition::Equal => (v - t).abs() > h,
            Condition::NotEqual => v == t,
            Condition::Between => v < t - h || v > high + h,
            Condition::Outside => t + h <= v && v <= high - h,
            Condition::Offline => true,
        }
    }

    /// What the alert says, e.g. `High pressure: pressure 91.5 > 80`.
    pub fn message(&self, value: Option<f64>) -> String {
        let value = value.map_or_else(String::new, |v| format!(" {v}"));
        match self.condition {
            Condition::Between | Condition::Outside => format!(
                "{}: {}{value} {} {}..{}",
                self.name,
                self.key,
                self.condition.symbol(),
                self.threshold,
                self.high
            ),
            Condition::Offline => format!("{}: device offline", self.name),
            _ => format!(
                "{}: {}{value} {} {}",
                self.name,
                self.key,
                self.condition.symbol(),
                self.threshold
            ),
        }
    }

    /// The threshold stored with an alert (`low` for a band).
    pub fn threshold(&self) -> Option<f64> {
        Some(self.threshold).filter(|t| t.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(condition: &str, threshold: f64, high: f64, hysteresis: f64) -> Rule {
        Rule {
            id: Some(Uuid::nil()),
            name: "r".into(),
            device_id: Some(Uuid::nil()),
            device_type: None,
            area: None,
            key: "pressure".into(),
            condition: Condition::parse(condition).expect("condition"),
            threshold,
            high,
            hold: Duration::ZERO,
            hysteresis,
            severity: "warning".into(),
            auto_resolve: true,
            actions: Vec::new(),
        }
    }

    #[test]
    fn a_raised_value_clears_only_past_the_hysteresis_band() {
        let above = rule(">", 80.0, f64::NAN, 2.5);
        assert!(above.breached(80.1) && !above.breached(80.0));
        assert!(!above.cleared(79.0), "inside the band: still raised");
        assert!(above.cleared(77.5) && above.cleared(70.0));
        let below = rule("<", 10.0, f64::NAN, 1.0);
        assert!(below.breached(9.9) && !below.cleared(10.5) && below.cleared(11.0));
        let band = rule("outside", 20.0, 30.0, 2.0);
        assert!(band.breached(19.0) && band.breached(31.0) && !band.breached(25.0));
        assert!(!band.cleared(21.0) && band.cleared(22.0) && !band.cleared(29.0));
        let inside = rule("between", 20.0, 30.0, 1.0);
        assert!(inside.breached(25.0) && !inside.cleared(19.5) && inside.cleared(18.5));
        let without = rule(">=", 5.0, f64::NAN, 0.0);
        assert!(without.breached(5.0) && without.cleared(4.9) && !without.cleared(5.0));
    }

    #[test]
    fn a_rule_targets_its_device_or_its_type_and_area() {
        let device = Uuid::new_v4();
        let mut by_id = rule(">", 1.0, f64::NAN, 0.0);
        by_id.device_id = Some(device);
        assert!(by_id.applies_to(device, "temperature", None));
        assert!(!by_id.applies_to(Uuid::new_v4(), "temperature", None));
        let mut fleet = rule(">", 1.0, f64::NAN, 0.0);
        fleet.device_id = None;
        fleet.device_type = Some("temperature".into());
        fleet.area = Some("Empaque".into());
        assert!(fleet.applies_to(device, "temperature", Some("Empaque")));
        assert!(!fleet.applies_to(device, "temperature", Some("Other")));
        assert!(!fleet.applies_to(device, "pressure", Some("Empaque")));
        fleet.device_type = None;
        assert!(fleet.applies_to(device, "pressure", Some("Empaque")));
    }

    #[test]
    fn the_readme_devices_alert_threshold_is_a_built_in_rule_on_its_type() {
        let config = json!({"sampling_rate": 60, "alert_threshold": 50});
        let builtin = Rule::builtin("temperature", Some(&config)).expect("built-in rule");
        assert_eq!(builtin.key, "temperature");
        assert_eq!(builtin.severity, "warning");
        assert!(builtin.breached(50.5) && !builtin.breached(50.0));
        let named =
            json!({"alert_threshold": 3, "alert_key": "vibration", "alert_severity": "critical"});
        let named = Rule::builtin("pump", Some(&named)).expect("built-in rule");
        assert_eq!(
            (named.key.as_str(), named.severity.as_str()),
            ("vibration", "critical")
        );
        assert!(Rule::builtin("temperature", Some(&json!({"sampling_rate": 60}))).is_none());
    }
}
