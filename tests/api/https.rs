//! HTTPS: the platform serves TLS 1.2 and 1.3 only when a certificate is configured, checked with
//! `curl` and `openssl s_client`, and re-reads its certificate (file change or SIGHUP) without
//! dropping open connections.

use std::path::PathBuf;
use std::time::Duration;

use insa_iiot::settings::Settings;

use crate::helpers::{eventually, run, spawn_app_with, test_settings, TestApp};
use crate::pki::{KeyForm, Pki};

impl Pki {
    /// Settings serving `served.pem` / `served.key`.
    fn serve(&self, settings: &mut Settings, reload_check_secs: u64) {
        settings.server.tls.cert_file = Some(self.path("served.pem"));
        settings.server.tls.key_file = Some(self.path("served.key"));
        settings.server.tls.reload_check_secs = reload_check_secs;
    }

    /// A client trusting only this CA, keeping its connection open between requests.
    fn client(&self) -> reqwest::Client {
        let ca = std::fs::read(self.path("ca.pem")).expect("read CA");
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA certificate"))
            .tls_built_in_root_certs(false)
            .tls_info(true)
            .http1_only()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client")
    }
}

fn port(app: &TestApp) -> u16 {
    app.address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .expect("a port")
}

/// `openssl s_client` against the platform with one protocol version forced.
async fn s_client(pki: &Pki, port: u16, version: &str) -> (bool, String) {
    let out = run(
        "openssl",
        vec![
            "s_client".into(),
            "-connect".into(),
            format!("127.0.0.1:{port}"),
            "-servername".into(),
            "localhost".into(),
            "-CAfile".into(),
            pki.path("ca.pem").display().to_string(),
            "-verify_return_error".into(),
            // Lets OpenSSL offer the old protocols, so the refusal is the platform's.
            "-cipher".into(),
            "DEFAULT@SECLEVEL=0".into(),
            version.into(),
        ],
    )
    .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The certificate the peer presented on the connection that answered.
async fn peer_certificate(client: &reqwest::Client, app: &TestApp) -> Vec<u8> {
    let response = client
        .get(format!("https://localhost:{}/health", port(app)))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(response.status(), 200);
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the peer certificate")
        .to_vec()
}

#[actix_web::test]
async fn https_answers_with_tls_1_2_and_1_3_only() {
    let Some(pki) = Pki::new() else { return };
    pki.issue("served", 1, KeyForm::Pkcs8);
    let app = spawn_app_with(|s| pki.serve(s, 10)).await;
    let port = port(&app);
    assert!(app.address.starts_with("https://"));
    let url = format!("https://127.0.0.1:{port}/health");

    let trusted = run(
        "curl",
        vec![
            "-sS".into(),
            "--noproxy".into(),
            "*".into(),
            "--cacert".into(),
            pki.path("ca.pem").display().to_string(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}".into(),
            url.clone(),
        ],
    )
    .await;
    assert!(trusted.status.success(), "{trusted:?}");
    assert_eq!(String::from_utf8_lossy(&trusted.stdout), "200");

    let untrusted = run(
        "curl",
        vec!["-sS".into(), "--noproxy".into(), "*".into(), url.clone()],
    )
    .await;
    // 60: the peer certificate cannot be verified with the known CA certificates.
    assert_eq!(untrusted.status.code(), Some(60), "{untrusted:?}");

    let (ok, out) = s_client(&pki, port, "-tls1_1").await;
    assert!(!ok, "TLS 1.1 was accepted: {out}");
    // Refused by the platform (it answers the hello with an alert), not by OpenSSL's own policy.
    assert!(out.contains("SSL alert number"), "{out}");
    for (version, protocol) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, out) = s_client(&pki, port, version).await;
        assert!(ok, "{version} refused: {out}");
        assert!(out.contains(protocol), "{version}: {out}");
        assert!(out.contains("CN = served"), "{version}: {out}");
    }

    // Plain HTTP to the TLS port gets no API answer.
    let plain = actix_web::rt::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    })
    .await
    .expect("plain HTTP thread");
    assert!(
        !plain.starts_with(b"HTTP/"),
        "plain HTTP answered: {}",
        String::from_utf8_lossy(&plain)
    );
}

/// Waits until a new connection gets `new`, while the connection `kept` opened before keeps
/// answering with the certificate it started with.
async fn await_new_certificate(pki: &Pki, app: &TestApp, kept: &reqwest::Client, new: &str) {
    let (old_der, new_der) = (&pki.der("served-before"), &pki.der(new));
    eventually(
        Duration::from_secs(20),
        "the new certificate served",
        || async move {
            assert_eq!(
                &peer_certificate(kept, app).await,
                old_der,
                "the open connection was replaced"
            );
            (peer_certificate(&pki.client(), app).await == *new_der).then_some(())
        },
    )
    .await;
    let (ok, out) = s_client(pki, port(app), "-tls1_3").await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("CN = {new}")), "{out}");
    assert_eq!(peer_certificate(kept, app).await, *old_der);
}

