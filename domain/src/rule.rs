//! Alert rules as values: whom a rule watches ([`Target`]), what it watches for (a
//! [`Condition`] on a key, held for `hold`), how bad its alert is and what it does
//! ([`Action`]s). [`Rule`] is what device actors evaluate; [`RuleDefinition`] is a rule as people
//! define it (with its description and whether it is enabled). Each part is parsed from what a
//! client writes by its own type; the limits of a rule are here.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::action::Action;
use crate::alert::Severity;
use crate::condition::{Condition, Thresholds};
use crate::text::{optional_text, NAME_MAX_CHARS};
use crate::FieldProblem;

/// The most characters of a rule's description.
pub const DESCRIPTION_MAX_CHARS: usize = 2000;
/// The most characters of the telemetry key a rule watches.
pub const KEY_MAX_CHARS: usize = 100;
/// The most characters of a device type a rule targets.
pub const DEVICE_TYPE_MAX_CHARS: usize = 50;
/// The most characters of an area a rule targets.
pub const AREA_MAX_CHARS: usize = 100;
/// The longest `for`: a week (longer holds are better expressed as reports).
pub const HOLD_MAX_SECONDS: u32 = 7 * 24 * 3600;
/// The most actions of one rule.
pub const ACTIONS_MAX: usize = 20;

/// The devices a rule watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One device.
    Device(Uuid),
    /// Every device of a type and/or in an area (at least one of the two is given).
    Devices {
        device_type: Option<String>,
        area: Option<String>,
    },
    /// The device whose config holds the rule (its built-in `config.alert_threshold`); watched
    /// by that device alone, so it applies to no other.
    Builtin,
}

impl Target {
    /// Parses a target as a client writes it: a `device_id` (that exists, when the caller could
    /// tell: `device_exists`), or a `device_type` and/or `area` (already trimmed and checked),
    /// never both.
    pub fn parse(
        problems: &mut Vec<FieldProblem>,
        device_id: Option<Uuid>,
        device_type: Option<String>,
        area: Option<String>,
        device_exists: Option<bool>,
    ) -> Option<Target> {
        let before = problems.len();
        match (device_id, device_type.is_some() || area.is_some()) {
            (None, false) => problems.push(FieldProblem::new(
                "device_id",
                "a rule targets one device (device_id) or the devices of a device_type and/or area",
            )),
            (Some(_), true) => problems.push(FieldProblem::new(
                "device_id",
                "give either device_id or device_type/area, not both",
            )),
            _ => {}
        }
        if let (Some(id), Some(false)) = (device_id, device_exists) {
            problems.push(FieldProblem::new(
                "device_id",
                format!("no device with id {id}"),
            ));
        }
        if problems.len() > before {
            return None;
        }
        Some(match device_id {
            Some(id) => Target::Device(id),
            None => Target::Devices { device_type, area },
        })
    }

    /// The rule's columns: (`device_id`, `device_type`, `area`).
    pub fn columns(&self) -> (Option<Uuid>, Option<String>, Option<String>) {
        match self {
            Target::Device(id) => (Some(*id), None, None),
            Target::Devices { device_type, area } => (None, device_type.clone(), area.clone()),
            Target::Builtin => (None, None, None),
        }
    }

    /// The target stored in a rule's columns (a device id wins; none at all targets nothing).
    pub fn from_columns(
        device_id: Option<Uuid>,
        device_type: Option<String>,
        area: Option<String>,
    ) -> Target {
        match device_id {
            Some(id) => Target::Device(id),
            None => Target::Devices { device_type, area },
        }
    }

    /// The one device targeted, if only one is.
    pub fn device(&self) -> Option<Uuid> {
        match self {
            Target::Device(id) => Some(*id),
            _ => None,
        }
    }
}

