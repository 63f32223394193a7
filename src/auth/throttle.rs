//! Login throttling: attempts per account and per client address, each with its own quota
//! (governor's GCRA, so a burst up to the quota is allowed and then one attempt per slot).

use std::net::IpAddr;
use std::num::NonZeroU32;

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
    clock: DefaultClock,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl LoginThrottle {
    pub fn new(per_account_per_minute: u32, per_address_per_minute: u32) -> Self {
        Self {
            per_account: RateLimiter::keyed(per_minute(per_account_per_minute)),
            per_address: RateLimiter::keyed(per_minute(per_address_per_minute)),
            clock: DefaultClock::default(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_throttled_after_its_quota_but_others_are_not() {
        let throttle = LoginThrottle::new(3, 100);
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
        let throttle = LoginThrottle::new(100, 2);
        let ip = Some(IpAddr::from([10, 0, 0, 9]));
        throttle.check("a@x.io", ip).expect("1");
        throttle.check("b@x.io", ip).expect("2");
        assert_eq!(throttle.check("c@x.io", ip).expect_err("3").per, "address");
        throttle
            .check("c@x.io", Some(IpAddr::from([10, 0, 0, 10])))
            .expect("other address");
    }
}
