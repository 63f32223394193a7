//! PostgreSQL over TLS (`database.ca_file`): against the PostgreSQL of `DATABASE_URL`, whose
//! certificate is Debian's self-signed "snakeoil" one. Skipped on SQLite (no `DATABASE_URL`), and
//! when the server does not have `ssl = on`.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::Command;

use insa_iiot::settings::{Secret, Settings};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

use crate::helpers::{spawn_app_with, test_settings, TestApp};
use crate::pki::Pki;

/// The server's certificate (`ssl_cert_file` of Debian's PostgreSQL).
const REQUIRED_BY: &str = "INSA_TLS_PEERS";
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// Whether these tests apply: PostgreSQL at `DATABASE_URL` serving TLS with the snakeoil
/// certificate.
async fn postgres_with_tls() -> bool {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("skipped: PostgreSQL only (DATABASE_URL is not set)");
        return false;
    };
    if !url.starts_with("postgres") {
        eprintln!("skipped: PostgreSQL only");
        return false;
    }
    // On PostgreSQL, what is missing below fails the test where TLS peers are required.
    if !Path::new(SNAKEOIL).exists() {
        crate::pki::missing(
            &format!("{SNAKEOIL} (the server's certificate)"),
            REQUIRED_BY,
        );
        return false;
    }
    let db = sea_orm::Database::connect(&url)
        .await
        .expect("connect to DATABASE_URL");
    let ssl = db
        .query_one(Statement::from_string(DbBackend::Postgres, "SHOW ssl"))
        .await
        .expect("SHOW ssl")
        .and_then(|row| row.try_get_by_index::<String>(0).ok());
    db.close().await.ok();
    if ssl.as_deref() != Some("on") {
        crate::pki::missing("a PostgreSQL server with ssl = on", REQUIRED_BY);
        return false;
    }
    true
}

/// `url` reached at `host` with `sslmode` (none: left out).
fn with_host_and_mode(url: &str, host: &str, sslmode: Option<&str>) -> String {
    let mut url = url::Url::parse(url).expect("a PostgreSQL url");
    url.set_host(Some(host)).expect("a host");
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "sslmode")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in &kept {
            query.append_pair(key, value);
        }
        if let Some(mode) = sslmode {
            query.append_pair("sslmode", mode);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url.to_string()
}

fn use_tls(settings: &mut Settings, host: &str, sslmode: Option<&str>, ca_file: PathBuf) {
    let url = with_host_and_mode(settings.database.url.expose(), host, sslmode);
    settings.database.url = Secret::new(url);
    settings.database.ca_file = Some(ca_file);
}

/// Whether the platform's connections (sea-orm's, and the sqlx pool COPY uses) run over TLS.
async fn connections_use_tls(app: &TestApp) -> (bool, bool) {
    const SQL: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let orm = app
        .db
        .query_one(Statement::from_string(DbBackend::Postgres, SQL))
        .await
        .expect("query pg_stat_ssl")
        .and_then(|row| row.try_get_by_index::<bool>(0).ok())
        .unwrap_or(false);
    let raw: bool = sqlx::query_scalar(SQL)
        .fetch_one(app.db.get_postgres_connection_pool())
        .await
        .expect("query pg_stat_ssl on the sqlx pool");
    (orm, raw)
}

/// Stores one reading and reads it back.
async fn stores_a_reading(app: &TestApp) {
    let token = app.admin_token().await;
    let device = app
        .create_device_id(&token, json!({"name": "Separator 2", "type": "pressure"}))
        .await;
    app.send_reading(&token, &device, json!({"pressure": 12.5}))
        .await;
    assert_eq!(app.stored_rows(&token, &device).await, 1);
}

/// A DNS name of the snakeoil certificate that resolves to this machine (loopback), for
/// verify-full: it checks the name the platform connects to.
fn certificate_name_on_loopback() -> Option<String> {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in", SNAKEOIL])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split([',', '\n'])
        .filter_map(|part| part.trim().strip_prefix("DNS:"))
        .find(|name| {
            (*name, 5432)
                .to_socket_addrs()
                .is_ok_and(|mut addrs| addrs.any(|a| a.ip().is_loopback()))
        })
        .map(str::to_string)
}

#[actix_web::test]
async fn verify_ca_with_the_servers_ca_starts_and_stores_over_tls() {
    if !postgres_with_tls().await {
        return;
    }
    // By name: sqlx 0.8.6 checks the host name in verify-ca too (docs/OPERATIONS.md).
    let Some(name) = certificate_name_on_loopback() else {
        crate::pki::missing(
            &format!("a DNS name of {SNAKEOIL} resolving to this machine"),
            REQUIRED_BY,
        );
        return;
    };
    let app = spawn_app_with(|s| {
        use_tls(s, &name, Some("verify-ca"), SNAKEOIL.into());
    })
    .await;
    assert_eq!(connections_use_tls(&app).await, (true, true));
    stores_a_reading(&app).await;
}

#[actix_web::test]
async fn verify_full_checks_the_host_name_and_is_the_default_with_a_ca_file() {
    if !postgres_with_tls().await {
        return;
    }
    let Some(name) = certificate_name_on_loopback() else {
        crate::pki::missing(
            &format!("a DNS name of {SNAKEOIL} resolving to this machine"),
            REQUIRED_BY,
        );
        return;
    };
    // By the certificate's name, with sslmode left to the default (verify-full).
    let app = spawn_app_with(|s| use_tls(s, &name, None, SNAKEOIL.into())).await;
    assert_eq!(connections_use_tls(&app).await, (true, true));
    stores_a_reading(&app).await;

    // By an address the certificate does not name: refused, whether said or by default.
    for mode in [Some("verify-full"), None] {
        let err = crate::helpers::start_error("a database it cannot trust", |s| {
            use_tls(s, "127.0.0.1", mode, SNAKEOIL.into())
        })
        .await;
        assert!(err.contains("cannot connect to the database"), "{err}");
        assert!(err.contains("not valid for name"), "{err}");
    }
}

#[actix_web::test]
async fn a_server_certificate_from_another_ca_stops_start_up() {
    if !postgres_with_tls().await {
        return;
    }
    let Some(other) = Pki::requiring("INSA_TLS_CLIENTS") else {
        return;
    };
    let err = crate::helpers::start_error("a database it cannot trust", |s| {
        use_tls(s, "127.0.0.1", Some("verify-ca"), other.path("ca.pem"))
    })
    .await;
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(err.contains("over TLS"), "{err}");
    assert!(err.contains("database.ca_file"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[actix_web::test]
async fn database_ca_file_settings_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path()).await;
    settings.database.url =
        Secret::new("postgres://iiot:hunter2@db.example.com/iiot?sslmode=require");
    settings.database.ca_file = Some(dir.path().join("ca.pem"));
    let err = settings
        .validate()
        .expect_err("require does not check the CA");
    assert!(err.to_string().contains("verify-full"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    settings.database.url = Secret::new("sqlite://data/x.db");
    let err = settings.validate().expect_err("a CA for SQLite");
    assert!(err.to_string().contains("database.ca_file"), "{err}");

    // A missing file is named before any connection is tried.
    settings.database.url =
        Secret::new("postgres://iiot@db.example.invalid/iiot?sslmode=verify-full");
    let missing = dir.path().join("missing-ca.pem");
    let err = crate::helpers::start_error("a missing database.ca_file", |s| {
        s.database.url = settings.database.url.clone();
        s.database.ca_file = Some(missing.clone());
    })
    .await;
    assert!(err.contains("database.ca_file"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}
