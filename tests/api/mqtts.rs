//! MQTTS on the embedded broker and device certificates from the platform's CA, driven by clients
//! that are not ours: `mosquitto_pub` / `mosquitto_sub` (TLS, client certificates) and
//! `openssl` (CSRs, a foreign CA, `s_client` to see why a handshake is refused), and paho-mqtt
//! (scripts/mqtt-tls-publish.py).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    eventually, free_port, printed as text, run, seed_device, spawn_app_with, As, TestApp,
};
use crate::pki::{mosquitto_args, Login};

/// The clients these tests drive; `None` (and a message) when one is missing, a failure where
/// they must be there (`INSA_TLS_CLIENTS=required`, as `.ci/run` sets).
fn clients_present() -> bool {
    ["openssl", "mosquitto_pub", "mosquitto_sub"]
        .iter()
        .all(|tool| crate::pki::tool_available(tool, "INSA_TLS_CLIENTS"))
}

/// The platform with its embedded broker serving MQTTS (whatever `MQTT_URL` says: MQTTS is the
/// embedded broker's), its certificate issued by the platform's CA.
async fn mqtts_app(customize: impl FnOnce(&mut insa_iiot::settings::Settings)) -> TestApp {
    spawn_app_with(|s| {
        crate::helpers::with_mqtt(s);
        s.mqtt.mode = insa_iiot::settings::MqttMode::Embedded;
        s.mqtt.url = "mqtt://127.0.0.1:0".into();
        s.mqtt.tls.enabled = true;
        customize(s);
    })
    .await
}

/// A platform serving MQTTS (from [`mqtts_app`]), its MQTTS port, the admin's token, and a
/// folder holding the platform's CA as a device fetches it (`ca.pem`); `None` (the test skips)
/// where the clients are missing.
struct Site {
    app: TestApp,
    port: u16,
    token: String,
    files: Files,
}

async fn site(customize: impl FnOnce(&mut insa_iiot::settings::Settings)) -> Option<Site> {
    if !clients_present() {
        return None;
    }
    let app = mqtts_app(customize).await;
    let port = app.mqtts_port.expect("MQTTS on");
    let token = app.admin_token().await;
    let files = Files::new();
    fetch_ca(&app, &files).await;
    Some(Site {
        app,
        port,
        token,
        files,
    })
}

