//! `/devices/{id}/certificates`: device certificates from the platform's CA, for MQTTS client
//! authentication; `/ca`: the CA certificate devices trust. A private key the platform generates
//! is answered once and never stored.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use insa_entities::{device_certificates as certs, Role};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::AuthUser;
use crate::certificates::{self, CertificateError};
use crate::error::{ApiError, FieldProblem};
use crate::state::AppState;
use crate::web::list::{list_query, Items, Listed, Paged};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ca", web::get().to(ca_certificate))
        .service(
            web::resource("/devices/{id}/certificates")
                .route(web::get().to(list_certificates))
                .route(web::post().to(issue_certificate)),
        )
        .service(
            web::resource("/devices/{id}/certificates/{cert_id}")
                .route(web::delete().to(revoke_certificate)),
        );
}

/// A device certificate, without any key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateInfo {
    pub id: Uuid,
    pub device_id: Uuid,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-256 of the DER certificate, hex.
    pub fingerprint_sha256: String,
    /// `csr` (the device made its key) or `generated` (the platform did).
    pub key_source: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    /// Whole days left before `not_after` (negative once expired).
    pub expires_in_days: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<certs::Model> for CertificateInfo {
    fn from(cert: certs::Model) -> Self {
        let now = Utc::now();
        let status = match (cert.revoked_at, cert.not_after <= now) {
            (Some(_), _) => "revoked",
            (None, true) => "expired",
            (None, false) => "active",
        };
        Self {
            id: cert.id,
            device_id: cert.device_id,
            serial: cert.serial,
            fingerprint_sha256: cert.fingerprint_sha256,
            key_source: cert.key_source,
            not_before: cert.not_before,
            not_after: cert.not_after,
            status,
            expires_in_days: (cert.not_after - now).num_days(),
            created_at: cert.created_at,
            created_by: cert.created_by,
            revoked_at: cert.revoked_at,
        }
    }
}

impl Items for CertificateInfo {
    const FIELD: &'static str = "certificates";
    const LIST: &'static str = "CertificateList";
}

/// `{certificates, total, limit, offset}`.
pub type CertificateList = Listed<CertificateInfo>;

list_query! {
    pub struct CertificateQuery {}
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueCertificate {
    /// A PKCS#10 certificate signing request (PEM) made with the device's own key. Without it
    /// the platform generates a key (ECDSA P-256) and answers it once. Whatever subject the
    /// request names, the certificate's subject CN is the device id.
    #[schema(max_length = 16384)]
    pub csr_pem: Option<String>,
    /// Days the certificate is valid, 1 to `ca.certificate_days` (the default, 365).
    #[schema(minimum = 1, maximum = 3650)]
    pub valid_days: Option<u32>,
}

/// Largest CSR accepted (a 4096-bit RSA request is under 2 KiB).
const MAX_CSR_BYTES: usize = 16 * 1024;

/// The answer to an issue: the certificate, the CA, and the key when the platform made it.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCertificate {
    #[serde(flatten)]
    pub certificate: CertificateInfo,
    pub certificate_pem: String,
    /// The device's private key (PKCS#8 PEM), present only when no CSR was sent. It is not kept:
    /// this is the only time it can be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    /// The CA certificate (PEM), for the device's trust store.
    pub ca_pem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
}

/// The platform's CA certificate (PEM), for device trust stores. No credentials needed: it is
/// public.
#[utoipa::path(get, path = "/api/v1/ca", tag = "certificates",
    responses((status = 200, description = "The CA certificate, PEM", content_type = "application/x-pem-file", body = String)))]
pub async fn ca_certificate(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(state.ca.certificate_pem().to_string())
}

/// Issue a certificate for the device: from a CSR, or with a key generated for it (answered once).
#[utoipa::path(post, path = "/api/v1/devices/{id}/certificates", tag = "certificates",
    params(("id" = Uuid, Path, description = "Device id")),
    request_body = IssueCertificate,
    responses((status = 201, body = IssuedCertificate),
        (status = 404, description = "`device_not_found`"),
        (status = 422, description = "`validation_failed`: `csr_pem` or `valid_days`")),
    security(("bearer" = [])))]
