//! A rule's condition, carrying its thresholds: when a value breaches it, when (with hysteresis)
//! a raised alert has cleared, what the alert says, and how it is written by clients and stored
//! (`condition`, `threshold`, `threshold_high`). A new condition is one more variant here and
//! its arms in these functions.

use crate::FieldProblem;

/// What a rule watches for. Every threshold is a finite number (the parsers refuse the rest);
/// bands hold `low < high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// `>`: alert while `value > threshold`.
    Above(f64),
    /// `>=`
    AtLeast(f64),
    /// `<`
    Below(f64),
    /// `<=`
    AtMost(f64),
    /// `==`
    Equal(f64),
    /// `!=`
    NotEqual(f64),
    /// Alert while `low <= value <= high`.
    Between { low: f64, high: f64 },
    /// Alert while `value < low` or `value > high`.
    Outside { low: f64, high: f64 },
    /// Alert while the device is offline (no key, no threshold).
    Offline,
}

/// How a client writes a condition's numbers: one `threshold`, or a band's `low` and `high`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// What a condition is without its numbers: how it takes them.
enum Form {
    Threshold(fn(f64) -> Condition),
    Band(fn(f64, f64) -> Condition),
    Nothing,
}

impl Condition {
    /// Every condition, as written in a rule.
    pub const NAMES: [&str; 9] = [
        ">", ">=", "<", "<=", "==", "!=", "between", "outside", "offline",
    ];

