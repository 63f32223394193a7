//! HTTPS for the API, the dashboard and the live feed: the server certificate read from PEM files,
//! a TLS 1.2/1.3 rustls configuration, and re-reading the files on SIGHUP or when they change
//! (new handshakes get the new certificate; open connections keep theirs).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// The certificate the HTTPS listener presents, swapped in place when the files are re-read, so
/// one listener serves the old certificate until a reload succeeds and the new one after.
#[derive(Debug)]
pub struct ReloadingCert {
    /// The settings naming the two files (`server.tls.cert_file`, ...), for messages.
    settings: [&'static str; 2],
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    /// Reads the certificate chain and key; an unreadable or invalid file is an error naming it.
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Self> {
        Self::load_for(
            ["server.tls.cert_file", "server.tls.key_file"],
            cert_file,
            key_file,
        )
    }

    /// As [`Self::load`], for the files of the settings `setting` (named in errors).
    pub fn load_for(
        settings: [&'static str; 2],
        cert_file: &Path,
        key_file: &Path,
    ) -> anyhow::Result<Self> {
        let provider = crate::tls_files::platform_provider();
        let current = read_certified_key(settings, cert_file, key_file, &provider)?;
        Ok(Self {
            settings,
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Re-reads both files and, when they hold a valid pair, serves it to new handshakes; on an
    /// error the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = Arc::new(read_certified_key(
            self.settings,
            &self.cert_file,
            &self.key_file,
            &self.provider,
        )?);
        // A poisoned lock only means a panic while swapping an `Arc`: the value is still whole.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What identifies the two files' contents without reading them: modification time and
    /// length (`None` for a file that cannot be read), so a rewrite within the file system's
    /// time granularity is still seen when its length changes.
    fn fingerprint(&self) -> [Option<(SystemTime, u64)>; 2] {
        let stamp = |path: &Path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        };
        [stamp(&self.cert_file), stamp(&self.key_file)]
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The HTTPS server configuration: TLS 1.2 and 1.3 only, no client certificates, the certificate
/// from `cert`.
pub fn server_config(cert: Arc<ReloadingCert>) -> anyhow::Result<ServerConfig> {
    let config = ServerConfig::builder_with_provider(cert.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2 and 1.3 are not available from the crypto provider")?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    Ok(config)
}

/// Reads a PEM certificate chain and its PEM private key (PKCS#8, RSA or SEC1) into a pair rustls
/// can serve. Errors name the file; nothing read from the key file is ever put in a message.
fn read_certified_key(
    [cert_setting, key_setting]: [&'static str; 2],
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = crate::tls_files::read_certificates(cert_setting, cert_file)?;
    let key = crate::tls_files::read_private_key(key_setting, key_file)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|err| {
        anyhow::anyhow!(
            "{key_setting}: {} is not a usable key for the certificate in {} ({})",
            key_file.display(),
            cert_file.display(),
            crate::tls_files::key_error_kind(&err)
        )
    })
}

/// Re-reads the certificate on SIGHUP and whenever either file's modification time or length changes
/// (checked every `reload_check_secs`). A failed reload is logged and the old certificate stays;
/// the same files are not retried until they change again or SIGHUP asks.
pub fn spawn_reloader(cert: Arc<ReloadingCert>, interval: Duration) {
    // Registered before returning, so a SIGHUP from now on reloads rather than ends the process.
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch SIGHUP; TLS files are re-read on change only");
            None
        }
    };
    let mut seen = cert.fingerprint();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let signalled = tokio::select! {
                _ = ticker.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            let now = cert.fingerprint();
            if !signalled && now == seen {
                continue;
            }
            let cause = if signalled { "SIGHUP" } else { "file change" };
            seen = now;
            let outcome = match cert.reload() {
                Ok(()) => {
                    tracing::info!(
                        cause,
                        cert_file = %cert.cert_file.display(),
                        "TLS certificate reloaded"
                    );
                    "reloaded"
                }
                Err(err) => {
                    tracing::error!(
                        cause,
                        error = %err,
                        "TLS certificate not reloaded; the previous one stays in use"
                    );
                    "failed"
                }
            };
            metrics::counter!("insa_tls_reloads_total", "outcome" => outcome).increment(1);
        }
    });
}
