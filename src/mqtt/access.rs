//! Who is connected to the embedded broker and what each connection may do.
//!
//! A login is an API key with `write`; its *identities* are the key's id and, for a key bound to a
//! device, the device's id. A connection may only use a client id bound to one of its identities
//! (the identity itself or `{identity}-{suffix}`), so a client id (and the persistent session the
//! broker keeps under it) never passes from one device to another. The platform's own client ids
//! (`mqtt.client_id`, `{client_id}-...`) are reserved to its internal login.
//!
//! Logins are kept per connection ([`rmqtt::types::Id`]: client id, address and connection time),
//! not per client id: a refused or a second connection can never change what a live one may do.
//! A device may also log in over MQTTS with a certificate from the platform's CA: its identity is
//! then the device the certificate names. Revoking a key or a certificate flags its live logins
//! at once; the publish check refuses a flagged or expired
//! login before anything is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use rmqtt::types::Id;
use uuid::Uuid;

/// The topics a login may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The platform's own connections: anything.
    Platform,
    /// `devices/{id}/...` only.
    Device(Uuid),
    /// A key bound to no device (a gateway): any `devices/{id}/...`.
    Gateway,
}

/// Topics below `devices/{id}/` that only the platform publishes.
const PLATFORM_TOPICS: [&str; 2] = ["status", "commands"];

impl Grant {
    /// Whether this login may subscribe to `filter`.
    pub fn may_subscribe(self, filter: &str) -> bool {
        self == Grant::Platform || self.device_of(filter).is_some()
    }

    /// Whether this login may publish on `topic`: the platform anywhere, a device under its own
    /// `devices/{id}/`, except the topics the platform publishes there (status, commands).
    pub fn may_publish(self, topic: &str) -> bool {
        if self == Grant::Platform {
            return true;
        }
        let sub = topic.splitn(3, '/').nth(2).unwrap_or("");
        let first = sub.split('/').next().unwrap_or("");
        self.device_of(topic).is_some() && !PLATFORM_TOPICS.contains(&first)
    }

    /// The device of a `devices/{id}/...` topic this login may touch.
    pub fn device_of(self, topic: &str) -> Option<Uuid> {
        let mut parts = topic.split('/');
        let (Some("devices"), Some(id), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if rest.is_empty() {
            return None;
        }
        let device = Uuid::parse_str(id).ok().filter(|d| d.to_string() == id)?;
        match self {
            Grant::Device(own) if own != device => None,
            _ => Some(device),
        }
    }
}

/// Whether `client_id` is bound to one of `identities`: the identity itself (as the API prints
/// it, lower-case) or `{identity}-{suffix}` with a non-empty suffix.
pub fn client_id_bound(client_id: &str, identities: &[Uuid]) -> bool {
    identities.iter().any(
        |identity| match client_id.strip_prefix(identity.to_string().as_str()) {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix('-')
                .is_some_and(|suffix| !suffix.is_empty()),
            None => false,
        },
    )
}

/// Whether `client_id` is one of the platform's own (`base` or `{base}-...`).
pub fn platform_client_id(client_id: &str, base: &str) -> bool {
    client_id == base
        || client_id
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// One accepted connection.
#[derive(Debug)]
pub struct Login {
    pub grant: Grant,
    /// The API key it logged in with (`None`: the platform, or a certificate).
    pub key_id: Option<Uuid>,
    /// The device certificate it presented over MQTTS (then it has no key).
    pub cert_id: Option<Uuid>,
    /// The device the key is bound to.
    pub device_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    /// MQTT 5 (can be told "quota exceeded" in a PUBACK) or 3.1.1 (only a disconnect says it).
    pub v5: bool,
    /// Set when the key is revoked or its device deleted: nothing more is accepted from it.
    revoked: AtomicBool,
}

impl Login {
    pub fn platform() -> Self {
        Self::new(Grant::Platform, None, None, None, true)
    }

    pub fn new(
        grant: Grant,
        key_id: Option<Uuid>,
        device_id: Option<Uuid>,
        expires_at: Option<DateTime<Utc>>,
        v5: bool,
    ) -> Self {
        Self {
            grant,
            key_id,
            cert_id: None,
            device_id,
            expires_at,
            v5,
            revoked: AtomicBool::new(false),
        }
    }

    /// A device logged in with its certificate `cert_id`, valid until `not_after`.
    pub fn certificate(device_id: Uuid, cert_id: Uuid, not_after: DateTime<Utc>, v5: bool) -> Self {
        Self {
            cert_id: Some(cert_id),
            ..Self::new(
                Grant::Device(device_id),
                None,
                Some(device_id),
                Some(not_after),
                v5,
            )
        }
    }

    /// Still allowed to publish: not revoked, not expired.
    pub fn valid(&self, now: DateTime<Utc>) -> bool {
        !self.revoked.load(Ordering::Acquire) && self.expires_at.is_none_or(|at| at > now)
    }

    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }
}

/// Every live connection's login, by connection.
#[derive(Default)]
pub struct Logins {
    by_connection: DashMap<Id, Arc<Login>>,
}

impl Logins {
    pub fn insert(&self, id: Id, login: Login) {
        self.by_connection.insert(id, Arc::new(login));
    }