pub async fn issue_certificate(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: crate::body::Json<IssueCertificate>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let device_id = id.into_inner();
    let body = body.into_inner();
    let max_days = state.settings.ca.certificate_days;
    let days = body.valid_days.unwrap_or(max_days);
    let mut problems = Vec::new();
    if !(1..=max_days).contains(&days) {
        problems.push(FieldProblem::new(
            "valid_days",
            format!("between 1 and {max_days} (ca.certificate_days)"),
        ));
    }
    if body
        .csr_pem
        .as_ref()
        .is_some_and(|csr| csr.len() > MAX_CSR_BYTES)
    {
        problems.push(FieldProblem::new(
            "csr_pem",
            format!("at most {MAX_CSR_BYTES} bytes"),
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let (row, issued) = certificates::issue(
        &state.db,
        &state.ca,
        &state.certificates,
        device_id,
        body.csr_pem.as_deref(),
        days,
        user.id,
    )
    .await?;
    Audit::by("device_certificate.issue", &user, &req)
        .target("device_certificate", row.id)
        .details(json!({
            "device_id": device_id,
            "serial": row.serial,
            "key_source": row.key_source,
            "not_after": row.not_after,
        }))
        .record(&state.db)
        .await;
    let generated = issued.private_key_pem.is_some();
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!("/api/v1/devices/{device_id}/certificates/{}", row.id),
        ))
        // The answer may hold a private key: never kept by a cache.
        .insert_header(("Cache-Control", "no-store"))
        .json(IssuedCertificate {
            certificate: row.into(),
            certificate_pem: issued.certificate_pem,
            private_key_pem: issued.private_key_pem,
            ca_pem: state.ca.certificate_pem().to_string(),
            warning: generated.then_some(
                "Save the private key now: it is not stored and cannot be retrieved later.",
            ),
        }))
}

/// The device's certificates, newest first, revoked and expired ones included (never a key).
#[utoipa::path(get, path = "/api/v1/devices/{id}/certificates", tag = "certificates",
    params(("id" = Uuid, Path, description = "Device id"), CertificateQuery),
    responses((status = 200, body = CertificateList), (status = 404, description = "`device_not_found`")),
    security(("bearer" = [])))]
pub async fn list_certificates(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    query: web::Query<CertificateQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let device_id = id.into_inner();
    let page = query.page()?;
    if !crate::devices::device_exists(&state.db, device_id).await? {
        return Err(CertificateError::NoDevice(device_id).into());
    }
    let select = certs::Entity::find()
        .filter(certs::Column::DeviceId.eq(device_id))
        .order_by_desc(certs::Column::CreatedAt);
    let listed = page.fetch(&state.db, select).await?;
    Ok(HttpResponse::Ok().json(listed.map(CertificateInfo::from)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedCertificate {
    pub message: &'static str,
    pub certificate: CertificateInfo,
}

/// Revoke a certificate: the MQTTS listener refuses it from now on and closes the connections
/// using it. Revoking twice keeps the first time.
#[utoipa::path(delete, path = "/api/v1/devices/{id}/certificates/{cert_id}", tag = "certificates",
    params(("id" = Uuid, Path, description = "Device id"), ("cert_id" = Uuid, Path, description = "Certificate id")),
    responses((status = 200, body = RevokedCertificate), (status = 404, description = "`certificate_not_found`")),
    security(("bearer" = [])))]
pub async fn revoke_certificate(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let (device_id, cert_id) = path.into_inner();
    let (cert, revoked_now) =
        certificates::revoke(&state.db, &state.certificates, device_id, cert_id).await?;
    if revoked_now {
        state.credentials_ended(crate::auth::revocation::Revoked::Certificate(cert.id));
        Audit::by("device_certificate.revoke", &user, &req)
            .target("device_certificate", cert.id)
            .details(json!({ "device_id": device_id, "serial": cert.serial }))
            .record(&state.db)
            .await;
    }
    Ok(HttpResponse::Ok().json(RevokedCertificate {
        message: "certificate revoked",
        certificate: cert.into(),
    }))
}
