//! The binary's operator commands and its start-up checks, run as an operator would.

use std::process::{Command, Output};

use reqwest::StatusCode;

use crate::helpers::{fresh_database_url, printed as text, spawn_app_with};

/// `insa-iiot ARGS` run in `dir` with `env`, as an operator would (no settings files).
pub fn insa(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_insa-iiot"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("INSA_ENV")
        .env("INSA_SETTINGS_DIR", dir.join("no-settings"))
        .env("INSA__DATA_DIR", dir.join("data"))
        .env("RUST_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run insa-iiot")
}

#[actix_web::test]
async fn an_operator_creates_a_user_and_resets_their_password_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database_url(dir.path()).await;
    let env = [("INSA__DATABASE__URL", url.as_str())];

    let migrate = insa(dir.path(), &env, &["migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate));
    assert!(text(&migrate).contains("up to date"));

    let create = insa(
        dir.path(),
        &env,
        &[
            "user",
            "create",
            "--email",
            "Ops@insa.com",
            "--role",
            "operator",
            "--password",
            "op-password-1",
        ],
    );
    assert!(create.status.success(), "{}", text(&create));
    let again = insa(
        dir.path(),
        &env,
        &[
            "user",
            "create",
            "--email",
            "ops@insa.com",
            "--password",
            "op-password-1",
        ],
    );
    assert!(!again.status.success(), "duplicate email must fail");

    let reset = insa(
        dir.path(),
        &env,
        &["user", "set-password", "--email", "ops@insa.com"],
    );
    assert!(reset.status.success(), "{}", text(&reset));
    let output = text(&reset);
    let generated = output
        .lines()
        .find_map(|line| line.strip_prefix("password: "))
        .expect("generated password printed")
        .trim()
        .to_string();

    let app =
        spawn_app_with(|s| s.database.url = insa_iiot::settings::Secret::new(url.clone())).await;
    assert_eq!(
        app.login("ops@insa.com", "op-password-1").await.status,
        StatusCode::UNAUTHORIZED
    );
    let login = app.login("ops@insa.com", &generated).await;
    assert_eq!(login.status, StatusCode::OK, "{login:?}");
    assert_eq!(login.body["user"]["role"], "operator");
}

#[test]
fn an_unreachable_database_is_reported_without_its_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = insa(
        dir.path(),
        &[
            (
                "INSA__DATABASE__URL",
                "postgres://iiot:hunter2@127.0.0.1:1/insa_iiot",
            ),
            ("INSA__DATABASE__CONNECT_TIMEOUT_SECS", "1"),
        ],
        &["migrate"],
    );
    assert!(!output.status.success());
    let message = text(&output);
    assert!(
        message.contains("postgres://iiot:***@127.0.0.1:1/insa_iiot"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn bad_settings_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("INSA__SERVER__PORT", "not-a-port")], "server.port"),
        (&[("INSA__SERVER__PROT", "8080")], "prot"),
        (&[("INSA__ACTORS__PARTITIONS", "0")], "actors.partitions"),
        (&[("INSA_ENV", "production")], "auth.jwt_secret"),
    ];
    for (env, key) in cases {
        let output = insa(dir.path(), env, &["migrate"]);
        assert!(!output.status.success(), "{env:?} must be refused");
        let message = text(&output);
        assert!(message.contains(key), "{env:?}: {message}");
    }
}

#[test]
fn production_refuses_sqlite_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = (
        "INSA__AUTH__JWT_SECRET",
        "0123456789abcdef0123456789abcdef-production",
    );
    let url = format!("sqlite://{}/prod.db?mode=rwc", dir.path().display());
    let refused = insa(
        dir.path(),
        &[
            ("INSA_ENV", "production"),
            secret,
            ("INSA__DATABASE__URL", &url),
        ],
        &["migrate"],
    );
    assert!(!refused.status.success());
    assert!(text(&refused).contains("SQLite"), "{}", text(&refused));
    let allowed = insa(
        dir.path(),
        &[
            ("INSA_ENV", "production"),
            secret,
            ("INSA__DATABASE__URL", &url),
            ("INSA__DATABASE__ALLOW_SQLITE_IN_PRODUCTION", "true"),
        ],
        &["migrate"],
    );
    assert!(allowed.status.success(), "{}", text(&allowed));
}

#[test]
fn the_sqlite_folder_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}/nested/deeper/insa.db?mode=rwc",
        dir.path().display()
    );
    let output = insa(dir.path(), &[("INSA__DATABASE__URL", &url)], &["migrate"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(dir.path().join("nested/deeper/insa.db").exists());
}
