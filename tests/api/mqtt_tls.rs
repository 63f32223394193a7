//! The platform and its devices on an external Mosquitto over TLS (`mqtts://`): a real Mosquitto
//! 2.0 listener requiring client certificates (`require_certificate true`,
//! `use_identity_as_username true`: a device's username is its certificate's CN, its id), an
//! `acl_file` confining each device to its own topics, certificates made by `openssl`, devices
//! publishing with `mosquitto_pub --cafile --cert --key`.
//!
//! Skipped without the `mosquitto` broker (as the other Mosquitto tests); without `mosquitto_pub`
//! or `openssl` too, unless `INSA_TLS_CLIENTS=required` (as `.ci/run` sets) makes that a failure.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use insa_iiot::settings::{MqttMode, Settings};
use serde_json::json;

use crate::helpers::{eventually, run, spawn_app_with, test_settings, with_mqtt, As, TestApp};
use crate::mqtt::{subscribed, Mosquitto};
use crate::pki::{mosquitto_args, tool_available, KeyForm, Login, Pki, CLIENT};

/// The CN of the platform's client certificate: its username at the broker.
const PLATFORM: &str = "insa-platform";

/// The platform's `mqtt.client_id` (its connections: this, `-status`, `-commands`); each test
/// has a broker of its own.
const CLIENT_ID: &str = "insa-tls-platform";

/// The ACL of docs/MQTT.md ("Mosquitto over TLS").
const ACL: &str = "\
# the platform
user insa-platform
topic read devices/+/telemetry
topic write devices/+/status
topic write devices/+/commands
# every device: only its own topics (%u = the certificate's CN = the device id)
pattern write devices/%u/telemetry
pattern read devices/%u/status
pattern read devices/%u/commands
";

/// A CA with the broker's certificate (`broker`, for 127.0.0.1/localhost) and the platform's
/// client certificate; `None` (the test skips) without the tools.
fn pki() -> Option<Pki> {
    if !tool_available("mosquitto_pub", "INSA_TLS_CLIENTS") {
        return None;
    }
    let pki = Pki::requiring("INSA_TLS_CLIENTS")?;
    pki.issue("broker", 1, KeyForm::Pkcs8);
    pki.issue_with(PLATFORM, 2, KeyForm::Pkcs8, CLIENT);
    Some(pki)
}

/// Mosquitto with one TLS listener presenting `server`'s `broker` certificate, accepting only
/// clients with a certificate from `clients`' CA, with the ACL above.
fn tls_broker(server: &Pki, clients: &Pki) -> Option<Mosquitto> {
    std::fs::write(server.path("acl"), ACL).expect("write the ACL");
    server.share();
    clients.share();
    let (ca, cert, key, acl) = (
        clients.path("ca.pem"),
        server.path("broker.pem"),
        server.path("broker.key"),
        server.path("acl"),
    );
    Mosquitto::on_free_port(|port| {
        format!(
            "persistence false\nlog_type all\nper_listener_settings false\nallow_anonymous false\n\
             acl_file {}\n\
             listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\nuse_identity_as_username true\n",
            acl.display(),
            ca.display(),
            cert.display(),
            key.display(),
        )
    })
}

/// The platform on `broker` over mqtts://, trusting `pki`'s CA, logging in with its client
/// certificate.
fn over_tls(settings: &mut Settings, broker: &Mosquitto, pki: &Pki) {
    with_mqtt(settings);
    settings.mqtt.client_id = CLIENT_ID.into();
    settings.mqtt.mode = MqttMode::External;
    settings.mqtt.url = format!("mqtts://127.0.0.1:{}", broker.port);
    settings.mqtt.ca_file = Some(pki.path("ca.pem"));
    settings.mqtt.client_cert_file = Some(pki.path(&format!("{PLATFORM}.pem")));
    settings.mqtt.client_key_file = Some(pki.path(&format!("{PLATFORM}.key")));
}

/// A device registered on the platform, and a client certificate for it (CN = its id).
async fn device_with_certificate(app: &TestApp, token: &str, pki: &Pki, serial: u32) -> String {
    let id = app
        .create_device_id(
            token,
            json!({"name": format!("Compressor {serial}"), "type": "pressure"}),
        )
        .await;
    pki.issue_with(&id, serial, KeyForm::Pkcs8, CLIENT);
    pki.share();
    id
}

