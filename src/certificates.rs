//! Device certificates: issued by the platform's CA ([`crate::ca`]) for one device, listed, and
//! revoked. Issuing and revoking update the allow-list the MQTTS listener checks at once;
//! revoking also closes the device's live connections that used the certificate.

use chrono::Utc;
use insa_entities::device_certificates as certs;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
};
use uuid::Uuid;

use crate::ca::{ActiveCertificates, IssueError, Issued, PlatformCa};

/// Why a certificate could not be issued or revoked.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("no device with id {0}")]
    NoDevice(Uuid),
    #[error("no certificate with id {0} for this device")]
    NotFound(Uuid),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// `csr` when the device made its own key, `generated` when the platform did.
pub fn key_source(issued: &Issued) -> &'static str {
    if issued.private_key_pem.is_some() {
        "generated"
    } else {
        "csr"
    }
}

/// Issues and records a certificate for `device_id`, accepted by the MQTTS listener from now on.
pub async fn issue(
    db: &DatabaseConnection,
    ca: &PlatformCa,
    active: &ActiveCertificates,
    device_id: Uuid,
    csr_pem: Option<&str>,
    days: u32,
    by: Uuid,
) -> Result<(certs::Model, Issued), CertificateError> {
    if !crate::devices::device_exists(db, device_id).await? {
        return Err(CertificateError::NoDevice(device_id));
    }
    let issued = ca.issue_device(device_id, csr_pem, days)?;
    let row = certs::ActiveModel {
        id: Set(Uuid::new_v4()),
        device_id: Set(device_id),
        serial: Set(issued.serial.clone()),
        fingerprint_sha256: Set(issued.fingerprint_sha256.clone()),
        key_source: Set(key_source(&issued).into()),
        not_before: Set(issued.not_before),
        not_after: Set(issued.not_after),
        created_by: Set(Some(by)),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    active.insert(&row);
    Ok((row, issued))
}

/// The certificate `cert_id` of `device_id`.
pub async fn find(
    db: &DatabaseConnection,
    device_id: Uuid,
    cert_id: Uuid,
) -> Result<certs::Model, CertificateError> {
    certs::Entity::find_by_id(cert_id)
        .filter(certs::Column::DeviceId.eq(device_id))
        .one(db)
        .await?
        .ok_or(CertificateError::NotFound(cert_id))
}

/// Revokes a certificate: the MQTTS listener refuses it from now on (the caller closes its live
/// connections). Revoking twice keeps the first time; `true` when this call revoked it.
pub async fn revoke(
    db: &DatabaseConnection,
    active: &ActiveCertificates,
    device_id: Uuid,
    cert_id: Uuid,
) -> Result<(certs::Model, bool), CertificateError> {
    let cert = find(db, device_id, cert_id).await?;
    if cert.revoked_at.is_some() {
        return Ok((cert, false));
    }
    // Refused at the handshake before the row is even written.
    active.revoke(cert.id);
    let mut row: certs::ActiveModel = cert.into();
    row.revoked_at = Set(Some(Utc::now()));
    Ok((row.update(db).await?, true))
}

/// How often certificates about to expire are logged.
const EXPIRY_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Warns in the log, at start and then daily, of every accepted certificate that expires within
/// `warning` (the metric `insa_device_certificates{state="expiring"}` counts them at every scrape).
pub fn spawn_expiry_warnings(
    active: std::sync::Arc<ActiveCertificates>,
    warning: chrono::Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_LOG_EVERY);
        loop {
            tick.tick().await;
            for cert in active.expiring(warning) {
                tracing::warn!(
                    device_id = %cert.device_id,
                    certificate_id = %cert.cert_id,
                    not_after = %cert.not_after,
                    "device certificate expires soon: issue a new one (POST /api/v1/devices/{{id}}/certificates)"
                );
            }
        }
    });
}
