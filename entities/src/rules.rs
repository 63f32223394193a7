//! Threshold rules evaluated by device actors: the stored form of the domain's
//! [`RuleDefinition`], and the [`Rule`] device actors evaluate read back from it.
use std::time::Duration;

use insa_domain::{Actions, Condition, Rule, RuleDefinition, Severity, Target};
use sea_orm::entity::prelude::*;
use sea_orm::Set;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Target: one device, or every device of a type and/or area.
    pub device_id: Option<Uuid>,
    pub device_type: Option<String>,
    pub area: Option<String>,
    pub key: String,
    /// `>`, `>=`, `<`, `<=`, `==`, `!=`, `between`, `outside`, `offline` ([`Condition`]).
    pub condition: String,
    pub threshold: Option<f64>,
    /// Upper bound for `between` / `outside`.
    pub threshold_high: Option<f64>,
    /// The condition must hold this long before an alert is raised.
    pub for_seconds: i32,
    /// How far back past the threshold a value must go before the alert clears.
    pub hysteresis: f64,
    pub severity: Severity,
    /// `[{"type":"email","to":[...]}, {"type":"webhook","url":..,"secret":..}, {"type":"mqtt",...}]`.
    pub actions: Actions,
    pub auto_resolve: bool,
    pub enabled: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
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

impl Model {
    /// The stored condition; `None` when the columns do not make one.
    pub fn condition(&self) -> Option<Condition> {
        Condition::from_columns(&self.condition, self.threshold, self.threshold_high)
    }

    /// The rule as device actors evaluate it; `None` when its condition is unusable.
    pub fn rule(&self) -> Option<Rule> {
        Some(Rule {
            id: Some(self.id),
            name: self.name.clone(),
            target: Target::from_columns(
                self.device_id,
                self.device_type.clone(),
                self.area.clone(),
            ),
            key: self.key.clone(),
            condition: self.condition()?,
            hold: Duration::from_secs(u64::try_from(self.for_seconds).unwrap_or(0)),
            hysteresis: self.hysteresis.max(0.0),
            severity: self.severity,
            auto_resolve: self.auto_resolve,
            actions: self.actions.0.clone(),
        })
    }
}

impl From<RuleDefinition> for ActiveModel {
    /// The columns a definition sets; the id and the creation and update fields are the caller's.
    fn from(definition: RuleDefinition) -> Self {
        let RuleDefinition {
            rule,
            description,
            enabled,
        } = definition;
        let (device_id, device_type, area) = rule.target.columns();
        let (condition, threshold, threshold_high) = rule.condition.columns();
        ActiveModel {
            name: Set(rule.name),
            description: Set(description),
            device_id: Set(device_id),
            device_type: Set(device_type),
            area: Set(area),
            key: Set(rule.key),
            condition: Set(condition.to_string()),
            threshold: Set(threshold),
            threshold_high: Set(threshold_high),
            for_seconds: Set(i32::try_from(rule.hold.as_secs()).unwrap_or(i32::MAX)),
            hysteresis: Set(rule.hysteresis),
            severity: Set(rule.severity),
            actions: Set(Actions(rule.actions)),
            auto_resolve: Set(rule.auto_resolve),
            enabled: Set(enabled),
            ..Default::default()
        }
    }
}
