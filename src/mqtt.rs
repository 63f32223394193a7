//! MQTT for the platform: which broker to use (`mqtt.mode`), the embedded broker, and the
//! subscriber that feeds the telemetry pipeline (`insa_actors::mqtt`).
//!
//! - `external`: connect to the broker at `mqtt.url` (Mosquitto); its own ACLs protect device
//!   topics (docs/MQTT.md).
//! - `embedded` (feature `embedded-broker`): run a broker in the process at `mqtt.url`'s address.
//!   Devices log in with username = device id (or the API key's id) and password = an API key with
//!   `write`; every publish and subscribe is checked against the device's own `devices/{id}/` topics.
//! - `auto`: external if something answers at `mqtt.url`, else embedded.

use std::time::Duration;

use crate::settings::{MqttMode, Settings};
use crate::state::AppState;
use actix_web::web;
use anyhow::Context;
use insa_actors::mqtt::{MqttIngest, MqttIngestConfig, MqttStats};

/// What MQTT the platform ended up with.
pub struct Mqtt {
    /// `embedded` or `external`.
    pub mode: &'static str,
    pub ingest: MqttIngest,
    /// Broker clients for API keys, when `mqtt.dynsec` is on (external broker only).
    pub dynsec: Option<crate::dynsec::Dynsec>,
    /// Keeps the embedded broker running.
    #[cfg(feature = "embedded-broker")]
    pub broker: Option<embedded::EmbeddedBroker>,
}

/// Picks the broker, starts the embedded one if needed, and connects the subscriber.
pub async fn start(
    state: web::Data<AppState>,
    settings: &Settings,
) -> anyhow::Result<Option<Mqtt>> {
    let config = &settings.mqtt;
    if config.mode == MqttMode::Off {
        return Ok(None);
    }
    let (host, port) = config
        .host_port()
        .context("mqtt.url has no host and port")?;
    let external = match config.mode {
        MqttMode::External => true,
        MqttMode::Embedded => false,
        _ => {
            let probe = tokio::net::TcpStream::connect((host.as_str(), port));
            matches!(
                tokio::time::timeout(Duration::from_millis(500), probe).await,
                Ok(Ok(_))
            )
        }
    };
    let mut ingest = MqttIngestConfig {
        host: host.clone(),
        port,
        client_id: config.client_id.clone(),
        credentials: config
            .username
            .clone()
            .zip(config.password.as_ref().map(|p| p.expose().to_string())),
        persistent_session: config.persistent_session,
        max_unacked: config.max_unacked,
        max_packet_bytes: settings.ingest.max_body_bytes,
        limits: settings.ingest.limits(),
        subscribe_telemetry: true,
    };
    if external {
        tracing::info!(%host, port, "MQTT: using the external broker");
        let dynsec = config.dynsec.then(|| {
            crate::dynsec::Dynsec::start(
                crate::dynsec::DynsecConfig {
                    host: host.clone(),
                    port,
                    client_id: config.client_id.clone(),
                    credentials: ingest.credentials.clone(),
                },
                state.db.clone(),
            )
        });
        return Ok(Some(Mqtt {
            mode: "external",
            dynsec,
            ingest: insa_actors::mqtt::start(state.pipeline.clone(), ingest),
            #[cfg(feature = "embedded-broker")]
            broker: None,
        }));
    }
    #[cfg(feature = "embedded-broker")]
    {
        // The broker stores telemetry itself before it acknowledges a device; the platform's
        // client only publishes status.
        let stats = std::sync::Arc::new(MqttStats::default());
        let broker =
            embedded::EmbeddedBroker::start(state.clone(), &host, port, settings, stats.clone())?;
        tracing::info!(%host, port, "MQTT: embedded broker listening");
        ingest.credentials = Some(broker.internal_credentials());
        ingest.subscribe_telemetry = false;
        if config.dynsec {
            tracing::warn!("mqtt.dynsec applies to an external Mosquitto; the embedded broker checks API keys itself");
        }
        Ok(Some(Mqtt {
            mode: "embedded",
            dynsec: None,
            ingest: insa_actors::mqtt::start_with(state.pipeline.clone(), ingest, stats),
            broker: Some(broker),
        }))
    }
    #[cfg(not(feature = "embedded-broker"))]
    {
        let _ = (&mut ingest, MqttStats::default);
        anyhow::bail!(
            "mqtt.mode: no broker answers at {host}:{port} and this build has no embedded broker \
             (feature embedded-broker); start one or set mqtt.mode = off"
        )
    }
}

#[cfg(feature = "embedded-broker")]
pub mod embedded {
    //! The embedded broker (rmqtt) and its device authentication and topic checks.

    use std::net::SocketAddr;
    use std::num::NonZeroU16;
    use std::sync::Arc;

    use actix_web::web;
    use anyhow::Context;
    use dashmap::DashMap;
    use rmqtt::codec::v5::SubscribeAckReason;
    use rmqtt::context::ServerContext;
    use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
    use rmqtt::net::Builder;
    use rmqtt::server::MqttServer;
    use rmqtt::types::{AuthResult, PublishAclResult, SubscribeReturn};
    use uuid::Uuid;

    use insa_actors::mqtt::{device_of_topic, store_message, MqttStats};
    use insa_actors::payload::Limits;

    use crate::auth::extract::authenticate_key;
    use crate::settings::Settings;
    use crate::state::AppState;

    /// What a logged-in device may touch.
    #[derive(Debug, Clone, Copy)]
    enum Grant {
        /// `devices/{id}/...` only.
        Device(Uuid),
        /// A key bound to no device (a gateway): any `devices/{id}/...`.
        Gateway,
    }