/// A rule ready for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `None`: the built-in rule of a device's `config.alert_threshold`.
    pub id: Option<Uuid>,
    pub name: String,
    pub target: Target,
    /// The telemetry key watched (empty for `offline`).
    pub key: String,
    pub condition: Condition,
    /// The condition must hold this long before an alert is raised.
    pub hold: Duration,
    /// How far back past the threshold a value must go before the alert clears (never negative).
    pub hysteresis: f64,
    pub severity: Severity,
    /// Resolve the alert when the condition clears.
    pub auto_resolve: bool,
    /// What to do when an alert is raised or resolved.
    pub actions: Vec<Action>,
}

/// A rule as people define it: the evaluated [`Rule`], its description, and whether it is
/// enabled (a disabled rule is kept but not evaluated).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDefinition {
    pub rule: Rule,
    pub description: Option<String>,
    pub enabled: bool,
}

/// A rule as a client writes it, every part optional until [`RuleDefinition::parse`] has
/// checked it.
#[derive(Debug, Clone, Default)]
pub struct RuleParts {
    pub name: Option<String>,
    pub description: Option<String>,
    pub device_id: Option<Uuid>,
    pub device_type: Option<String>,
    pub area: Option<String>,
    pub key: Option<String>,
    pub condition: Option<String>,
    pub thresholds: Thresholds,
    pub for_seconds: Option<u32>,
    pub hysteresis: Option<f64>,
    pub severity: Option<String>,
    pub auto_resolve: Option<bool>,
    pub enabled: Option<bool>,
    pub actions: Option<Vec<Value>>,
}

impl RuleDefinition {
    /// Parses a rule a client wrote: the rule, or every problem with it at once.
    /// `device_exists` says whether the targeted device exists, when the caller could tell.
    pub fn parse(
        parts: RuleParts,
        device_exists: Option<bool>,
    ) -> Result<RuleDefinition, crate::Problems> {
        let mut problems = Vec::new();
        let name = crate::text::required_text(&mut problems, "name", parts.name, NAME_MAX_CHARS);
        let description = optional_text(
            &mut problems,
            "description",
            parts.description,
            DESCRIPTION_MAX_CHARS,
        );
        let device_type = optional_text(
            &mut problems,
            "device_type",
            parts.device_type,
            DEVICE_TYPE_MAX_CHARS,
        );
        let area = optional_text(&mut problems, "area", parts.area, AREA_MAX_CHARS);
        let target = Target::parse(
            &mut problems,
            parts.device_id,
            device_type,
            area,
            device_exists,
        );
        let condition = Condition::parse(
            &mut problems,
            parts.condition.as_deref().unwrap_or_default(),
            parts.thresholds,
        );
        let key = optional_text(&mut problems, "key", parts.key, KEY_MAX_CHARS);
        if key.is_none() && condition != Some(Condition::Offline) {
            problems.push(FieldProblem::new(
                "key",
                "is required: the telemetry key to watch",
            ));
        }
        let for_seconds = parts.for_seconds.unwrap_or(0);
        if for_seconds > HOLD_MAX_SECONDS {
            problems.push(FieldProblem::new(
                "for",
                format!("at most {HOLD_MAX_SECONDS} seconds"),
            ));
        }
        let hysteresis =
            crate::condition::finite(&mut problems, "hysteresis", parts.hysteresis).unwrap_or(0.0);
        if hysteresis < 0.0 {
            problems.push(FieldProblem::new("hysteresis", "must not be negative"));
        }
        let severity = match parts.severity {
            None => Some(Severity::Warning),
            Some(name) => Severity::parse(&name),
        };
        if severity.is_none() {
            problems.push(FieldProblem::new(
                "severity",
                format!("must be one of {}", Severity::NAMES.join(", ")),
            ));
        }
        let actions = parts.actions.unwrap_or_default();
        if actions.len() > ACTIONS_MAX {
            problems.push(FieldProblem::new(
                "actions",
                format!("at most {ACTIONS_MAX}"),
            ));
        }
        let actions: Vec<Option<Action>> = actions
            .into_iter()
            .enumerate()
            .map(|(i, action)| Action::parse(&mut problems, i, action, parts.device_id))
            .collect();
        match (name, target, condition, severity) {
            (Some(name), Some(target), Some(condition), Some(severity)) if problems.is_empty() => {
                Ok(RuleDefinition {
                    rule: Rule {
                        id: None,
                        name,
                        target,
                        key: key.unwrap_or_default(),
                        condition,
                        hold: Duration::from_secs(u64::from(for_seconds)),
                        hysteresis,
                        severity,
                        auto_resolve: parts.auto_resolve.unwrap_or(true),
                        actions: actions.into_iter().flatten().collect(),
                    },
                    description,
                    enabled: parts.enabled.unwrap_or(true),
                })
            }
            _ => Err(crate::Problems(problems)),
        }
    }
}

