//! Login throttling: attempts per account and per client address, each with its own quota
//! (governor's GCRA, so a burst up to the quota is allowed and then one attempt per slot); and
//! password-change attempts per account.
//!
//! Refused attempts are audited once per window and quota and subject ([`RefusalLog`]), with
//! their count, so a flood of refused attempts cannot flood the audit log.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use uuid::Uuid;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Entries are dropped once their quota has fully recovered, past this many keys.
const RETAIN_ABOVE: usize = 10_000;

/// Which quota stopped an attempt and when to try again.
#[derive(Debug, Clone, Copy)]
pub struct Throttled {
    pub per: &'static str,
    pub retry_after_secs: u64,
}

pub struct LoginThrottle {
    per_account: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    password_per_account: DefaultKeyedRateLimiter<Uuid>,
    clock: DefaultClock,
    pub refusals: RefusalLog,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl LoginThrottle {
    pub fn new(
        per_account_per_minute: u32,
        per_address_per_minute: u32,
        password_per_account_per_minute: u32,
    ) -> Self {
        Self {
            per_account: RateLimiter::keyed(per_minute(per_account_per_minute)),
            per_address: RateLimiter::keyed(per_minute(per_address_per_minute)),
            password_per_account: RateLimiter::keyed(per_minute(password_per_account_per_minute)),
            clock: DefaultClock::default(),
            refusals: RefusalLog::default(),
        }
    }

    /// Counts one password-change attempt for `user`; refuses it when the quota is spent.
    pub fn check_password_change(&self, user: Uuid) -> Result<(), Throttled> {
        if self.password_per_account.len() > RETAIN_ABOVE {
            self.password_per_account.retain_recent();
        }
        self.password_per_account
            .check_key(&user)
            .map_err(|not_until| Throttled {
                per: "account",
                retry_after_secs: not_until.wait_time_from(self.clock.now()).as_secs() + 1,
            })
    }

    /// Counts one attempt for `email` from `ip`; refuses it when either quota is spent.
    pub fn check(&self, email: &str, ip: Option<IpAddr>) -> Result<(), Throttled> {
        if self.per_account.len() > RETAIN_ABOVE {
            self.per_account.retain_recent();
        }
        if self.per_address.len() > RETAIN_ABOVE {
            self.per_address.retain_recent();
        }
        if let Some(ip) = ip {
            self.per_address
                .check_key(&ip)
                .map_err(|not_until| Throttled {
                    per: "address",
                    retry_after_secs: not_until.wait_time_from(self.clock.now()).as_secs() + 1,
                })?;
        }
        self.per_account
            .check_key(&email.to_lowercase())
            .map_err(|not_until| Throttled {
                per: "account",
                retry_after_secs: not_until.wait_time_from(self.clock.now()).as_secs() + 1,
            })
    }
}

/// Refused attempts per (quota, subject) in the current window.
#[derive(Default)]
pub struct RefusalLog(DashMap<(&'static str, String), (Instant, Arc<AtomicU64>)>);

/// What to do with one refused attempt.
pub enum Tally {
    /// The first of its window: write an audit entry; the counter holds the window's refusals
    /// (read it when the window ends).
    First(Arc<AtomicU64>),
    /// Counted in the window's entry.
    Counted,
}

impl RefusalLog {
    /// Counts a refusal of quota `per` for `subject` in windows of `window`.
    pub fn tally(&self, per: &'static str, subject: &str, window: Duration) -> Tally {
        let now = Instant::now();
        if self.0.len() > RETAIN_ABOVE {
            self.0
                .retain(|_, (started, _)| now.duration_since(*started) < window);
        }
        let mut entry = self
            .0
            .entry((per, subject.to_lowercase()))
            .or_insert_with(|| (now, Arc::new(AtomicU64::new(0))));
        if entry.1.load(Ordering::Relaxed) > 0 && now.duration_since(entry.0) >= window {
            *entry = (now, Arc::new(AtomicU64::new(0)));
        }
        if entry.1.fetch_add(1, Ordering::Relaxed) == 0 {
            Tally::First(entry.1.clone())
        } else {
            Tally::Counted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_throttled_after_its_quota_but_others_are_not() {
        let throttle = LoginThrottle::new(3, 100, 5);
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..3 {
            throttle.check("a@x.io", ip).expect("within quota");
        }
        let hit = throttle
            .check("A@x.io", ip)
            .expect_err("over quota, any case");
        assert_eq!(hit.per, "account");
        assert!((1..=61).contains(&hit.retry_after_secs));
        throttle.check("b@x.io", ip).expect("another account");
    }

    #[test]
    fn an_address_is_throttled_across_accounts() {
        let throttle = LoginThrottle::new(100, 2, 5);
        let ip = Some(IpAddr::from([10, 0, 0, 9]));
        throttle.check("a@x.io", ip).expect("1");
        throttle.check("b@x.io", ip).expect("2");
        assert_eq!(throttle.check("c@x.io", ip).expect_err("3").per, "address");
        throttle
            .check("c@x.io", Some(IpAddr::from([10, 0, 0, 10])))
            .expect("other address");
    }

    #[test]
    fn refusals_are_tallied_once_per_window() {
        let log = RefusalLog::default();
        let window = Duration::from_secs(60);
        let Tally::First(count) = log.tally("account", "a@x.io", window) else {
            panic!("the first refusal opens a window");
        };
        for _ in 0..4 {
            assert!(matches!(
                log.tally("account", "A@x.io", window),
                Tally::Counted
            ));
        }
        assert_eq!(count.load(Ordering::Relaxed), 5);
        assert!(matches!(
            log.tally("address", "a@x.io", window),
            Tally::First(_)
        ));
        assert!(matches!(
            log.tally("account", "a@x.io", Duration::ZERO),
            Tally::First(_)
        ));
    }
}
