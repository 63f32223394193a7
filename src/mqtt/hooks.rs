//! The embedded broker's hooks: device authentication (`ClientAuthenticate`), the publish and
//! subscribe checks, and the per-connection logins they keep.
//!
//! - `ClientAuthenticate`: the password is an API key with `write`; the username names the key or
//!   its device; the client id must be bound to the login ([`super::access`]). Over MQTTS a
//!   device certificate the handshake verified is the login instead (the username, if any, must
//!   be the device id). Anything else gets CONNACK "not authorised" (or "bad username or
//!   password").
//! - `MessagePublishCheckAcl`: the login must still be valid (not revoked, not expired), the topic
//!   the device's own, the device within its publish rate and retained-message bounds; telemetry
//!   is stored before the hook returns, so the PUBACK that follows means "stored".
//! - `ClientConnack` (refused) and `ClientDisconnected` forget the connection's login.

use std::sync::Arc;

use chrono::Utc;
use insa_entities::api_keys;
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::types::{AuthResult, Id, PublishAclResult, PublishResult, SubscribeReturn};
use sea_orm::EntityTrait;
use uuid::Uuid;

use insa_actors::mqtt::{device_of_topic, store_message, MqttStats};
use insa_actors::payload::Limits;

use super::access::{client_id_bound, platform_client_id, Grant, Login, Logins};
use super::limits::{DeviceLimits, OverLimit};
use super::mqtts::Peers;
use super::Platform;
use crate::auth::device_key::authenticate_key;

#[derive(Clone)]
pub(super) struct DeviceAuth {
    pub(super) platform: Platform,
    pub(super) internal: (String, String),
    /// The platform's client id (its connections use it and `{client_id}-...`).
    pub(super) platform_client_id: String,
    pub(super) logins: Arc<Logins>,
    pub(super) limits: Arc<DeviceLimits>,
    pub(super) ingest_limits: Limits,
    pub(super) stats: Arc<MqttStats>,
    /// Who is on each MQTTS connection (by its loopback address on the tunnel listener).
    pub(super) peers: Arc<Peers>,
}

/// The broker's listener for plain MQTT.
pub(super) const PLAIN_LISTENER: rmqtt::types::ListenerId = 1;
/// The broker's loopback listener MQTTS connections (and the platform's own) come in on.
pub(super) const TUNNEL_LISTENER: rmqtt::types::ListenerId = 2;

impl DeviceAuth {
    /// Checks a CONNECT and, if accepted, records the connection's login.
    async fn authenticate(&self, connect: &rmqtt::types::ConnectInfo) -> AuthResult {
        let username = connect
            .username()
            .map(|u| u.to_string())
            .unwrap_or_default();
        let password = connect
            .password()
            .map(|p| String::from_utf8_lossy(p).to_string())
            .unwrap_or_default();
        let client_id: &str = connect.client_id();
        if username == self.internal.0 && password == self.internal.1 {
            if !platform_client_id(client_id, &self.platform_client_id) {
                return AuthResult::NotAuthorized;
            }
            self.logins.insert(connect.id().clone(), Login::platform());
            return AuthResult::Allow(true, None);
        }
        if connect.id().lid == TUNNEL_LISTENER {
            // Only connections the MQTTS listener opened, each with what its handshake proved.
            let peer = connect
                .id()
                .remote_addr
                .and_then(|addr| self.peers.get(&addr).map(|p| p.clone()));
            let Some(peer) = peer else {
                return AuthResult::NotAuthorized;
            };
            if let Some((serial, cert)) = peer.certificate {
                return self.certificate_login(connect, &username, &serial, cert);
            }
        }
        let key = match authenticate_key(&self.platform.db, &self.platform.keys, &password).await {
            Ok(key) => key,
            Err(_) => return AuthResult::BadUsernameOrPassword,
        };
        let named = username == key.key_id.to_string()
            || key.device_id.is_some_and(|d| username == d.to_string());
        if !named {
            return AuthResult::BadUsernameOrPassword;
        }
        if !key.write {
            return AuthResult::NotAuthorized;
        }
        let identities: Vec<Uuid> = std::iter::once(key.key_id).chain(key.device_id).collect();
        if !client_id_bound(client_id, &identities)
            || platform_client_id(client_id, &self.platform_client_id)
        {
            tracing::warn!(key_id = %key.key_id, %client_id,
                "MQTT login refused: the client id is not bound to the key or its device");
            return AuthResult::NotAuthorized;
        }
        let expires_at = self.key_expiry(&password, key.key_id).await;
        let login = Login::new(
            key.device_id.map_or(Grant::Gateway, Grant::Device),
            Some(key.key_id),
            key.device_id,
            expires_at,
            connect.proto_ver() == rmqtt::codec::types::MQTT_LEVEL_5,
        );
        self.logins.insert(connect.id().clone(), login);
        AuthResult::Allow(false, None)
    }

