//! Alert emails over TLS, to a real SMTP server: aiosmtpd run by `scripts/smtp-tls-server.py`
//! (STARTTLS required, TLS from the start, or no TLS at all), with certificates made by `openssl`.
//! The platform must verify the server's certificate (against `smtp.ca_file`) and name, and never
//! send a message in clear when the url asks for TLS.
//!
//! Needs `python3` with aiosmtpd (`scripts/ensure-python-peers.sh`) and `openssl`: skipped where
//! missing, failed instead with `INSA_TLS_PEERS=required` (as `.ci/run` sets).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use insa_iiot::settings::{Secret, Settings};
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app_with, test_settings, As, TestApp};
use crate::pki::{KeyForm, Pki};

const REQUIRED_BY: &str = "INSA_TLS_PEERS";

/// A CA when `openssl` and aiosmtpd are there; `None` (the test skips) or a failure where they
/// must be (`INSA_TLS_PEERS=required`).
fn peers() -> Option<Pki> {
    if !crate::pki::python_module_available("aiosmtpd", REQUIRED_BY) {
        return None;
    }
    Pki::requiring(REQUIRED_BY)
}

/// The SMTP server process; stopped when dropped.
struct SmtpPeer {
    child: Child,
    port: u16,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpPeer {
    /// Starts the server in `mode` (`starttls`, `implicit` or `plain`) presenting
    /// `<cert>.pem`/`<cert>.key` of `pki`.
    fn start(mode: &str, pki: &Pki, cert: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = dir.path().join("smtp.json");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/smtp-tls-server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--mode", mode, "--out"])
            .arg(&record)
            .arg("--cert")
            .arg(pki.path(&format!("{cert}.pem")))
            .arg("--key")
            .arg(pki.path(&format!("{cert}.key")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scripts/smtp-tls-server.py");
        let stdout = child.stdout.take().expect("the server's stdout");
        let (said, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = said.send(line);
        });
        let line = heard
            .recv_timeout(Duration::from_secs(20))
            .expect("the SMTP server says its port");
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"));
        Self {
            child,
            port,
            record,
            _dir: dir,
        }
    }

    /// What the server saw: `hello`, `mail_from` (each with `tls`) and `messages`.
    fn seen(&self) -> Value {
        let text = std::fs::read_to_string(&self.record).expect("the server's record");
        serde_json::from_str(&text).expect("the server's record is JSON")
    }

    fn messages(&self) -> Vec<Value> {
        self.seen()["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Email to `url` trusting `ca_file`; two attempts 50 ms apart, so a refusal shows as failed
/// soon after it was retried once.
fn mail_settings(settings: &mut Settings, url: String, ca_file: Option<PathBuf>) {
    settings.smtp.url = Some(Secret::new(url));
    settings.smtp.ca_file = ca_file;
    settings.webhooks.max_attempts = 2;
    settings.webhooks.retry_base_ms = 50;
    settings.webhooks.timeout_secs = 5;
}

/// Raises the wellhead's alert (an email to ops@example.com) and returns the admin's token.
async fn raise_alert(app: &TestApp) -> String {
    let (token, id) = app
        .watched_wellhead(json!({"type": "email", "to": ["ops@example.com"]}))
        .await;
    app.send_reading(&token, &id, json!({"pressure": 91.5}))
        .await;
    token
}

/// The alert email's delivery once it is no longer pending.
async fn settled_delivery(app: &TestApp, token: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        "the email delivery settled",
        || async {
            let log = app.get("/api/v1/notifications", As::Bearer(token)).await;
            log.body["notifications"]
                .as_array()
                .and_then(|all| all.iter().find(|d| d["channel"] == "email").cloned())
                .filter(|d| d["status"] != "pending")
        },
    )
    .await
}

/// Delivered over TLS: one message, its subject readable, every MAIL FROM encrypted, and the
/// delivery marked sent. (The `starttls` peer accepts an envelope in clear too: encryption is
/// the platform's doing.)
async fn assert_delivered_over_tls(app: &TestApp, token: &str, smtp: &SmtpPeer) {
    let messages = eventually(Duration::from_secs(15), "the alert email", || async {
        let messages = smtp.messages();
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let mail = &messages[0];
    assert_eq!(mail["tls"], true, "{mail}");
    assert_eq!(mail["rcpt_tos"], json!(["ops@example.com"]));
    let data = mail["data"].as_str().expect("data");
    assert!(
        data.contains("Subject: [CRITICAL] High pressure on Wellhead 9"),
        "{data}"
    );
    assert!(data.contains("91.5"), "{data}");
    let seen = smtp.seen();
    assert!(
        seen["mail_from"]
            .as_array()
            .is_some_and(|all| all.iter().all(|m| m["tls"] == true)),
        "{seen}"
    );
    let delivery = settled_delivery(app, token).await;
    assert_eq!(delivery["status"], "sent", "{delivery}");
}

/// Refused: no message and no MAIL FROM reached the server, and the delivery, tried twice, is
/// marked failed with `expected` in its error.
async fn assert_refused(app: &TestApp, token: &str, smtp: &SmtpPeer, expected: &str) {
    let delivery = settled_delivery(app, token).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["attempts"], 2, "retried once: {delivery}");
    let error = delivery["last_error"].as_str().unwrap_or_default();
    assert!(
        error.to_lowercase().contains(expected),
        "`{expected}` missing from: {error}"
    );
    let seen = smtp.seen();
    assert_eq!(seen["messages"], json!([]), "nothing delivered: {seen}");
    assert_eq!(seen["mail_from"], json!([]), "no envelope sent: {seen}");
}

#[actix_web::test]
async fn starttls_delivers_an_alert_email_to_a_verified_server() {
    let Some(pki) = peers() else { return };
    pki.issue("smtp", 1, KeyForm::Pkcs8);
    let smtp = SmtpPeer::start("starttls", &pki, "smtp");
    // By name: the certificate's DNS name is checked.
    let app = spawn_app_with(|s| {
        mail_settings(
            s,
            format!("smtp+starttls://localhost:{}", smtp.port),
            Some(pki.path("ca.pem")),
        )
    })
    .await;
    let token = raise_alert(&app).await;
    assert_delivered_over_tls(&app, &token, &smtp).await;
    // The session began in clear and was upgraded before the envelope.
    let hello = smtp.seen()["hello"].clone();
    assert_eq!(hello[0]["tls"], false, "{hello}");
    assert_eq!(hello[1]["tls"], true, "{hello}");
}

#[actix_web::test]
async fn implicit_tls_delivers_an_alert_email() {
    let Some(pki) = peers() else { return };
    pki.issue("smtp", 1, KeyForm::Rsa);
    let smtp = SmtpPeer::start("implicit", &pki, "smtp");
    // By address: the certificate's IP address is checked.
    let app = spawn_app_with(|s| {
        mail_settings(
            s,
            format!("smtps://127.0.0.1:{}", smtp.port),
            Some(pki.path("ca.pem")),
        )
    })
    .await;
    let token = raise_alert(&app).await;
    assert_delivered_over_tls(&app, &token, &smtp).await;
}

#[actix_web::test]
async fn a_server_whose_certificate_is_from_another_ca_gets_nothing() {
    let Some(pki) = peers() else { return };
    let Some(other) = Pki::requiring(REQUIRED_BY) else {
        return;
    };
    other.issue("smtp", 1, KeyForm::Pkcs8);
    let smtp = SmtpPeer::start("starttls", &other, "smtp");
    let app = spawn_app_with(|s| {
        mail_settings(
            s,
            format!("smtp+starttls://localhost:{}", smtp.port),
            Some(pki.path("ca.pem")),
        )
    })
    .await;
    let token = raise_alert(&app).await;
    // The other CA has the same name as the trusted one: its signature is what fails.
    assert_refused(
        &app,
        &token,
        &smtp,
        "invalid peer certificate: badsignature",
    )
    .await;
    // The server was reached, in clear until STARTTLS.
    assert_eq!(smtp.seen()["hello"][0]["tls"], false, "{}", smtp.seen());

    // Without smtp.ca_file the public roots apply: a private CA is not trusted either.
    let implicit = SmtpPeer::start("implicit", &other, "smtp");
    let app =
        spawn_app_with(|s| mail_settings(s, format!("smtps://localhost:{}", implicit.port), None))
            .await;
    let token = raise_alert(&app).await;
    assert_refused(
        &app,
        &token,
        &implicit,
        "invalid peer certificate: unknownissuer",
    )
    .await;
}

#[actix_web::test]
async fn a_certificate_for_another_name_gets_nothing() {
    let Some(pki) = peers() else { return };
    pki.issue_with(
        "smtp",
        1,
        KeyForm::Pkcs8,
        "subjectAltName=DNS:mail.example.org\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    );
    let smtp = SmtpPeer::start("implicit", &pki, "smtp");
    let app = spawn_app_with(|s| {
        mail_settings(
            s,
            format!("smtps://localhost:{}", smtp.port),
            Some(pki.path("ca.pem")),
        )
    })
    .await;
    let token = raise_alert(&app).await;
    assert_refused(
        &app,
        &token,
        &smtp,
        "certificate not valid for name \"localhost\"",
    )
    .await;
}

#[actix_web::test]
async fn starttls_is_required_never_skipped() {
    let Some(pki) = peers() else { return };
    pki.issue("smtp", 1, KeyForm::Pkcs8);
    // A server (or a man in the middle) that does not offer STARTTLS.
    let smtp = SmtpPeer::start("plain", &pki, "smtp");
    let app = spawn_app_with(|s| {
        mail_settings(
            s,
            format!("smtp+starttls://127.0.0.1:{}", smtp.port),
            Some(pki.path("ca.pem")),
        )
    })
    .await;
    let token = raise_alert(&app).await;
    assert_refused(&app, &token, &smtp, "starttls").await;
    // The platform did reach the server (twice), and went no further than EHLO.
    let hello = smtp.seen()["hello"].clone();
    assert_eq!(hello.as_array().map(Vec::len), Some(2), "{hello}");
}

#[actix_web::test]
async fn a_bad_smtp_ca_file_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing-ca.pem");
    let err = crate::helpers::start_error("a bad smtp.ca_file", |s| {
        s.smtp.url = Some(Secret::new("smtps://mail.example.com"));
        s.smtp.ca_file = Some(missing.clone());
    })
    .await;
    assert!(err.contains("smtp.ca_file"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let err = crate::helpers::start_error("a bad smtp.ca_file", |s| {
        s.smtp.url = Some(Secret::new("smtp+starttls://mail.example.com"));
        s.smtp.ca_file = Some(garbage.clone());
    })
    .await;
    assert!(err.contains("smtp.ca_file"), "{err}");
    assert!(err.contains("holds no PEM certificate"), "{err}");
}

#[actix_web::test]
async fn smtp_tls_settings_that_would_mislead_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path()).await;
    // A CA file for a plain connection would check nothing.
    settings.smtp.url = Some(Secret::new("smtp://mail.example.com:25"));
    settings.smtp.ca_file = Some(dir.path().join("ca.pem"));
    let err = settings.validate().expect_err("ca_file with smtp://");
    assert!(err.to_string().contains("smtp.ca_file"), "{err}");

    // `tls=opportunistic` would fall back to plain text; the scheme alone says TLS.
    settings.smtp.ca_file = None;
    for url in [
        "smtp+starttls://u:hunter2@mail.example.com?tls=opportunistic",
        "smtp://mail.example.com?tls=required",
    ] {
        settings.smtp.url = Some(Secret::new(url));
        let err = settings
            .validate()
            .expect_err("a tls parameter")
            .to_string();
        assert!(err.contains("smtp.url"), "{err}");
        assert!(err.contains("smtp+starttls://"), "{err}");
        assert!(!err.contains("hunter2"), "password leaked: {err}");
    }
}
