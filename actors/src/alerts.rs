//! Raising and resolving alerts in the database. The database guarantees at most one open (not
//! resolved) alert per (device, rule) — a unique partial index — so concurrent raises of the same
//! condition store one alert and the others learn it already exists.
//!
//! [`keep_alerts`] stores the changes device actors ask for, in order, and notifies each within
//! the chatter budget ([`crate::chatter`]); beyond it a change is recorded on the alert
//! (`raise_count`, `chattering`) without notifying.

use chrono::{DateTime, Utc};
use insa_entities::{alerts, notification_deliveries};
use sea_orm::sea_query::OnConflict;
use sea_orm::ActiveModelTrait;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, TransactionTrait,
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
        raise_count: 1,
        chattering: false,
    };
    let active: alerts::ActiveModel = model.clone().into();
    let inserted = alerts::Entity::insert(active)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok((inserted == 1).then_some(model))
}

/// Resolves the open alert of this device and rule, if any; returns it as resolved.
///
/// The update comes first: in a transaction it takes the write lock at once (SQLite cannot turn
/// a read into a write once another connection has written).
pub async fn resolve_open<C: ConnectionTrait>(
    db: &C,
    device_id: Uuid,
    rule_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<Option<alerts::Model>, DbErr> {
    let of_rule = || match rule_id {
        Some(rule) => alerts::Column::RuleId.eq(rule),
        None => alerts::Column::RuleId.is_null(),
    };
    let resolved = resolving(at)
        .filter(alerts::Column::DeviceId.eq(device_id))
        .filter(of_rule())
        .exec(db)
        .await?;
    if resolved.rows_affected == 0 {
        return Ok(None);
    }
    // The one just resolved: the newest resolution of this device and rule (PostgreSQL keeps
    // microseconds, so `at` itself may not compare equal).
    alerts::Entity::find()
        .filter(alerts::Column::DeviceId.eq(device_id))
        .filter(of_rule())
        .filter(alerts::Column::Status.eq("resolved"))
        .order_by_desc(alerts::Column::ResolvedAt)
        .one(db)
        .await
}

/// An update resolving open alerts (the caller narrows it).
fn resolving(at: DateTime<Utc>) -> sea_orm::UpdateMany<alerts::Entity> {
    use sea_orm::sea_query::Expr;
    alerts::Entity::update_many()
        .col_expr(alerts::Column::Status, Expr::value("resolved"))
        .col_expr(alerts::Column::ResolvedAt, Expr::value(at))
        .filter(alerts::Column::Status.ne("resolved"))
}

/// Resolves every open alert of a rule (the rule is being deleted or disabled).
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

/// A notification to deliver, written to the outbox with the alert change that causes it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `email`, `webhook` or `mqtt`.
    pub channel: String,
    /// Addresses, a URL or a topic.
    pub target: String,
    /// What the sender needs: the event, alert, device, rule and the action itself.
    pub payload: Value,
}