impl Rule {
    /// The plainest rule: `condition` on `key` of `target`, named like its key, raising at once
    /// (`warning`), resolving by itself, no hysteresis, no actions. Callers change what they
    /// need with struct update syntax.
    pub fn plain(target: Target, key: &str, condition: Condition) -> Self {
        Self {
            id: None,
            name: key.to_string(),
            target,
            key: key.to_string(),
            condition,
            hold: Duration::ZERO,
            hysteresis: 0.0,
            severity: Severity::Warning,
            auto_resolve: true,
            actions: Vec::new(),
        }
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
            .and_then(Severity::parse)
            .unwrap_or(Severity::Warning);
        Some(Self {
            name: format!("{key} above alert_threshold"),
            severity,
            ..Self::plain(Target::Builtin, &key, Condition::Above(threshold))
        })
    }

    /// Does this rule watch this device?
    pub fn applies_to(&self, device_id: Uuid, device_type: &str, area: Option<&str>) -> bool {
        match &self.target {
            Target::Device(id) => *id == device_id,
            Target::Devices {
                device_type: of_type,
                area: in_area,
            } => {
                (of_type.is_some() || in_area.is_some())
                    && of_type.as_deref().is_none_or(|t| t == device_type)
                    && in_area.as_deref().is_none_or(|a| Some(a) == area)
            }
            Target::Builtin => false,
        }
    }

    /// Is the condition met by this value?
    pub fn breached(&self, v: f64) -> bool {
        self.condition.breached(v)
    }

    /// Has a raised condition cleared: is the value back past the threshold by the hysteresis?
    pub fn cleared(&self, v: f64) -> bool {
        self.condition.cleared(v, self.hysteresis)
    }

    /// Does the rule watch the device's status rather than a value?
    pub fn is_offline(&self) -> bool {
        self.condition == Condition::Offline
    }

