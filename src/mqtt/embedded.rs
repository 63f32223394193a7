//! The embedded broker (rmqtt): device authentication, topic checks, per-device limits, and the
//! disconnection of connections whose API key stops being valid.
//!
//! - `ClientAuthenticate`: the password is an API key with `write`; the username names the key or
//!   its device; the client id must be bound to the login ([`super::access`]). Anything else gets
//!   CONNACK "not authorised" (or "bad username or password").
//! - `MessagePublishCheckAcl`: the login must still be valid (not revoked, not expired), the topic
//!   the device's own, the device within its publish rate and retained-message bounds; telemetry
//!   is stored before the hook returns, so the PUBACK that follows means "stored".
//! - Revocation: [`BrokerControl::key_revoked`] / [`BrokerControl::device_removed`] flag the
//!   logins at once and disconnect their connections; a sweep every [`SWEEP`] disconnects expired
//!   logins and re-reads the keys of live connections from the database (a change made elsewhere).

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use anyhow::Context;
use chrono::Utc;
use insa_entities::api_keys;
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::{
    AuthResult, Id, Message, PublishAclResult, PublishResult, Reason, SubscribeReturn,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use insa_actors::mqtt::{device_of_topic, store_message, MqttStats};
use insa_actors::payload::Limits;

use super::access::{client_id_bound, platform_client_id, Grant, Login, Logins};
use super::limits::{DeviceLimits, OverLimit};
use crate::auth::extract::authenticate_key;
use crate::settings::Settings;
use crate::state::AppState;

/// How often expired logins are disconnected and live connections' keys re-read.
pub const SWEEP: Duration = Duration::from_secs(1);
/// The sweep re-reads live connections' keys from the database every this many rounds.
const DATABASE_EVERY: u64 = 3;
/// Keys re-read per database query in the sweep.
const SWEEP_CHUNK: usize = 500;

#[derive(Clone)]
struct DeviceAuth {
    state: web::Data<AppState>,
    internal: (String, String),
    /// The platform's client id (its connections use it and `{client_id}-...`).
    platform_client_id: String,
    logins: Arc<Logins>,
    limits: Arc<DeviceLimits>,
    ingest_limits: Limits,
    stats: Arc<MqttStats>,
}

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
        let key = match authenticate_key(&self.state, &password).await {
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

    /// The key's expiry, from the row `authenticate_key` just cached (else the database).
    async fn key_expiry(&self, key: &str, key_id: Uuid) -> Option<chrono::DateTime<Utc>> {
        if let Some(cached) = self.state.keys.get(&crate::auth::api_keys::hash_key(key)) {
            return cached.row.expires_at;
        }
        api_keys::Entity::find_by_id(key_id)
            .one(&self.state.db)
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
            tracing::info!(client_id = %id.client_id, "MQTT publish refused: the API key is no longer valid");
            return refuse("the API key is no longer valid");
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
                        &self.state.pipeline,
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

/// Disconnects live connections of the embedded broker; cheap to clone.
#[derive(Clone)]
pub struct BrokerControl {
    logins: Arc<Logins>,
    scx: ServerContext,
    runtime: tokio::runtime::Handle,
}

impl BrokerControl {
    /// An API key was revoked (or lost `write`): nothing more is accepted from its connections,
    /// which are closed.
    pub fn key_revoked(&self, key_id: Uuid) {
        let ids = self.logins.revoke_where(|l| l.key_id == Some(key_id));
        self.disconnect(ids);
    }

    /// A device was deleted (its keys with it).
    pub fn device_removed(&self, device_id: Uuid) {
        let ids = self.logins.revoke_where(|l| l.device_id == Some(device_id));
        self.disconnect(ids);
    }

    fn disconnect(&self, ids: Vec<Id>) {
        if ids.is_empty() {
            return;
        }
        let (scx, logins) = (self.scx.clone(), self.logins.clone());
        self.runtime.spawn(async move {
            for id in ids {
                if !disconnect(&scx, &id).await {
                    // Already gone (or replaced): nothing left to close.
                    logins.remove(&id);
                }
            }
        });
    }
}

/// Ends one connection and its session (subscriptions and queued messages with it); `false` when
/// the connection was no longer there.
async fn disconnect(scx: &ServerContext, id: &Id) -> bool {
    let entry = scx.extends.shared().await.entry(id.clone());
    if entry.id_same() != Some(true) {
        return false;
    }
    match entry.try_lock().await {
        Ok(mut locked) => {
            if let Err(err) = locked.kick(true, true, true).await {
                tracing::warn!(client_id = %id.client_id, error = %err, "cannot disconnect an MQTT client");
            }
        }
        Err(_) => {
            if let Some(tx) = entry.tx() {
                let _ = tx.unbounded_send(Message::Closed(Reason::from_static(
                    "API key no longer valid",
                )));
            }
        }
    }
    tracing::info!(client_id = %id.client_id, "MQTT client disconnected: its API key is no longer valid");
    true
}

/// Every [`SWEEP`]: disconnects logins that expired or whose key changed in the database.
async fn sweep(state: web::Data<AppState>, control: BrokerControl, limits: Arc<DeviceLimits>) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        tick.tick().await;
        let now = Utc::now();
        // The database every few rounds; expiry (in memory) every round.
        let keys = if round % DATABASE_EVERY == 0 {
            control.logins.key_ids()
        } else {
            Vec::new()
        };
        for chunk in keys.chunks(SWEEP_CHUNK) {
            let rows = api_keys::Entity::find()
                .filter(api_keys::Column::Id.is_in(chunk.iter().copied()))
                .all(&state.db)
                .await;
            let Ok(rows) = rows else { continue };
            for key_id in chunk {
                let usable = rows.iter().find(|r| r.id == *key_id).is_some_and(|row| {
                    row.revoked_at.is_none()
                        && row.expires_at.is_none_or(|at| at > now)
                        && row.permissions.get("write").and_then(|w| w.as_bool()) == Some(true)
                });
                if !usable {
                    state.keys.evict(*key_id);
                    control.logins.revoke_where(|l| l.key_id == Some(*key_id));
                }
            }
        }
        control.disconnect(control.logins.invalid(now));
        limits.shrink();
    }
}

/// A running broker; dropping it stops it.
pub struct EmbeddedBroker {
    internal: (String, String),
    pub addr: SocketAddr,
    pub control: BrokerControl,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl EmbeddedBroker {
    /// Binds `addr` and serves on a thread of its own.
    pub fn start(
        state: web::Data<AppState>,
        addr: SocketAddr,
        settings: &Settings,
        stats: Arc<MqttStats>,
    ) -> anyhow::Result<Self> {
        let mqtt = &settings.mqtt;
        let internal = (
            format!("insa-iiot-internal-{}", Uuid::new_v4().simple()),
            crate::auth::api_keys::generate_key(),
        );
        let max_packet = u32::try_from(mqtt.max_message_bytes).unwrap_or(u32::MAX);
        // Messages in flight to one client awaiting its PUBACK.
        let max_inflight = u16::try_from(mqtt.max_unacked)
            .ok()
            .and_then(NonZeroU16::new)
            .unwrap_or(NonZeroU16::MAX);
        let limits = Arc::new(DeviceLimits::new(
            mqtt.max_publish_per_second_per_device,
            mqtt.publish_burst_per_device,
            mqtt.max_retained_per_device,
        ));
        let logins = Arc::new(Logins::default());

        let (ready_tx, ready_rx) =
            std::sync::mpsc::channel::<anyhow::Result<(ServerContext, tokio::runtime::Handle)>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let auth = DeviceAuth {
            state: state.clone(),
            internal: internal.clone(),
            platform_client_id: mqtt.client_id.clone(),
            logins: logins.clone(),
            limits: limits.clone(),
            ingest_limits: settings.ingest.limits(),
            stats,
        };
        let max_queue = mqtt.max_queued_messages_per_client;
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("mqtt-broker")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let scx = ServerContext::new()
                        .plugins_config_map_add("rmqtt-retainer", "storage.type = \"ram\"")
                        .build()
                        .await;
                    if let Err(err) = rmqtt_retainer::register(&scx, true, false).await {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("retained messages: {err}")));
                        return;
                    }
                    let register = scx.extends.hook_mgr().register();
                    for hook in [
                        Type::ClientAuthenticate,
                        Type::ClientConnack,
                        Type::ClientDisconnected,
                        Type::MessagePublishCheckAcl,
                        Type::ClientSubscribeCheckAcl,
                    ] {
                        register.add(hook, Box::new(auth.clone())).await;
                    }
                    register.start().await;
                    let listener = Builder::new()
                        .name("tcp")
                        .laddr(addr)
                        // A restart must not wait for the old connections' TIME_WAIT.
                        .reuseaddr(Some(true))
                        .allow_anonymous(false)
                        .max_packet_size(max_packet)
                        .max_inflight(max_inflight)
                        // Messages queued for one client (a device's commands while it is slow
                        // or offline); beyond, the oldest are dropped. The platform's own
                        // connections only publish here, so they need no larger queue.
                        .max_mqueue_len(max_queue)
                        .bind()
                        .and_then(|l| l.tcp());
                    let listener = match listener {
                        Ok(listener) => listener,
                        Err(err) => {
                            let _ = ready_tx
                                .send(Err(anyhow::anyhow!("cannot listen on {addr}: {err}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((scx.clone(), tokio::runtime::Handle::current())));
                    tokio::select! {
                        result = MqttServer::new(scx).listener(listener).build().run() => {
                            if let Err(err) = result {
                                tracing::error!(error = %err, "embedded MQTT broker stopped");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .context("cannot start the embedded broker thread")?;
        let (scx, runtime) = ready_rx
            .recv()
            .context("the embedded broker thread ended during start-up")??;
        let control = BrokerControl {
            logins,
            scx,
            runtime: runtime.clone(),
        };
        runtime.spawn(sweep(state, control.clone(), limits));
        Ok(Self {
            internal,
            addr,
            control,
            stop: Some(stop),
        })
    }

    /// The platform's own superuser login.
    pub fn internal_credentials(&self) -> (String, String) {
        self.internal.clone()
    }
}