    /// The name clients write and the database stores.
    pub fn name(self) -> &'static str {
        match self {
            Self::Above(_) => ">",
            Self::AtLeast(_) => ">=",
            Self::Below(_) => "<",
            Self::AtMost(_) => "<=",
            Self::Equal(_) => "==",
            Self::NotEqual(_) => "!=",
            Self::Between { .. } => "between",
            Self::Outside { .. } => "outside",
            Self::Offline => "offline",
        }
    }

    /// The condition named `name`, waiting for its numbers.
    fn form(name: &str) -> Option<Form> {
        Some(match name {
            ">" => Form::Threshold(Self::Above),
            ">=" => Form::Threshold(Self::AtLeast),
            "<" => Form::Threshold(Self::Below),
            "<=" => Form::Threshold(Self::AtMost),
            "==" => Form::Threshold(Self::Equal),
            "!=" => Form::Threshold(Self::NotEqual),
            "between" => Form::Band(|low, high| Self::Between { low, high }),
            "outside" => Form::Band(|low, high| Self::Outside { low, high }),
            "offline" => Form::Nothing,
            _ => return None,
        })
    }

    /// Parses a condition as a client writes it, pushing every problem found: an unknown name,
    /// a number that is not finite, a band without both ends (or `low >= high`), a threshold
    /// missing or given where a band is expected (and the reverse). `offline` ignores numbers.
    pub fn parse(
        problems: &mut Vec<FieldProblem>,
        name: &str,
        given: Thresholds,
    ) -> Option<Condition> {
        let form = Self::form(name);
        if form.is_none() {
            problems.push(FieldProblem::new(
                "condition",
                format!("must be one of {}", Self::NAMES.join(", ")),
            ));
        }
        let threshold = finite(problems, "threshold", given.threshold);
        let low = finite(problems, "low", given.low);
        let high = finite(problems, "high", given.high);
        match form {
            Some(Form::Band(band)) => {
                let condition = match (given.low, given.high) {
                    (Some(_), Some(_)) => match (low, high) {
                        (Some(low), Some(high)) if low < high => Some(band(low, high)),
                        (Some(_), Some(_)) => {
                            problems.push(FieldProblem::new("high", "must be above low"));
                            None
                        }
                        // Not finite: already said.
                        _ => None,
                    },
                    _ => {
                        problems.push(FieldProblem::new(
                            "low",
                            format!("`{name}` needs both low and high"),
                        ));
                        None
                    }
                };
                if given.threshold.is_some() {
                    problems.push(FieldProblem::new(
                        "threshold",
                        format!("`{name}` uses low and high"),
                    ));
                    return None;
                }
                condition
            }
            Some(Form::Nothing) => Some(Self::Offline),
            Some(Form::Threshold(_)) | None => {
                let condition = match form {
                    Some(Form::Threshold(compare)) => {
                        if given.threshold.is_none() {
                            problems.push(FieldProblem::new(
                                "threshold",
                                format!("is required for `{name}`"),
                            ));
                        }
                        threshold.map(compare)
                    }
                    _ => None,
                };
                if given.low.is_some() || given.high.is_some() {
                    problems.push(FieldProblem::new(
                        "low",
                        "low and high are for between/outside",
                    ));
                    return None;
                }
                condition
            }
        }
    }

    /// The condition stored in a rule's columns; `None` when they do not make one (an unknown
    /// name, a missing or non-finite number).
    pub fn from_columns(name: &str, threshold: Option<f64>, high: Option<f64>) -> Option<Self> {
        let number = |n: Option<f64>| n.filter(|n| n.is_finite());
        match Self::form(name)? {
            Form::Threshold(compare) => number(threshold).map(compare),
            Form::Band(band) => Some(band(number(threshold)?, number(high)?)),
            Form::Nothing => Some(Self::Offline),
        }
    }

    /// The rule's columns: (`condition`, `threshold`, `threshold_high`); a band stores `low` as
    /// its threshold.
    pub fn columns(self) -> (&'static str, Option<f64>, Option<f64>) {
        (self.name(), self.threshold(), self.high())
    }

    /// The numbers as the API shows them: `threshold` for a comparison, `low` and `high` for a
    /// band, none for `offline`.
    pub fn thresholds(self) -> Thresholds {
        match self {
            Self::Between { low, high } | Self::Outside { low, high } => Thresholds {
                threshold: None,
                low: Some(low),
                high: Some(high),
            },
            other => Thresholds {
                threshold: other.threshold(),
                low: None,
                high: None,
            },
        }
    }

    /// The threshold stored with an alert: the comparison's, or a band's `low`.
    pub fn threshold(self) -> Option<f64> {
        match self {
            Self::Above(t)
            | Self::AtLeast(t)
            | Self::Below(t)
            | Self::AtMost(t)
            | Self::Equal(t)
            | Self::NotEqual(t) => Some(t),
            Self::Between { low, .. } | Self::Outside { low, .. } => Some(low),
            Self::Offline => None,
        }
    }

    /// A band's upper end.
    pub fn high(self) -> Option<f64> {
        match self {
            Self::Between { high, .. } | Self::Outside { high, .. } => Some(high),
            _ => None,
        }
    }

    /// Is the condition met by this value? (`offline` never is by a value.)
    pub fn breached(self, v: f64) -> bool {
        match self {
            Self::Above(t) => v > t,
            Self::AtLeast(t) => v >= t,
            Self::Below(t) => v < t,
            Self::AtMost(t) => v <= t,
            Self::Equal(t) => v == t,
            Self::NotEqual(t) => v != t,
            Self::Between { low, high } => low <= v && v <= high,
            Self::Outside { low, high } => v < low || v > high,
            Self::Offline => false,
        }
    }

    /// Has a raised condition cleared: is the value back past the threshold by `hysteresis`?
    pub fn cleared(self, v: f64, hysteresis: f64) -> bool {
        let h = hysteresis;
        match self {
            Self::Above(_) | Self::AtLeast(_) => !self.breached(v + h),
            Self::Below(_) | Self::AtMost(_) => !self.breached(v - h),
            Self::Equal(t) => (v - t).abs() > h,
            Self::NotEqual(t) => v == t,
            Self::Between { low, high } => v < low - h || v > high + h,
            Self::Outside { low, high } => low + h <= v && v <= high - h,
            Self::Offline => true,
        }
    }

    /// What an alert of rule `rule` on `key` says, e.g. `High pressure: pressure 91.5 > 80`.
    pub fn message(self, rule: &str, key: &str, value: Option<f64>) -> String {
        let value = value.map_or_else(String::new, |v| format!(" {v}"));
        let name = self.name();
        match self {
            Self::Between { low, high } | Self::Outside { low, high } => {
                format!("{rule}: {key}{value} {name} {low}..{high}")
            }
            Self::Offline => format!("{rule}: device offline"),
            Self::Above(t)
            | Self::AtLeast(t)
            | Self::Below(t)
            | Self::AtMost(t)
            | Self::Equal(t)
            | Self::NotEqual(t) => format!("{rule}: {key}{value} {name} {t}"),
        }
    }
}