    /// A device that presented its certificate over MQTTS: the certificate is its identity.
    fn certificate_login(
        &self,
        connect: &rmqtt::types::ConnectInfo,
        username: &str,
        serial: &str,
        cert: crate::ca::ActiveCert,
    ) -> AuthResult {
        let device = cert.device_id;
        if !username.is_empty() && username != device.to_string() {
            return AuthResult::BadUsernameOrPassword;
        }
        // Revoked between the handshake and the CONNECT.
        if self.platform.certificates.get(serial).is_none() {
            return AuthResult::NotAuthorized;
        }
        let client_id: &str = connect.client_id();
        if !client_id_bound(client_id, &[device])
            || platform_client_id(client_id, &self.platform_client_id)
        {
            tracing::warn!(device_id = %device, %client_id,
                "MQTT login refused: the client id is not bound to the certificate's device");
            return AuthResult::NotAuthorized;
        }
        let v5 = connect.proto_ver() == rmqtt::codec::types::MQTT_LEVEL_5;
        let login = Login::certificate(device, cert.cert_id, cert.not_after, v5);
        self.logins.insert(connect.id().clone(), login);
        AuthResult::Allow(false, None)
    }

    /// The key's expiry, from the row `authenticate_key` just cached (else the database).
    async fn key_expiry(&self, key: &str, key_id: Uuid) -> Option<chrono::DateTime<Utc>> {
        if let Some(cached) = self
            .platform
            .keys
            .get(&crate::auth::api_keys::hash_key(key))
        {
            return cached.row.expires_at;
        }
        api_keys::Entity::find_by_id(key_id)
            .one(&self.platform.db)
            .await
            .ok()
            .flatten()
            .and_then(|row| row.expires_at)
    }

    /// The publish check: a valid login, its own topic, within its device's limits.
    async fn check_publish(
        &self,
        id: &Id,
        publish: &rmqtt::types::Publish,
    ) -> Option<PublishResult> {
        let refuse = |why: &'static str| {
            Some(PublishResult::reason_code(
                PublishAckReason::NotAuthorized,
                Some(why.into()),
                true,
            ))
        };
        let Some(login) = self.logins.get(id) else {
            return refuse("not logged in");
        };
        if login.grant == Grant::Platform {
            return None;
        }
        let topic: &str = &publish.topic;
        if !login.valid(Utc::now()) {
            tracing::info!(client_id = %id.client_id, "MQTT publish refused: the key or certificate is no longer valid");
            return refuse("the key or certificate is no longer valid");
        }
        let Some(device) = login
            .grant
            .device_of(topic)
            .filter(|_| login.grant.may_publish(topic))
        else {
            tracing::warn!(client_id = %id.client_id, %topic, "MQTT publish refused: not the device's topic");
            return refuse("not your device's topic");
        };
        if let Err(over) =
            self.limits
                .admit(device, topic, publish.retain, publish.payload.is_empty())
        {
            // Described here: the metrics recorder is installed after the broker starts.
            static DESCRIBED: std::sync::Once = std::sync::Once::new();
            DESCRIBED.call_once(|| {
                metrics::describe_counter!(
                    "insa_mqtt_publishes_refused_total",
                    "Device publishes refused by the embedded broker's per-device limits, by reason"
                );
            });
            metrics::counter!("insa_mqtt_publishes_refused_total", "reason" => match over {
                OverLimit::Rate => "rate",
                OverLimit::Retained => "retained",
            })
            .increment(1);
            tracing::debug!(%device, reason = over.reason(), "MQTT publish refused");
            // MQTT 5 can say it in the PUBACK; a 3.1.1 PUBACK cannot, so the connection is closed.
            return Some(PublishResult::reason_code(
                PublishAckReason::QuotaExceeded,
                Some(over.reason().into()),
                !login.v5,
            ));
        }
        None
    }
}

#[async_trait::async_trait]
impl Handler for DeviceAuth {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(connect) => {
                let result = self.authenticate(connect).await;
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientConnack(connect, reason) => {
                // A connection refused after authentication (e.g. the handshake failed).
                if !reason.success() {
                    self.logins.remove(connect.id());
                }
                (true, acc)
            }
            Parameter::ClientDisconnected(session, _) => {
                self.logins.remove(&session.id);
                (true, acc)
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                if let Some(refused) = self.check_publish(&session.id, publish).await {
                    return (
                        false,
                        Some(HookResult::PublishAclResult(PublishAclResult(refused))),
                    );
                }
                let topic: &str = &publish.inner.topic;
                // Telemetry is stored before this hook returns, so the device's PUBACK (sent
                // after it) means the reading is in the database.
                if device_of_topic(topic).is_some() {
                    store_message(
                        &self.platform.pipeline,
                        topic,
                        &publish.inner.payload,
                        &self.ingest_limits,
                        &self.stats,
                    )
                    .await;
                }
                (true, acc)
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let allowed = self.logins.get(&session.id).is_some_and(|l| {
                    l.valid(Utc::now()) && l.grant.may_subscribe(&subscribe.topic_filter)
                });
                if allowed {
                    (true, acc)
                } else {
                    let refused = SubscribeReturn::new_failure(SubscribeAckReason::NotAuthorized);
                    (false, Some(HookResult::SubscribeAclResult(refused)))
                }
            }
            _ => (true, acc),
        }
    }
}
