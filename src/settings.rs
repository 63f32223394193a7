//! Settings: `settings/default.toml` < `settings/$INSA_ENV.toml` < environment `INSA__SECTION__KEY`.
//!
//! The defaults are compiled in, so the binary starts anywhere; files in the settings folder
//! (`INSA_SETTINGS_DIR`, default `settings`) and the environment override them. Unknown keys are
//! refused and [`Settings::validate`] names every bad key at once.

use std::fmt;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use insa_domain::text;
use serde::Deserialize;

const EMBEDDED_DEFAULTS: &str = include_str!("../settings/default.toml");

/// A value that must never reach a log: `Debug` prints `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which layer of settings files applies, from `INSA_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Folder for the platform's own files (SQLite database, generated JWT secret).
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub api_keys: ApiKeySettings,
    pub mqtt: MqttSettings,
    /// The platform's certificate authority (device certificates).
    #[serde(default)]
    pub ca: CaSettings,
    pub smtp: SmtpSettings,
    pub webhooks: WebhookSettings,
    pub alerts: AlertSettings,
    pub live: LiveSettings,
    pub reports: ReportSettings,
    pub actors: ActorSettings,
    pub devices: DeviceSettings,
    pub ingest: IngestSettings,
    pub log: LogSettings,
    /// Set from `INSA_ENV`, not from files.
    #[serde(skip, default = "development")]
    pub environment: RunMode,
}

fn development() -> RunMode {
    RunMode::Development
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    pub max_body_bytes: usize,
    pub shutdown_timeout_secs: u64,
    /// Where people reach the platform (`https://iiot.site.example`), for links in emails;
    /// default `http://host:port` (`https://` with `tls`).
    pub public_url: Option<String>,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client; from
    /// any other peer the header is ignored, so a client cannot choose its own address for the
    /// audit log or the per-address login throttle.
    pub trusted_proxies: Vec<String>,
    /// A client must send a request's head (line and headers) within this long (408 beyond), so
    /// slow clients cannot hold connections open.
    pub client_request_timeout_ms: u64,
    /// How long a connection being closed may take to shut down before it is dropped.
    pub client_disconnect_timeout_ms: u64,
    /// HTTPS: with a certificate and key the platform serves TLS only on `port`.
    #[serde(default)]
    pub tls: TlsSettings,
}

/// The HTTPS certificate: both files set (PEM) or neither (plain HTTP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of that certificate (PKCS#8, RSA or SEC1).
    pub key_file: Option<PathBuf>,
    /// How often (seconds) the two files' modification times are checked for a reload.
    pub reload_check_secs: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            reload_check_secs: 10,
        }
    }
}

impl TlsSettings {
    /// The certificate and key files when HTTPS is on.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }

    /// How often certificate files (HTTPS's, and MQTTS's own) are checked for a change.
    pub fn reload_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.reload_check_secs.max(1))
    }
}

impl ServerSettings {
    /// `https` when a certificate is configured, else `http`: how clients reach `port`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.files().is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `trusted_proxies` parsed; a plain address is a one-address block. Entries that do not
    /// parse are reported by [`Settings::validate`] and left out here.
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|entry| parse_net(entry))
            .collect()
    }
}

