//! Building and running the platform: [`Application::build`] is used by `main` and by the tests.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::middleware::{Compress, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use chrono::Utc;
use insa_actors::pipeline::PipelineConfig;
use insa_actors::writer::WriterConfig;
use insa_actors::Pipeline;
use sea_orm::DatabaseConnection;
use tracing_actix_web::TracingLogger;

use crate::auth::throttle::LoginThrottle;
use crate::auth::tokens::{load_or_create_secret, JwtKeys};
use crate::error::{ensure_json_error, json_error, path_error, query_error};
use crate::routes;
use crate::settings::Settings;
use crate::state::AppState;

/// A built, bound, not yet running platform.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    /// Keeps the embedded broker (if any) running as long as the application.
    _mqtt: Option<crate::mqtt::Mqtt>,
}

impl Application {
    /// Connects and migrates the database, creates the first admin if there are no users, and binds
    /// the HTTP listener (port 0 picks a free one; HTTPS only when `server.tls` names a certificate).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        // The certificate first: a bad file fails start-up before anything else is touched.
        let tls = match settings.server.tls.files() {
            Some((cert_file, key_file)) => Some(Arc::new(crate::tls::ReloadingCert::load(
                cert_file, key_file,
            )?)),
            None => None,
        };
        // So are the CA files of the outgoing links.
        let mailer = crate::notify::smtp_transport(
            &settings.smtp,
            Duration::from_secs(settings.webhooks.timeout_secs),
        )?;
        let db = crate::db::connect_and_migrate(&settings.database).await?;
        let created = crate::accounts::bootstrap_admin(&db, &settings.auth)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        if let Some((email, Some(password))) = created {
            print_generated_admin(&email, &password);
        }
        crate::private_files::private_dir(&settings.data_dir).map_err(|err| {
            anyhow::anyhow!(
                "cannot create data_dir {}: {err}",
                settings.data_dir.display()
            )
        })?;
        let ca = Arc::new(crate::ca::PlatformCa::load_or_create(
            &settings.ca,
            &settings.data_dir,
        )?);
        let certificates = Arc::new(
            crate::ca::ActiveCertificates::load(&db)
                .await
                .context("cannot read the device certificates")?,
        );
        let secret = load_or_create_secret(
            settings.auth.jwt_secret.as_ref(),
            settings.environment,
            &settings.data_dir,
        )?;
        let state = web::Data::new(AppState {
            jwt: JwtKeys::new(&secret, &settings.auth),
            login_throttle: LoginThrottle::new(
                settings.auth.login_attempts_per_account_per_minute,
                settings.auth.login_attempts_per_address_per_minute,
                settings.auth.password_attempts_per_account_per_minute,
            ),
            pipeline: start_pipeline(&db, &settings),
            keys: Default::default(),
            mqtt: Default::default(),
            live: Default::default(),
            revocations: Default::default(),
            tickets: Default::default(),
            trusted_proxies: settings.server.trusted_proxy_nets(),
            ca,
            certificates,
            report_jobs: crate::reports::jobs::JobQueue::new(
                db.clone(),
                &settings.data_dir,
                &settings.reports,
            ),
            started_at: Utc::now(),
            started: Instant::now(),
            db,
            settings: settings.clone(),
        });

