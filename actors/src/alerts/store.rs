//! The SQL of the alert lifecycle: storing, resolving and acknowledging alerts, each statement
//! in the caller's connection or transaction. The database guarantees at most one open (not
//! resolved) alert per (device, rule) — a unique partial index — so concurrent raises of the same
//! condition store one alert and the others learn it already exists.
//!
//! In a transaction every change here writes first and reads after: the write takes the lock at
//! once (SQLite cannot turn a read into a write once another connection has written).

use chrono::{DateTime, Utc};
use insa_domain::AlertStatus;
use insa_entities::alerts;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};
use uuid::Uuid;

use super::NewAlert;

/// Stores the alert unless one is already open for the same device and rule. `Some` is the new
/// alert; `None` means an open one exists (nothing changed).
pub async fn raise<C: ConnectionTrait>(
    db: &C,
    alert: NewAlert,
) -> Result<Option<alerts::Model>, DbErr> {
    insert_open(db, alert, false).await
}

/// Stores `alert` as a new open alert (`chattering` as given) unless one is already open for the
/// same device and rule.
async fn insert_open<C: ConnectionTrait>(
    db: &C,
    alert: NewAlert,
    chattering: bool,
) -> Result<Option<alerts::Model>, DbErr> {
    let model = alerts::Model {
        id: Uuid::new_v4(),
        device_id: alert.device_id,
        rule_id: alert.rule_id,
        severity: alert.severity,
        message: alert.message,
        value: alert.value,
        threshold: alert.threshold,
        status: AlertStatus::Active,
        acknowledged_by: None,
        acknowledged_at: None,
        resolved_at: None,
        created_at: alert.at,
        metadata: alert.metadata,
        raise_count: 1,
        chattering,
    };
    let active: alerts::ActiveModel = model.clone().into();
    let inserted = alerts::Entity::insert(active)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok((inserted == 1).then_some(model))
}

/// The alerts of this rule (`None`: the built-in rule).
fn of_rule(rule_id: Option<Uuid>) -> sea_orm::Condition {
    sea_orm::Condition::all().add(match rule_id {
        Some(rule) => alerts::Column::RuleId.eq(rule),
        None => alerts::Column::RuleId.is_null(),
    })
}

/// An update resolving open alerts at `at` (the caller narrows it).
fn resolving(at: DateTime<Utc>) -> sea_orm::UpdateMany<alerts::Entity> {
    alerts::Entity::update_many()
        .col_expr(alerts::Column::Status, Expr::value(AlertStatus::Resolved))
        .col_expr(alerts::Column::ResolvedAt, Expr::value(at))
        .filter(alerts::Column::Status.ne(AlertStatus::Resolved))
}

