//! Starting the real platform for a test, and talking to it like a client does.

use std::time::{Duration, Instant};

use insa_iiot::settings::{Secret, Settings};
use insa_iiot::startup::Application;
use reqwest::{Method, StatusCode};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, TransactionTrait,
};
use serde_json::{json, Value};
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@insa.com";
pub const ADMIN_PASSWORD: &str = "admin-test-password";

pub struct TestApp {
    pub address: String,
    /// Where the platform's MQTT broker is (`host`, `port`), when MQTT is on.
    pub mqtt: Option<(String, u16)>,
    pub client: reqwest::Client,
    /// The platform's own database connection, to inspect state or simulate an outage.
    pub db: DatabaseConnection,
    /// The telemetry pipeline, to observe device actors.
    pub pipeline: insa_actors::Pipeline,
    /// The port of MQTTS on the embedded broker, when it is on.
    pub mqtts_port: Option<u16>,
    /// The certificates the MQTTS listener accepts.
    pub certificates: std::sync::Arc<insa_iiot::ca::ActiveCertificates>,
    /// The platform's data directory (its CA lives in `ca/`).
    pub data_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A fresh database for one test: a new PostgreSQL database when `DATABASE_URL` is set, else a
/// SQLite file in `dir`.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match std::env::var("DATABASE_URL") {
        Ok(server_url) if !server_url.is_empty() => {
            let name = format!("insa_test_{}", Uuid::new_v4().simple());
            let admin = Database::connect(&server_url)
                .await
                .expect("connect to DATABASE_URL");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
            admin.close().await.ok();
            with_database_name(&server_url, &name)
        }
        _ => format!("sqlite://{}/insa-test.db?mode=rwc", dir.display()),
    }
}

/// Replaces the database name of a PostgreSQL URL, keeping its query string.
fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Settings for a test: free port, one worker, a fresh database, a known admin password.
pub async fn test_settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::defaults().expect("embedded defaults");
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.data_dir = dir.to_path_buf();
    settings.database.url = Secret::new(fresh_database_url(dir).await);
    settings.database.max_connections = 5;
    settings.auth.admin_password = Some(Secret::new(ADMIN_PASSWORD));
    // MQTT only where a test asks for it (`with_mqtt`).
    settings.mqtt.mode = insa_iiot::settings::MqttMode::Off;
    // MQTTS (where a test turns it on) on a free port.
    settings.mqtt.tls.port = 0;
    // Tests log in often; the throttling tests lower these.
    settings.auth.login_attempts_per_account_per_minute = 1000;
    settings.auth.login_attempts_per_address_per_minute = 1000;
    settings.auth.password_attempts_per_account_per_minute = 1000;
    settings
}

/// The broker the MQTT tests use: Mosquitto (or any broker) at `MQTT_URL` when set, else the
/// embedded broker on port 0 (it binds a free port and reports it: `TestApp::mqtt`).
pub fn with_mqtt(settings: &mut Settings) {
    settings.mqtt.client_id = format!("insa-test-{}", &Uuid::new_v4().simple().to_string()[..12]);
    settings.mqtt.persistent_session = false;
    match std::env::var("MQTT_URL") {
        Ok(url) if !url.is_empty() => {
            settings.mqtt.mode = insa_iiot::settings::MqttMode::External;
            settings.mqtt.url = url;
        }
        _ => {
            settings.mqtt.mode = insa_iiot::settings::MqttMode::Embedded;
            settings.mqtt.url = "mqtt://127.0.0.1:0".into();
        }
    }
}

/// Whether MQTT tests run against an external broker (`MQTT_URL`).
pub fn external_broker() -> bool {
    std::env::var("MQTT_URL").is_ok_and(|url| !url.is_empty())
}

/// A port that was free a moment ago: bound, read and released. Another process may take it
/// before it is used, so it serves only programs that cannot bind port 0 and report the port they
/// got (chromedriver, Mosquitto); their starters retry on another port when it was taken.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The error that stops the platform's start-up with settings that are valid but name something
/// unusable (a bad file, an untrusted server); `what` says what should have stopped it.
pub async fn start_error(what: &str, customize: impl FnOnce(&mut Settings)) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path()).await;
    customize(&mut settings);
    settings.validate().expect("valid settings");
    match Application::build(settings).await {
        Ok(_) => panic!("started despite {what}"),
        Err(err) => format!("{err:#}"),
    }
}

