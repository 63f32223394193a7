//! Where one rule stands for one device, as a pure state machine: each input (a new value, the
//! device's status, the end of a `for` hold, the rule going away) moves a [`Watch`] along and
//! answers the one [`Effect`] the device actor must carry out. No timers, clock, queue or
//! database here: time is a value the caller passes in, so the machine is tested without a clock.

use std::ops::Add;
use std::time::Duration;

use insa_entities::DeviceStatus;

use insa_domain::Rule;

/// Where a rule stands for a device. `T` is the caller's clock (the device actor's timer clock;
/// plain `Duration`s in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Watch<T> {
    /// Not known since the actor started (or since an alert change could not be delivered): the
    /// next value decides, raising or resolving (both idempotent in the database).
    #[default]
    Unknown,
    /// Not breached, nothing raised.
    Clear,
    /// Breached, waiting for `for` to pass: raises when a hold ends at or after `until`.
    Pending { until: T },
    /// An alert was raised; it stays until the value clears past the hysteresis.
    Raised,
}

/// What the device actor must do after an input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Nothing to carry out.
    Nothing,
    /// Raise the rule's alert with this value (`None`: an offline rule, or no number to show).
    Raise(Option<f64>),
    /// Resolve the rule's open alert.
    Resolve,
    /// Start a timer of this length and call [`Watch::on_hold_elapsed`] when it ends.
    StartHold(Duration),
}

impl<T: Copy + Ord + Add<Duration, Output = T>> Watch<T> {
    /// A new newest value of the rule's key, read at `now` while the device had `status`.
    /// Raises at once or starts the `for` hold on a breach, cancels a pending hold on a value
    /// that no longer breaches, resolves a raised alert past the hysteresis (if `auto_resolve`;
    /// without it the alert stays open for a person and the watch starts over as clear).
    /// Devices in maintenance raise nothing; offline rules follow the status, not values.
    pub fn on_value(&mut self, rule: &Rule, value: f64, status: DeviceStatus, now: T) -> Effect {
        if status == DeviceStatus::Maintenance || rule.is_offline() {
            return Effect::Nothing;
        }
        let breached = rule.breached(value);
        let (next, effect) = match *self {
            Self::Unknown | Self::Clear if breached => {
                if rule.hold.is_zero() {
                    (Self::Raised, Effect::Raise(Some(value)))
                } else {
                    let until = now + rule.hold;
                    (Self::Pending { until }, Effect::StartHold(rule.hold))
                }
            }
            // Whatever was open before the actor started has cleared (if auto).
            Self::Unknown if rule.auto_resolve && rule.cleared(value) => {
                (Self::Clear, Effect::Resolve)
            }
            Self::Unknown | Self::Clear => (Self::Clear, Effect::Nothing),
            Self::Pending { .. } if !breached => (Self::Clear, Effect::Nothing),
            Self::Pending { until } => (Self::Pending { until }, Effect::Nothing),
            Self::Raised if rule.cleared(value) => {
                let effect = if rule.auto_resolve {
                    Effect::Resolve
                } else {
                    Effect::Nothing
                };
                (Self::Clear, effect)
            }
            Self::Raised => (Self::Raised, Effect::Nothing),
        };
        *self = next;
        effect
    }

    /// A hold timer ended at `now` while the device had `status`; `latest` is the newest value of
    /// the rule's key (what the alert shows). Raises only if the watch is still pending and its
    /// hold is over: a timer left over from a hold that was cancelled, or from an earlier one,
    /// does nothing. A device in maintenance raises nothing, so a hold that ends while it is in
    /// maintenance raises nothing either: the watch starts over and the next value decides.
    pub fn on_hold_elapsed(&mut self, latest: Option<f64>, status: DeviceStatus, now: T) -> Effect {
        match *self {
            Self::Pending { until } if now >= until && status == DeviceStatus::Maintenance => {
                *self = Self::Unknown;
                Effect::Nothing
            }
            Self::Pending { until } if now >= until => {
                *self = Self::Raised;
                Effect::Raise(latest)
            }
            _ => Effect::Nothing,
        }
    }

