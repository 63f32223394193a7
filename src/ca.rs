//! The platform's certificate authority: device certificates (subject CN = the device id, for TLS
//! client authentication) issued from a CSR or with a key generated for the device, and the
//! certificate the embedded broker presents when no file is configured for it.
//!
//! The CA is created on the first start in `data_dir/ca/` (`ca.pem`, and `ca.key` readable by the
//! platform's user only) or read from `ca.cert_file` / `ca.key_file`. [`ActiveCertificates`] is
//! the allow-list the MQTTS listener checks a presented certificate against: only certificates
//! this platform issued and has not revoked (nor lost with their device) are accepted.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use dashmap::DashMap;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::settings::CaSettings;

/// How long before "now" a new certificate is already valid, for devices whose clock lags.
const CLOCK_SKEW: Duration = Duration::minutes(5);
/// Validity of a CA the platform creates.
const CA_DAYS: i64 = 20 * 365;
/// Validity of the broker certificate the CA issues (re-issued at every start).
const BROKER_CERT_DAYS: i64 = 365;

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The CSR is not a PEM certificate request, its signature does not verify, or it asks for
    /// something the CA does not sign.
    #[error("csr_pem: {0}")]
    BadCsr(String),
    #[error("the CA cannot sign: {0}")]
    Signing(String),
}

/// A certificate just issued.
pub struct Issued {
    /// Lower-case hex of the serial number's bytes.
    pub serial: String,
    pub fingerprint_sha256: String,
    pub certificate_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// The private key, when the platform generated it (PKCS#8 PEM), to be answered once.
    pub private_key_pem: Option<String>,
}

/// The CA: its certificate and signing key.
pub struct PlatformCa {
    cert_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for PlatformCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformCa").finish_non_exhaustive()
    }
}