    impl Grant {
        fn allows(self, topic: &str) -> bool {
            let mut parts = topic.split('/');
            match (parts.next(), parts.next()) {
                (Some("devices"), Some(id)) => match self {
                    Grant::Device(own) => id == own.to_string(),
                    Grant::Gateway => Uuid::parse_str(id).is_ok(),
                },
                _ => false,
            }
        }
    }

    #[derive(Clone)]
    struct DeviceAuth {
        state: web::Data<AppState>,
        internal: (String, String),
        grants: Arc<DashMap<String, Grant>>,
        limits: Limits,
        stats: Arc<MqttStats>,
    }

    #[async_trait::async_trait]
    impl Handler for DeviceAuth {
        async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
            match param {
                Parameter::ClientAuthenticate(connect) => {
                    let username = connect
                        .username()
                        .map(|u| u.to_string())
                        .unwrap_or_default();
                    let password = connect
                        .password()
                        .map(|p| String::from_utf8_lossy(p).to_string())
                        .unwrap_or_default();
                    if username == self.internal.0 && password == self.internal.1 {
                        return (
                            false,
                            Some(HookResult::AuthResult(AuthResult::Allow(true, None))),
                        );
                    }
                    let result = match authenticate_key(&self.state, &password).await {
                        Ok(key) if !key.write => AuthResult::NotAuthorized,
                        Ok(key) => {
                            let named = username == key.key_id.to_string()
                                || key.device_id.is_some_and(|d| username == d.to_string());
                            if named {
                                let grant = key.device_id.map_or(Grant::Gateway, Grant::Device);
                                self.grants.insert(connect.client_id().to_string(), grant);
                                AuthResult::Allow(false, None)
                            } else {
                                AuthResult::BadUsernameOrPassword
                            }
                        }
                        Err(_) => AuthResult::BadUsernameOrPassword,
                    };
                    (false, Some(HookResult::AuthResult(result)))
                }
                Parameter::MessagePublishCheckAcl(session, publish) => {
                    let client_id: &str = &session.id.client_id;
                    let grant = self.grants.get(client_id).map(|g| *g);
                    let topic: &str = &publish.inner.topic;
                    if grant.is_some_and(|g| g.allows(topic)) {
                        // Telemetry is stored before this hook returns, so the device's PUBACK
                        // (sent after it) means the reading is in the database.
                        if device_of_topic(topic).is_some() {
                            store_message(
                                &self.state.pipeline,
                                topic,
                                &publish.inner.payload,
                                &self.limits,
                                &self.stats,
                            )
                            .await;
                        }
                        (true, acc)
                    } else {
                        tracing::warn!(client_id = %session.id.client_id, %topic, "MQTT publish refused: not the device's topic");
                        let refused = PublishAclResult::rejected(
                            true,
                            Some("not your device's topic".into()),
                        );
                        (false, Some(HookResult::PublishAclResult(refused)))
                    }
                }
                Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                    let client_id: &str = &session.id.client_id;
                    let grant = self.grants.get(client_id).map(|g| *g);
                    let filter: &str = &subscribe.topic_filter;
                    if grant.is_some_and(|g| g.allows(filter)) {
                        (true, acc)
                    } else {
                        let refused =
                            SubscribeReturn::new_failure(SubscribeAckReason::NotAuthorized);
                        (false, Some(HookResult::SubscribeAclResult(refused)))
                    }
                }
                _ => (true, acc),
            }
        }
    }

    /// A running broker; dropping it stops it.
    pub struct EmbeddedBroker {
        internal: (String, String),
        pub addr: SocketAddr,
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
        /// Binds `host:port` and serves on a thread of its own.
        pub fn start(
            state: web::Data<AppState>,
            host: &str,
            port: u16,
            settings: &Settings,
            stats: Arc<MqttStats>,
        ) -> anyhow::Result<Self> {
            let addr: SocketAddr = format!("{host}:{port}").parse().with_context(|| {
                format!("mqtt.url: the embedded broker needs an IP address, not `{host}`")
            })?;
            let internal = (
                format!("insa-iiot-internal-{}", Uuid::new_v4().simple()),
                crate::auth::api_keys::generate_key(),
            );
            let max_packet = u32::try_from(settings.ingest.max_body_bytes).unwrap_or(u32::MAX);
            // Messages in flight to one client awaiting its PUBACK: for the platform's subscriber,
            // what it holds until commit.
            let max_inflight = u16::try_from(settings.mqtt.max_unacked)
                .ok()
                .and_then(NonZeroU16::new)
                .unwrap_or(NonZeroU16::MAX);
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let auth = DeviceAuth {
                state,
                internal: internal.clone(),
                grants: Arc::new(DashMap::new()),
                limits: settings.ingest.limits(),
                stats,
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
                            // The platform's subscriber acknowledges after commit: let many
                            // messages be in flight to it, and queue plenty while it catches up.
                            .max_inflight(max_inflight)
                            .max_mqueue_len(1_000_000)
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
                        let _ = ready_tx.send(Ok(()));
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
            ready_rx
                .recv()
                .context("the embedded broker thread ended during start-up")??;
            Ok(Self {
                internal,
                addr,
                stop: Some(stop),
            })
        }

        /// The platform's own superuser login.
        pub fn internal_credentials(&self) -> (String, String) {
            self.internal.clone()
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
            assert!(device.allows(&format!("devices/{own}/telemetry")));
            assert!(device.allows(&format!("devices/{own}/commands")));
            assert!(!device.allows(&format!("devices/{other}/telemetry")));
            assert!(!device.allows("devices/+/telemetry"));
            assert!(!device.allows("#"));
            assert!(Grant::Gateway.allows(&format!("devices/{other}/telemetry")));
            assert!(!Grant::Gateway.allows("devices/+/telemetry"));
            assert!(!Grant::Gateway.allows("$SYS/broker"));
        }
    }
}