    pub fn get(&self, id: &Id) -> Option<Arc<Login>> {
        self.by_connection.get(id).map(|l| l.clone())
    }

    pub fn remove(&self, id: &Id) {
        self.by_connection.remove(id);
    }

    /// Flags and returns the connections whose login `matches`.
    pub fn revoke_where(&self, matches: impl Fn(&Login) -> bool) -> Vec<Id> {
        self.by_connection
            .iter()
            .filter(|entry| matches(entry.value()))
            .map(|entry| {
                entry.value().revoke();
                entry.key().clone()
            })
            .collect()
    }

    /// The connections no longer allowed to publish (revoked or expired).
    pub fn invalid(&self, now: DateTime<Utc>) -> Vec<Id> {
        self.by_connection
            .iter()
            .filter(|entry| !entry.value().valid(now))
            .map(|entry| entry.key().clone())
            .collect()
    }

    /// The distinct API keys of live connections.
    pub fn key_ids(&self) -> Vec<Uuid> {
        let mut keys: Vec<Uuid> = self
            .by_connection
            .iter()
            .filter_map(|entry| entry.value().key_id)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_may_touch_only_its_own_topics() {
        let own = Uuid::new_v4();
        let other = Uuid::new_v4();
        let device = Grant::Device(own);
        assert!(device.may_publish(&format!("devices/{own}/telemetry")));
        assert!(device.may_subscribe(&format!("devices/{own}/commands")));
        assert!(!device.may_publish(&format!("devices/{own}/commands")));
        assert!(!device.may_publish(&format!("devices/{own}/status")));
        assert!(!device.may_publish(&format!("devices/{other}/telemetry")));
        assert!(!device.may_subscribe("devices/+/telemetry"));
        assert!(!device.may_subscribe("#"));
        assert!(!device.may_publish(&format!("devices/{own}")));
        assert!(Grant::Gateway.may_publish(&format!("devices/{other}/telemetry")));
        assert!(!Grant::Gateway.may_subscribe("devices/+/telemetry"));
        assert!(!Grant::Gateway.may_subscribe("$SYS/broker"));
        assert!(Grant::Platform.may_publish(&format!("devices/{own}/commands")));
    }

    #[test]
    fn a_client_id_must_be_bound_to_the_login() {
        let device = Uuid::new_v4();
        let key = Uuid::new_v4();
        let mine = [key, device];
        assert!(client_id_bound(&device.to_string(), &mine));
        assert!(client_id_bound(&format!("{device}-pump"), &mine));
        assert!(client_id_bound(&format!("{key}-gw-1"), &mine));
        assert!(!client_id_bound(&format!("{device}-"), &mine));
        assert!(!client_id_bound(&format!("{device}pump"), &mine));
        assert!(!client_id_bound(&format!("x-{device}"), &mine));
        assert!(!client_id_bound(&Uuid::new_v4().to_string(), &mine));
        assert!(!client_id_bound("insa-iiot", &mine));
        assert!(!client_id_bound("", &mine));
    }

    #[test]
    fn the_platforms_client_ids_are_recognised() {
        assert!(platform_client_id("insa-iiot", "insa-iiot"));
        assert!(platform_client_id("insa-iiot-status", "insa-iiot"));
        assert!(!platform_client_id("insa-iiotx", "insa-iiot"));
        assert!(!platform_client_id("x-insa-iiot", "insa-iiot"));
    }
}
