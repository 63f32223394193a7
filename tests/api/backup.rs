//! `insa-iiot backup` and `insa-iiot restore`, run as an operator would, on whichever database the
//! suite runs (SQLite, or PostgreSQL with `DATABASE_URL`): a restore gives back every table as it
//! was at the backup, row for row.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, FromQueryResult, JsonValue, Statement,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cli::insa;
use crate::helpers::{
    eventually, fresh_database_url, printed as text, seed_device, spawn_app_with, As,
};

/// Every table: its row count and a hash of its rows (sorted), read on a new connection.
async fn tables(url: &str) -> BTreeMap<String, (usize, String)> {
    let db: DatabaseConnection = Database::connect(url).await.expect("connect");
    let backend = db.get_database_backend();
    let list = if url.starts_with("sqlite") {
        "SELECT name AS t FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    } else {
        "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'"
    };
    let names = JsonValue::find_by_statement(Statement::from_string(backend, list))
        .all(&db)
        .await
        .expect("tables");
    let mut all = BTreeMap::new();
    for name in names {
        let name = name["t"].as_str().expect("table name").to_string();
        let rows = JsonValue::find_by_statement(Statement::from_string(
            backend,
            format!("SELECT * FROM \"{name}\""),
        ))
        .all(&db)
        .await
        .expect("rows");
        let mut lines: Vec<String> = rows.iter().map(|row| row.to_string()).collect();
        lines.sort();
        let hash = hex::encode(Sha256::digest(lines.join("\n")));
        all.insert(name, (lines.len(), hash));
    }
    db.close().await.ok();
    all
}

#[actix_web::test]
async fn a_restore_gives_back_every_table_as_it_was_at_the_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database_url(dir.path()).await;
    let env = [("INSA__DATABASE__URL", url.as_str())];
    let app = spawn_app_with(|s| {
        s.database.url = insa_iiot::settings::Secret::new(url.clone());
    })
    .await;
    let token = app.admin_token().await;
    let device = app.create_device_id(&token, seed_device()).await;
    let rule = app
        .post(
            "/api/v1/rules",
            As::Bearer(&token),
            &json!({"name": "High pressure", "device_id": device, "key": "pressure",
                    "condition": ">", "threshold": 80, "severity": "critical", "actions": []}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{rule:?}");
    let other = app.create_device_id(&token, seed_device()).await;
    app.create_api_key(&token, json!({"name": "field", "device_id": other}))
        .await;
    let issued = app
        .post(
            &format!("/api/v1/devices/{other}/certificates"),
            As::Bearer(&token),
            &json!({}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{issued:?}");
    for value in [10.0, 85.0, 20.0] {
        app.send_reading(&token, &device, json!({"pressure": value}))
            .await;
    }
    app.send_reading(&token, &other, json!({"flow": 3.5})).await;
    // What the platform writes behind the readings (the alert, the devices' last readings) is
    // in the database before the backup, so the backup is of a database at rest.
    eventually(
        Duration::from_secs(10),
        "the alert and device states stored",
        || async {
            let at_rest = app
                .db
                .query_one(Statement::from_string(
                    app.db.get_database_backend(),
                    "SELECT (SELECT count(*) FROM alerts) AS alerts, \
                 (SELECT count(*) FROM devices WHERE last_seen IS NULL) AS unseen",
                ))
                .await
                .expect("query")
                .expect("a row");
            let alerts: i64 = at_rest.try_get("", "alerts").expect("alerts");
            let unseen: i64 = at_rest.try_get("", "unseen").expect("unseen");
            (alerts == 1 && unseen == 0).then_some(())
        },
    )
    .await;
    let at_backup = tables(&url).await;
    assert!(at_backup["telemetry"].0 >= 4, "{at_backup:?}");

    let file = dir.path().join("site.backup");
    let file_arg = file.display().to_string();
    let out = insa(dir.path(), &env, &["backup", "--to", &file_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("backup written"), "{}", text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("backup")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the backup is owner-only");
    }
    // Never over an existing file.
    let again = insa(dir.path(), &env, &["backup", "--to", &file_arg]);
    assert!(!again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("exists"), "{}", text(&again));

    assert_eq!(
        tables(&url).await,
        at_backup,
        "nothing changed during the backup"
    );
    // Changes after the backup (answered once stored; nothing written behind them).
    let deleted = app
        .delete(&format!("/api/v1/devices/{other}"), As::Bearer(&token))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.user_with_role(&token, "viewer").await;
    assert_ne!(tables(&url).await, at_backup, "the check sees the changes");

    // Without --yes nothing is touched.
    let refused = insa(dir.path(), &env, &["restore", "--from", &file_arg]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("--yes"), "{}", text(&refused));
    let out = insa(dir.path(), &env, &["restore", "--from", &file_arg, "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tables(&url).await, at_backup);

    // A file that is not a backup is refused, the database untouched.
    let bogus = dir.path().join("bogus.backup");
    std::fs::write(&bogus, "not a database").expect("write");
    let out = insa(
        dir.path(),
        &env,
        &["restore", "--from", &bogus.display().to_string(), "--yes"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(tables(&url).await, at_backup);
}

#[actix_web::test]
async fn without_the_postgresql_client_tools_backup_says_what_to_install() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database_url(dir.path()).await;
    let env = [("INSA__DATABASE__URL", url.as_str())];
    if url.starts_with("sqlite") {
        eprintln!("not applicable on SQLite (its backup needs no tool)");
        return;
    }
    let migrate = insa(dir.path(), &env, &["migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate));
    let empty = dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).expect("dir");
    let file = dir.path().join("pg.backup").display().to_string();
    let out = insa(
        dir.path(),
        &[
            ("INSA__DATABASE__URL", url.as_str()),
            ("PATH", empty.to_str().expect("a path")),
        ],
        &["backup", "--to", &file],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("`pg_dump` is not installed")
            && text(&out).contains("postgresql-client"),
        "{}",
        text(&out)
    );
}