        // Rules first: a device actor takes them as it starts.
        state
            .pipeline
            .reload_rules()
            .await
            .context("cannot load the alert rules")?;
        let pipeline = state.pipeline.clone();
        actix_web::rt::spawn(async move {
            match pipeline.resume_online_devices().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(devices = n, "resumed online devices"),
                Err(err) => tracing::error!(error = %err, "cannot resume online devices"),
            }
        });

        crate::certificates::spawn_expiry_warnings(
            state.certificates.clone(),
            chrono::Duration::days(i64::from(settings.ca.expiry_warning_days)),
        );
        let platform = crate::mqtt::Platform {
            db: state.db.clone(),
            keys: state.keys.clone(),
            pipeline: state.pipeline.clone(),
            ca: state.ca.clone(),
            certificates: state.certificates.clone(),
            https_cert: tls.clone(),
        };
        let mqtt = crate::mqtt::start(platform, &settings).await?;
        let _ = state.mqtt.set(crate::state::MqttInfo {
            mode: mqtt.as_ref().map_or("off", |m| m.broker.broker),
            broker: mqtt.as_ref().map(|m| m.broker.clone()),
            sessions: mqtt.as_ref().map(|m| m.sessions()).unwrap_or_default(),
            commands: mqtt.as_ref().map(|m| m.commands.clone()),
            stats: mqtt.as_ref().map(|m| m.ingest.stats.clone()),
            dynsec: mqtt.as_ref().and_then(|m| m.dynsec.clone()),
        });
        crate::metrics::install();
        crate::notify::start(crate::notify::NotifierState {
            db: state.db.clone(),
            settings: crate::notify::NotifierSettings {
                webhooks: settings.webhooks.clone(),
                smtp: settings.smtp.clone(),
                mailer,
                server: settings.server.clone(),
            },
            pipeline: state.pipeline.clone(),
            commands: mqtt.as_ref().map(|m| m.commands.clone()),
        });
        crate::reports::runner::start(state.report_jobs.clone());

        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener =
            TcpListener::bind(&address).with_context(|| format!("cannot listen on {address}"))?;
        let port = listener.local_addr()?.port();
        let server = serve(listener, state.clone(), &settings, tls)?;
        tracing::info!(%address, port, scheme = settings.server.scheme(), "insa-iiot listening");
        Ok(Self {
            port,
            server,
            state,
            _mqtt: mqtt,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `host:port` devices reach the MQTT broker at (`None`: MQTT off); with the embedded
    /// broker on port 0, the port it bound (tests hand out free ports this way).
    pub fn mqtt_address(&self) -> Option<String> {
        let info = self.state.mqtt.get()?;
        info.broker.as_ref().map(|broker| broker.address.clone())
    }

    /// The `host:port` of MQTTS on the embedded broker (`None`: off).
    pub fn mqtts_address(&self) -> Option<String> {
        let info = self.state.mqtt.get()?;
        info.broker.as_ref()?.tls_address.clone()
    }

    /// The database the platform uses (tests use it to inspect and to simulate outages).
    pub fn db(&self) -> DatabaseConnection {
        self.state.db.clone()
    }

    /// The device certificates the MQTTS listener accepts (tests add one the API would not
    /// issue, such as an expired one).
    pub fn certificates(&self) -> Arc<crate::ca::ActiveCertificates> {
        self.state.certificates.clone()
    }

    /// The telemetry pipeline (tests use it to observe device actors).
    pub fn pipeline(&self) -> Pipeline {
        self.state.pipeline.clone()
    }

    /// Serves until SIGTERM / ctrl-c, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn start_pipeline(db: &DatabaseConnection, settings: &Settings) -> Pipeline {
    let ingest = &settings.ingest;
    Pipeline::start(
        db.clone(),
        PipelineConfig {
            partitions: settings.actors.partitions,
            threads: settings.actors.threads,
            writer: WriterConfig {
                batch_max_points: ingest.batch_max_points,
                batch_max_delay: Duration::from_millis(ingest.batch_max_delay_ms),
                // SQLite has one writer at a time; more batches in flight would only wait.
                max_in_flight: if settings.database.is_sqlite() {
                    1
                } else {
                    ingest.max_in_flight_batches
                },
                mailbox: 65_536,
            },
            max_pending_points: ingest.max_pending_points,
            device_mailbox: settings.devices.mailbox,
            max_keys_per_device: settings.devices.max_keys,
            default_inactivity: Duration::from_secs(settings.devices.inactivity_timeout_secs),
            state_flush: Duration::from_millis(settings.devices.state_flush_ms),
            alerts: insa_actors::alerts::AlertsConfig {
                max_notifications_per_window: settings.alerts.max_notifications_per_window,
                chatter_window: Duration::from_secs(settings.alerts.chatter_window_secs),
                queue_capacity: settings.alerts.queue_capacity,
            },
        },
    )
}

fn print_generated_admin(email: &str, password: &str) {
    // Printed once, on the first start only; it is not stored anywhere in clear.
    let line = "=".repeat(64);
    eprintln!(
        "\n{line}\n First start: administrator account created\n   email:    {email}\n   password: {password}\n Log in and change it: POST /api/v1/auth/password\n{line}\n"
    );
    tracing::warn!(%email, "administrator created with a generated password (printed above, once)");
}

fn serve(
    listener: TcpListener,
    state: web::Data<AppState>,
    settings: &Settings,
    tls: Option<Arc<crate::tls::ReloadingCert>>,
) -> anyhow::Result<Server> {
    let max_body = settings.server.max_body_bytes;
    let ingest_max_body = settings.ingest.max_body_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(
                crate::body::refuse_nul_in_url,
            ))
            .wrap(actix_web::middleware::from_fn(crate::metrics::track))
            .wrap(ErrorHandlers::new().default_handler(ensure_json_error))
            .wrap(Compress::default())
            .wrap(TracingLogger::<crate::telemetry_log::RequestSpan>::new())
            .app_data(state.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body)
                    .error_handler(json_error),
            )
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PayloadConfig::default().limit(max_body.max(ingest_max_body)))
            .configure(routes::health::configure_root)
            .configure(crate::dashboard::configure)
            .route("/metrics", web::get().to(crate::metrics::scrape))
            .service(
                web::scope("/api/v1").configure(|cfg| routes::configure_api(cfg, ingest_max_body)),
            )
            .default_service(web::to(routes::openapi::no_route))
    })
    .shutdown_timeout(settings.server.shutdown_timeout_secs)
    .client_request_timeout(Duration::from_millis(
        settings.server.client_request_timeout_ms,
    ))
    .client_disconnect_timeout(Duration::from_millis(
        settings.server.client_disconnect_timeout_ms,
    ));
    server = match tls {
        Some(cert) => {
            let config = crate::tls::server_config(cert.clone())?;
            crate::tls::spawn_reloader(cert, settings.server.tls.reload_interval());
            server.listen_rustls_0_23(listener, config)?
        }
        None => server.listen(listener)?,
    };
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    Ok(server.run())
}
