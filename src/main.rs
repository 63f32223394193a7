//! `insa-iiot`: starts the platform, or runs an operator command (see `insa-iiot --help`).

use clap::Parser;
use insa_iiot::cli::{Cli, Command};
use insa_iiot::settings::Settings;
use insa_iiot::startup::Application;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    insa_iiot::install_crypto_provider();
    let cli = Cli::parse();
    let settings = Settings::load()?;
    insa_iiot::telemetry_log::init(&settings.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            tracing::info!("insa-iiot stopped");
            Ok(())
        }
        command => insa_iiot::cli::run(command, settings).await,
    }
}