/// PEM files in a temporary directory.
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("tempdir"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write a PEM file");
        path.display().to_string()
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// The CA certificate as a device fetches it: no credentials.
async fn fetch_ca(app: &TestApp, files: &Files) {
    let reply = app
        .client
        .get(app.url("/api/v1/ca"))
        .send()
        .await
        .expect("GET /ca");
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(
        reply
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-pem-file")
    );
    let pem = reply.text().await.expect("PEM");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    files.write("ca.pem", &pem);
}

/// Issues a certificate for `device` with a generated key; writes `{name}.pem` and `{name}.key`.
async fn issue(app: &TestApp, token: &str, device: &str, files: &Files, name: &str) -> Value {
    let reply = app
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            As::Bearer(token),
            &json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let body = reply.body;
    files.write(
        &format!("{name}.pem"),
        body["certificate_pem"].as_str().expect("certificate"),
    );
    files.write(
        &format!("{name}.key"),
        body["private_key_pem"].as_str().expect("generated key"),
    );
    body
}

/// Mosquitto client arguments for the MQTTS port, trusting the platform's CA (`ca.pem`).
fn client_args(
    port: u16,
    files: &Files,
    login: Login,
    client_id: &str,
    rest: &[&str],
) -> Vec<String> {
    mosquitto_args(port, &files.path("ca.pem"), login, Some(client_id), rest)
}

/// `mosquitto_pub` of one reading at QoS 1 (it ends once acknowledged).
async fn publish(
    port: u16,
    files: &Files,
    login: Login<'_>,
    client_id: &str,
    topic: &str,
    extra: &[&str],
) -> Output {
    let reading = json!({"pressure": 42.5}).to_string();
    let mut rest = vec!["-t", topic, "-q", "1", "-m", &reading];
    rest.extend(extra);
    run(
        "mosquitto_pub",
        client_args(port, files, login, client_id, &rest),
    )
    .await
}

/// `mosquitto_pub` over MQTTS with a client certificate.
async fn publish_with_cert(
    port: u16,
    files: &Files,
    cert: &str,
    client_id: &str,
    topic: &str,
    extra: &[&str],
) -> Output {
    publish(
        port,
        files,
        Login::Certificate(files.0.path(), cert),
        client_id,
        topic,
        extra,
    )
    .await
}

/// `openssl s_client` with a client certificate, TLS 1.2 (the server judges the certificate
/// within the handshake): what it printed.
async fn handshake_with(port: u16, files: &Files, cert: &str) -> String {
    let out = run(
        "openssl",
        vec![
            "s_client".into(),
            "-connect".into(),
            format!("127.0.0.1:{port}"),
            "-tls1_2".into(),
            "-CAfile".into(),
            files.arg("ca.pem"),
            "-cert".into(),
            files.arg(&format!("{cert}.pem")),
            "-key".into(),
            files.arg(&format!("{cert}.key")),
        ],
    )
    .await;
    text(&out)
}

async fn device(app: &TestApp, token: &str) -> String {
    app.create_device_id(token, seed_device()).await
}

#[actix_web::test]
async fn a_device_with_a_certificate_publishes_over_mqtts_and_its_reading_is_stored() {
    let Some(Site {
        app,
        port,
        token,
        files,
    }) = site(|_| {}).await
    else {
        return;
    };

    // A key generated by the platform, answered once.
    let id = device(&app, &token).await;
    let issued = issue(&app, &token, &id, &files, "device").await;
    assert_eq!(issued["device_id"], json!(id));
    assert_eq!(issued["status"], "active");
    assert_eq!(issued["key_source"], "generated");
    let out = publish_with_cert(
        port,
        &files,
        "device",
        &id,
        &format!("devices/{id}/telemetry"),
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    // QoS 1 acknowledged: stored.
    assert_eq!(app.stored_rows(&token, &id).await, 1);

    // A key the device made itself: a CSR, whatever subject it names.
    let other = device(&app, &token).await;
    let made = run(
        "openssl",
        vec![
            "req".into(),
            "-new".into(),
            "-newkey".into(),
            "ec".into(),
            "-pkeyopt".into(),
            "ec_paramgen_curve:prime256v1".into(),
            "-nodes".into(),
            "-keyout".into(),
            files.arg("own.key"),
            "-out".into(),
            files.arg("own.csr"),
            "-subj".into(),
            "/CN=not-the-device".into(),
        ],
    )
    .await;
    assert!(made.status.success(), "{}", text(&made));
    let csr = std::fs::read_to_string(files.path("own.csr")).expect("csr");
    let reply = app
        .post(
            &format!("/api/v1/devices/{other}/certificates"),
            As::Bearer(&token),
            &json!({"csr_pem": csr, "valid_days": 30}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert!(reply.body.get("private_key_pem").is_none(), "{reply:?}");
    assert_eq!(reply.body["key_source"], "csr");
    assert!(matches!(
        reply.body["expires_in_days"].as_i64(),
        Some(29 | 30)
    ));
    files.write(
        "own.pem",
        reply.body["certificate_pem"].as_str().expect("pem"),
    );
    let subject = run(
        "openssl",
        vec![
            "x509".into(),
            "-in".into(),
            files.arg("own.pem"),
            "-noout".into(),
            "-subject".into(),
        ],
    )
    .await;
    assert!(
        text(&subject).contains(&format!("CN = {other}")),
        "{}",
        text(&subject)
    );
    let out = publish_with_cert(
        port,
        &files,
        "own",
        &format!("{other}-pump"),
        &format!("devices/{other}/telemetry"),
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(app.stored_rows(&token, &other).await, 1);

    // Listed (never with a key); a bad CSR is refused by field.
    let list = app
        .get(
            &format!("/api/v1/devices/{id}/certificates"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{list:?}");
    assert_eq!(list.body["total"], 1);
    assert!(list.body["certificates"][0]
        .get("private_key_pem")
        .is_none());
    let bad = app
        .post(
            &format!("/api/v1/devices/{id}/certificates"),
            As::Bearer(&token),
            &json!({"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    assert_eq!(bad.fields(), ["csr_pem"]);
}

#[actix_web::test]
async fn a_certificate_cannot_publish_or_subscribe_under_another_device() {
    let Some(Site {
        app,
        port,
        token,
        files,
    }) = site(|_| {}).await
    else {
        return;
    };
    let a = device(&app, &token).await;
    let b = device(&app, &token).await;
    issue(&app, &token, &a, &files, "a").await;

    // A's certificate with B's client id: refused at CONNECT.
    let out = publish_with_cert(
        port,
        &files,
        "a",
        &b,
        &format!("devices/{a}/telemetry"),
        &[],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    // A's certificate on B's topic: the publish is refused and the connection closed.
    let out = publish_with_cert(
        port,
        &files,
        "a",
        &a,
        &format!("devices/{b}/telemetry"),
        &["-V", "mqttv5"],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    // Nor may it listen to B's commands.
    let commands = format!("devices/{b}/commands");
    let args = client_args(
        port,
        &files,
        Login::Certificate(files.0.path(), "a"),
        &a,
        &["-d", "-V", "mqttv5", "-t", &commands, "-C", "1", "-W", "3"],
    );
    let out = run("mosquitto_sub", args).await;
    assert!(
        text(&out).contains("denied"),
        "the subscription was not refused: {}",
        text(&out)
    );
    // A's own reading, sent after, is stored; nothing ever reached B.
    let out = publish_with_cert(
        port,
        &files,
        "a",
        &a,
        &format!("devices/{a}/telemetry"),
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(app.stored_rows(&token, &a).await, 1);
    assert_eq!(app.stored_rows(&token, &b).await, 0);
}

/// A `mosquitto_sub` holding an MQTTS session with a certificate, started once subscribed.
struct Listener {
    child: std::process::Child,
}

impl Listener {
    async fn start(port: u16, files: &Files, cert: &str, device: &str) -> Self {
        // Line-buffered, so its debug lines arrive as they are printed.
        let topic = format!("devices/{device}/commands");
        let args = client_args(
            port,
            files,
            Login::Certificate(files.0.path(), cert),
            device,
            &["-d", "-t", &topic],
        );
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg("mosquitto_sub")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let stdout = child.stdout.take().expect("stdout");
        // Its debug output says when the broker acknowledged the subscription.
        let subscribed = actix_web::rt::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|line| line.contains("SUBACK"))
        });
        let subscribed = tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("subscribed within 10 s")
            .expect("reader");
        assert!(subscribed, "mosquitto_sub ended before subscribing");
        Self { child }
    }

    /// Waits for the process to end (its connection closed by the broker).
    async fn ended_within(&mut self, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if self.child.try_wait().expect("wait").is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn a_revoked_certificate_loses_its_live_session_within_5_s_and_is_refused_at_the_handshake() {
    let Some(Site {
        app,
        port,
        token,
        files,
    }) = site(|_| {}).await
    else {
        return;
    };
    let id = device(&app, &token).await;
    let issued = issue(&app, &token, &id, &files, "device").await;
    let cert_id = issued["id"].as_str().expect("id").to_string();
    assert!(handshake_with(port, &files, "device")
        .await
        .contains("Verify return code: 0 (ok)"));

    let mut session = Listener::start(port, &files, "device", &id).await;
    let revoked = app
        .delete(
            &format!("/api/v1/devices/{id}/certificates/{cert_id}"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    assert_eq!(revoked.body["certificate"]["status"], "revoked");
    assert!(
        session.ended_within(Duration::from_secs(5)).await,
        "the revoked certificate's session is still open after 5 s"
    );
    // From now on the handshake itself refuses it, and nothing it sends is stored.
    let refused = handshake_with(port, &files, "device").await;
    assert!(refused.contains("certificate revoked"), "{refused}");
    let out = publish_with_cert(
        port,
        &files,
        "device",
        &id,
        &format!("devices/{id}/telemetry"),
        &[],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(app.stored_rows(&token, &id).await, 0);

    // The audit log has both.
    let audit = app
        .get("/api/v1/audit-log?limit=50", As::Bearer(&token))
        .await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"device_certificate.issue"), "{audit:?}");
    assert!(actions.contains(&"device_certificate.revoke"), "{audit:?}");

    // Deleting a device ends its certificates too.
    let other = device(&app, &token).await;
    issue(&app, &token, &other, &files, "other").await;
    let mut session = Listener::start(port, &files, "other", &other).await;
    let deleted = app
        .delete(&format!("/api/v1/devices/{other}"), As::Bearer(&token))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    assert!(session.ended_within(Duration::from_secs(5)).await);
    assert!(handshake_with(port, &files, "other")
        .await
        .contains("certificate revoked"));
}

/// A certificate signed by the platform's CA key directly, valid in the past only.
fn expired_certificate(data_dir: &Path, device: &str, files: &Files) -> String {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    let ca_pem = std::fs::read_to_string(data_dir.join("ca/ca.pem")).expect("CA");
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(data_dir.join("ca/ca.key")).expect("key"))
            .expect("CA key");
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, device.to_string());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now =
        time::OffsetDateTime::from_unix_timestamp(chrono::Utc::now().timestamp()).expect("now");
    params.not_before = now - time::Duration::days(10);
    params.not_after = now - time::Duration::days(1);
    let cert = params.signed_by(&key, &issuer).expect("signed");
    files.write("expired.pem", &cert.pem());
    files.write("expired.key", &key.serialize_pem());
    insa_iiot::ca::CertIdentity::read(cert.der())
        .expect("readable")
        .serial
}

#[actix_web::test]
async fn certificates_of_another_ca_or_expired_are_refused_at_the_handshake() {
    let Some(Site {
        app,
        port,
        token,
        files,
    }) = site(|_| {}).await
    else {
        return;
    };
    let id = device(&app, &token).await;

    // Another CA's certificate naming the device.
    let Some(rogue) = crate::pki::Pki::requiring("INSA_TLS_CLIENTS") else {
        return;
    };
    rogue.issue_with(&id, 1, crate::pki::KeyForm::Pkcs8, crate::pki::CLIENT);
    for (from, to) in [("pem", "rogue.pem"), ("key", "rogue.key")] {
        std::fs::copy(rogue.path(&format!("{id}.{from}")), files.path(to)).expect("copy");
    }
    let refused = handshake_with(port, &files, "rogue").await;
    // rustls answers an issuer it does not know with the alert unknown_ca.
    assert!(refused.contains("alert unknown ca"), "{refused}");
    let out = publish_with_cert(
        port,
        &files,
        "rogue",
        &id,
        &format!("devices/{id}/telemetry"),
        &[],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));

    // The platform's own CA, accepted by the platform, but expired.
    let serial = expired_certificate(&app.data_dir, &id, &files);
    let now = chrono::Utc::now();
    app.certificates
        .insert(&insa_entities::device_certificates::Model {
            id: uuid::Uuid::new_v4(),
            device_id: id.parse().expect("uuid"),
            serial,
            fingerprint_sha256: String::new(),
            key_source: "csr".into(),
            not_before: now - chrono::Duration::days(10),
            not_after: now - chrono::Duration::days(1),
            created_by: None,
            created_at: now,
            revoked_at: None,
        });
    let refused = handshake_with(port, &files, "expired").await;
    assert!(refused.contains("certificate expired"), "{refused}");
    assert_eq!(app.stored_rows(&token, &id).await, 0);
}

#[actix_web::test]
async fn with_the_plain_port_closed_devices_use_mqtts_with_a_key_or_a_certificate() {
    let plain = free_port();
    let Some(Site {
        app,
        port,
        token,
        files,
    }) = site(|s| {
        s.mqtt.url = format!("mqtt://127.0.0.1:{plain}");
        s.mqtt.plain = false;
    })
    .await
    else {
        return;
    };
    let status = app.get("/api/v1/status", As::Bearer(&token)).await;
    assert_eq!(
        status.body["mqtt"]["address"],
        json!(format!("127.0.0.1:{port}")),
        "{status:?}"
    );
    assert_eq!(status.body["mqtt"]["device_auth"], "api_key_or_certificate");
    let id = device(&app, &token).await;
    let (key, info) = app
        .create_api_key(&token, json!({"name": "tls", "device_id": id}))
        .await;
    let key_id = info["id"].as_str().expect("key id").to_string();

    // Nothing listens on the plain port.
    assert!(std::net::TcpStream::connect(("127.0.0.1", plain)).is_err());
    // An API key over TLS, no client certificate.
    let topic = format!("devices/{id}/telemetry");
    let out = publish(port, &files, Login::Key(&key_id, &key), &id, &topic, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    // No key and no certificate: not authorised.
    let out = publish(port, &files, Login::Nothing, &id, &topic, &[]).await;
    assert!(!out.status.success(), "{}", text(&out));
    eventually(
        Duration::from_secs(5),
        "the key's reading stored",
        || async { (app.stored_rows(&token, &id).await == 1).then_some(()) },
    )
    .await;
}

/// Whether python3 with paho-mqtt is there; a failure where it must be (`INSA_TLS_PEERS=required`,
/// as `.ci/run` sets after `scripts/ensure-python-peers.sh`).
fn paho_present() -> bool {
    crate::pki::python_module_available("paho.mqtt.client", "INSA_TLS_PEERS")
}

/// One QoS 1 reading published by paho-mqtt over MQTTS with the certificate `{cert}.pem/.key`.
async fn paho_publish(port: u16, files: &Files, cert: &str, device: &str) -> Output {
    let script = format!("{}/scripts/mqtt-tls-publish.py", env!("CARGO_MANIFEST_DIR"));
    run(
        "python3",
        vec![
            script,
            "--port".into(),
            port.to_string(),
            "--cafile".into(),
            files.arg("ca.pem"),
            "--cert".into(),
            files.arg(&format!("{cert}.pem")),
            "--key".into(),
            files.arg(&format!("{cert}.key")),
            "--client-id".into(),
            format!("{device}-paho"),
            "--topic".into(),
            format!("devices/{device}/telemetry"),
            "--message".into(),
            json!({"pressure": 7.5}).to_string(),
        ],
    )
    .await
}

#[actix_web::test]
async fn a_paho_client_publishes_with_its_certificate_and_cannot_once_it_is_revoked() {
    if !paho_present() {
        return;
    }
    let Some(Site {
        app,
        port,
        token,
        files,
    }) = site(|_| {}).await
    else {
        return;
    };
    let id = device(&app, &token).await;
    let issued = issue(&app, &token, &id, &files, "device").await;

    let out = paho_publish(port, &files, "device", &id).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "acknowledged",
        "{}",
        text(&out)
    );
    assert_eq!(app.stored_rows(&token, &id).await, 1);

    let cert_id = issued["id"].as_str().expect("id");
    let revoked = app
        .delete(
            &format!("/api/v1/devices/{id}/certificates/{cert_id}"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    let out = paho_publish(port, &files, "device", &id).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(app.stored_rows(&token, &id).await, 1);
}

#[actix_web::test]
async fn connections_beyond_the_handshake_limit_are_closed_until_a_slot_frees() {
    let Some(Site {
        app,
        port,
        token,
        files,
    }) = site(|s| {
        s.mqtt.tls.max_handshakes = 1;
        s.mqtt.tls.handshake_timeout_secs = 30;
    })
    .await
    else {
        return;
    };
    let id = device(&app, &token).await;
    issue(&app, &token, &id, &files, "device").await;
    let topic = format!("devices/{id}/telemetry");

    // A connection that never starts its handshake holds the one slot (accepted first: it is
    // first in the listener's queue).
    let idle = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let out = publish_with_cert(port, &files, "device", &id, &topic, &[]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(app.stored_rows(&token, &id).await, 0);

    // The slot frees when that connection goes.
    drop(idle);
    eventually(Duration::from_secs(10), "a handshake slot", || async {
        let out = publish_with_cert(port, &files, "device", &id, &topic, &[]).await;
        out.status.success().then_some(())
    })
    .await;
    assert_eq!(app.stored_rows(&token, &id).await, 1);
}

#[actix_web::test]
async fn with_an_https_certificate_mqtts_is_on_and_presents_it() {
    if !clients_present() {
        return;
    }
    let Some(pki) = crate::pki::Pki::requiring("INSA_TLS_CLIENTS") else {
        return;
    };
    pki.issue("served", 1, crate::pki::KeyForm::Pkcs8);
    // HTTPS configured, nothing said of MQTTS: it comes on with the same certificate.
    let mut app = spawn_app_with(|s| {
        crate::helpers::with_mqtt(s);
        s.mqtt.mode = insa_iiot::settings::MqttMode::Embedded;
        s.mqtt.url = "mqtt://127.0.0.1:0".into();
        s.server.tls.cert_file = Some(pki.path("served.pem"));
        s.server.tls.key_file = Some(pki.path("served.key"));
    })
    .await;
    let site_ca = std::fs::read(pki.path("ca.pem")).expect("CA");
    app.client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&site_ca).expect("CA"))
        .build()
        .expect("client");
    let port = app.mqtts_port.expect("MQTTS on with the HTTPS certificate");
    let token = app.admin_token().await;
    let files = Files::new();
    let id = device(&app, &token).await;
    issue(&app, &token, &id, &files, "device").await;
    // The device trusts the site CA (which signed the HTTPS certificate) for the broker, and
    // logs in with its certificate from the platform's CA.
    files.write("ca.pem", &String::from_utf8_lossy(&site_ca));
    let served = handshake_with(port, &files, "device").await;
    assert!(served.contains("subject=CN = served"), "{served}");
    let topic = format!("devices/{id}/telemetry");
    let out = publish_with_cert(port, &files, "device", &id, &topic, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(app.stored_rows(&token, &id).await, 1);
}

#[actix_web::test]
async fn a_site_ca_issues_the_device_certificates_and_a_wrong_one_stops_start_up() {
    let Some(pki) = crate::pki::Pki::requiring("INSA_TLS_CLIENTS") else {
        return;
    };
    pki.issue("served", 1, crate::pki::KeyForm::Pkcs8);
    let Some(Site {
        app,
        port,
        token,
        files,
    }) = site(|s| {
        s.ca.cert_file = Some(pki.path("ca.pem"));
        s.ca.key_file = Some(pki.path("ca.key"));
    })
    .await
    else {
        return;
    };
    // The site's CA is the one answered, and the one that signs.
    assert_eq!(
        std::fs::read_to_string(files.path("ca.pem")).expect("fetched"),
        std::fs::read_to_string(pki.path("ca.pem")).expect("site CA")
    );
    let id = device(&app, &token).await;
    issue(&app, &token, &id, &files, "device").await;
    let verified = run(
        "openssl",
        vec![
            "verify".into(),
            "-CAfile".into(),
            pki.path("ca.pem").display().to_string(),
            "-purpose".into(),
            "sslclient".into(),
            files.arg("device.pem"),
        ],
    )
    .await;
    assert!(verified.status.success(), "{}", text(&verified));
    let topic = format!("devices/{id}/telemetry");
    let out = publish_with_cert(port, &files, "device", &id, &topic, &[]).await;
    assert!(out.status.success(), "{}", text(&out));

    // A key that is not the CA's, and a certificate that is not a CA: named, key never quoted.
    let err = crate::helpers::start_error("a key not the CA's", |s| {
        s.ca.cert_file = Some(pki.path("ca.pem"));
        s.ca.key_file = Some(pki.path("served.key"));
    })
    .await;
    assert!(
        err.contains("ca.key_file") && err.contains("is not the key of the CA"),
        "{err}"
    );
    let key_line = std::fs::read_to_string(pki.path("served.key"))
        .expect("key")
        .lines()
        .nth(1)
        .expect("a key line")
        .to_string();
    assert!(!err.contains(&key_line), "{err}");
    let err = crate::helpers::start_error("a certificate not a CA", |s| {
        s.ca.cert_file = Some(pki.path("served.pem"));
        s.ca.key_file = Some(pki.path("served.key"));
    })
    .await;
    assert!(
        err.contains("ca.cert_file") && err.contains("is not a CA certificate"),
        "{err}"
    );
}
