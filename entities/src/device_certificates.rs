//! Device certificates issued by the platform's CA. The private key is never stored: a key the
//! platform generates is answered once.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "device_certificates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The device the certificate identifies (its subject CN).
    pub device_id: Uuid,
    /// Serial number, lower-case hex: what the MQTTS listener looks a presented certificate up by.
    #[sea_orm(unique)]
    pub serial: String,
    /// Hex SHA-256 of the DER certificate.
    pub fingerprint_sha256: String,
    /// `csr` (the device made its key) or `generated` (the platform did, and answered it once).
    pub key_source: String,
    pub not_before: DateTimeUtc,
    pub not_after: DateTimeUtc,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::devices::Entity",
        from = "Column::DeviceId",
        to = "super::devices::Column::Id",
        on_delete = "Cascade"
    )]
    Device,
}

impl Related<super::devices::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Device.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
