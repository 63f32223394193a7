//! API keys on the ingest hot path: a short-lived cache of verified keys (so a device's request
//! costs no key lookup in the database) and each key's own request rate limit.
//!
//! Revoking a key through the API evicts it at once; any other change (expiry passing) is checked
//! on every use against the cached row. Entries are refreshed from the database after
//! [`CACHE_TTL`], so a change made by another process applies within that time.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use insa_entities::api_keys;
use uuid::Uuid;

pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// A verified key row, as cached.
#[derive(Clone)]
pub struct CachedKey {
    pub row: api_keys::Model,
    pub fetched: Instant,
    /// When `last_used_at` was last written, to write it at most once a minute.
    pub touched: Option<Instant>,
}

type KeyLimiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// The remaining allowance of a key, sent as `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    /// Requests per hour.
    pub limit: u32,
    pub remaining: u32,
}

/// A refused request: over the key's hourly allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub limit: u32,
    pub retry_after_secs: u64,
}

#[derive(Default)]
pub struct KeyCache {
    by_hash: DashMap<String, CachedKey>,
    limiters: DashMap<Uuid, (u32, KeyLimiter)>,
    clock: DefaultClock,
}

impl KeyCache {
    /// A fresh cached row for this key hash.
    pub fn get(&self, hash: &str) -> Option<CachedKey> {
        self.by_hash
            .get(hash)
            .filter(|entry| entry.fetched.elapsed() < CACHE_TTL)
            .map(|entry| entry.clone())
    }

    /// Caches a row just read from the database and returns it.
    pub fn put(&self, hash: String, row: api_keys::Model) -> CachedKey {
        let entry = CachedKey {
            row,
            fetched: Instant::now(),
            touched: None,
        };
        self.by_hash.insert(hash, entry.clone());
        entry
    }

    /// Records that `last_used_at` was written now.
    pub fn mark_touched(&self, hash: &str) {
        if let Some(mut entry) = self.by_hash.get_mut(hash) {
            entry.touched = Some(Instant::now());
        }
    }

    /// Forgets a key (revoked, or its device deleted).
    pub fn evict(&self, key_id: Uuid) {
        self.by_hash.retain(|_, entry| entry.row.id != key_id);
        self.limiters.remove(&key_id);
    }

    /// Forgets every key of a device (the device was deleted, its keys with it).
    pub fn evict_device(&self, device_id: Uuid) {
        let mut gone = Vec::new();
        self.by_hash.retain(|_, entry| {
            let keep = entry.row.device_id != Some(device_id);
            if !keep {
                gone.push(entry.row.id);
            }
            keep
        });
        for key_id in gone {
            self.limiters.remove(&key_id);
        }
    }

    /// Counts one request against the key's `limit` requests per hour (burst up to `limit`).
    pub fn check_rate(&self, key_id: Uuid, limit: u32) -> Result<RateInfo, OverLimit> {
        let limit = limit.max(1);
        let mut entry = self
            .limiters
            .entry(key_id)
            .or_insert_with(|| (limit, limiter(limit)));
        if entry.0 != limit {
            *entry = (limit, limiter(limit));
        }
        match entry.1.check() {
            Ok(snapshot) => Ok(RateInfo {
                limit,
                remaining: snapshot.remaining_burst_capacity(),
            }),
            Err(not_until) => Err(OverLimit {
                limit,
                retry_after_secs: not_until.wait_time_from(self.clock.now()).as_secs() + 1,
            }),
        }
    }
}

fn limiter(per_hour: u32) -> KeyLimiter {
    let per_hour = NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_hour(per_hour)).with_middleware::<StateInformationMiddleware>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_own_hourly_allowance() {
        let cache = KeyCache::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(cache.check_rate(a, 2).map(|r| r.remaining), Ok(1));
        assert_eq!(cache.check_rate(a, 2).map(|r| r.remaining), Ok(0));
        let over = cache.check_rate(a, 2).expect_err("third in the hour");
        assert_eq!(over.limit, 2);
        assert!(
            (1..=1801).contains(&over.retry_after_secs),
            "{}",
            over.retry_after_secs
        );
        assert!(
            cache.check_rate(b, 2).is_ok(),
            "another key is not affected"
        );
        // A changed limit applies at once.
        assert!(cache.check_rate(a, 100).is_ok());
    }
}
