//! The embedded broker (rmqtt) on a thread of its own, with its hooks ([`super::hooks`]), and the
//! disconnection of connections whose API key or certificate stops being valid.
//!
//! - Listeners: plain MQTT (unless `mqtt.plain = false`), MQTTS ([`super::mqtts`], TLS ended in
//!   the platform) and the loopback tunnel MQTTS connections and the platform's own clients use.
//! - Revocation: [`BrokerControl::key_revoked`] / [`BrokerControl::device_removed`] flag the
//!   logins at once and disconnect their connections; a sweep every [`SWEEP`] disconnects expired
//!   logins and re-reads the keys of live connections from the database (a change made elsewhere).

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use insa_entities::api_keys;
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::{Id, Message, Reason};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use insa_actors::mqtt::MqttStats;

use super::access::Logins;
use super::hooks::{DeviceAuth, PLAIN_LISTENER, TUNNEL_LISTENER};
use super::limits::DeviceLimits;
use super::mqtts::{MqttsConfig, Peers};
use super::Platform;
use crate::settings::Settings;

/// How often expired logins are disconnected and live connections' keys re-read.
pub const SWEEP: Duration = Duration::from_secs(1);
/// The sweep re-reads live connections' keys from the database every this many rounds.
const DATABASE_EVERY: u64 = 3;
/// Keys re-read per database query in the sweep.
const SWEEP_CHUNK: usize = 500;

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

    /// A device certificate was revoked: nothing more is accepted from its connections, which
    /// are closed.
    pub fn certificate_revoked(&self, cert_id: Uuid) {
        let ids = self.logins.revoke_where(|l| l.cert_id == Some(cert_id));
        self.disconnect(ids);
    }

    /// A device was deleted (its keys and certificates with it).
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
                    "credentials no longer valid",
                )));
            }
        }
    }
    tracing::info!(client_id = %id.client_id, "MQTT client disconnected: its key or certificate is no longer valid");
    true
}