    /// The device's status changed to `status`: offline rules raise when it goes offline and resolve (if
    /// `auto_resolve`) when it is back (online or in error). Going into maintenance moves
    /// nothing; other rules follow values, not the status.
    pub fn on_status(&mut self, rule: &Rule, status: DeviceStatus) -> Effect {
        if !rule.is_offline() {
            return Effect::Nothing;
        }
        let (next, effect) = match status {
            DeviceStatus::Maintenance => return Effect::Nothing,
            DeviceStatus::Offline => (Self::Raised, Effect::Raise(None)),
            DeviceStatus::Online | DeviceStatus::Error if rule.auto_resolve => {
                (Self::Clear, Effect::Resolve)
            }
            DeviceStatus::Online | DeviceStatus::Error => (Self::Clear, Effect::Nothing),
        };
        *self = next;
        effect
    }

    /// The rule no longer applies to the device (deleted, disabled, retargeted): whatever it
    /// left open is resolved, whatever it stood at.
    pub fn on_rule_removed(self) -> Effect {
        Effect::Resolve
    }

    /// The alert change the last input asked for could not be delivered (the alert queue was
    /// full): the rule forgets where it stood and its next value decides again.
    pub fn undelivered(&mut self) {
        *self = Self::Unknown;
    }

    /// Is a `for` hold running?
    pub fn is_pending(&self) -> bool {
        matches!(self, Self::Pending { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use insa_domain::{Condition, Target};
    use uuid::Uuid;
    use DeviceStatus::{Error, Maintenance, Offline, Online};
    use Effect::{Nothing, Raise, Resolve, StartHold};

    type W = Watch<Duration>;

    fn at(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// A rule on `pressure` (`high` only matters for bands), raising at once, auto-resolving.
    fn rule(condition: Condition, hysteresis: f64) -> Rule {
        Rule {
            id: Some(Uuid::nil()),
            hysteresis,
            ..Rule::plain(Target::Device(Uuid::nil()), "pressure", condition)
        }
    }

    fn above(threshold: f64) -> Rule {
        rule(Condition::Above(threshold), 0.0)
    }

    fn held(mut rule: Rule, seconds: u64) -> Rule {
        rule.hold = at(seconds);
        rule
    }

    fn manual(mut rule: Rule) -> Rule {
        rule.auto_resolve = false;
        rule
    }

    fn offline() -> Rule {
        rule(Condition::Offline, 0.0)
    }

    /// One input of a row.
    #[derive(Debug)]
    enum In {
        /// A value at a second, the device online.
        Value(f64, u64),
        /// A value at a second while the device has a status.
        ValueWhile(f64, DeviceStatus, u64),
        /// A hold timer ends at a second, with the newest value of the key.
        Elapsed(Option<f64>, u64),
        /// A hold timer ending while the device has this status.
        ElapsedWhile(Option<f64>, DeviceStatus, u64),
        Status(DeviceStatus),
        /// The alert change just asked for was not delivered (queue full).
        Undelivered,
        /// The rule is edited (same id): the next inputs see this one.
        Edit(Rule),
        /// The rule no longer applies.
        Removed,
    }
    use In::*;

    struct Row {
        name: &'static str,
        rule: Rule,
        start: W,
        steps: Vec<(In, Effect)>,
        /// `None` once the rule is removed.
        end: Option<W>,
    }

    fn row(name: &'static str, rule: Rule, start: W, steps: Vec<(In, Effect)>, end: W) -> Row {
        Row {
            name,
            rule,
            start,
            steps,
            end: Some(end),
        }
    }

    fn run(rows: Vec<Row>) {
        for Row {
            name,
            mut rule,
            start,
            steps,
            end,
        } in rows
        {
            let mut watch = Some(start);
            for (i, (input, expected)) in steps.into_iter().enumerate() {
                let w = watch.as_mut().expect("no input after the rule is removed");
                let effect = match input {
                    Value(v, t) => w.on_value(&rule, v, Online, at(t)),
                    ValueWhile(v, status, t) => w.on_value(&rule, v, status, at(t)),
                    Elapsed(latest, t) => w.on_hold_elapsed(latest, Online, at(t)),
                    ElapsedWhile(latest, status, t) => w.on_hold_elapsed(latest, status, at(t)),
                    Status(status) => w.on_status(&rule, status),
                    Undelivered => {
                        w.undelivered();
                        Nothing
                    }
                    Edit(edited) => {
                        rule = edited;
                        Nothing
                    }
                    Removed => watch.take().expect("a watch").on_rule_removed(),
                };
                assert_eq!(effect, expected, "{name}: step {i}");
            }
            assert_eq!(watch, end, "{name}: final state");
        }
    }

    #[test]
    fn a_breach_raises_at_once_or_after_its_hold() {
        run(vec![
            row(
                "no hold: a breach raises with its value, repeats change nothing",
                above(80.0),
                W::Clear,
                vec![
                    (Value(80.0, 0), Nothing),
                    (Value(85.0, 1), Raise(Some(85.0))),
                    (Value(90.0, 2), Nothing),
                ],
                W::Raised,
            ),
            row(
                "for: a breach starts the hold",
                held(above(80.0), 10),
                W::Clear,
                vec![(Value(85.0, 3), StartHold(at(10)))],
                W::Pending { until: at(13) },
            ),
            row(
                "for: held to the end raises with the newest value",
                held(above(80.0), 10),
                W::Clear,
                vec![
                    (Value(85.0, 0), StartHold(at(10))),
                    (Value(90.0, 4), Nothing),
                    (Elapsed(Some(90.0), 10), Raise(Some(90.0))),
                    (Value(95.0, 11), Nothing),
                ],
                W::Raised,
            ),
            row(
                "for: breaches during the hold do not restart it",
                held(above(80.0), 10),
                W::Pending { until: at(10) },
                vec![(Value(99.0, 9), Nothing)],
                W::Pending { until: at(10) },
            ),
            row(
                "for: a value that stops breaching cancels the hold; its timer does nothing",
                held(above(80.0), 10),
                W::Clear,
                vec![
                    (Value(85.0, 0), StartHold(at(10))),
                    (Value(80.0, 5), Nothing),
                    (Elapsed(Some(80.0), 10), Nothing),
                ],
                W::Clear,
            ),
            row(
                "for: the timer of an earlier hold does not end a later one",
                held(above(80.0), 10),
                W::Clear,
                vec![
                    (Value(85.0, 0), StartHold(at(10))),
                    (Value(70.0, 2), Nothing),
                    (Value(85.0, 3), StartHold(at(10))),
                    (Elapsed(Some(85.0), 10), Nothing),
                    (Elapsed(Some(85.0), 13), Raise(Some(85.0))),
                ],
                W::Raised,
            ),
            row(
                "for: a timer ending early or after the raise does nothing",
                held(above(80.0), 10),
                W::Pending { until: at(10) },
                vec![
                    (Elapsed(Some(85.0), 9), Nothing),
                    (Elapsed(None, 10), Raise(None)),
                    (Elapsed(Some(85.0), 20), Nothing),
                ],
                W::Raised,
            ),
            row(
                "for: unknown at start also holds before raising",
                held(above(80.0), 10),
                W::Unknown,
                vec![(Value(85.0, 0), StartHold(at(10)))],
                W::Pending { until: at(10) },
            ),
        ]);
    }

    #[test]
    fn a_raised_alert_resolves_only_past_the_hysteresis() {
        let family = |name, rule: Rule, inside: f64, past: f64| {
            row(
                name,
                rule,
                W::Raised,
                vec![(Value(inside, 1), Nothing), (Value(past, 2), Resolve)],
                W::Clear,
            )
        };
        run(vec![
            family("above", rule(Condition::Above(80.0), 2.5), 79.0, 77.5),
            family("at least", rule(Condition::AtLeast(80.0), 2.0), 79.0, 77.9),
            family("below", rule(Condition::Below(10.0), 1.0), 10.5, 11.0),
            family("at most", rule(Condition::AtMost(10.0), 1.0), 10.5, 11.1),
            family("equal", rule(Condition::Equal(5.0), 0.5), 5.5, 5.6),
            family("not equal", rule(Condition::NotEqual(5.0), 1.0), 5.5, 5.0),
            family(
                "between",
                rule(
                    Condition::Between {
                        low: 20.0,
                        high: 30.0,
                    },
                    1.0,
                ),
                19.5,
                18.5,
            ),
            family(
                "between, above the band",
                rule(
                    Condition::Between {
                        low: 20.0,
                        high: 30.0,
                    },
                    1.0,
                ),
                31.0,
                31.5,
            ),
            family(
                "outside",
                rule(
                    Condition::Outside {
                        low: 20.0,
                        high: 30.0,
                    },
                    2.0,
                ),
                21.0,
                22.0,
            ),
            family(
                "outside, from above",
                rule(
                    Condition::Outside {
                        low: 20.0,
                        high: 30.0,
                    },
                    2.0,
                ),
                29.0,
                28.0,
            ),
            row(
                "without auto_resolve the alert stays open; the watch starts over",
                manual(rule(Condition::Above(80.0), 2.5)),
                W::Raised,
                vec![
                    (Value(79.0, 1), Nothing),
                    (Value(70.0, 2), Nothing),
                    (Value(70.0, 3), Nothing),
                    (Value(85.0, 4), Raise(Some(85.0))),
                ],
                W::Raised,
            ),
            row(
                "a breach after resolving raises again",
                above(80.0),
                W::Raised,
                vec![
                    (Value(70.0, 1), Resolve),
                    (Value(81.0, 2), Raise(Some(81.0))),
                ],
                W::Raised,
            ),
        ]);
    }

    #[test]
    fn offline_rules_follow_the_device_status() {
        run(vec![
            row(
                "offline raises, online resolves",
                offline(),
                W::Unknown,
                vec![
                    (Status(Offline), Raise(None)),
                    (Status(Offline), Raise(None)),
                    (Status(Online), Resolve),
                ],
                W::Clear,
            ),
            row(
                "an error status resolves too",
                offline(),
                W::Raised,
                vec![(Status(Error), Resolve)],
                W::Clear,
            ),
            row(
                "without auto_resolve coming back leaves the alert open",
                manual(offline()),
                W::Raised,
                vec![(Status(Online), Nothing)],
                W::Clear,
            ),
            row(
                "values do not move an offline rule",
                offline(),
                W::Raised,
                vec![(Value(1e9, 1), Nothing), (Value(-1e9, 2), Nothing)],
                W::Raised,
            ),
            row(
                "the status does not move a value rule",
                above(80.0),
                W::Raised,
                vec![(Status(Offline), Nothing), (Status(Online), Nothing)],
                W::Raised,
            ),
        ]);
    }

    #[test]
    fn maintenance_raises_and_moves_nothing() {
        run(vec![
            row(
                "a breach in maintenance raises nothing",
                above(80.0),
                W::Clear,
                vec![
                    (ValueWhile(99.0, Maintenance, 1), Nothing),
                    (Value(99.0, 2), Raise(Some(99.0))),
                ],
                W::Raised,
            ),
            row(
                "a clearing value in maintenance resolves nothing",
                above(80.0),
                W::Raised,
                vec![(ValueWhile(10.0, Maintenance, 1), Nothing)],
                W::Raised,
            ),
            row(
                "a hold that ends in maintenance raises nothing; the next value decides",
                held(above(80.0), 10),
                W::Pending { until: at(10) },
                vec![
                    (ValueWhile(10.0, Maintenance, 5), Nothing),
                    (ElapsedWhile(Some(10.0), Maintenance, 10), Nothing),
                    (Value(99.0, 11), StartHold(Duration::from_secs(10))),
                ],
                W::Pending { until: at(21) },
            ),
            row(
                "going into maintenance does not move an offline rule",
                offline(),
                W::Raised,
                vec![(Status(Maintenance), Nothing)],
                W::Raised,
            ),
            row(
                "nor does a clear one raise",
                offline(),
                W::Clear,
                vec![(Status(Maintenance), Nothing)],
                W::Clear,
            ),
            row(
                "a device in error is evaluated",
                above(80.0),
                W::Clear,
                vec![(ValueWhile(99.0, Error, 1), Raise(Some(99.0)))],
                W::Raised,
            ),
        ]);
    }

    #[test]
    fn an_edited_rule_keeps_where_it_stood_and_judges_the_next_value() {
        run(vec![
            row(
                "raised, threshold moved above the value: the next value resolves",
                above(80.0),
                W::Raised,
                vec![(Edit(above(90.0)), Nothing), (Value(85.0, 1), Resolve)],
                W::Clear,
            ),
            row(
                "raised, threshold lowered: still raised, nothing again",
                above(80.0),
                W::Raised,
                vec![(Edit(above(70.0)), Nothing), (Value(75.0, 1), Nothing)],
                W::Raised,
            ),
            row(
                "clear, threshold lowered under the value: the next value raises",
                above(80.0),
                W::Clear,
                vec![
                    (Value(75.0, 1), Nothing),
                    (Edit(above(70.0)), Nothing),
                    (Value(75.0, 2), Raise(Some(75.0))),
                ],
                W::Raised,
            ),
            row(
                "pending: the hold begun keeps its end even if `for` changes",
                held(above(80.0), 10),
                W::Clear,
                vec![
                    (Value(85.0, 0), StartHold(at(10))),
                    (Edit(held(above(80.0), 60)), Nothing),
                    (Value(86.0, 5), Nothing),
                    (Elapsed(Some(86.0), 10), Raise(Some(86.0))),
                ],
                W::Raised,
            ),
            row(
                "pending, threshold raised over the value: the next value cancels the hold",
                held(above(80.0), 10),
                W::Pending { until: at(10) },
                vec![
                    (Edit(held(above(90.0), 10)), Nothing),
                    (Value(85.0, 5), Nothing),
                    (Elapsed(Some(85.0), 10), Nothing),
                ],
                W::Clear,
            ),
            row(
                "raised, auto_resolve turned off: clearing leaves it open",
                above(80.0),
                W::Raised,
                vec![
                    (Edit(manual(above(80.0))), Nothing),
                    (Value(10.0, 1), Nothing),
                ],
                W::Clear,
            ),
        ]);
    }

    #[test]
    fn a_rule_that_no_longer_applies_resolves_whatever_it_stood_at() {
        let rows = [
            W::Unknown,
            W::Clear,
            W::Pending { until: at(10) },
            W::Raised,
        ]
        .map(|start| Row {
            name: "removed",
            rule: held(above(80.0), 10),
            start,
            steps: vec![(Removed, Resolve)],
            end: None,
        });
        run(rows.into());
    }

    #[test]
    fn an_undelivered_change_makes_the_next_value_decide_again() {
        run(vec![
            row(
                "a raise not delivered: the next breach raises again",
                above(80.0),
                W::Clear,
                vec![
                    (Value(85.0, 1), Raise(Some(85.0))),
                    (Undelivered, Nothing),
                    (Value(86.0, 2), Raise(Some(86.0))),
                ],
                W::Raised,
            ),
            row(
                "a resolve not delivered: the next clear value resolves again",
                above(80.0),
                W::Raised,
                vec![
                    (Value(70.0, 1), Resolve),
                    (Undelivered, Nothing),
                    (Value(71.0, 2), Resolve),
                    (Value(72.0, 3), Nothing),
                ],
                W::Clear,
            ),
            row(
                "a held raise not delivered: the next breach holds again",
                held(above(80.0), 10),
                W::Pending { until: at(10) },
                vec![
                    (Elapsed(Some(85.0), 10), Raise(Some(85.0))),
                    (Undelivered, Nothing),
                    (Value(85.0, 11), StartHold(at(10))),
                ],
                W::Pending { until: at(21) },
            ),
            row(
                "an offline raise not delivered is forgotten",
                offline(),
                W::Clear,
                vec![(Status(Offline), Raise(None)), (Undelivered, Nothing)],
                W::Unknown,
            ),
        ]);
    }

    #[test]
    fn an_unknown_rule_lets_the_first_value_decide() {
        run(vec![
            row(
                "a breach raises (the database keeps the open alert)",
                above(80.0),
                W::Unknown,
                vec![(Value(85.0, 0), Raise(Some(85.0)))],
                W::Raised,
            ),
            row(
                "a cleared value resolves what was open before",
                above(80.0),
                W::Unknown,
                vec![(Value(70.0, 0), Resolve), (Value(70.0, 1), Nothing)],
                W::Clear,
            ),
            row(
                "inside the hysteresis band: clear, nothing resolved",
                rule(Condition::Above(80.0), 5.0),
                W::Unknown,
                vec![(Value(78.0, 0), Nothing)],
                W::Clear,
            ),
            row(
                "without auto_resolve a cleared value resolves nothing",
                manual(above(80.0)),
                W::Unknown,
                vec![(Value(70.0, 0), Nothing)],
                W::Clear,
            ),
            row(
                "in maintenance it stays unknown",
                above(80.0),
                W::Unknown,
                vec![(ValueWhile(70.0, Maintenance, 0), Nothing)],
                W::Unknown,
            ),
        ]);
    }
}
