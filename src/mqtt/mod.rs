//! MQTT for the platform: which broker to use (`mqtt.mode`), the embedded broker, the subscriber
//! that feeds the telemetry pipeline (`insa_actors::mqtt`), and device commands.
//!
//! - `embedded` (feature `embedded-broker`): run a broker in the process at `mqtt.url`'s address.
//!   Devices log in with an API key ([`embedded`]); every publish and subscribe is checked.
//! - `external`: connect to the broker at `mqtt.url`. With `mqtt.dynsec` the platform keeps
//!   Mosquitto's dynamic-security clients in step with API keys; without it the platform does not
//!   check device identity at all, and says so loudly (log and `/api/v1/status`).
//! - `auto`: never adopts a broker that lets anyone publish as any device. A broker answering at
//!   `mqtt.url` is used only with `mqtt.dynsec` configured and anonymous logins refused there;
//!   otherwise the embedded broker starts at `mqtt.url`, or on the next free port above it when
//!   that port is taken.
//!
//! Modules: `access` (logins, client-id binding, topic grants), `limits` (per-device bounds),
//! `embedded` (the broker, disconnection on revocation), `hooks` (its authentication and checks), `commands` (rule commands
//! acknowledged by the broker), `probe` (what answers at an address).

pub mod access;
pub mod commands;
#[cfg(feature = "embedded-broker")]
pub mod embedded;
#[cfg(feature = "embedded-broker")]
mod hooks;
pub mod limits;
#[cfg(feature = "embedded-broker")]
pub mod mqtts;
pub mod probe;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::key_cache::KeyCache;
use crate::settings::{MqttMode, Settings};
use anyhow::Context;
use insa_actors::mqtt::{MqttIngest, MqttIngestConfig, MqttStats};
use insa_actors::Pipeline;
use sea_orm::DatabaseConnection;
use serde::Serialize;
use utoipa::ToSchema;

/// Ports above `mqtt.url`'s tried for the embedded broker in `auto` mode when that one is taken.
pub const FALLBACK_PORTS: u16 = 20;

/// What the MQTT side uses of the platform: the database (API keys, dynsec clients), the cache
/// of verified keys (devices log in with the same keys as over HTTP), and the pipeline readings
/// go to. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    /// API keys (the sweep re-reads them) and dynsec's clients.
    pub db: DatabaseConnection,
    /// Verified keys, shared with the HTTP API.
    pub keys: Arc<KeyCache>,
    /// Where readings go.
    pub pipeline: Pipeline,
    /// Issues the broker's certificate when none is configured for MQTTS.
    pub ca: Arc<crate::ca::PlatformCa>,
    /// Device certificates the MQTTS listener accepts.
    pub certificates: Arc<crate::ca::ActiveCertificates>,
    /// The HTTPS certificate, which MQTTS presents too unless `mqtt.tls` names its own.
    pub https_cert: Option<Arc<crate::tls::ReloadingCert>>,
}

/// What MQTT the platform ended up with.
pub struct Mqtt {
    pub broker: BrokerInfo,
    pub ingest: MqttIngest,
    /// Rule commands, acknowledged by the broker.
    pub commands: commands::Commands,
    /// Broker clients for API keys, when `mqtt.dynsec` is on (external broker only).
    pub dynsec: Option<crate::dynsec::Dynsec>,
    /// Keeps the embedded broker running.
    #[cfg(feature = "embedded-broker")]
    pub embedded: Option<embedded::EmbeddedBroker>,
}

/// How devices reach the platform over MQTT, as `/api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BrokerInfo {
    /// `embedded` or `external`.
    pub broker: &'static str,
    /// `host:port` devices connect to (plain MQTT; the MQTTS one when the plain port is closed).
    pub address: String,
    /// `host:port` of MQTTS on the embedded broker, when it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_address: Option<String>,
    /// How device identity is checked: `api_key` (embedded broker), `dynsec` (Mosquitto's
    /// dynamic security, kept in step with API keys) or `none` (external broker, not checked by
    /// the platform).
    pub device_auth: &'static str,
    /// Set when the set-up deserves an operator's attention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The live connections of the embedded broker, to end those of a revoked key or deleted device.
#[derive(Clone, Default)]
pub struct LiveSessions {
    #[cfg(feature = "embedded-broker")]
    control: Option<embedded::BrokerControl>,
}

impl LiveSessions {
    /// An API key stopped being valid: its connections are refused anything more and closed.
    pub fn key_revoked(&self, key_id: uuid::Uuid) {
        #[cfg(feature = "embedded-broker")]
        if let Some(control) = &self.control {
            control.key_revoked(key_id);
        }
        let _ = key_id;
    }

    /// A device certificate was revoked: its connections are refused anything more and closed.
    pub fn certificate_revoked(&self, cert_id: uuid::Uuid) {
        #[cfg(feature = "embedded-broker")]
        if let Some(control) = &self.control {
            control.certificate_revoked(cert_id);
        }
        let _ = cert_id;
    }

