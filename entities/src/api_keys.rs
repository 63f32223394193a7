//! Device credentials. Only the SHA-256 of a key is stored; the key itself is shown once.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// Hex SHA-256 of the key. A 256-bit random key needs no slow hash: it cannot be guessed.
    #[sea_orm(unique)]
    pub key_hash: String,
    /// First characters of the key, so people can tell keys apart without the secret.
    pub prefix: String,
    /// When set, the key may only act for this device.
    pub device_id: Option<Uuid>,
    /// `{"read": bool, "write": bool}`.
    pub permissions: Json,
    /// Requests per hour.
    pub rate_limit: i32,
    pub expires_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
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
