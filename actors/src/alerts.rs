//! Raising and resolving alerts in the database. The database guarantees at most one open (not
//! resolved) alert per (device, rule) — a unique partial index — so concurrent raises of the same
//! condition store one alert and the others learn it already exists.

use chrono::{DateTime, Utc};
use insa_entities::alerts;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
};
use serde_json::Value;
use uuid::Uuid;

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub device_id: Uuid,
    /// `None` for the built-in rule (a device's `config.alert_threshold`).
    pub rule_id: Option<Uuid>,
    pub severity: String,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub metadata: Option<Value>,
    pub at: DateTime<Utc>,
}

/// Stores the alert unless one is already open for the same device and rule. `Some` is the new
/// alert; `None` means an open one exists (nothing changed).
pub async fn raise<C: ConnectionTrait>(
    db: &C,
    alert: NewAlert,
) -> Result<Option<alerts::Model>, DbErr> {
    let model = alerts::Model {
        id: Uuid::new_v4(),
        device_id: alert.device_id,
        rule_id: alert.rule_id,
        severity: alert.severity,
        message: alert.message,
        value: alert.value,
        threshold: alert.threshold,
        status: "active".into(),
        acknowledged_by: None,
        acknowledged_at: None,
        resolved_at: None,
        created_at: alert.at,
        metadata: alert.metadata,
    };
    let active: alerts::ActiveModel = model.clone().into();
    let inserted = alerts::Entity::insert(active)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok((inserted == 1).then_some(model))
}

/// Resolves the open alert of this device and rule, if any; returns it as resolved.
pub async fn resolve_open(
    db: &DatabaseConnection,
    device_id: Uuid,
    rule_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<Option<alerts::Model>, DbErr> {
    let open = alerts::Entity::find()
        .filter(alerts::Column::DeviceId.eq(device_id))
        .filter(match rule_id {
            Some(rule) => alerts::Column::RuleId.eq(rule),
            None => alerts::Column::RuleId.is_null(),
        })
        .filter(alerts::Column::Status.ne("resolved"))
        .one(db)
        .await?;
    let Some(open) = open else {
        return Ok(None);
    };
    let mut resolved: alerts::ActiveModel = open.into();
    resolved.status = Set("resolved".into());
    resolved.resolved_at = Set(Some(at));
    let resolved = sea_orm::ActiveModelTrait::update(resolved, db).await?;
    Ok(Some(resolved))
}

/// Resolves every open alert of a rule (the rule is being deleted or disabled).
pub async fn resolve_rule<C: ConnectionTrait>(
    db: &C,
    rule_id: Uuid,
    at: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = alerts::Entity::update_many()
        .col_expr(
            alerts::Column::Status,
            sea_orm::sea_query::Expr::value("resolved"),
        )
        .col_expr(
            alerts::Column::ResolvedAt,
            sea_orm::sea_query::Expr::value(at),
        )
        .filter(alerts::Column::RuleId.eq(rule_id))
        .filter(alerts::Column::Status.ne("resolved"))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