    /// A device was deleted with its keys.
    pub fn device_removed(&self, device_id: uuid::Uuid) {
        #[cfg(feature = "embedded-broker")]
        if let Some(control) = &self.control {
            control.device_removed(device_id);
        }
        let _ = device_id;
    }
}

impl Mqtt {
    pub fn sessions(&self) -> LiveSessions {
        LiveSessions {
            #[cfg(feature = "embedded-broker")]
            control: self.embedded.as_ref().map(|b| b.control.clone()),
        }
    }
}

/// Picks the broker, starts the embedded one if needed, and connects the platform's clients.
pub async fn start(platform: Platform, settings: &Settings) -> anyhow::Result<Option<Mqtt>> {
    let config = &settings.mqtt;
    if config.mode == MqttMode::Off {
        return Ok(None);
    }
    let (host, port) = config
        .host_port()
        .context("mqtt.url has no host and port")?;
    let credentials = config
        .username
        .clone()
        .zip(config.password.as_ref().map(|p| p.expose().to_string()));
    let dynsec_ready = config.dynsec && credentials.is_some();
    // mqtts://: one TLS configuration for every connection to the broker (ingest, status,
    // commands, dynsec, the probe); a bad CA or client certificate file stops start-up here.
    let broker_tls =
        crate::tls_files::mqtt_client_config(config)?.map(rumqttc::TlsConfiguration::Rustls);
    let mut embedded_port = port;
    let external = match config.mode {
        MqttMode::External => true,
        MqttMode::Embedded => false,
        _ => match probe::probe(&host, port, broker_tls.as_ref()).await {
            probe::Answer::Nothing => false,
            answer => {
                if dynsec_ready && answer == probe::Answer::RefusesAnonymous {
                    tracing::info!(%host, port,
                        "MQTT (auto): the broker there refuses anonymous logins and mqtt.dynsec is configured: using it");
                    true
                } else {
                    tracing::warn!(%host, port, answer = answer.as_str(),
                        "MQTT (auto): a broker answers there, but device identity would not be checked \
                         (it needs mqtt.dynsec with credentials and anonymous logins refused); \
                         NOT using it: starting the embedded broker on another port. To use that broker, \
                         set mqtt.mode = external (with mqtt.dynsec)");
                    embedded_port = port.saturating_add(1);
                    false
                }
            }
        },
    };
    let mut ingest = MqttIngestConfig {
        host: host.clone(),
        port,
        client_id: config.client_id.clone(),
        credentials: credentials.clone(),
        persistent_session: config.persistent_session,
        max_unacked: config.max_unacked,
        max_packet_bytes: settings.ingest.max_body_bytes,
        limits: settings.ingest.limits(),
        subscribe_telemetry: true,
        tls: broker_tls.clone(),
    };
    let commands_client_id = format!("{}-commands", config.client_id);
    let ack_timeout = std::time::Duration::from_secs(config.command_ack_timeout_secs);
    if external {
        let (device_auth, warning) = if config.dynsec {
            // Chosen by the operator; still, say so if the broker lets anyone in.
            let open = config.mode == MqttMode::External
                && probe::probe(&host, port, broker_tls.as_ref()).await
                    == probe::Answer::AcceptsAnonymous;
            let warning = open.then(|| {
                let warning = "the external broker accepts anonymous logins: anyone may publish \
                               as any device (set allow_anonymous false)";
                tracing::warn!("MQTT: {warning}");
                warning.to_string()
            });
            ("dynsec", warning)
        } else {
            let warning =
                "external broker without mqtt.dynsec: the platform does not check device \
                           identity; the broker's own ACLs must (docs/MQTT.md)";
            tracing::warn!("MQTT: {warning}");
            ("none", Some(warning.to_string()))
        };
        tracing::info!(%host, port, device_auth, "MQTT: using the external broker");
        let dynsec = config.dynsec.then(|| {
            crate::dynsec::Dynsec::start(
                crate::dynsec::DynsecConfig {
                    host: host.clone(),
                    port,
                    client_id: config.client_id.clone(),
                    credentials: credentials.clone(),
                    tls: broker_tls.clone(),
                },
                platform.db.clone(),
            )
        });
        return Ok(Some(Mqtt {
            broker: BrokerInfo {
                broker: "external",
                address: format!("{host}:{port}"),
                tls_address: None,
                device_auth,
                warning,
            },
            dynsec,
            commands: commands::Commands::start(
                host,
                port,
                commands_client_id,
                credentials,
                broker_tls,
                ack_timeout,
            ),
            ingest: insa_actors::mqtt::start(platform.pipeline.clone(), ingest),
            #[cfg(feature = "embedded-broker")]
            embedded: None,
        }));
    }
    #[cfg(feature = "embedded-broker")]
    {
        // The broker stores telemetry itself before it acknowledges a device; the platform's
        // client only publishes status.
        let stats = std::sync::Arc::new(MqttStats::default());
        let last = if embedded_port == port {
            port
        } else {
            embedded_port.saturating_add(FALLBACK_PORTS - 1)
        };
        let tls = mqtts_config(&platform, settings, &host)?;
        let plain = config.plain.then_some(embedded_port..=last);
        let broker = start_embedded(&platform, settings, &host, plain, tls, &stats)?;
        if let Some(addr) = broker.addr {
            if addr.port() == port || port == 0 {
                tracing::info!(%addr, "MQTT: embedded broker listening; devices log in with API keys");
            } else {
                tracing::warn!(%addr, taken = port,
                    "MQTT: embedded broker listening on a fallback port (mqtt.url's port is taken); \
                     devices log in with API keys");
            }
        }
        if let Some(addr) = broker.tls_addr {
            tracing::info!(%addr, plain = config.plain,
                "MQTTS: embedded broker listening; devices log in with a certificate or an API key");
        }
        let addr = broker.internal_addr;
        let internal = broker.internal_credentials();
        ingest.host = addr.ip().to_string();
        ingest.port = addr.port();
        ingest.credentials = Some(internal.clone());
        ingest.subscribe_telemetry = false;
        // In-process broker: the platform's own connections stay on loopback, without TLS.
        ingest.tls = None;
        if config.dynsec {
            tracing::warn!("mqtt.dynsec applies to an external Mosquitto; the embedded broker checks API keys itself");
        }
        Ok(Some(Mqtt {
            broker: BrokerInfo {
                broker: "embedded",
                address: broker
                    .addr
                    .or(broker.tls_addr)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                tls_address: broker.tls_addr.map(|a| a.to_string()),
                device_auth: if broker.tls_addr.is_some() {
                    "api_key_or_certificate"
                } else {
                    "api_key"
                },
                warning: None,
            },
            dynsec: None,
            commands: commands::Commands::start(
                addr.ip().to_string(),
                addr.port(),
                commands_client_id,
                Some(internal),
                None,
                ack_timeout,
            ),
            ingest: insa_actors::mqtt::start_with(platform.pipeline.clone(), ingest, stats),
            embedded: Some(broker),
        }))
    }
    #[cfg(not(feature = "embedded-broker"))]
    {
        let _ = (&mut ingest, MqttStats::default, embedded_port);
        anyhow::bail!(
            "mqtt.mode: no usable broker at {host}:{port} and this build has no embedded broker \
             (feature embedded-broker); start one or set mqtt.mode = off"
        )
    }
}

