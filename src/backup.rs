//! Backup and restore of the platform's database (`insa-iiot backup --to FILE`,
//! `insa-iiot restore --from FILE --yes`).
//!
//! - SQLite: the backup is SQLite's own online copy (`VACUUM INTO`): consistent while the platform
//!   runs, a database file itself. Restoring checks the file is a platform database, then puts it
//!   in place of the configured one (written beside it, then renamed; the old WAL files removed).
//! - PostgreSQL: `pg_dump` in its custom format, restored with `pg_restore --clean
//!   --single-transaction` (all or nothing). Both come with the PostgreSQL client
//!   (`postgresql-client`, the server's major version or newer); the password goes to them through
//!   the environment, never on their command line.
//!
//! Restore replaces the whole database: stop the platform first; it migrates the restored
//! database at its next start. Backup files are created owner-only (they hold accounts and keys'
//! hashes).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::settings::DatabaseSettings;

/// What a backup wrote.
#[derive(Debug)]
pub struct Written {
    pub bytes: u64,
}

/// Writes a backup of the configured database to `to`, which must not exist.
pub async fn backup(settings: &DatabaseSettings, to: &Path) -> anyhow::Result<Written> {
    if to.exists() {
        bail!(
            "{} exists: choose a new file name (a backup never overwrites)",
            to.display()
        );
    }
    if settings.is_sqlite() {
        let path = sqlite_file(settings)?;
        if !path.exists() {
            bail!("no SQLite database at {}", path.display());
        }
        let db = crate::db::connect(settings).await?;
        let target = to
            .to_str()
            .context("the backup's path is not valid UTF-8")?;
        db.execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "VACUUM INTO ?",
            [target.into()],
        ))
        .await
        .with_context(|| format!("SQLite cannot write the backup to {}", to.display()))?;
        db.close().await.ok();
    } else {
        let postgres = Postgres::from_settings(settings)?;
        postgres.run(
            "pg_dump",
            &[
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                "--file",
                path_arg(to)?,
            ],
        )?;
    }
    crate::private_files::restrict_if_exists(to)
        .with_context(|| format!("cannot make {} owner-only", to.display()))?;
    let bytes = std::fs::metadata(to)
        .with_context(|| format!("no backup written at {}", to.display()))?
        .len();
    Ok(Written { bytes })
}

/// Replaces the configured database with the backup `from`.
pub async fn restore(settings: &DatabaseSettings, from: &Path) -> anyhow::Result<()> {
    if !from.is_file() {
        bail!("no backup file at {}", from.display());
    }
    if settings.is_sqlite() {
        let path = sqlite_file(settings)?;
        check_sqlite_backup(from).await?;
        let staged = PathBuf::from(format!("{}.restoring", path.display()));
        std::fs::copy(from, &staged)
            .with_context(|| format!("cannot copy the backup to {}", staged.display()))?;
        crate::private_files::restrict_if_exists(&staged)?;
        std::fs::rename(&staged, &path)
            .with_context(|| format!("cannot put the backup in place of {}", path.display()))?;
        // The replaced database's write-ahead log would be replayed onto the restored one.
        for suffix in ["-wal", "-shm", "-journal"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&file) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(err).with_context(|| format!("cannot remove {}", file.display()));
                }
                _ => {}
            }
        }
    } else {
        let postgres = Postgres::from_settings(settings)?;
        postgres.run(
            "pg_restore",
            &[
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                path_arg(from)?,
            ],
        )?;
    }
    Ok(())
}

fn path_arg(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not a valid UTF-8 path", path.display()))
}

/// The file of a SQLite url (`sqlite://data/insa.db?mode=rwc` -> `data/insa.db`).
fn sqlite_file(settings: &DatabaseSettings) -> anyhow::Result<PathBuf> {
    crate::db::sqlite_path(settings.url.expose())
        .map(PathBuf::from)
        .context("database.url names no SQLite file (an in-memory database has no backup)")
}

/// A SQLite file holding the platform's migrations table, opened read-only.
async fn check_sqlite_backup(file: &Path) -> anyhow::Result<()> {
    let url = format!("sqlite://{}?mode=ro", path_arg(file)?);
    let not_ours = || format!("{} is not a backup of this platform", file.display());
    let db = Database::connect(url).await.with_context(not_ours)?;
    let applied = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM seaql_migrations",
        ))
        .await
        .with_context(not_ours)?;
    db.close().await.ok();
    if applied.is_none() {
        bail!(not_ours());
    }
    Ok(())
}

/// How to reach the PostgreSQL database with its own tools: the url without its password (the
/// password in `PGPASSWORD`), only the parameters libpq knows, and `database.ca_file`.
struct Postgres {
    url: String,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    ssl_mode: Option<String>,
}

/// The url parameters libpq understands; others (sqlx's own) are left out.
const LIBPQ_PARAMETERS: [&str; 7] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
    "connect_timeout",
];

impl Postgres {
    fn from_settings(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let mut url = url::Url::parse(settings.url.expose())
            .map_err(|_| anyhow::anyhow!("database.url is not a valid PostgreSQL url"))?;
        let password = url.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let _ = url.set_password(None);
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| LIBPQ_PARAMETERS.contains(&key.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        Ok(Self {
            url: url.to_string(),
            password,
            ca_file: settings.tls_ca_file().map(Path::to_path_buf),
            ssl_mode: settings.effective_ssl_mode(),
        })
    }

    /// Runs `tool` against the database; its error output in the message when it fails.
    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new(tool);
        command.args(args).arg("--dbname").arg(&self.url);
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        if let Some(ca_file) = &self.ca_file {
            command.env("PGSSLROOTCERT", ca_file);
        }
        if let Some(mode) = &self.ssl_mode {
            command.env("PGSSLMODE", mode);
        }
        let out = match command.output() {
            Ok(out) => out,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                "`{tool}` is not installed: install the PostgreSQL client tools of the server's \
                 major version or newer (Debian: apt-get install postgresql-client)"
            ),
            Err(err) => return Err(err).with_context(|| format!("cannot run `{tool}`")),
        };
        if !out.status.success() {
            bail!(
                "`{tool}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}