fn parse_net(entry: &str) -> Option<ipnet::IpNet> {
    let entry = entry.trim();
    entry.parse::<ipnet::IpNet>().ok().or_else(|| {
        entry
            .parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// May hold a password: shown only through [`crate::redact::redact_url`].
    pub url: Secret,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout_secs: u64,
    pub allow_sqlite_in_production: bool,
    /// PostgreSQL over TLS: PEM file of the CA(s) the server's certificate is checked against
    /// (`sslrootcert`); with it and no `sslmode` in `url`, `verify-full` applies.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl DatabaseSettings {
    pub fn is_sqlite(&self) -> bool {
        self.url.expose().starts_with("sqlite:")
    }

    /// The `sslmode` connections use: the url's, else `verify-full` when `ca_file` is set (the CA
    /// and the host name checked), else none (the driver's default).
    pub fn effective_ssl_mode(&self) -> Option<String> {
        self.ssl_mode()
            .or_else(|| self.ca_file.as_ref().map(|_| "verify-full".to_string()))
    }

    /// `ca_file`, for a PostgreSQL url (SQLite has no TLS).
    pub fn tls_ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref().filter(|_| !self.is_sqlite())
    }

    /// The `sslmode` of a PostgreSQL url (`verify-full`, ...), when it has one.
    pub fn ssl_mode(&self) -> Option<String> {
        let url = url::Url::parse(self.url.expose()).ok()?;
        url.query_pairs()
            .find(|(key, _)| key == "sslmode" || key == "ssl-mode")
            .map(|(_, value)| value.to_ascii_lowercase())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_secret: Option<Secret>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub admin_email: String,
    pub admin_password: Option<Secret>,
    pub login_attempts_per_account_per_minute: u32,
    pub login_attempts_per_address_per_minute: u32,
    /// `POST /auth/password` attempts allowed per account per minute (guessing the current
    /// password with a stolen access token).
    pub password_attempts_per_account_per_minute: u32,
    /// Refused (throttled) attempts make one audit entry per quota and subject per this many
    /// seconds, with their count.
    pub throttled_audit_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// Requests per hour for keys created without a `rate_limit`.
    pub default_rate_limit: u32,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MqttMode {
    Auto,
    Embedded,
    External,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSettings {
    pub mode: MqttMode,
    pub url: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub persistent_session: bool,
    pub max_unacked: usize,
    /// Keep Mosquitto's dynamic-security clients in step with API keys (external broker).
    pub dynsec: bool,
    /// Largest MQTT packet the embedded broker accepts (a bigger one closes the connection).
    pub max_message_bytes: usize,
    /// Publishes per second one device may make on the embedded broker (over all its
    /// connections and keys), after a burst of `publish_burst_per_device`.
    pub max_publish_per_second_per_device: u32,
    pub publish_burst_per_device: u32,
    /// Topics one device may hold a retained message on (embedded broker).
    pub max_retained_per_device: usize,
    /// Messages the embedded broker queues for one client beyond those in flight (e.g. commands
    /// for a slow device); beyond, the oldest QoS 1 message is dropped.
    pub max_queued_messages_per_client: usize,
    /// How long a rule's MQTT command waits for the broker's PUBACK before the attempt counts as
    /// failed (and is retried).
    pub command_ack_timeout_secs: u64,
    /// `mqtts://`: PEM file of the CA(s) the broker's certificate is checked against (default:
    /// the public webpki roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `mqtts://`: the platform's client certificate (PEM chain) for a broker that requires one.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// `mqtts://`: the private key of `client_cert_file` (PEM: PKCS#8, RSA or SEC1).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Plain MQTT on `url`'s port (embedded broker); `false` leaves MQTTS only.
    #[serde(default = "enabled")]
    pub plain: bool,
    /// MQTTS on the embedded broker.
    #[serde(default)]
    pub tls: MqttTlsSettings,
}

fn enabled() -> bool {
    true
}

/// MQTTS on the embedded broker: on when `enabled`, or when a certificate is configured here or
/// for HTTPS (`server.tls`, used when these files are not set). Enabled without any certificate
/// file, the broker presents a certificate the platform's CA issues for `hostnames`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttTlsSettings {
    pub enabled: bool,
    /// 0 picks a free port (tests).
    pub port: u16,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Names (DNS or IP) in the certificate the CA issues for the broker when no file is set.
    pub hostnames: Vec<String>,
    /// A connection must finish its TLS handshake within this long.
    pub handshake_timeout_secs: u64,
    /// TLS handshakes in progress at once; a connection beyond is closed at once (the device
    /// retries), so a flood of half-open connections cannot hold the listener.
    pub max_handshakes: usize,
}

impl Default for MqttTlsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            port: 8883,
            cert_file: None,
            key_file: None,
            hostnames: vec!["localhost".into(), "127.0.0.1".into()],
            handshake_timeout_secs: 10,
            max_handshakes: 256,
        }
    }
}

impl MqttTlsSettings {
    /// The certificate and key files set here.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }
}

/// The platform's certificate authority: kept in `data_dir/ca/` (created on the first start) or
/// given as `cert_file` and `key_file` (PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Days a device certificate is valid from its issue.
    pub certificate_days: u32,
    /// Certificates expiring within this many days are counted as expiring (metric, warning).
    pub expiry_warning_days: u32,
}