/// `value`, pushing a problem when it is not a finite number.
pub(crate) fn finite(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: Option<f64>,
) -> Option<f64> {
    let value = value?;
    if !value.is_finite() {
        problems.push(FieldProblem::new(field, "must be a finite number"));
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(name: &str, given: Thresholds) -> (Option<Condition>, Vec<String>) {
        let mut problems = Vec::new();
        let condition = Condition::parse(&mut problems, name, given);
        (condition, problems.into_iter().map(|p| p.field).collect())
    }

    fn threshold(t: f64) -> Thresholds {
        Thresholds {
            threshold: Some(t),
            ..Thresholds::default()
        }
    }

    fn band(low: f64, high: f64) -> Thresholds {
        Thresholds {
            threshold: None,
            low: Some(low),
            high: Some(high),
        }
    }

    /// (condition, value that breaches, values inside the hysteresis (still raised), value
    /// cleared) with hysteresis 1.
    fn table() -> Vec<(Condition, f64, Vec<f64>, f64)> {
        vec![
            (Condition::Above(80.0), 80.5, vec![80.0, 79.5], 78.5),
            (Condition::AtLeast(80.0), 80.0, vec![79.5, 79.0], 78.9),
            (Condition::Below(10.0), 9.5, vec![10.0, 10.5], 11.5),
            (Condition::AtMost(10.0), 10.0, vec![10.5, 11.0], 11.1),
            (Condition::Equal(5.0), 5.0, vec![5.5, 4.0], 6.5),
            (Condition::NotEqual(5.0), 6.0, vec![7.0, 4.0], 5.0),
            (
                Condition::Between {
                    low: 20.0,
                    high: 30.0,
                },
                25.0,
                vec![19.5, 31.0],
                18.5,
            ),
            (
                Condition::Outside {
                    low: 20.0,
                    high: 30.0,
                },
                19.0,
                vec![20.5, 29.5],
                25.0,
            ),
        ]
    }

    #[test]
    fn every_condition_breaches_and_clears_only_past_its_hysteresis() {
        for (condition, breach, held, clear) in table() {
            assert!(condition.breached(breach), "{condition:?} by {breach}");
            assert!(!condition.cleared(breach, 1.0), "{condition:?} at {breach}");
            for value in held {
                assert!(
                    !condition.cleared(value, 1.0),
                    "{condition:?} held at {value}"
                );
            }
            assert!(
                condition.cleared(clear, 1.0),
                "{condition:?} cleared at {clear}"
            );
            assert!(
                !condition.breached(clear),
                "{condition:?} not breached by {clear}"
            );
        }
        assert!(!Condition::Offline.breached(0.0) && Condition::Offline.cleared(0.0, 1.0));
        // Without hysteresis a value clears as soon as it no longer breaches.
        let at_least = Condition::AtLeast(5.0);
        assert!(at_least.cleared(4.9, 0.0) && !at_least.cleared(5.0, 0.0));
    }

    #[test]
    fn the_stored_columns_give_the_same_condition_back() {
        let all = table()
            .into_iter()
            .map(|(condition, ..)| condition)
            .chain([Condition::Offline]);
        for condition in all {
            let (name, threshold, high) = condition.columns();
            assert_eq!(
                Condition::from_columns(name, threshold, high),
                Some(condition)
            );
            assert!(Condition::NAMES.contains(&name));
            // What the API shows parses back to it too.
            assert_eq!(
                parsed(name, condition.thresholds()),
                (Some(condition), vec![])
            );
        }
        assert_eq!(Condition::from_columns(">", None, None), None);
        assert_eq!(Condition::from_columns("between", Some(1.0), None), None);
        assert_eq!(Condition::from_columns(">", Some(f64::NAN), None), None);
        assert_eq!(Condition::from_columns("above", Some(1.0), None), None);
    }

    #[test]
    fn no_number_that_is_not_finite_gets_in() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                parsed(">", threshold(bad)),
                (None, vec!["threshold".into()])
            );
            let (condition, fields) = parsed("between", band(bad, 1.0));
            assert_eq!(condition, None);
            assert!(fields.contains(&"low".to_string()), "{fields:?}");
        }
        assert_eq!(Condition::Offline.threshold(), None);
        assert_eq!(Condition::Offline.columns(), ("offline", None, None));
    }

    #[test]
    fn parsing_names_each_field_at_fault() {
        assert_eq!(
            parsed("above", threshold(1.0)),
            (None, vec!["condition".into()])
        );
        assert_eq!(
            parsed(">", Thresholds::default()),
            (None, vec!["threshold".into()])
        );
        assert_eq!(
            parsed("between", band(10.0, 5.0)),
            (None, vec!["high".into()])
        );
        let low_only = Thresholds {
            low: Some(1.0),
            ..Thresholds::default()
        };
        assert_eq!(parsed("outside", low_only), (None, vec!["low".into()]));
        assert_eq!(
            parsed(
                "between",
                Thresholds {
                    threshold: Some(1.0),
                    ..band(1.0, 2.0)
                }
            ),
            (None, vec!["threshold".into()])
        );
        assert_eq!(
            parsed("<", band(1.0, 2.0)),
            (None, vec!["threshold".into(), "low".into()])
        );
        assert_eq!(
            parsed("offline", threshold(3.0)),
            (Some(Condition::Offline), vec![])
        );
    }

    #[test]
    fn messages_name_the_rule_key_value_and_thresholds() {
        assert_eq!(
            Condition::Above(80.0).message("High pressure", "pressure", Some(91.5)),
            "High pressure: pressure 91.5 > 80"
        );
        assert_eq!(
            Condition::Outside {
                low: 5.0,
                high: 90.5
            }
            .message("Cold", "temperature", None),
            "Cold: temperature outside 5..90.5"
        );
        assert_eq!(
            Condition::Offline.message("Gateway lost", "", None),
            "Gateway lost: device offline"
        );
    }
}