    /// What the alert says, e.g. `High pressure: pressure 91.5 > 80`.
    pub fn message(&self, value: Option<f64>) -> String {
        self.condition.message(&self.name, &self.key, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(condition: Condition, hysteresis: f64) -> Rule {
        Rule {
            id: Some(Uuid::nil()),
            name: "r".into(),
            hysteresis,
            ..Rule::plain(Target::Device(Uuid::nil()), "pressure", condition)
        }
    }

    #[test]
    fn a_raised_value_clears_only_past_the_hysteresis_band() {
        let above = rule(Condition::Above(80.0), 2.5);
        assert!(above.breached(80.1) && !above.breached(80.0));
        assert!(!above.cleared(79.0), "inside the band: still raised");
        assert!(above.cleared(77.5) && above.cleared(70.0));
        let band = rule(
            Condition::Outside {
                low: 20.0,
                high: 30.0,
            },
            2.0,
        );
        assert!(band.breached(19.0) && band.breached(31.0) && !band.breached(25.0));
        assert!(!band.cleared(21.0) && band.cleared(22.0) && !band.cleared(29.0));
        assert!(rule(Condition::Offline, 0.0).is_offline() && !above.is_offline());
    }

    #[test]
    fn a_rule_targets_its_device_or_its_type_and_area() {
        let device = Uuid::new_v4();
        let mut by_id = rule(Condition::Above(1.0), 0.0);
        by_id.target = Target::Device(device);
        assert!(by_id.applies_to(device, "temperature", None));
        assert!(!by_id.applies_to(Uuid::new_v4(), "temperature", None));
        let mut fleet = rule(Condition::Above(1.0), 0.0);
        fleet.target = Target::Devices {
            device_type: Some("temperature".into()),
            area: Some("Empaque".into()),
        };
        assert!(fleet.applies_to(device, "temperature", Some("Empaque")));
        assert!(!fleet.applies_to(device, "temperature", Some("Other")));
        assert!(!fleet.applies_to(device, "pressure", Some("Empaque")));
        fleet.target = Target::Devices {
            device_type: None,
            area: Some("Empaque".into()),
        };
        assert!(fleet.applies_to(device, "pressure", Some("Empaque")));
        fleet.target = Target::from_columns(None, None, None);
        assert!(!fleet.applies_to(device, "pressure", Some("Empaque")));
    }

    #[test]
    fn the_readme_devices_alert_threshold_is_a_built_in_rule_on_its_type() {
        let config = json!({"sampling_rate": 60, "alert_threshold": 50});
        let builtin = Rule::builtin("temperature", Some(&config)).expect("built-in rule");
        assert_eq!(builtin.key, "temperature");
        assert_eq!(builtin.severity, Severity::Warning);
        assert!(builtin.breached(50.5) && !builtin.breached(50.0));
        assert!(!builtin.applies_to(Uuid::new_v4(), "temperature", None));
        let named =
            json!({"alert_threshold": 3, "alert_key": "vibration", "alert_severity": "critical"});
        let named = Rule::builtin("pump", Some(&named)).expect("built-in rule");
        assert_eq!(
            (named.key.as_str(), named.severity),
            ("vibration", Severity::Critical)
        );
        assert!(Rule::builtin("temperature", Some(&json!({"sampling_rate": 60}))).is_none());
    }

    fn parts() -> RuleParts {
        RuleParts {
            name: Some(" High ".into()),
            device_type: Some("pump".into()),
            key: Some("pressure".into()),
            condition: Some(">".into()),
            thresholds: Thresholds {
                threshold: Some(1.0),
                ..Thresholds::default()
            },
            ..RuleParts::default()
        }
    }

    #[test]
    fn a_definition_is_parsed_with_its_defaults_or_every_problem_at_once() {
        let parsed = RuleDefinition::parse(parts(), None).expect("a rule");
        assert_eq!(parsed.rule.condition, Condition::Above(1.0));
        assert_eq!(parsed.rule.name, "High");
        assert_eq!(parsed.rule.severity, Severity::Warning);
        assert!(parsed.enabled && parsed.rule.auto_resolve);
        assert_eq!(
            parsed.rule.target,
            Target::Devices {
                device_type: Some("pump".into()),
                area: None
            }
        );

        let refused = RuleDefinition::parse(
            RuleParts {
                name: None,
                device_id: Some(Uuid::nil()),
                key: None,
                for_seconds: Some(HOLD_MAX_SECONDS + 1),
                hysteresis: Some(-1.0),
                severity: Some("urgent".into()),
                actions: Some(vec![json!({"type": "sms"})]),
                ..parts()
            },
            Some(false),
        )
        .expect_err("refused");
        let fields: Vec<&str> = refused.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "device_id",
                "device_id",
                "key",
                "for",
                "hysteresis",
                "severity",
                "actions[0].type"
            ]
        );
        // An offline rule needs no key (nor a threshold).
        let offline = RuleParts {
            key: None,
            condition: Some("offline".into()),
            ..parts()
        };
        assert!(RuleDefinition::parse(offline, None).is_ok_and(|d| d.rule.key.is_empty()));
        let unknown = RuleParts {
            key: None,
            condition: Some("above".into()),
            ..parts()
        };
        let refused = RuleDefinition::parse(unknown, None).expect_err("refused");
        let fields: Vec<&str> = refused.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["condition", "key"]);
    }
}
