//! Alert chatter: a (device, rule) whose condition keeps crossing its threshold would notify on
//! every crossing. [`Chatter`] lets each (device, rule) notify at most `max` alert changes per
//! sliding `window`; the changes beyond are stored without notifying (see
//! [`crate::alerts::keeper`]). Pure logic, no I/O.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Beyond this many (device, rule) pairs remembered, the ones with nothing in their window are
/// forgotten (memory stays bounded by the pairs that notified within one window).
const PRUNE_ABOVE: usize = 10_000;

/// The notification budget of each (device, rule).
#[derive(Debug)]
pub struct Chatter {
    max: usize,
    window: Duration,
    sent: HashMap<(Uuid, Option<Uuid>), VecDeque<Instant>>,
}

impl Chatter {
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            sent: HashMap::new(),
        }
    }

    /// Whether a change of `(device, rule)` at `now` may notify; if so it is counted.
    pub fn allow(&mut self, device: Uuid, rule: Option<Uuid>, now: Instant) -> bool {
        if self.sent.len() > PRUNE_ABOVE {
            let window = self.window;
            self.sent.retain(|_, times| {
                times.retain(|t| now.duration_since(*t) < window);
                !times.is_empty()
            });
        }
        let times = self.sent.entry((device, rule)).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() < self.max {
            times.push_back(now);
            true
        } else {
            false
        }
    }

    /// Gives back the last allowance of `(device, rule)`: the change it was for notified nothing
    /// (the alert was already open, or already resolved).
    pub fn refund(&mut self, device: Uuid, rule: Option<Uuid>) {
        if let Some(times) = self.sent.get_mut(&(device, rule)) {
            times.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_device_and_rule_notifies_at_most_max_per_window() {
        let mut chatter = Chatter::new(5, Duration::from_secs(600));
        let (device, other) = (Uuid::new_v4(), Uuid::new_v4());
        let rule = Some(Uuid::new_v4());
        let start = Instant::now();
        let allowed = (0..200)
            .filter(|i| chatter.allow(device, rule, start + Duration::from_millis(*i)))
            .count();
        assert_eq!(allowed, 5);
        assert!(
            chatter.allow(other, rule, start),
            "another device has its own budget"
        );
        assert!(chatter.allow(device, None, start), "so has another rule");
        assert!(
            chatter.allow(device, rule, start + Duration::from_secs(600)),
            "the window slides"
        );
    }

    #[test]
    fn a_refunded_allowance_can_be_used_again() {
        let mut chatter = Chatter::new(1, Duration::from_secs(60));
        let device = Uuid::new_v4();
        let now = Instant::now();
        assert!(chatter.allow(device, None, now));
        chatter.refund(device, None);
        assert!(chatter.allow(device, None, now));
        assert!(!chatter.allow(device, None, now));
    }
}