/// Runs a command off the test's runtime thread, its input closed.
pub async fn run(program: &'static str, args: Vec<String>) -> std::process::Output {
    actix_web::rt::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run a command")
    })
    .await
    .expect("command thread")
}

/// What a command printed: its output, then its errors.
pub fn printed(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    insa_iiot::install_crypto_provider();
    if std::env::var("TEST_LOG").is_ok() {
        let settings = Settings::defaults().expect("defaults");
        insa_iiot::telemetry_log::init(&settings.log);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path()).await;
    customize(&mut settings);
    let scheme = settings.server.scheme();
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let mqtt = app.mqtt_address().map(|address| {
        let (host, port) = address.rsplit_once(':').expect("host:port");
        (host.to_string(), port.parse().expect("a port"))
    });
    let address = format!("{scheme}://127.0.0.1:{}", app.port());
    let db = app.db();
    let pipeline = app.pipeline();
    let mqtts_port = app.mqtts_address().map(|address| {
        let (_, port) = address.rsplit_once(':').expect("host:port");
        port.parse().expect("a port")
    });
    let certificates = app.certificates();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        mqtt,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        db,
        pipeline,
        mqtts_port,
        certificates,
        data_dir: dir.path().to_path_buf(),
        _dir: dir,
    }
}

/// A response read whole: status, headers and JSON body (`Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The error code of a standard error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    /// The fields named by a 422 `validation_failed` body, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.body["error"]["details"]["fields"]
            .as_array()
            .map(|fields| fields.iter().filter_map(|f| f["field"].as_str()).collect())
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