impl Default for CaSettings {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            certificate_days: 365,
            expiry_warning_days: 30,
        }
    }
}

impl MqttSettings {
    /// Whether `url` asks for TLS (`mqtts://`).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("mqtts://")
    }

    /// Host and port of `url` (`mqtt://host:port`, port 1883 by default; `mqtts://`, 8883).
    pub fn host_port(&self) -> Option<(String, u16)> {
        let default_port = if self.is_tls() { 8883 } else { 1883 };
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        let rest = rest.trim_end_matches('/');
        match rest.rsplit_once(':') {
            Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
            None if !rest.is_empty() => Some((rest.to_string(), default_port)),
            None => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// May hold credentials.
    pub url: Option<Secret>,
    pub from: String,
    /// PEM file of the CA(s) trusted for the SMTP server's certificate, instead of the public
    /// roots (`smtps://` and `smtp+starttls://`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Let webhooks reach loopback, private and link-local addresses (off: SSRF guard).
    pub allow_private: bool,
    pub timeout_secs: u64,
    /// Attempts per delivery (email and webhook) before it is marked failed.
    pub max_attempts: u32,
    /// First retry after this long; doubled each time (with jitter), at most `retry_max_secs`.
    pub retry_base_ms: u64,
    pub retry_max_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// Alert changes (raised or resolved) one (device, rule) notifies per window; beyond, the
    /// changes are recorded on the alert (`raise_count`, `chattering`) without notifying.
    pub max_notifications_per_window: usize,
    pub chatter_window_secs: u64,
    /// Alert changes waiting to be stored, at most; when full a change is dropped and its rule
    /// re-decides on the next value.
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSettings {
    /// Live-feed (WebSocket) connections per user or key.
    pub max_connections_per_user: usize,
    /// A client whose socket does not take a message within this long is closed (`too slow`).
    pub send_timeout_ms: u64,
    /// Devices one connection may subscribe to at once.
    pub max_devices_per_connection: usize,
    /// How long a ticket from `POST /ws/ticket` may wait to be used (once).
    pub ticket_ttl_secs: u64,
    /// Each open connection re-checks its credentials this often (a change made by another
    /// process, such as the command line; changes through the API apply at once).
    pub recheck_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Points one report may hold (CSV streams them; Excel splits sheets at Excel's row limit).
    pub max_points: u64,
    /// Points an Excel, PDF or ZIP report answered at once may hold; beyond, run it as a job.
    pub max_sync_points: u64,
    /// Alerts one report may list.
    pub max_alerts: u64,
    /// Report jobs generated at once; more wait their turn.
    pub max_running_jobs: usize,
    /// Report jobs one user may have queued or running at once (`POST /reports` answers
    /// 429 `too_many_report_jobs` beyond).
    pub max_queued_jobs_per_user: u64,
    /// Hours a finished job's file is kept for download.
    pub keep_hours: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorSettings {
    pub partitions: u32,
    /// Threads for device actors; 0 = one per core.
    pub threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSettings {
    pub inactivity_timeout_secs: u64,
    pub mailbox: usize,
    pub state_flush_ms: u64,
    /// Distinct telemetry keys one device may have (422 `too_many_keys` beyond).
    pub max_keys: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub batch_max_points: usize,
    pub batch_max_delay_ms: u64,
    pub max_in_flight_batches: usize,
    pub max_pending_points: usize,
    pub max_body_bytes: usize,
    pub max_keys_per_reading: usize,
    pub max_records_per_request: usize,
    pub ack_timeout_secs: u64,
}

impl IngestSettings {
    /// The payload bounds HTTP and MQTT ingest apply.
    pub fn limits(&self) -> insa_actors::payload::Limits {
        insa_actors::payload::Limits {
            max_keys: self.max_keys_per_reading,
            max_records: self.max_records_per_request,
            ..insa_actors::payload::Limits::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

/// Settings that cannot be used, with every problem and the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid settings:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Settings {
    /// Loads the layered settings for `INSA_ENV` (default `development`).
    pub fn load() -> Result<Settings, SettingsError> {
        let env_name = std::env::var("INSA_ENV").unwrap_or_else(|_| "development".into());
        let environment = match env_name.as_str() {
            "production" => RunMode::Production,
            "development" | "dev" | "test" => RunMode::Development,
            other => {
                return Err(SettingsError::Invalid(vec![format!(
                    "INSA_ENV: `{other}` is not one of development, production"
                )]))
            }
        };
        let dir =
            PathBuf::from(std::env::var("INSA_SETTINGS_DIR").unwrap_or_else(|_| "settings".into()));
        let config = Config::builder()
            .add_source(File::from_str(EMBEDDED_DEFAULTS, FileFormat::Toml))
            .add_source(File::from(dir.join("default.toml")).required(false))
            .add_source(File::from(dir.join(format!("{env_name}.toml"))).required(false))
            .add_source(
                Environment::with_prefix("INSA")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?;
        let mut settings: Settings = config.try_deserialize()?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    /// The compiled-in defaults alone, without files or environment (tests start from these).
    pub fn defaults() -> Result<Settings, SettingsError> {
        let config = Config::builder()
            .add_source(File::from_str(EMBEDDED_DEFAULTS, FileFormat::Toml))
            .build()?;
        Ok(config.try_deserialize()?)
    }

    /// Whether the embedded broker serves MQTTS: asked for, or a certificate is configured for it
    /// or for HTTPS.
    pub fn mqtt_tls_on(&self) -> bool {
        self.mqtt.tls.enabled
            || self.mqtt.tls.files().is_some()
            || self.server.tls.files().is_some()
    }

    /// Checks every value and reports all problems at once, each naming its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, msg: String| {
            if !ok {
                problems.push(msg);
            }
        };
        check(
            !self.server.host.trim().is_empty(),
            "server.host: must not be empty".into(),
        );
        check(
            (1024..=64 * 1024 * 1024).contains(&self.server.max_body_bytes),
            format!(
                "server.max_body_bytes: {} is outside 1024..=67108864",
                self.server.max_body_bytes
            ),
        );
        let url = self.database.url.expose();
        check(
            url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"),
            format!(
                "database.url: `{}` must start with sqlite:, postgres:// or postgresql://",
                crate::redact::redact_url(url)
            ),
        );
        check(
            self.database.max_connections >= 1,
            "database.max_connections: must be at least 1".into(),
        );
        check(
            self.database.min_connections <= self.database.max_connections,
            "database.min_connections: must not exceed database.max_connections".into(),
        );
        check(
            self.database.ca_file.is_none() || !self.database.is_sqlite(),
            "database.ca_file: applies to PostgreSQL only (database.url is SQLite)".into(),
        );
        if self.database.ca_file.is_some() {
            // Below verify-ca the server's certificate is not checked at all.
            check(
                self.database
                    .ssl_mode()
                    .is_none_or(|mode| mode == "verify-ca" || mode == "verify-full"),
                "database.url: with database.ca_file, sslmode must be verify-full (or verify-ca, \
                 which skips the host name)"
                    .into(),
            );
        }
        check(
            self.database.connect_timeout_secs >= 1,
            "database.connect_timeout_secs: must be at least 1".into(),
        );
        if let Some(secret) = &self.auth.jwt_secret {
            check(
                secret.expose().len() >= 32,
                "auth.jwt_secret: must be at least 32 characters".into(),
            );
        }
        check(
            self.auth.access_token_ttl_secs >= 1,
            "auth.access_token_ttl_secs: must be at least 1".into(),
        );
        check(
            self.auth.refresh_token_ttl_secs > self.auth.access_token_ttl_secs,
            "auth.refresh_token_ttl_secs: must be longer than auth.access_token_ttl_secs".into(),
        );
        check(
            text::looks_like_email(&self.auth.admin_email),
            format!(
                "auth.admin_email: `{}` is not an email address",
                self.auth.admin_email
            ),
        );
        if let Some(password) = &self.auth.admin_password {
            check(
                crate::auth::password_problem(password.expose()).is_none(),
                "auth.admin_password: must be 8 to 1024 characters".into(),
            );
        }
        check(
            self.auth.login_attempts_per_account_per_minute >= 1,
            "auth.login_attempts_per_account_per_minute: must be at least 1".into(),
        );
        check(
            self.auth.login_attempts_per_address_per_minute >= 1,
            "auth.login_attempts_per_address_per_minute: must be at least 1".into(),
        );
        check(
            self.auth.password_attempts_per_account_per_minute >= 1,
            "auth.password_attempts_per_account_per_minute: must be at least 1".into(),
        );
        check(
            (1..=86_400).contains(&self.auth.throttled_audit_window_secs),
            "auth.throttled_audit_window_secs: 1 to 86400".into(),
        );
        for entry in &self.server.trusted_proxies {
            check(
                parse_net(entry).is_some(),
                format!("server.trusted_proxies: `{entry}` is not an address or CIDR block"),
            );
        }
        let tls = &self.server.tls;
        check(
            tls.cert_file.is_none() || tls.key_file.is_some(),
            "server.tls.key_file: must be set with server.tls.cert_file".into(),
        );
        check(
            tls.key_file.is_none() || tls.cert_file.is_some(),
            "server.tls.cert_file: must be set with server.tls.key_file".into(),
        );
        check(
            (1..=86_400).contains(&tls.reload_check_secs),
            "server.tls.reload_check_secs: 1 to 86400".into(),
        );
        check(
            (100..=600_000).contains(&self.server.client_request_timeout_ms),
            "server.client_request_timeout_ms: 100 to 600000".into(),
        );
        check(
            (100..=600_000).contains(&self.server.client_disconnect_timeout_ms),
            "server.client_disconnect_timeout_ms: 100 to 600000".into(),
        );
        check(
            (1..=100_000).contains(&self.live.max_devices_per_connection),
            "live.max_devices_per_connection: 1 to 100000".into(),
        );
        check(
            (1..=600).contains(&self.live.ticket_ttl_secs),
            "live.ticket_ttl_secs: 1 to 600".into(),
        );
        check(
            (1..=60).contains(&self.live.recheck_secs),
            "live.recheck_secs: 1 to 60".into(),
        );
        check(
            self.api_keys.default_rate_limit >= 1,
            "api_keys.default_rate_limit: must be at least 1 request per hour".into(),
        );
        check(
            ["mqtt://", "tcp://", "mqtts://"]
                .iter()
                .any(|p| self.mqtt.url.starts_with(p))
                && self.mqtt.host_port().is_some(),
            format!(
                "mqtt.url: `{}` must be mqtt://host:port (or tcp://host:port), or mqtts://host:port for TLS",
                self.mqtt.url
            ),
        );
        for (key, file) in [
            ("mqtt.ca_file", &self.mqtt.ca_file),
            ("mqtt.client_cert_file", &self.mqtt.client_cert_file),
            ("mqtt.client_key_file", &self.mqtt.client_key_file),
        ] {
            check(
                file.is_none() || self.mqtt.is_tls(),
                format!("{key}: applies to an mqtts:// url only"),
            );
        }
        check(
            self.mqtt.client_cert_file.is_some() == self.mqtt.client_key_file.is_some(),
            "mqtt.client_cert_file, mqtt.client_key_file: set both or neither".into(),
        );
        check(
            !self.mqtt.is_tls() || matches!(self.mqtt.mode, MqttMode::External | MqttMode::Off),
            "mqtt.url: mqtts:// is for an external broker (mqtt.mode = external)".into(),
        );
        check(
            !self.mqtt.client_id.is_empty() && self.mqtt.client_id.len() <= 64,
            "mqtt.client_id: 1 to 64 characters".into(),
        );
        check(
            (1..=65_535).contains(&self.mqtt.max_unacked),
            "mqtt.max_unacked: 1 to 65535 (MQTT packet ids are 16-bit)".into(),
        );
        check(
            (1024..=256 * 1024 * 1024).contains(&self.mqtt.max_message_bytes),
            "mqtt.max_message_bytes: must be 1024..=268435456".into(),
        );
        check(
            self.mqtt.max_publish_per_second_per_device >= 1
                && self.mqtt.publish_burst_per_device >= 1,
            "mqtt.max_publish_per_second_per_device, mqtt.publish_burst_per_device: must be at least 1"
                .into(),
        );
        check(
            self.mqtt.max_retained_per_device <= 100_000,
            "mqtt.max_retained_per_device: must be 0..=100000".into(),
        );
        check(
            (1..=1_000_000).contains(&self.mqtt.max_queued_messages_per_client),
            "mqtt.max_queued_messages_per_client: must be 1..=1000000".into(),
        );
        check(
            (1..=300).contains(&self.mqtt.command_ack_timeout_secs),
            "mqtt.command_ack_timeout_secs: must be 1..=300".into(),
        );
        let mqtt_tls = &self.mqtt.tls;
        check(
            mqtt_tls.cert_file.is_some() == mqtt_tls.key_file.is_some(),
            "mqtt.tls.cert_file, mqtt.tls.key_file: set both or neither".into(),
        );
        check(
            (1..=120).contains(&mqtt_tls.handshake_timeout_secs),
            "mqtt.tls.handshake_timeout_secs: must be 1..=120".into(),
        );
        check(
            (1..=100_000).contains(&mqtt_tls.max_handshakes),
            "mqtt.tls.max_handshakes: must be 1..=100000".into(),
        );
        check(
            !mqtt_tls.hostnames.is_empty()
                && mqtt_tls.hostnames.iter().all(|h| !h.trim().is_empty()),
            "mqtt.tls.hostnames: at least one name, none empty".into(),
        );
        check(
            self.mqtt.plain || self.mqtt_tls_on(),
            "mqtt.plain = false needs MQTTS (mqtt.tls.enabled, or a certificate in mqtt.tls or server.tls)".into(),
        );
        check(
            self.ca.cert_file.is_some() == self.ca.key_file.is_some(),
            "ca.cert_file, ca.key_file: set both or neither".into(),
        );
        check(
            (1..=3650).contains(&self.ca.certificate_days),
            "ca.certificate_days: must be 1..=3650".into(),
        );
        check(
            (1..=365).contains(&self.ca.expiry_warning_days),
            "ca.expiry_warning_days: must be 1..=365".into(),
        );
        check(
            self.webhooks.max_attempts >= 1 && self.webhooks.timeout_secs >= 1,
            "webhooks.max_attempts and webhooks.timeout_secs: at least 1".into(),
        );
        check(
            (1..=1000).contains(&self.alerts.max_notifications_per_window),
            "alerts.max_notifications_per_window: must be within 1..=1000".into(),
        );
        check(
            (1..=7 * 24 * 3600).contains(&self.alerts.chatter_window_secs),
            "alerts.chatter_window_secs: must be within 1..=604800".into(),
        );
        check(
            (1..=1_000_000).contains(&self.alerts.queue_capacity),
            "alerts.queue_capacity: must be within 1..=1000000".into(),
        );
        if let Some(smtp) = &self.smtp.url {
            let smtp = smtp.expose();
            check(
                ["smtp://", "smtps://", "smtp+starttls://"]
                    .iter()
                    .any(|p| smtp.starts_with(p)),
                "smtp.url: must start with smtp://, smtp+starttls:// or smtps://".into(),
            );
            // The scheme alone chooses TLS: `?tls=opportunistic` would fall back to plain text.
            check(
                !url::Url::parse(smtp).is_ok_and(|url| url.query_pairs().any(|(k, _)| k == "tls")),
                "smtp.url: no `tls` parameter; use smtp+starttls:// (STARTTLS required) or smtps://"
                    .into(),
            );
            check(
                self.smtp.ca_file.is_none() || !smtp.starts_with("smtp://"),
                "smtp.ca_file: applies to smtps:// and smtp+starttls:// only".into(),
            );
        } else {
            check(
                self.smtp.ca_file.is_none(),
                "smtp.ca_file: set without smtp.url".into(),
            );
        }
        check(
            self.reports.max_points >= 1
                && (1..=self.reports.max_points).contains(&self.reports.max_sync_points)
                && self.reports.max_alerts >= 1
                && self.reports.max_running_jobs >= 1
                && self.reports.keep_hours >= 1,
            "reports: max_points, max_alerts, max_running_jobs, keep_hours at least 1, and max_sync_points 1..=max_points".into(),
        );
        check(
            (1..=1000).contains(&self.reports.max_queued_jobs_per_user),
            "reports.max_queued_jobs_per_user: must be within 1..=1000".into(),
        );
        check(
            (1..=65_536).contains(&self.actors.partitions),
            format!(
                "actors.partitions: {} is outside 1..=65536",
                self.actors.partitions
            ),
        );
        check(
            self.devices.inactivity_timeout_secs >= 1,
            "devices.inactivity_timeout_secs: must be at least 1".into(),
        );
        check(
            (1..=1_000_000).contains(&self.devices.mailbox),
            "devices.mailbox: must be 1..=1000000".into(),
        );
        check(
            (10..=60_000).contains(&self.devices.state_flush_ms),
            "devices.state_flush_ms: must be 10..=60000".into(),
        );
        check(
            (1..=1_000_000).contains(&self.devices.max_keys),
            "devices.max_keys: must be 1..=1000000".into(),
        );
        check(
            (1..=1_000_000).contains(&self.ingest.batch_max_points),
            "ingest.batch_max_points: must be 1..=1000000".into(),
        );
        check(
            self.ingest.batch_max_delay_ms <= 10_000,
            "ingest.batch_max_delay_ms: must be at most 10000".into(),
        );
        check(
            (1..=64).contains(&self.ingest.max_in_flight_batches),
            "ingest.max_in_flight_batches: must be 1..=64".into(),
        );
        check(
            self.ingest.max_pending_points >= self.ingest.batch_max_points,
            "ingest.max_pending_points: must be at least ingest.batch_max_points".into(),
        );
        check(
            (1024..=256 * 1024 * 1024).contains(&self.ingest.max_body_bytes),
            "ingest.max_body_bytes: must be 1024..=268435456".into(),
        );
        check(
            self.ingest.max_keys_per_reading >= 1 && self.ingest.max_records_per_request >= 1,
            "ingest.max_keys_per_reading, ingest.max_records_per_request: must be at least 1"
                .into(),
        );
        check(
            self.ingest.ack_timeout_secs >= 1,
            "ingest.ack_timeout_secs: must be at least 1".into(),
        );
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            format!("log.level: `{}` is not a valid filter", self.log.level),
        );
        if self.environment == RunMode::Production {
            check(
                self.auth.jwt_secret.is_some(),
                "auth.jwt_secret: required when INSA_ENV=production (set INSA__AUTH__JWT_SECRET)"
                    .into(),
            );
            check(
                !self.database.is_sqlite() || self.database.allow_sqlite_in_production,
                "database.url: SQLite is refused when INSA_ENV=production; use PostgreSQL or set database.allow_sqlite_in_production = true".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let settings = Settings::defaults().expect("defaults load");
        settings.validate().expect("defaults validate");
        assert_eq!(settings.server.port, 5002);
        assert_eq!(settings.server.host, "127.0.0.1");
        assert_eq!(settings.actors.partitions, 64);
    }

    #[test]
    fn production_needs_a_secret_and_refuses_sqlite() {
        let mut settings = Settings::defaults().expect("defaults load");
        settings.environment = RunMode::Production;
        let message = settings.validate().expect_err("must refuse").to_string();
        assert!(message.contains("auth.jwt_secret"), "{message}");
        assert!(message.contains("database.url"), "{message}");

        settings.auth.jwt_secret = Some(Secret::new("x".repeat(40)));
        settings.database.allow_sqlite_in_production = true;
        settings.validate().expect("explicitly allowed");
    }

    #[test]
    fn every_bad_key_is_named() {
        let mut settings = Settings::defaults().expect("defaults load");
        settings.database.url = Secret::new("mysql://root:hunter2@db/x");
        settings.actors.partitions = 0;
        settings.auth.admin_email = "nobody".into();
        let message = settings.validate().expect_err("must refuse").to_string();
        for key in ["database.url", "actors.partitions", "auth.admin_email"] {
            assert!(message.contains(key), "{key} missing from: {message}");
        }
        assert!(!message.contains("hunter2"), "password leaked: {message}");
    }

    #[test]
    fn every_bad_mqtt_limit_is_named() {
        let mut settings = Settings::defaults().expect("defaults load");
        settings.mqtt.max_message_bytes = 10;
        settings.mqtt.max_publish_per_second_per_device = 0;
        settings.mqtt.max_queued_messages_per_client = 0;
        settings.mqtt.command_ack_timeout_secs = 0;
        let message = settings.validate().expect_err("must refuse").to_string();
        for key in [
            "mqtt.max_message_bytes",
            "mqtt.max_publish_per_second_per_device",
            "mqtt.max_queued_messages_per_client",
            "mqtt.command_ack_timeout_secs",
        ] {
            assert!(message.contains(key), "{key} missing from: {message}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let secret = Secret::new("top-secret-value");
        assert_eq!(format!("{secret:?}"), "***");
    }
}
