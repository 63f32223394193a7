//! What an alert is: how severe ([`Severity`]), where it stands ([`AlertStatus`]) and what just
//! happened to it ([`AlertEvent`]). Severity and status are stored as the same text the API shows.

use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};

/// How bad an alert is, mildest first (so `Info < Warning < Critical`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[sea_orm(string_value = "info")]
    Info,
    #[sea_orm(string_value = "warning")]
    Warning,
    #[sea_orm(string_value = "critical")]
    Critical,
}

impl Severity {
    /// Every severity, mildest first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];
    /// Their names, as rules, alerts and queries write them.
    pub const NAMES: [&str; 3] = ["info", "warning", "critical"];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Parses the API name of a severity.
    pub fn parse(name: &str) -> Option<Severity> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Where an alert stands: raised (`active`), someone is on it (`acknowledged`), over (`resolved`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    #[sea_orm(string_value = "active")]
    Active,
    #[sea_orm(string_value = "acknowledged")]
    Acknowledged,
    #[sea_orm(string_value = "resolved")]
    Resolved,
}

impl AlertStatus {
    /// Every status, in the order an alert goes through them.
    pub const ALL: [AlertStatus; 3] = [
        AlertStatus::Active,
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
    ];
    /// Their names, as the API and the database write them.
    pub const NAMES: [&str; 3] = ["active", "acknowledged", "resolved"];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Parses the API name of a status.
    pub fn parse(name: &str) -> Option<AlertStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Active or acknowledged: at most one such alert per (device, rule).
    pub fn is_open(self) -> bool {
        self != AlertStatus::Resolved
    }
}

/// What happened to an alert: the `event` of its notifications and of the live feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    Raised,
    Acknowledged,
    Resolved,
}

impl AlertEvent {
    /// The name receivers see (`X-INSA-Event`, the payload's `event`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raised => "raised",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_severities_are_ordered() {
        for severity in Severity::ALL {
            assert_eq!(Severity::parse(severity.as_str()), Some(severity));
        }
        for status in AlertStatus::ALL {
            assert_eq!(AlertStatus::parse(status.as_str()), Some(status));
        }
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        assert_eq!(Severity::parse("urgent"), None);
        assert_eq!(
            serde_json::to_value(AlertStatus::Acknowledged).expect("json"),
            "acknowledged"
        );
        assert!(AlertStatus::Active.is_open() && !AlertStatus::Resolved.is_open());
    }
}
