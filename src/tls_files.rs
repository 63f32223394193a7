//! TLS files: PEM certificates and keys as every TLS part of the platform reads them (HTTPS and
//! MQTTS certificates too, through [`crate::tls`]), and the outgoing links' own: the CA files it
//! trusts for the SMTP server, PostgreSQL and an external MQTT broker, and the client
//! certificate it may present to the broker. Files are read at start-up, so a missing or malformed one stops the platform with an error naming its
//! setting and path; nothing read from a key file is ever put in a message.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::settings::MqttSettings;

/// Why a TLS file of the outgoing links cannot be used; `key` is the setting that names it.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{key}: {path} holds no PEM certificate")]
    NoCertificate { key: &'static str, path: String },
    #[error("{key}: {path} is not a valid PEM certificate file")]
    BadCertificate { key: &'static str, path: String },
    #[error("{key}: {path} holds no PEM private key (PKCS#8, RSA or SEC1)")]
    NoKey { key: &'static str, path: String },
    #[error("{key}: {path}: {why}")]
    Unusable {
        key: &'static str,
        path: String,
        why: String,
    },
    #[error(
        "mqtt.client_key_file: {key_path} is not a usable key for the certificate in {cert_path} ({why})"
    )]
    KeyMismatch {
        key_path: String,
        cert_path: String,
        why: &'static str,
    },
}

/// The certificates of a PEM file (at least one).
pub fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    certificates_in(key, path, &read_file(key, path)?)
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        key,
        path: path.display().to_string(),
        source,
    })
}

/// The certificates of `pem`, the contents of `path` (at least one).
fn certificates_in(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let shown = path.display().to_string();
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsFileError::BadCertificate {
            key,
            path: shown.clone(),
        })?;
    if certificates.is_empty() {
        return Err(TlsFileError::NoCertificate { key, path: shown });
    }
    Ok(certificates)
}

/// The trust anchors of a PEM CA file: each certificate must be one rustls can use.
pub fn read_roots(key: &'static str, path: &Path) -> Result<RootCertStore, TlsFileError> {
    roots_of(key, path, read_certificates(key, path)?)
}

fn roots_of(
    key: &'static str,
    path: &Path,
    certificates: Vec<CertificateDer<'static>>,
) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|err| TlsFileError::Unusable {
                key,
                path: path.display().to_string(),
                why: format!("not a usable CA certificate ({err})"),
            })?;
    }
    Ok(roots)
}

/// The private key of a PEM file; the parser's own error (which may quote the file) is dropped.
pub fn read_private_key(
    key: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| TlsFileError::Read {
        key,
        path: shown.clone(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsFileError::NoKey { key, path: shown })
}

/// The TLS client configuration of every platform connection to the broker, for an `mqtts://`
/// url (`None` for plain MQTT): TLS 1.2/1.3, the broker's certificate checked against
/// `mqtt.ca_file` (else the public webpki roots) and its name against the url's host, and the
/// client certificate of `mqtt.client_cert_file`/`client_key_file` when set.
pub fn mqtt_client_config(
    settings: &MqttSettings,
) -> Result<Option<Arc<ClientConfig>>, TlsFileError> {
    if !settings.is_tls() {
        return Ok(None);
    }
    let roots = match &settings.ca_file {
        Some(path) => read_roots("mqtt.ca_file", path)?,
        None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    };
    let builder = ClientConfig::builder_with_provider(platform_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsFileError::Unusable {
            key: "mqtt.url",
            path: settings.url.clone(),
            why: format!("TLS 1.2 and 1.3 are not available ({err})"),
        })?
        .with_root_certificates(roots);
    let config = match (&settings.client_cert_file, &settings.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = read_certificates("mqtt.client_cert_file", cert_file)?;
            let key = read_private_key("mqtt.client_key_file", key_file)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| TlsFileError::KeyMismatch {
                    key_path: key_file.display().to_string(),
                    cert_path: cert_file.display().to_string(),
                    why: key_error_kind(&err),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// `database.ca_file`, read once at start-up and checked (PEM certificates rustls can use), so a
/// bad file is named instead of surfacing as a TLS failure of every connection: its PEM, which
/// every connection of the pool verifies the server against.
pub fn database_ca(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    const KEY: &str = "database.ca_file";
    let pem = read_file(KEY, path)?;
    roots_of(KEY, path, certificates_in(KEY, path, &pem)?)?;
    Ok(pem)
}

/// The provider the platform installs ([`crate::install_crypto_provider`]): rustls on ring.
pub fn platform_provider() -> Arc<CryptoProvider> {
    crate::install_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// What went wrong with a key, without anything taken from the key itself.
pub fn key_error_kind(err: &rustls::Error) -> &'static str {
    match err {
        rustls::Error::InconsistentKeys(_) => "the key does not match the certificate",
        _ => "unsupported or malformed key",
    }
}