/// Who is calling.
#[derive(Clone, Copy)]
pub enum As<'a> {
    Nobody,
    Bearer(&'a str),
    ApiKey(&'a str),
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request to `path` as `who`, with `body` as JSON, ready to send.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, self.url(path));
        request = match who {
            As::Nobody => request,
            As::Bearer(token) => request.bearer_auth(token),
            As::ApiKey(key) => request.header("X-API-Key", key),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Option<&Value>,
    ) -> Reply {
        let request = self.request(method, path, who, body);
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, who: As<'_>) -> Reply {
        self.send(Method::GET, path, who, None).await
    }

    pub async fn post(&self, path: &str, who: As<'_>, body: &Value) -> Reply {
        self.send(Method::POST, path, who, Some(body)).await
    }

    pub async fn put(&self, path: &str, who: As<'_>, body: &Value) -> Reply {
        self.send(Method::PUT, path, who, Some(body)).await
    }

    pub async fn delete(&self, path: &str, who: As<'_>) -> Reply {
        self.send(Method::DELETE, path, who, None).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/v1/auth/login",
            As::Nobody,
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    /// Logs in and returns the access token, failing the test otherwise.
    pub async fn token_for(&self, email: &str, password: &str) -> String {
        let reply = self.login(email, password).await;
        assert_eq!(reply.status, StatusCode::OK, "login of {email}: {reply:?}");
        reply.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.token_for(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a user of `role` and returns (email, password, access token).
    pub async fn user_with_role(&self, admin: &str, role: &str) -> (String, String, String) {
        let email = format!(
            "{role}-{}@insa.com",
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let password = format!("{role}-password-1");
        let reply = self
            .post(
                "/api/v1/users",
                As::Bearer(admin),
                &json!({ "email": email, "password": password, "role": role }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "create {role}: {reply:?}"
        );
        let token = self.token_for(&email, &password).await;
        (email, password, token)
    }

    /// Posts one reading of `telemetry` for the device (as `token`) and expects it stored.
    pub async fn send_reading(&self, token: &str, device: &str, telemetry: Value) {
        let reply = self
            .post(
                "/api/v1/telemetry",
                As::Bearer(token),
                &json!({"device_id": device, "telemetry": telemetry}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    }

    /// The admin's token and a pressure device ("Wellhead 9", area North, location Pad 3) whose
    /// rule "High pressure" (`pressure > 80`, hysteresis 5, critical) runs `action`.
    pub async fn watched_wellhead(&self, action: Value) -> (String, String) {
        let token = self.admin_token().await;
        let device = self
            .create_device(
                &token,
                json!({"name": "Wellhead 9", "type": "pressure", "area": "North", "location": "Pad 3"}),
            )
            .await;
        let id = device["id"].as_str().expect("id").to_string();
        let rule = self
            .post(
                "/api/v1/rules",
                As::Bearer(&token),
                &json!({"name": "High pressure", "device_id": id, "key": "pressure",
                        "condition": ">", "threshold": 80, "hysteresis": 5, "severity": "critical",
                        "actions": [action]}),
            )
            .await;
        assert_eq!(rule.status, StatusCode::CREATED, "{rule:?}");
        (token, id)
    }

    /// Creates a device and returns its JSON.
    pub async fn create_device(&self, token: &str, body: Value) -> Value {
        let reply = self.post("/api/v1/devices", As::Bearer(token), &body).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "create device: {reply:?}"
        );
        reply.body
    }

    /// How many readings of `device` are stored (up to 10,000), as its history answers.
    pub async fn stored_rows(&self, token: &str, device: &str) -> u64 {
        let reply = self
            .get(
                &format!("/api/v1/telemetry?device_id={device}&limit=10000"),
                As::Bearer(token),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body["count"].as_u64().expect("count")
    }

    /// Registers a device and returns its id.
    pub async fn create_device_id(&self, token: &str, body: Value) -> String {
        self.create_device(token, body).await["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// Creates an API key and returns (key, key_info).
    pub async fn create_api_key(&self, token: &str, body: Value) -> (String, Value) {
        let reply = self
            .post("/api/v1/api-keys", As::Bearer(token), &body)
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "create key: {reply:?}");
        (
            reply.body["api_key"].as_str().expect("api_key").to_string(),
            reply.body["key_info"].clone(),
        )
    }
}

pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{status}: body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Polls `check` until it returns `Some`, failing after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The product README's "Ingest Telemetry" body for this device.
pub fn seed_reading(device_id: &str) -> Value {
    json!({
        "device_id": device_id,
        "timestamp": "2025-10-27T16:30:00Z",
        "telemetry": {
            "temperature": {"value": 25.5, "unit": "C", "quality": 100},
            "humidity": {"value": 65, "unit": "%"},
            "pressure": {"value": 1013, "unit": "hPa"}
        }
    })
}

/// The seed's "Create Device" body, as written.
pub fn seed_device() -> Value {
    json!({
        "name": "Temperature Sensor 01",
        "type": "temperature",
        "area": "Empaque",
        "location": "Zone A",
        "protocol": "mqtt",
        "config": {
            "sampling_rate": 60,
            "alert_threshold": 50
        },
        "metadata": {
            "manufacturer": "Honeywell",
            "model": "T6800",
            "firmware": "v2.1.0"
        }
    })
}

/// Holds back every write to `telemetry`, as a stalled database would, until the returned
/// transaction is rolled back.
pub async fn stall_telemetry_writes(app: &TestApp) -> DatabaseTransaction {
    let txn = app.db.begin().await.expect("begin");
    let sql = match app.db.get_database_backend() {
        DbBackend::Postgres => "LOCK TABLE telemetry IN EXCLUSIVE MODE",
        // Takes SQLite's write lock: other writers wait (busy timeout), readers go on.
        _ => "DELETE FROM telemetry WHERE 1 = 0",
    };
    txn.execute_unprepared(sql).await.expect("stall writes");
    txn
}

#[cfg(test)]
mod tests {
    use super::with_database_name;

    #[test]
    fn database_name_is_replaced_keeping_the_query() {
        assert_eq!(
            with_database_name("postgres://u@127.0.0.1:5432/test?sslmode=disable", "x"),
            "postgres://u@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database_name("postgres://127.0.0.1", "x"),
            "postgres://127.0.0.1/x"
        );
    }
}