/// `insa_tls_reloads_total{outcome="failed"}` as the platform reports it (the process-wide
/// recorder: only this file's tests reload certificates, and only one breaks a key).
async fn failed_reloads(client: &reqwest::Client, app: &TestApp) -> f64 {
    let text = client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape body");
    text.lines()
        .filter(|line| line.starts_with("insa_tls_reloads_total{outcome=\"failed\"}"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[actix_web::test]
async fn a_changed_certificate_is_served_to_new_connections_only() {
    let Some(pki) = Pki::new() else { return };
    pki.issue("served", 1, KeyForm::Pkcs8);
    pki.replace("served", "served-before");
    pki.issue("served-after", 2, KeyForm::Rsa);
    let app = spawn_app_with(|s| pki.serve(s, 1)).await;
    let kept = pki.client();
    assert_eq!(
        peer_certificate(&kept, &app).await,
        pki.der("served-before")
    );

    // A broken file keeps the certificate in use: once the reload was tried and failed (the
    // counter on /metrics), new connections still get the old certificate.
    let failed_before = failed_reloads(&kept, &app).await;
    std::fs::write(pki.path("served.key"), "not a key").expect("break the key");
    eventually(Duration::from_secs(15), "a failed reload", || async {
        (failed_reloads(&kept, &app).await > failed_before).then_some(())
    })
    .await;
    assert_eq!(
        peer_certificate(&pki.client(), &app).await,
        pki.der("served-before")
    );

    pki.replace("served-after", "served");
    await_new_certificate(&pki, &app, &kept, "served-after").await;
}

#[actix_web::test]
async fn sighup_rereads_the_certificate() {
    let Some(pki) = Pki::new() else { return };
    pki.issue("served", 1, KeyForm::Pkcs8);
    pki.replace("served", "served-before");
    pki.issue("served-hup", 3, KeyForm::Sec1);
    // No polling within the test: only the signal reloads.
    let app = spawn_app_with(|s| pki.serve(s, 3600)).await;
    let kept = pki.client();
    assert_eq!(
        peer_certificate(&kept, &app).await,
        pki.der("served-before")
    );
    pki.replace("served-hup", "served");
    let hup = run("kill", vec!["-HUP".into(), std::process::id().to_string()]).await;
    assert!(hup.status.success(), "{hup:?}");
    await_new_certificate(&pki, &app, &kept, "served-hup").await;
}

/// Start-up error for TLS files, which must name the file and never quote the key.
async fn start_error(cert: PathBuf, key: PathBuf) -> String {
    crate::helpers::start_error("bad TLS files", |s| {
        s.server.tls.cert_file = Some(cert);
        s.server.tls.key_file = Some(key);
    })
    .await
}

#[actix_web::test]
async fn bad_tls_files_fail_start_up_naming_the_file() {
    let Some(pki) = Pki::new() else { return };
    pki.issue("served", 1, KeyForm::Pkcs8);
    pki.issue("other", 2, KeyForm::Pkcs8);

    let missing = pki.path("missing.pem");
    let err = start_error(missing.clone(), pki.path("served.key")).await;
    assert!(err.contains("server.tls.cert_file"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA";
    let garbage = pki.path("garbage.key");
    std::fs::write(
        &garbage,
        format!("-----BEGIN PRIVATE KEY-----\n{secret}!!\n-----END PRIVATE KEY-----\n"),
    )
    .expect("write");
    let err = start_error(pki.path("served.pem"), garbage.clone()).await;
    assert!(err.contains("server.tls.key_file"), "{err}");
    assert!(err.contains(&garbage.display().to_string()), "{err}");
    assert!(!err.contains(secret), "{err}");

    let err = start_error(pki.path("served.pem"), pki.path("other.key")).await;
    assert!(err.contains("does not match"), "{err}");
    let key_text = std::fs::read_to_string(pki.path("other.key")).expect("read key");
    let key_body = key_text.lines().nth(1).expect("a key line");
    assert!(!err.contains(key_body), "{err}");

    let err = start_error(pki.path("served.key"), pki.path("served.key")).await;
    assert!(err.contains("holds no PEM certificate"), "{err}");
}

#[actix_web::test]
async fn tls_needs_both_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path()).await;
    settings.server.tls.cert_file = Some(dir.path().join("cert.pem"));
    let err = settings
        .validate()
        .expect_err("a certificate without a key");
    assert!(err.to_string().contains("server.tls.key_file"), "{err}");

    settings.server.tls.cert_file = None;
    settings.server.tls.key_file = Some(dir.path().join("key.pem"));
    let err = settings
        .validate()
        .expect_err("a key without a certificate");
    assert!(err.to_string().contains("server.tls.cert_file"), "{err}");
}