/// Every [`SWEEP`]: disconnects logins that expired or whose key changed in the database.
async fn sweep(platform: Platform, control: BrokerControl, limits: Arc<DeviceLimits>) {
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
                .all(&platform.db)
                .await;
            let Ok(rows) = rows else { continue };
            for key_id in chunk {
                let usable = rows.iter().find(|r| r.id == *key_id).is_some_and(|row| {
                    row.revoked_at.is_none()
                        && row.expires_at.is_none_or(|at| at > now)
                        && row.permissions.get("write").and_then(|w| w.as_bool()) == Some(true)
                });
                if !usable {
                    platform.keys.evict(*key_id);
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
    /// Plain MQTT (`None`: `mqtt.plain = false`).
    pub addr: Option<SocketAddr>,
    /// MQTTS (`None`: off).
    pub tls_addr: Option<SocketAddr>,
    /// Loopback address the platform's own clients connect to.
    pub internal_addr: SocketAddr,
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

/// Where the broker listens: plain MQTT, MQTTS, or both.
pub struct Listeners {
    pub plain: Option<SocketAddr>,
    pub tls: Option<MqttsConfig>,
}

/// The bound addresses, sent back by the broker's thread once it listens.
struct Ready {
    scx: ServerContext,
    runtime: tokio::runtime::Handle,
    plain: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    tunnel: SocketAddr,
}

impl EmbeddedBroker {
    /// Binds the listeners (port 0: a free port, then kept in the address) and serves on a
    /// thread of its own.
    pub fn start(
        platform: Platform,
        listeners: Listeners,
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
        let peers = Arc::new(Peers::default());

        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<Ready>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let auth = DeviceAuth {
            platform: platform.clone(),
            internal: internal.clone(),
            platform_client_id: mqtt.client_id.clone(),
            logins: logins.clone(),
            limits: limits.clone(),
            ingest_limits: settings.ingest.limits(),
            stats,
            peers: peers.clone(),
        };
        let max_queue = mqtt.max_queued_messages_per_client;
        let certificates = platform.certificates.clone();
        // One listener's settings: devices log in, packets and queues bounded.
        let listener = move |name: &str, addr: SocketAddr| {
            Builder::new()
                .name(name)
                .laddr(addr)
                // A restart must not wait for the old connections' TIME_WAIT.
                .reuseaddr(Some(true))
                .allow_anonymous(false)
                .max_packet_size(max_packet)
                .max_inflight(max_inflight)
                // Messages queued for one client (a device's commands while it is slow or
                // offline); beyond, the oldest are dropped. The platform's own connections only
                // publish here, so they need no larger queue.
                .max_mqueue_len(max_queue)
                .bind()
                .and_then(|l| l.tcp())
                .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))
        };
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
                    let bound = bind_all(&listener, listeners).await;
                    let (plain, tunnel, tls) = match bound {
                        Ok(bound) => bound,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return;
                        }
                    };
                    // Port 0 binds a free port: the addresses reported are the ones bound.
                    let local = |l: &rmqtt::net::Listener, asked: SocketAddr| {
                        l.local_addr().unwrap_or(asked)
                    };
                    let tunnel_addr = local(&tunnel, tunnel.cfg.laddr);
                    let _ = ready_tx.send(Ok(Ready {
                        scx: scx.clone(),
                        runtime: tokio::runtime::Handle::current(),
                        plain: plain.as_ref().map(|l| local(l, l.cfg.laddr)),
                        tls: tls.as_ref().and_then(|(l, _)| l.local_addr().ok()),
                        tunnel: tunnel_addr,
                    }));
                    if let Some((tls_listener, config)) = tls {
                        tokio::spawn(super::mqtts::serve(
                            tls_listener,
                            config,
                            tunnel_addr,
                            peers,
                            certificates,
                        ));
                    }
                    let mut server = MqttServer::new(scx).listener_by_id(tunnel, TUNNEL_LISTENER);
                    if let Some(plain) = plain {
                        server = server.listener_by_id(plain, PLAIN_LISTENER);
                    }
                    tokio::select! {
                        result = server.build().run() => {
                            if let Err(err) = result {
                                tracing::error!(error = %err, "embedded MQTT broker stopped");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .context("cannot start the embedded broker thread")?;
        let ready = ready_rx
            .recv()
            .context("the embedded broker thread ended during start-up")??;
        let control = BrokerControl {
            logins,
            scx: ready.scx,
            runtime: ready.runtime.clone(),
        };
        ready
            .runtime
            .spawn(sweep(platform, control.clone(), limits));
        Ok(Self {
            internal,
            addr: ready.plain,
            tls_addr: ready.tls,
            internal_addr: ready.tunnel,
            control,
            stop: Some(stop),
        })
    }

    /// The platform's own superuser login.
    pub fn internal_credentials(&self) -> (String, String) {
        self.internal.clone()
    }
}

type Bound = (
    Option<rmqtt::net::Listener>,
    rmqtt::net::Listener,
    Option<(tokio::net::TcpListener, MqttsConfig)>,
);

/// Binds the plain listener (if any), the loopback tunnel and the MQTTS port (if any).
async fn bind_all(
    listener: &impl Fn(&str, SocketAddr) -> anyhow::Result<rmqtt::net::Listener>,
    listeners: Listeners,
) -> anyhow::Result<Bound> {
    let plain = match listeners.plain {
        Some(addr) => Some(listener("tcp", addr)?),
        None => None,
    };
    let tunnel = listener("mqtts-tunnel", SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let tls = match listeners.tls {
        Some(config) => {
            let bound = tokio::net::TcpListener::bind(config.addr)
                .await
                .with_context(|| format!("MQTTS: cannot listen on {}", config.addr))?;
            Some((bound, config))
        }
        None => None,
    };
    Ok((plain, tunnel, tls))
}
