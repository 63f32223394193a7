//! The command line: `insa-iiot` serves; `migrate`, `user ...`, `backup` and `restore` are for
//! operators.

use clap::{Parser, Subcommand};
use insa_entities::Role;

use crate::accounts;
use crate::auth::password::generate_password;
use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "insa-iiot",
    version,
    about = "Industrial IoT platform for oil & gas sites"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the platform (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Write a backup of the database to a new file (SQLite: while the platform runs;
    /// PostgreSQL: with pg_dump).
    Backup {
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Replace the whole database with a backup. Stop the platform first.
    Restore {
        #[arg(long)]
        from: std::path::PathBuf,
        /// Confirms the database is to be replaced.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Without --password a random one is generated and printed.
    Create {
        #[arg(long)]
        email: String,
        /// admin, engineer, operator or viewer
        #[arg(long, default_value = "viewer")]
        role: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, env = "INSA_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Set a user's password and end their sessions. Without --password one is generated.
    SetPassword {
        #[arg(long)]
        email: String,
        #[arg(long, env = "INSA_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

/// Runs `migrate` or `user ...`; `serve` is handled by `main`.
pub async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => unreachable_serve(),
        Command::Migrate => {
            crate::db::connect_and_migrate(&settings.database).await?;
            println!(
                "database at {} is up to date",
                crate::redact::redact_url(settings.database.url.expose())
            );
            Ok(())
        }
        Command::Backup { to } => {
            let written = crate::backup::backup(&settings.database, &to).await?;
            println!(
                "backup written to {} ({} bytes)",
                to.display(),
                written.bytes
            );
            Ok(())
        }
        Command::Restore { from, yes } => {
            if !yes {
                anyhow::bail!(
                    "restore replaces the whole database with {}: stop the platform, then run \
                     again with --yes",
                    from.display()
                );
            }
            crate::backup::restore(&settings.database, &from).await?;
            println!(
                "database restored from {}; it is migrated at the next start",
                from.display()
            );
            Ok(())
        }
        Command::User(command) => {
            let db = crate::db::connect_and_migrate(&settings.database).await?;
            match command {
                UserCommand::Create {
                    email,
                    role,
                    name,
                    password,
                } => {
                    let role = Role::parse(&role).ok_or_else(|| {
                        anyhow::anyhow!("--role must be one of admin, engineer, operator, viewer")
                    })?;
                    let (password, generated) = password_or_generated(password)?;
                    let user = accounts::create_user(&db, &email, &password, role, name).await?;
                    println!("created {} ({}) id {}", user.email, role.as_str(), user.id);
                    if generated {
                        println!("password: {password}");
                    }
                }
                UserCommand::SetPassword { email, password } => {
                    let user = accounts::find_by_email(&db, &email)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no user with email {email}"))?;
                    let (password, generated) = password_or_generated(password)?;
                    let user = accounts::set_password(&db, user, &password, None).await?;
                    println!("password set for {}; their sessions were ended", user.email);
                    if generated {
                        println!("password: {password}");
                    }
                }
            }
            Ok(())
        }
    }
}

fn unreachable_serve() -> anyhow::Result<()> {
    anyhow::bail!("`serve` is run by main")
}

fn password_or_generated(password: Option<String>) -> anyhow::Result<(String, bool)> {
    match password {
        Some(password) => {
            if let Some(problem) = crate::auth::password_problem(&password) {
                anyhow::bail!("--password {problem}");
            }
            Ok((password, false))
        }
        None => Ok((generate_password(), true)),
    }
}
