//! What every handler shares.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use insa_actors::Pipeline;
use sea_orm::DatabaseConnection;

use crate::auth::key_cache::KeyCache;
use crate::auth::throttle::LoginThrottle;
use crate::auth::tokens::JwtKeys;
use crate::settings::Settings;

pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub jwt: JwtKeys,
    pub login_throttle: LoginThrottle,
    /// Device actors, batched writers: where readings go.
    pub pipeline: Pipeline,
    /// Verified API keys and their rate limits (shared with the embedded broker).
    pub keys: Arc<KeyCache>,
    /// The MQTT ingest, once connected (`None` inside when `mqtt.mode = off`).
    pub mqtt: std::sync::OnceLock<MqttInfo>,
    /// Open live-feed connections per user or key.
    pub live: Arc<crate::live::LiveConnections>,
    /// Ended sessions and keys, announced to open connections.
    pub revocations: crate::auth::revocation::Revocations,
    /// Outstanding single-use live-feed tickets.
    pub tickets: crate::auth::tickets::Tickets,
    /// `server.trusted_proxies`, parsed: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The certificate authority that issues device certificates.
    pub ca: Arc<crate::ca::PlatformCa>,
    /// Device certificates the MQTTS listener accepts (shared with it).
    pub certificates: Arc<crate::ca::ActiveCertificates>,
    /// Report jobs: queued by the API, run by `reports::runner`.
    pub report_jobs: crate::reports::jobs::JobQueue,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
}

/// What `/api/v1/status` shows of MQTT, and the platform's handles on it.
pub struct MqttInfo {
    /// `embedded`, `external` or `off`.
    pub mode: &'static str,
    /// Which broker devices use and how they are authenticated (`None`: MQTT off).
    pub broker: Option<crate::mqtt::BrokerInfo>,
    /// The embedded broker's live connections (to end those of a revoked key).
    pub sessions: crate::mqtt::LiveSessions,
    /// Rule commands, acknowledged by the broker.
    pub commands: Option<crate::mqtt::commands::Commands>,
    pub stats: Option<std::sync::Arc<insa_actors::mqtt::MqttStats>>,
    /// Broker clients for API keys (`mqtt.dynsec`).
    pub dynsec: Option<crate::dynsec::Dynsec>,
}

impl AppState {
    /// Broker clients for API keys, when `mqtt.dynsec` is on.
    pub fn dynsec(&self) -> Option<&crate::dynsec::Dynsec> {
        self.mqtt.get().and_then(|m| m.dynsec.as_ref())
    }

    /// Credentials ended (a session, a user's sessions, a key, a device's keys): the live feed's
    /// connections using them close, and so do the embedded broker's (the one place both learn
    /// it, before the HTTP answer).
    pub fn credentials_ended(&self, revoked: crate::auth::revocation::Revoked) {
        use crate::auth::revocation::Revoked;
        // A certificate revoked through `certificates::revoke` has already left the allow-list.
        if let Revoked::DeviceKeys(device_id) = revoked {
            self.certificates.remove_device(device_id);
        }
        if let Some(mqtt) = self.mqtt.get() {
            match revoked {
                Revoked::Key(key_id) => mqtt.sessions.key_revoked(key_id),
                Revoked::DeviceKeys(device_id) => mqtt.sessions.device_removed(device_id),
                Revoked::Certificate(cert_id) => mqtt.sessions.certificate_revoked(cert_id),
                Revoked::Session(_) | Revoked::User { .. } => {}
            }
        }
        self.revocations.announce(revoked);
    }
}