impl PlatformCa {
    /// Reads the configured CA, or the one in `data_dir/ca/`, creating it there on the first start.
    pub fn load_or_create(settings: &CaSettings, data_dir: &Path) -> anyhow::Result<Self> {
        if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
            return Self::read(cert, key, "ca.cert_file", "ca.key_file");
        }
        let dir = data_dir.join("ca");
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        match (cert.exists(), key.exists()) {
            (true, true) => Self::read(&cert, &key, "data_dir/ca/ca.pem", "data_dir/ca/ca.key"),
            (false, false) => Self::create(&dir, &cert, &key),
            _ => anyhow::bail!(
                "{} holds only one of ca.pem and ca.key: restore the other, or remove both to \
                 create a new CA (certificates issued by the old one will then be refused)",
                dir.display()
            ),
        }
    }

    fn read(cert: &Path, key: &Path, cert_name: &str, key_name: &str) -> anyhow::Result<Self> {
        let cert_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("{cert_name}: cannot read {}", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("{key_name}: cannot read {}", key.display()))?;
        // The parser's error may quote the file: only its name goes in the message.
        let key_pair = KeyPair::from_pem(&key_pem).map_err(|_| {
            anyhow::anyhow!(
                "{key_name}: {} holds no PKCS#8 PEM private key the CA can sign with",
                key.display()
            )
        })?;
        let cert_der = first_pem_certificate(&cert_pem)
            .with_context(|| format!("{cert_name}: {} holds no PEM certificate", cert.display()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).map_err(|_| {
            anyhow::anyhow!("{cert_name}: {} is not a valid certificate", cert.display())
        })?;
        if parsed.public_key().raw != key_pair.subject_public_key_info().as_slice() {
            anyhow::bail!(
                "{key_name}: {} is not the key of the CA certificate in {}",
                key.display(),
                cert.display()
            );
        }
        if !parsed.is_ca() {
            anyhow::bail!("{cert_name}: {} is not a CA certificate", cert.display());
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key_pair)
            .map_err(|err| anyhow::anyhow!("{cert_name}: {}: {err}", cert.display()))?;
        Ok(Self {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    fn create(dir: &Path, cert: &PathBuf, key: &PathBuf) -> anyhow::Result<Self> {
        crate::private_files::private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let key_pair = KeyPair::generate().context("cannot generate the CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("insa-iiot device CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = Utc::now();
        params.not_before = to_time(now - CLOCK_SKEW)?;
        params.not_after = to_time(now + Duration::days(CA_DAYS))?;
        params.serial_number = Some(random_serial());
        let certificate = params
            .self_signed(&key_pair)
            .context("cannot sign the CA certificate")?;
        // The key file is made owner-only before the key is written into it.
        crate::private_files::private_file(key)
            .with_context(|| format!("cannot create {}", key.display()))?;
        std::fs::write(key, key_pair.serialize_pem())
            .with_context(|| format!("cannot write {}", key.display()))?;
        let cert_pem = certificate.pem();
        std::fs::write(cert, &cert_pem)
            .with_context(|| format!("cannot write {}", cert.display()))?;
        tracing::info!(cert = %cert.display(), "created the platform's certificate authority");
        Ok(Self {
            cert_pem,
            cert_der: certificate.der().clone(),
            issuer: Issuer::new(params, key_pair),
        })
    }

    /// The CA certificate, PEM: what devices put in their trust store.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER: the root client certificates are verified against.
    pub fn certificate_der(&self) -> &rustls::pki_types::CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues a device certificate for the public key in `csr_pem` (whatever subject and
    /// extensions it asks for, the certificate names the device and allows client
    /// authentication only), or with a new key (answered once) when `csr_pem` is `None`.
    pub fn issue_device(
        &self,
        device_id: Uuid,
        csr_pem: Option<&str>,
        days: u32,
    ) -> Result<Issued, IssueError> {
        let params = leaf_params(
            device_id.to_string(),
            Vec::new(),
            days,
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        match csr_pem {
            Some(csr) => {
                let request = CertificateSigningRequestParams::from_pem(csr)
                    .map_err(|err| IssueError::BadCsr(csr_problem(&err)))?;
                let cert = params
                    .signed_by(&request.public_key, &self.issuer)
                    .map_err(|err| IssueError::BadCsr(csr_problem(&err)))?;
                issued(cert, None)
            }
            None => {
                let key = KeyPair::generate().map_err(|e| IssueError::Signing(e.to_string()))?;
                let cert = params
                    .signed_by(&key, &self.issuer)
                    .map_err(|e| IssueError::Signing(e.to_string()))?;
                issued(cert, Some(key.serialize_pem()))
            }
        }
    }

    /// A server certificate for the embedded broker (`hostnames`: DNS names or IP addresses),
    /// with its key, as rustls serves it.
    pub fn issue_server(&self, hostnames: &[String]) -> anyhow::Result<rustls::sign::CertifiedKey> {
        let sans = hostnames
            .iter()
            .map(|host| match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => host.clone().try_into().map(SanType::DnsName).map_err(|_| {
                    anyhow::anyhow!("mqtt.tls.hostnames: `{host}` is not a host name")
                }),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let days = u32::try_from(BROKER_CERT_DAYS).unwrap_or(365);
        let params = leaf_params(
            hostnames.first().cloned().unwrap_or_default(),
            sans,
            days,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let key = KeyPair::generate().context("cannot generate the broker's key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("cannot issue the broker's certificate")?;
        let provider = crate::tls_files::platform_provider();
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|err| anyhow::anyhow!("the broker's key: {err}"))?;
        rustls::sign::CertifiedKey::from_der(
            vec![cert.der().clone(), self.cert_der.clone()],
            key_der,
            &provider,
        )
        .context("the broker's certificate")
    }
}

/// `CN = common_name, O = insa-iiot`.
fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "insa-iiot");
    name.push(DnType::CommonName, common_name);
    name
}

fn leaf_params(
    common_name: String,
    sans: Vec<SanType>,
    days: u32,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, IssueError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&common_name);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    let now = Utc::now();
    params.not_before =
        to_time(now - CLOCK_SKEW).map_err(|e| IssueError::Signing(e.to_string()))?;
    params.not_after = to_time(now + Duration::days(i64::from(days)))
        .map_err(|e| IssueError::Signing(e.to_string()))?;
    Ok(params)
}

/// 16 random bytes, positive and without a leading zero byte, so the DER integer is these bytes.
fn random_serial() -> SerialNumber {
    let mut bytes = *Uuid::new_v4().as_bytes();
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    SerialNumber::from_slice(&bytes)
}

fn to_time(at: DateTime<Utc>) -> anyhow::Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp())
        .map_err(|err| anyhow::anyhow!("certificate time out of range: {err}"))
}

fn issued(cert: rcgen::Certificate, private_key_pem: Option<String>) -> Result<Issued, IssueError> {
    let identity = CertIdentity::read(cert.der())
        .ok_or_else(|| IssueError::Signing("the issued certificate cannot be read back".into()))?;
    Ok(Issued {
        serial: identity.serial,
        fingerprint_sha256: hex::encode(Sha256::digest(cert.der())),
        certificate_pem: cert.pem(),
        not_before: identity.not_before,
        not_after: identity.not_after,
        private_key_pem,
    })
}

/// What a CSR problem is, in words (never the CSR itself).
fn csr_problem(err: &rcgen::Error) -> String {
    match err {
        rcgen::Error::CouldNotParseCertificationRequest => {
            "not a PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----)".into()
        }
        rcgen::Error::InvalidCertificationRequestSignature => {
            "the request's signature does not verify".into()
        }
        rcgen::Error::UnsupportedExtension => {
            "the request asks for an extension the CA does not sign (only subjectAltName, key \
             usage, extended key usage and basic constraints)"
                .into()
        }
        rcgen::Error::UnsupportedSignatureAlgorithm => {
            "unsupported key or signature algorithm (ECDSA P-256/P-384, Ed25519 or RSA)".into()
        }
        other => format!("cannot be signed ({other})"),
    }
}

fn first_pem_certificate(pem: &str) -> Option<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
}

/// What identifies a certificate presented to the platform: its serial (as stored), subject CN
/// and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub serial: String,
    pub common_name: Option<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl CertIdentity {
    /// Reads a DER certificate; `None` when it is not one.
    pub fn read(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let at = |t: x509_parser::time::ASN1Time| DateTime::from_timestamp(t.timestamp(), 0);
        Some(Self {
            serial: hex::encode(cert.tbs_certificate.raw_serial()),
            common_name,
            not_before: at(cert.validity().not_before)?,
            not_after: at(cert.validity().not_after)?,
        })
    }
}

/// A certificate the platform accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveCert {
    pub cert_id: Uuid,
    pub device_id: Uuid,
    pub not_after: DateTime<Utc>,
}

/// The certificates the platform accepts, by serial: issued here, not revoked, device not deleted.
/// Loaded from the database at start; issuing and revoking through the API update it at once.
#[derive(Debug, Default)]
pub struct ActiveCertificates {
    by_serial: DashMap<String, ActiveCert>,
}

impl ActiveCertificates {
    /// Every certificate not revoked and not expired.
    pub async fn load(db: &sea_orm::DatabaseConnection) -> Result<Self, sea_orm::DbErr> {
        use insa_entities::device_certificates as certs;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let rows = certs::Entity::find()
            .filter(certs::Column::RevokedAt.is_null())
            .filter(certs::Column::NotAfter.gt(Utc::now()))
            .all(db)
            .await?;
        let active = Self::default();
        for row in rows {
            active.insert(&row);
        }
        Ok(active)
    }

    pub fn insert(&self, row: &insa_entities::device_certificates::Model) {
        self.by_serial.insert(
            row.serial.clone(),
            ActiveCert {
                cert_id: row.id,
                device_id: row.device_id,
                not_after: row.not_after,
            },
        );
    }

    /// The accepted certificate with this serial.
    pub fn get(&self, serial: &str) -> Option<ActiveCert> {
        self.by_serial.get(serial).map(|c| *c)
    }

    pub fn revoke(&self, cert_id: Uuid) {
        self.by_serial.retain(|_, c| c.cert_id != cert_id);
    }

    pub fn remove_device(&self, device_id: Uuid) {
        self.by_serial.retain(|_, c| c.device_id != device_id);
    }

    /// How many are accepted and not expired, and how many of those expire within `warning`.
    pub fn counts(&self, warning: Duration) -> (usize, usize) {
        let now = Utc::now();
        let soon = now + warning;
        let valid = self.by_serial.iter().filter(|c| c.not_after > now);
        valid.fold((0, 0), |(all, expiring), c| {
            (all + 1, expiring + usize::from(c.not_after <= soon))
        })
    }

    /// The accepted certificates that expire within `warning` (expired ones included).
    pub fn expiring(&self, warning: Duration) -> Vec<ActiveCert> {
        let soon = Utc::now() + warning;
        self.by_serial
            .iter()
            .filter(|c| c.not_after <= soon)
            .map(|c| *c)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (tempfile::TempDir, PlatformCa) {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = PlatformCa::load_or_create(&CaSettings::default(), dir.path()).expect("CA");
        (dir, ca)
    }

    #[test]
    fn a_created_ca_is_read_back_with_its_key_owner_only() {
        let (dir, ca) = ca();
        let again = PlatformCa::load_or_create(&CaSettings::default(), dir.path()).expect("CA");
        assert_eq!(ca.certificate_pem(), again.certificate_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca/ca.key"))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_device_certificate_names_the_device_and_lasts_the_days_asked() {
        let (_dir, ca) = ca();
        let device = Uuid::new_v4();
        let issued = ca.issue_device(device, None, 30).expect("issued");
        let der = first_pem_certificate(&issued.certificate_pem).expect("PEM");
        let identity = CertIdentity::read(&der).expect("readable");
        assert_eq!(identity.common_name, Some(device.to_string()));
        assert_eq!(identity.serial, issued.serial);
        let days = (identity.not_after - Utc::now()).num_days();
        assert!((29..=30).contains(&days), "{days}");
        assert!(issued.private_key_pem.is_some());
    }

    #[test]
    fn a_csr_keeps_its_key_but_not_its_subject() {
        let (_dir, ca) = ca();
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = name("someone-else");
        let csr = params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        let device = Uuid::new_v4();
        let issued = ca.issue_device(device, Some(&csr), 10).expect("issued");
        assert!(issued.private_key_pem.is_none());
        let der = first_pem_certificate(&issued.certificate_pem).expect("PEM");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("cert");
        assert_eq!(
            cert.public_key().raw,
            key.subject_public_key_info().as_slice()
        );
        assert_eq!(
            CertIdentity::read(&der).and_then(|i| i.common_name),
            Some(device.to_string())
        );
        assert!(matches!(
            ca.issue_device(device, Some("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), 10),
            Err(IssueError::BadCsr(_))
        ));
    }
}
