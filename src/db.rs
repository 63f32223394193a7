//! Database connection: PostgreSQL or SQLite through sea-orm, migrated at start-up.

use std::path::Path;
use std::time::Duration;

use insa_migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

use crate::redact::redact_url;
use crate::settings::DatabaseSettings;

/// Why the database could not be used; the URL is always shown without its password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot prepare `{path}` (its folder or file) for the SQLite database: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database at {url}: {source}")]
    Connect { url: String, source: DbErr },
    #[error(
        "cannot connect to the database at {url} over TLS (server certificate checked against \
         database.ca_file {ca_file}): {source}"
    )]
    ConnectTls {
        url: String,
        ca_file: String,
        source: DbErr,
    },
    #[error("database TLS: {0}")]
    Tls(#[from] crate::tls_files::TlsFileError),
    #[error("cannot migrate the database at {url}: {source}")]
    Migrate { url: String, source: DbErr },
}

/// The file a SQLite URL names (`sqlite://data/x.db?mode=rwc` -> `data/x.db`); `None` for an
/// in-memory database.
pub fn sqlite_path(url: &str) -> Option<&str> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Creates the folder a SQLite URL points into (`sqlite://data/x.db` -> `data/`) and the
/// database file, both owner-only.
fn ensure_sqlite_folder(url: &str) -> Result<(), DbError> {
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    let folder_error = |source| DbError::Folder {
        path: path.to_string(),
        source,
    };
    if let Some(parent) = Path::new(path).parent() {
        // A folder the platform creates is owner-only; an existing one is left as it is.
        if !parent.as_os_str().is_empty() && !parent.exists() {
            crate::private_files::private_dir(parent).map_err(folder_error)?;
        }
    }
    // The database and its WAL files hold accounts and telemetry: owner-only. SQLite gives
    // the WAL and shared-memory files the database file's mode.
    crate::private_files::private_file(Path::new(path)).map_err(folder_error)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        crate::private_files::restrict_if_exists(Path::new(&format!("{path}{suffix}")))
            .map_err(folder_error)?;
    }
    Ok(())
}

/// Connects with the configured pool (without migrating).
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbError> {
    let url = settings.url.expose();
    let shown = redact_url(url);
    if settings.is_sqlite() {
        ensure_sqlite_folder(url)?;
    }
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .acquire_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .sqlx_logging(false);
    if let Some(ca_file) = settings.tls_ca_file() {
        // Read and checked once here (a bad file is named, not a TLS failure of each
        // connection); the pool (sea-orm's, and the sqlx pool taken from it for COPY) verifies
        // the server against it, with `effective_ssl_mode` (verify-full unless the url says).
        let pem = crate::tls_files::database_ca(ca_file)?;
        let mode = settings
            .effective_ssl_mode()
            .and_then(|mode| mode.parse::<sqlx::postgres::PgSslMode>().ok());
        options.map_sqlx_postgres_opts(move |options| {
            let options = options.ssl_root_cert_from_pem(pem.clone());
            match mode {
                Some(mode) => options.ssl_mode(mode),
                None => options,
            }
        });
    }
    options
        // WAL: readers do not block the writer; FULL: a committed batch survives a power cut.
        .map_sqlx_sqlite_opts(|options| {
            options
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
        });
    Database::connect(options)
        .await
        .map_err(|source| match settings.tls_ca_file() {
            Some(ca_file) => DbError::ConnectTls {
                url: shown,
                ca_file: ca_file.display().to_string(),
                source,
            },
            None => DbError::Connect { url: shown, source },
        })
}

/// Connects and brings the schema up to date.
pub async fn connect_and_migrate(
    settings: &DatabaseSettings,
) -> Result<DatabaseConnection, DbError> {
    let db = connect(settings).await?;
    Migrator::up(&db, None)
        .await
        .map_err(|source| DbError::Migrate {
            url: redact_url(settings.url.expose()),
            source,
        })?;
    Ok(db)
}
