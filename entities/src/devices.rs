//! Field devices: sensors, PLC gateways. Columns follow the seed's `devices` table.
use sea_orm::entity::prelude::*;

use crate::DeviceStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// What it measures (`temperature`, `pressure`, `flow`, `level`, `plc`, ...); free text.
    #[sea_orm(column_name = "type")]
    pub device_type: String,
    pub location: Option<String>,
    pub area: Option<String>,
    pub protocol: Option<String>,
    pub connection_string: Option<String>,
    /// Device settings (`sampling_rate`, `alert_threshold`, `inactivity_timeout`, ...); a JSON object.
    pub config: Option<Json>,
    pub status: DeviceStatus,
    pub last_seen: Option<DateTimeUtc>,
    /// Descriptive facts (manufacturer, model, firmware); a JSON object.
    pub metadata: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::telemetry::Entity")]
    Telemetry,
    #[sea_orm(has_many = "super::alerts::Entity")]
    Alerts,
    #[sea_orm(has_many = "super::api_keys::Entity")]
    ApiKeys,
}

impl Related<super::telemetry::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Telemetry.def()
    }
}

impl Related<super::alerts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Alerts.def()
    }
}

impl Related<super::api_keys::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ApiKeys.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