/// Resolves the open alert of this device and rule, if any; returns it as resolved.
pub async fn resolve_open<C: ConnectionTrait>(
    db: &C,
    device_id: Uuid,
    rule_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<Option<alerts::Model>, DbErr> {
    resolve_open_by(db, resolving(at), device_id, rule_id).await
}

/// Runs `update` (a [`resolving`] one) on the open alert of this device and rule; returns it as
/// resolved, `None` if none was open.
async fn resolve_open_by<C: ConnectionTrait>(
    db: &C,
    update: sea_orm::UpdateMany<alerts::Entity>,
    device_id: Uuid,
    rule_id: Option<Uuid>,
) -> Result<Option<alerts::Model>, DbErr> {
    let resolved = update
        .filter(alerts::Column::DeviceId.eq(device_id))
        .filter(of_rule(rule_id))
        .exec(db)
        .await?;
    if resolved.rows_affected == 0 {
        return Ok(None);
    }
    // The one just resolved: the newest resolution of this device and rule (PostgreSQL keeps
    // microseconds, so `at` itself may not compare equal).
    alerts::Entity::find()
        .filter(alerts::Column::DeviceId.eq(device_id))
        .filter(of_rule(rule_id))
        .filter(alerts::Column::Status.eq(AlertStatus::Resolved))
        .order_by_desc(alerts::Column::ResolvedAt)
        .one(db)
        .await
}

/// Resolves this alert if it is open; returns it as resolved, `None` if it was not open.
pub async fn resolve_one<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<Option<alerts::Model>, DbErr> {
    let resolved = resolving(at)
        .filter(alerts::Column::Id.eq(id))
        .exec(db)
        .await?;
    if resolved.rows_affected == 0 {
        return Ok(None);
    }
    alerts::Entity::find_by_id(id).one(db).await
}

/// Resolves every open alert of a rule without notifying (the rule is being deleted: those
/// raised since its alerts were resolved with notifications).
pub async fn resolve_rule<C: ConnectionTrait>(
    db: &C,
    rule_id: Uuid,
    at: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = resolving(at)
        .filter(alerts::Column::RuleId.eq(rule_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// The ids of the rule's open alerts.
pub async fn open_of_rule<C: ConnectionTrait>(db: &C, rule_id: Uuid) -> Result<Vec<Uuid>, DbErr> {
    use sea_orm::QuerySelect;
    alerts::Entity::find()
        .select_only()
        .column(alerts::Column::Id)
        .filter(alerts::Column::RuleId.eq(rule_id))
        .filter(alerts::Column::Status.ne(AlertStatus::Resolved))
        .into_tuple()
        .all(db)
        .await
}

/// Acknowledges this alert by `by` if it is active; returns it acknowledged, `None` if it was
/// not active.
pub async fn acknowledge<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    by: &str,
    at: DateTime<Utc>,
) -> Result<Option<alerts::Model>, DbErr> {
    let acknowledged = alerts::Entity::update_many()
        .col_expr(
            alerts::Column::Status,
            Expr::value(AlertStatus::Acknowledged),
        )
        .col_expr(alerts::Column::AcknowledgedBy, Expr::value(by))
        .col_expr(alerts::Column::AcknowledgedAt, Expr::value(at))
        .filter(alerts::Column::Id.eq(id))
        .filter(alerts::Column::Status.eq(AlertStatus::Active))
        .exec(db)
        .await?;
    if acknowledged.rows_affected == 0 {
        return Ok(None);
    }
    alerts::Entity::find_by_id(id).one(db).await
}

/// A raise beyond the chatter budget: recorded without notifying. The newest alert of this device
/// and rule, when resolved, is re-opened with one more raise (the same flapping condition stays
/// one alert); an open one is left as it is; with none, a new one is stored. All are marked
/// `chattering`. Returns the alert when it changed.
pub async fn raise_quietly<C: ConnectionTrait>(
    db: &C,
    alert: NewAlert,
) -> Result<Option<alerts::Model>, DbErr> {
    let newest = alerts::Entity::find()
        .filter(alerts::Column::DeviceId.eq(alert.device_id))
        .filter(of_rule(alert.rule_id))
        .order_by_desc(alerts::Column::CreatedAt)
        .one(db)
        .await?;
    match newest {
        Some(open) if open.status.is_open() => Ok(None),
        Some(resolved) => {
            let raises = resolved.raise_count.saturating_add(1);
            let mut reopened: alerts::ActiveModel = resolved.into();
            reopened.status = Set(AlertStatus::Active);
            reopened.resolved_at = Set(None);
            reopened.acknowledged_by = Set(None);
            reopened.acknowledged_at = Set(None);
            reopened.value = Set(alert.value);
            reopened.raise_count = Set(raises);
            reopened.chattering = Set(true);
            // The unique index on open alerts still holds: a concurrent raise wins, this fails.
            reopened.update(db).await.map(Some)
        }
        None => insert_open(db, alert, true).await,
    }
}

/// A resolution beyond the chatter budget: stored without notifying, the alert marked
/// `chattering` in the same statement.
pub async fn resolve_quietly<C: ConnectionTrait>(
    db: &C,
    device_id: Uuid,
    rule_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<Option<alerts::Model>, DbErr> {
    let update = resolving(at).col_expr(alerts::Column::Chattering, Expr::value(true));
    resolve_open_by(db, update, device_id, rule_id).await
}
