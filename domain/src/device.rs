//! Where a device stands: its status, as devices report it and people set it.

use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};

/// Where a device stands. `maintenance` is only ever set and cleared by a person.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    #[sea_orm(string_value = "online")]
    Online,
    #[sea_orm(string_value = "offline")]
    Offline,
    #[sea_orm(string_value = "maintenance")]
    Maintenance,
    #[sea_orm(string_value = "error")]
    Error,
}

impl DeviceStatus {
    /// Every status, in the order the API reports counts.
    pub const ALL: [DeviceStatus; 4] = [
        DeviceStatus::Online,
        DeviceStatus::Offline,
        DeviceStatus::Maintenance,
        DeviceStatus::Error,
    ];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Online => "online",
            DeviceStatus::Offline => "offline",
            DeviceStatus::Maintenance => "maintenance",
            DeviceStatus::Error => "error",
        }
    }

    /// Parses the API name of a status.
    pub fn parse(s: &str) -> Option<DeviceStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}