/// Starts the embedded broker, its plain listener on the first port of `plain` it can bind.
#[cfg(feature = "embedded-broker")]
fn start_embedded(
    platform: &Platform,
    settings: &Settings,
    host: &str,
    plain: Option<std::ops::RangeInclusive<u16>>,
    tls: Option<mqtts::MqttsConfig>,
    stats: &std::sync::Arc<MqttStats>,
) -> anyhow::Result<embedded::EmbeddedBroker> {
    let address = |port: u16| -> anyhow::Result<SocketAddr> {
        format!("{host}:{port}").parse().with_context(|| {
            format!("mqtt.url: the embedded broker needs an IP address, not `{host}`")
        })
    };
    let start = |plain: Option<SocketAddr>| {
        let listeners = embedded::Listeners {
            plain,
            tls: tls.clone(),
        };
        embedded::EmbeddedBroker::start(platform.clone(), listeners, settings, stats.clone())
    };
    let Some(ports) = plain else {
        return start(None);
    };
    let mut last_error = None;
    for port in ports {
        match start(Some(address(port)?)) {
            Ok(broker) => return Ok(broker),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no port to listen on")))
}

/// MQTTS for the embedded broker, when on: its address and TLS configuration, the certificate
/// from `mqtt.tls`, else the HTTPS one, else issued by the platform's CA for `mqtt.tls.hostnames`.
#[cfg(feature = "embedded-broker")]
fn mqtts_config(
    platform: &Platform,
    settings: &Settings,
    host: &str,
) -> anyhow::Result<Option<mqtts::MqttsConfig>> {
    use rustls::server::ResolvesServerCert;
    if !settings.mqtt_tls_on() {
        return Ok(None);
    }
    let tls = &settings.mqtt.tls;
    let cert: Arc<dyn ResolvesServerCert> = match (tls.files(), &platform.https_cert) {
        (Some((cert_file, key_file)), _) => {
            let cert = Arc::new(crate::tls::ReloadingCert::load_for(
                ["mqtt.tls.cert_file", "mqtt.tls.key_file"],
                cert_file,
                key_file,
            )?);
            crate::tls::spawn_reloader(cert.clone(), settings.server.tls.reload_interval());
            cert
        }
        (None, Some(https)) => https.clone(),
        (None, None) => Arc::new(rustls::sign::SingleCertAndKey::from(
            platform.ca.issue_server(&tls.hostnames)?,
        )),
    };
    let server = mqtts::server_config(
        cert,
        platform.ca.certificate_der(),
        platform.certificates.clone(),
    )?;
    let addr: SocketAddr = format!("{host}:{}", tls.port)
        .parse()
        .with_context(|| format!("mqtt.url: MQTTS needs an IP address, not `{host}`"))?;
    Ok(Some(mqtts::MqttsConfig {
        addr,
        server: Arc::new(server),
        handshake_timeout: std::time::Duration::from_secs(tls.handshake_timeout_secs),
        max_handshakes: tls.max_handshakes,
    }))
}
