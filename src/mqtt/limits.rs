//! Per-device bounds on the embedded broker: publishes per second (with a burst) and retained
//! messages. Both are counted per *device* (the topic's `devices/{id}/`), whichever connection or
//! key publishes, so a gateway key cannot give one device more than its share.

use std::collections::HashSet;
use std::num::NonZeroU32;

use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

/// What the broker refuses beyond.
pub struct DeviceLimits {
    publishes: DefaultKeyedRateLimiter<Uuid>,
    max_retained: usize,
    /// Topics holding a retained message, per device.
    retained: DashMap<Uuid, HashSet<String>>,
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    Rate,
    Retained,
}

impl OverLimit {
    pub fn reason(self) -> &'static str {
        match self {
            OverLimit::Rate => "publish rate limit of the device exceeded",
            OverLimit::Retained => "retained message limit of the device reached",
        }
    }
}

impl DeviceLimits {
    pub fn new(per_second: u32, burst: u32, max_retained: usize) -> Self {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        Self {
            publishes: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            max_retained,
            retained: DashMap::new(),
        }
    }

    /// Counts one publish of `device` on `topic`; `retain` with an empty payload clears the
    /// topic's retained message (always allowed).
    pub fn admit(
        &self,
        device: Uuid,
        topic: &str,
        retain: bool,
        empty: bool,
    ) -> Result<(), OverLimit> {
        if self.publishes.check_key(&device).is_err() {
            return Err(OverLimit::Rate);
        }
        if retain {
            let mut topics = self.retained.entry(device).or_default();
            if empty {
                topics.remove(topic);
            } else if !topics.contains(topic) {
                if topics.len() >= self.max_retained {
                    return Err(OverLimit::Retained);
                }
                topics.insert(topic.to_string());
            }
        }
        Ok(())
    }

    /// Forgets the state of devices idle long enough to be back at a full burst.
    pub fn shrink(&self) {
        self.publishes.retain_recent();
        self.retained.retain(|_, topics| !topics.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_gets_its_burst_then_is_refused_and_others_are_not_affected() {
        let limits = DeviceLimits::new(1, 3, 10);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            assert_eq!(limits.admit(a, "devices/a/telemetry", false, false), Ok(()));
        }
        assert_eq!(
            limits.admit(a, "devices/a/telemetry", false, false),
            Err(OverLimit::Rate)
        );
        assert_eq!(limits.admit(b, "devices/b/telemetry", false, false), Ok(()));
    }

    #[test]
    fn retained_topics_are_bounded_per_device_and_clearing_one_frees_a_place() {
        let limits = DeviceLimits::new(1000, 1000, 2);
        let a = Uuid::new_v4();
        assert_eq!(limits.admit(a, "t/1", true, false), Ok(()));
        assert_eq!(limits.admit(a, "t/2", true, false), Ok(()));
        assert_eq!(limits.admit(a, "t/2", true, false), Ok(()), "same topic");
        assert_eq!(
            limits.admit(a, "t/3", true, false),
            Err(OverLimit::Retained)
        );
        assert_eq!(limits.admit(a, "t/1", true, true), Ok(()), "cleared");
        assert_eq!(limits.admit(a, "t/3", true, false), Ok(()));
        assert_eq!(limits.admit(a, "t/4", false, false), Ok(()), "not retained");
    }
}