/// `mosquitto_pub` as the device `cert` (QoS 1): whether the broker took the publish.
async fn publish_as(pki: &Pki, port: u16, cert: &str, topic: &str, payload: &str) -> bool {
    let rest = ["-q", "1", "-t", topic, "-m", payload];
    let login = Login::Certificate(pki.dir(), cert);
    let args = mosquitto_args(port, &pki.path("ca.pem"), login, None, &rest);
    let out = run("mosquitto_pub", args).await;
    if !out.status.success() {
        eprintln!(
            "mosquitto_pub: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.success()
}

#[actix_web::test]
async fn devices_with_certificates_publish_over_mqtts_and_only_as_themselves() {
    let Some(pki) = pki() else { return };
    let Some(broker) = tls_broker(&pki, &pki) else {
        crate::pki::missing("the mosquitto binary", "INSA_TLS_CLIENTS");
        return;
    };
    let app = spawn_app_with(|s| over_tls(s, &broker, &pki)).await;
    subscribed(&app).await;
    let token = app.admin_token().await;
    let a = device_with_certificate(&app, &token, &pki, 10).await;
    let b = device_with_certificate(&app, &token, &pki, 11).await;

    // A's certificate publishing under B's id: the broker's ACL drops it.
    assert!(
        publish_as(
            &pki,
            broker.port,
            &a,
            &format!("devices/{b}/telemetry"),
            r#"{"pressure": 99}"#
        )
        .await
    );
    // A under its own id: stored (and, coming after, proves the other one had its chance).
    assert!(
        publish_as(
            &pki,
            broker.port,
            &a,
            &format!("devices/{a}/telemetry"),
            r#"{"pressure": 41.5}"#
        )
        .await
    );
    eventually(Duration::from_secs(10), "A's reading stored", || async {
        (app.stored_rows(&token, &a).await == 1).then_some(())
    })
    .await;
    let latest = app
        .get(
            &format!("/api/v1/telemetry?device_id={a}"),
            As::Bearer(&token),
        )
        .await;
    assert!(latest.body.to_string().contains("41.5"), "{latest:?}");
    assert_eq!(app.stored_rows(&token, &b).await, 0, "B got A's reading");
    assert!(
        broker
            .log()
            .iter()
            .any(|line| line.contains("Denied PUBLISH")
                && line.contains(&format!("'devices/{b}/telemetry'"))),
        "the broker says it denied A: {:?}",
        broker.log()
    );

    // B as itself.
    assert!(
        publish_as(
            &pki,
            broker.port,
            &b,
            &format!("devices/{b}/telemetry"),
            r#"{"pressure": 7}"#
        )
        .await
    );
    eventually(Duration::from_secs(10), "B's reading stored", || async {
        (app.stored_rows(&token, &b).await == 1).then_some(())
    })
    .await;

    // All three platform connections (ingest, status, rule commands) logged in over TLS with
    // the platform's certificate.
    let status = app.get("/api/v1/status", As::Nobody).await;
    assert_eq!(status.body["mqtt"]["mode"], "external", "{status:?}");
    assert_eq!(status.body["mqtt"]["connected"], true, "{status:?}");
    let log = broker.log();
    for client in [
        CLIENT_ID,
        &format!("{CLIENT_ID}-status"),
        &format!("{CLIENT_ID}-commands"),
    ] {
        let login = format!("as {client} (");
        assert!(
            log.iter()
                .any(|line| line.contains(&login) && line.contains("u'insa-platform'")),
            "{client} did not log in with the platform's certificate: {log:?}"
        );
    }
}

#[actix_web::test]
async fn a_device_without_a_certificate_from_the_ca_is_refused() {
    let Some(pki) = pki() else { return };
    let Some(other) = Pki::requiring("INSA_TLS_CLIENTS") else {
        return;
    };
    let Some(broker) = tls_broker(&pki, &pki) else {
        crate::pki::missing("the mosquitto binary", "INSA_TLS_CLIENTS");
        return;
    };
    let app = spawn_app_with(|s| over_tls(s, &broker, &pki)).await;
    subscribed(&app).await;
    let token = app.admin_token().await;
    let id = device_with_certificate(&app, &token, &pki, 12).await;
    // The same CN, but a certificate of another CA: the handshake fails.
    other.issue_with(&id, 12, KeyForm::Pkcs8, CLIENT);
    other.share();
    let topic = format!("devices/{id}/telemetry");
    let args = mosquitto_args(
        broker.port,
        &pki.path("ca.pem"),
        Login::Certificate(other.dir(), &id),
        None,
        &["-q", "1", "-t", &topic, "-m", r#"{"pressure": 1}"#],
    );
    let out = run("mosquitto_pub", args).await;
    assert!(!out.status.success(), "a forged certificate was accepted");
    // Refused for its certificate, at the handshake.
    eventually(
        Duration::from_secs(5),
        "the broker refuses the forged certificate",
        || async {
            broker
                .log()
                .into_iter()
                .find(|line| line.contains("certificate verify failed"))
        },
    )
    .await;
    // The real one still works, and only its reading is there.
    assert!(
        publish_as(
            &pki,
            broker.port,
            &id,
            &format!("devices/{id}/telemetry"),
            r#"{"pressure": 2}"#
        )
        .await
    );
    eventually(Duration::from_secs(10), "the reading stored", || async {
        (app.stored_rows(&token, &id).await == 1).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_broker_with_a_certificate_from_another_ca_is_not_used() {
    let Some(pki) = pki() else { return };
    let Some(impostor) = Pki::requiring("INSA_TLS_CLIENTS") else {
        return;
    };
    impostor.issue("broker", 1, KeyForm::Pkcs8);
    // The impostor accepts the platform's real client certificate, to see whether it would go on.
    let Some(broker) = tls_broker(&impostor, &pki) else {
        crate::pki::missing("the mosquitto binary", "INSA_TLS_CLIENTS");
        return;
    };
    let app = spawn_app_with(|s| over_tls(s, &broker, &pki)).await;
    // The platform starts (a broker may be down or misconfigured for a while, as with plain
    // MQTT), tries, refuses the handshake (the broker sees the platform's alert), and says it
    // is not connected.
    eventually(
        Duration::from_secs(10),
        "the platform refuses the broker",
        || async {
            // The platform's TLS alert: the impostor's CA has the real one's name, so rustls
            // finds the signature bad (`decrypt error`; under another name, `unknown ca`).
            broker
                .log()
                .into_iter()
                .find(|line| line.contains("SSL routines") && line.contains("alert"))
        },
    )
    .await;
    let status = app.get("/api/v1/status", As::Nobody).await;
    assert_eq!(status.body["mqtt"]["connected"], false, "{status:?}");
    assert!(
        !broker.log().iter().any(
            |l| l.contains(&format!("as {CLIENT_ID}")) || l.contains(&format!("u'{PLATFORM}'"))
        ),
        "the platform logged in to an impostor: {:?}",
        broker.log()
    );
}

#[actix_web::test]
async fn bad_mqtt_tls_files_stop_start_up_naming_them() {
    let Some(pki) = Pki::requiring("INSA_TLS_CLIENTS") else {
        return;
    };
    pki.issue_with(PLATFORM, 2, KeyForm::Pkcs8, CLIENT);
    pki.issue_with("other", 3, KeyForm::Pkcs8, CLIENT);
    let external = |s: &mut Settings| {
        s.mqtt.mode = MqttMode::External;
        s.mqtt.url = "mqtts://127.0.0.1:8883".into();
    };
    let missing: PathBuf = pki.path("missing-ca.pem");
    let err = crate::helpers::start_error("bad MQTT TLS files", |s| {
        external(s);
        s.mqtt.ca_file = Some(missing.clone());
    })
    .await;
    assert!(err.contains("mqtt.ca_file"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let err = crate::helpers::start_error("bad MQTT TLS files", |s| {
        external(s);
        s.mqtt.ca_file = Some(pki.path("ca.pem"));
        s.mqtt.client_cert_file = Some(pki.path(&format!("{PLATFORM}.pem")));
        s.mqtt.client_key_file = Some(pki.path("other.key"));
    })
    .await;
    assert!(err.contains("mqtt.client_key_file"), "{err}");
    assert!(err.contains("does not match"), "{err}");
    let key = std::fs::read_to_string(pki.path("other.key")).expect("read key");
    let key_line = key.lines().nth(1).expect("a key line");
    assert!(!err.contains(key_line), "{err}");
}

#[actix_web::test]
async fn mqtt_tls_settings_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path()).await;
    settings.mqtt.mode = MqttMode::External;
    settings.mqtt.url = "mqtt://broker.example.com:1883".into();
    settings.mqtt.ca_file = Some(dir.path().join("ca.pem"));
    let err = settings
        .validate()
        .expect_err("a CA for plain MQTT")
        .to_string();
    assert!(err.contains("mqtt.ca_file"), "{err}");

    settings.mqtt.url = "mqtts://broker.example.com".into();
    assert_eq!(
        settings.mqtt.host_port(),
        Some(("broker.example.com".to_string(), 8883))
    );
    settings.mqtt.client_cert_file = Some(dir.path().join("platform.pem"));
    let err = settings
        .validate()
        .expect_err("a certificate without its key")
        .to_string();
    assert!(err.contains("mqtt.client_key_file"), "{err}");

    settings.mqtt.client_cert_file = None;
    settings.validate().expect("mqtts:// with a CA file");
    settings.mqtt.mode = MqttMode::Embedded;
    let err = settings
        .validate()
        .expect_err("mqtts:// for the embedded broker")
        .to_string();
    assert!(err.contains("mqtt.url"), "{err}");
}

/// Mosquitto with its dynamic-security plugin (admin `admin`/`adminpw`) on a TLS listener that
/// lets anonymous clients connect (so the platform's probe has something to warn about), its
/// files in `dir`; `None` where mosquitto, mosquitto_ctrl or the plugin is missing.
fn tls_broker_with_dynsec(pki: &Pki, dir: &std::path::Path) -> Option<Mosquitto> {
    const PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
    if !std::path::Path::new(PLUGIN).exists() {
        return None;
    }
    let dynsec = dir.join("dynsec.json");
    let init = Command::new("mosquitto_ctrl")
        .args(["dynsec", "init"])
        .arg(&dynsec)
        .args(["admin", "adminpw"])
        .stdout(Stdio::null())
        .status()
        .ok()?;
    if !init.success() {
        return None;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).ok()?;
    std::fs::set_permissions(&dynsec, std::fs::Permissions::from_mode(0o666)).ok()?;
    pki.share();
    Mosquitto::on_free_port(|port| {
        format!(
            "persistence false\nallow_anonymous true\n\
             plugin {PLUGIN}\nplugin_opt_config_file {}\n\
             listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            dynsec.display(),
            pki.path("ca.pem").display(),
            pki.path("broker.pem").display(),
            pki.path("broker.key").display(),
        )
    })
}

#[actix_web::test]
async fn dynamic_security_and_the_probe_work_over_mqtts() {
    let Some(pki) = pki() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = tls_broker_with_dynsec(&pki, dir.path()) else {
        crate::pki::missing(
            "mosquitto, mosquitto_ctrl and the dynamic-security plugin",
            "INSA_TLS_CLIENTS",
        );
        return;
    };
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.client_id = CLIENT_ID.into();
        s.mqtt.mode = MqttMode::External;
        s.mqtt.url = format!("mqtts://127.0.0.1:{}", broker.port);
        s.mqtt.ca_file = Some(pki.path("ca.pem"));
        s.mqtt.username = Some("admin".into());
        s.mqtt.password = Some(insa_iiot::settings::Secret::new("adminpw"));
        s.mqtt.dynsec = true;
    })
    .await;
    subscribed(&app).await;
    // The probe reached the broker over TLS and found it open to anonymous logins.
    let status = app.get("/api/v1/status", As::Nobody).await;
    assert_eq!(status.body["mqtt"]["device_auth"], "dynsec", "{status:?}");
    assert!(
        status.body["mqtt"]["warning"]
            .as_str()
            .is_some_and(|w| w.contains("anonymous")),
        "{status:?}"
    );

    // The dynsec connection (over TLS) makes the broker accept a new key.
    let token = app.admin_token().await;
    let id = app
        .create_device_id(&token, json!({"name": "Pump 4", "type": "flow"}))
        .await;
    let (key, info) = app
        .create_api_key(
            &token,
            json!({"name": "mqtt", "device_id": id, "permissions": {"read": true, "write": true}}),
        )
        .await;
    let key_id = info["id"].as_str().expect("key id").to_string();
    let topic = format!("devices/{id}/telemetry");
    eventually(
        Duration::from_secs(10),
        "the broker takes the key's reading",
        || {
            let args = mosquitto_args(
                broker.port,
                &pki.path("ca.pem"),
                Login::Key(&key_id, &key),
                None,
                &["-q", "1", "-t", &topic, "-m", r#"{"flow": 3}"#],
            );
            let (app, token, id) = (&app, &token, &id);
            async move {
                let published = run("mosquitto_pub", args).await.status.success();
                if !published {
                    return None;
                }
                eventually(Duration::from_secs(10), "the reading stored", || async {
                    (app.stored_rows(token, id).await >= 1).then_some(())
                })
                .await;
                Some(())
            }
        },
    )
    .await;
}