/// Queues notifications for an alert (in the caller's transaction, if any).
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    alert_id: Uuid,
    outgoing: Vec<Outgoing>,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    for out in outgoing {
        notification_deliveries::ActiveModel {
            id: Set(Uuid::new_v4()),
            alert_id: Set(Some(alert_id)),
            channel: Set(out.channel),
            target: Set(out.target),
            payload: Set(out.payload),
            status: Set("pending".into()),
            attempts: Set(0),
            next_attempt_at: Set(Some(at)),
            last_error: Set(None),
            sent_at: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

/// Raises the alert and, in the same transaction, queues its notifications: either both are
/// stored or neither. `notify` makes the notifications from the stored alert.
pub async fn raise_and_notify(
    db: &DatabaseConnection,
    alert: NewAlert,
    notify: impl FnOnce(&alerts::Model) -> Vec<Outgoing>,
) -> Result<Option<alerts::Model>, DbErr> {
    let txn = db.begin().await?;
    let raised = raise(&txn, alert).await?;
    if let Some(alert) = &raised {
        enqueue(&txn, alert.id, notify(alert), alert.created_at).await?;
    }
    txn.commit().await?;
    Ok(raised)
}

/// Resolves the open alert of this device and rule, if any, and queues its notifications in the
/// same transaction.
pub async fn resolve_and_notify(
    db: &DatabaseConnection,
    device_id: Uuid,
    rule_id: Option<Uuid>,
    at: DateTime<Utc>,
    notify: impl FnOnce(&alerts::Model) -> Vec<Outgoing>,
) -> Result<Option<alerts::Model>, DbErr> {
    let txn = db.begin().await?;
    let resolved = resolve_open(&txn, device_id, rule_id, at).await?;
    if let Some(alert) = &resolved {
        enqueue(&txn, alert.id, notify(alert), at).await?;
    }
    txn.commit().await?;
    Ok(resolved)
}

/// A raise beyond the chatter budget: recorded without notifying. The newest alert of this device
/// and rule, when resolved, is re-opened with one more raise (the same flapping condition stays
/// one alert); an open one is left as it is; with none, a new one is stored. All are marked
/// `chattering`. Returns the alert when it changed.
pub async fn raise_quietly(
    db: &DatabaseConnection,
    alert: NewAlert,
) -> Result<Option<alerts::Model>, DbErr> {
    let newest = alerts::Entity::find()
        .filter(alerts::Column::DeviceId.eq(alert.device_id))
        .filter(match alert.rule_id {
            Some(rule) => alerts::Column::RuleId.eq(rule),
            None => alerts::Column::RuleId.is_null(),
        })
        .order_by_desc(alerts::Column::CreatedAt)
        .one(db)
        .await?;
    match newest {
        Some(open) if open.status != "resolved" => Ok(None),
        Some(resolved) => {
            let raises = resolved.raise_count.saturating_add(1);
            let mut reopened: alerts::ActiveModel = resolved.into();
            reopened.status = Set("active".into());
            reopened.resolved_at = Set(None);
            reopened.acknowledged_by = Set(None);
            reopened.acknowledged_at = Set(None);
            reopened.value = Set(alert.value);
            reopened.raise_count = Set(raises);
            reopened.chattering = Set(true);
            // The unique index on open alerts still holds: a concurrent raise wins, this fails.
            reopened.update(db).await.map(Some)
        }
        None => {
            let raised = raise(db, alert).await?;
            match raised {
                Some(raised) => mark_chattering(db, raised).await.map(Some),
                None => Ok(None),
            }
        }
    }
}

/// A resolution beyond the chatter budget: stored without notifying, the alert marked
/// `chattering`.
pub async fn resolve_quietly(
    db: &DatabaseConnection,
    device_id: Uuid,
    rule_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<Option<alerts::Model>, DbErr> {
    match resolve_open(db, device_id, rule_id, at).await? {
        Some(resolved) => mark_chattering(db, resolved).await.map(Some),
        None => Ok(None),
    }
}

async fn mark_chattering(
    db: &DatabaseConnection,
    alert: alerts::Model,
) -> Result<alerts::Model, DbErr> {
    if alert.chattering {
        return Ok(alert);
    }
    let mut marked: alerts::ActiveModel = alert.into();
    marked.chattering = Set(true);
    marked.update(db).await
}

/// How the alert keeper bounds notifications.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// Alert changes (raised or resolved) of one (device, rule) notified per `chatter_window`.
    pub max_notifications_per_window: usize,
    pub chatter_window: std::time::Duration,
    /// Alert changes waiting for [`keep_alerts`], at most (all devices together).
    pub queue_capacity: usize,
}

/// Stores alerts as device actors raise and resolve them, one at a time and in order, with their
/// notifications in the same transaction, and announces each change. The database keeps at most
/// one open alert per (device, rule), so a repeated raise (after an actor restart, say) changes
/// nothing. A (device, rule) past its notification budget ([`crate::chatter::Chatter`]) has its
/// changes stored quietly ([`raise_quietly`], [`resolve_quietly`]).
pub(crate) async fn keep_alerts(
    db: DatabaseConnection,
    mut commands: tokio::sync::mpsc::Receiver<crate::device::AlertCommand>,
    events: tokio::sync::broadcast::Sender<crate::events::DeviceEvent>,
    config: AlertsConfig,
) {
    use crate::device::{notifications, AlertCommand};
    use crate::events::{AlertEvent, DeviceEvent};

    let mut chatter =
        crate::chatter::Chatter::new(config.max_notifications_per_window, config.chatter_window);
    while let Some(command) = commands.recv().await {
        let (device_id, rule) = match &command {
            AlertCommand::Raise(alert, rule) => (alert.device_id, rule),
            AlertCommand::Resolve {
                device_id, rule, ..
            } => (*device_id, rule),
        };
        let rule_id = rule.id;
        let notify = chatter.allow(device_id, rule_id, std::time::Instant::now());
        // The device's name, area and location go into notifications: read only if any.
        let device = if !notify || rule.actions.is_empty() {
            None
        } else {
            insa_entities::devices::Entity::find_by_id(device_id)
                .one(&db)
                .await
                .ok()
                .flatten()
        };
        let (outcome, event) = match (command, notify) {
            (AlertCommand::Raise(alert, rule), true) => (
                raise_and_notify(&db, alert, |a| {
                    notifications("raised", a, device.as_ref(), &rule)
                })
                .await,
                AlertEvent::Raised,
            ),
            (AlertCommand::Raise(alert, _), false) => {
                (raise_quietly(&db, alert).await, AlertEvent::Raised)
            }
            (AlertCommand::Resolve { rule, at, .. }, true) => (
                resolve_and_notify(&db, device_id, rule.id, at, |a| {
                    notifications("resolved", a, device.as_ref(), &rule)
                })
                .await,
                AlertEvent::Resolved,
            ),
            (AlertCommand::Resolve { at, .. }, false) => (
                resolve_quietly(&db, device_id, rule_id, at).await,
                AlertEvent::Resolved,
            ),
        };
        match outcome {
            Ok(Some(alert)) => {
                tracing::info!(device_id = %alert.device_id, alert_id = %alert.id,
                    severity = %alert.severity, event = event.as_str(),
                    chattering = alert.chattering, "{}", alert.message);
                let _ = events.send(DeviceEvent::Alert {
                    alert: Box::new(alert),
                    event,
                });
            }
            Ok(None) => {
                if notify {
                    // Nothing changed, nothing was notified.
                    chatter.refund(device_id, rule_id);
                }
            }
            Err(err) => tracing::error!(error = %err, "alert not stored"),
        }
    }
}
