//! The alert lifecycle, in one place. An alert is raised by its rule, acknowledged by a person,
//! and resolved by its rule clearing, by a person, or by its rule being deleted or disabled:
//!
//! | change | function | notifies |
//! | --- | --- | --- |
//! | raised by its rule | [`Alerts::raise`] | every action (within the chatter budget) |
//! | acknowledged by a person | [`Alerts::acknowledge`] | the rule's webhooks |
//! | resolved by its rule clearing | [`Alerts::resolve`] | every action (within the chatter budget) |
//! | resolved by a person | [`Alerts::resolve_by_hand`] | every action |
//! | resolved as its rule is disabled / deleted | [`Alerts::resolve_rule`] / [`Alerts::delete_rule`] | every action |
//!
//! Each change is one transaction holding the alert and its outbox rows ([`outbox`]), so a
//! notification is never lost nor sent for a change that was not stored; each stored change is
//! then announced as [`DeviceEvent::Alert`] (the notifier and the live feed listen).
//!
//! - [`store`]: the SQL (at most one open alert per device and rule, a unique index)
//! - [`outbox`]: the notifications of a change
//! - [`keeper`]: the task storing what device actors raise and resolve, in order, within each
//!   (device, rule)'s notification budget ([`crate::chatter`])

pub mod keeper;
pub mod outbox;
pub mod store;

use chrono::{DateTime, Utc};
use insa_domain::{Action, AlertEvent, AlertStatus, Rule, Severity};
use insa_entities::{alerts, devices, rules};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, ModelTrait,
    TransactionTrait,
};
use serde_json::Value;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::events::DeviceEvent;

pub use keeper::{AlertCommand, AlertsConfig};
pub use outbox::{enqueue, notifications, Outgoing, RuleRef};
pub use store::{raise, resolve_open};

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub device_id: Uuid,
    /// `None` for the built-in rule (a device's `config.alert_threshold`).
    pub rule_id: Option<Uuid>,
    pub severity: Severity,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub metadata: Option<Value>,
    pub at: DateTime<Utc>,
}

impl NewAlert {
    /// The alert `rule` raises on `device_id` for `value` (none for `offline`): its severity,
    /// message, threshold, and the rule as it then stood (`metadata`).
    pub fn by_rule(device_id: Uuid, rule: &Rule, value: Option<f64>, at: DateTime<Utc>) -> Self {
        Self {
            device_id,
            rule_id: rule.id,
            severity: rule.severity,
            message: rule.message(value),
            value,
            threshold: rule.condition.threshold(),
            metadata: Some(serde_json::json!({
                "rule": rule.name, "key": rule.key, "condition": rule.condition.name(),
                "high": rule.condition.high(),
            })),
            at,
        }
    }
}

/// Why a person's change to an alert was not made.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("no alert with id {0}")]
    NotFound(Uuid),
    #[error("this alert is resolved; it can no longer be acknowledged")]
    Resolved,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// What a person's change did: the alert changed (stored, notified, announced), or it already
/// stood so and nothing changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    Changed(alerts::Model),
    Unchanged(alerts::Model),
}

impl Handled {
    /// The alert as it now stands.
    pub fn into_alert(self) -> alerts::Model {
        match self {
            Self::Changed(alert) | Self::Unchanged(alert) => alert,
        }
    }
}

/// Where alerts change: the database and the event stream their changes are announced on.
#[derive(Clone)]
pub struct Alerts {
    db: DatabaseConnection,
    events: broadcast::Sender<DeviceEvent>,
}

impl Alerts {
    /// The lifecycle over `db`, announcing on `events` (the pipeline's event stream).
    pub fn new(db: DatabaseConnection, events: broadcast::Sender<DeviceEvent>) -> Self {
        Self { db, events }
    }

    /// A rule's condition held on a device: the alert is stored unless one is open for the same
    /// device and rule, with its notifications. Past the chatter budget (`notify` false) it is
    /// recorded quietly instead ([`store::raise_quietly`]). `Some` when something changed.
    pub async fn raise(
        &self,
        alert: NewAlert,
        rule: &RuleRef,
        notify: bool,
    ) -> Result<Option<alerts::Model>, DbErr> {
        let raised = if notify {
            let txn = self.db.begin().await?;
            let raised = store::raise(&txn, alert).await?;
            if let Some(alert) = &raised {
                tell(
                    &txn,
                    AlertEvent::Raised,
                    alert,
                    (rule, &rule.actions),
                    alert.created_at,
                )
                .await?;
            }
            txn.commit().await?;
            raised
        } else {
            store::raise_quietly(&self.db, alert).await?
        };
        Ok(self.announce(raised, AlertEvent::Raised))
    }

    /// A rule's condition cleared on a device: its open alert, if any, is resolved with its
    /// notifications (quietly past the chatter budget, `notify` false). `Some` when one was.
    pub async fn resolve(
        &self,
        device_id: Uuid,
        rule: &RuleRef,
        at: DateTime<Utc>,
        notify: bool,
    ) -> Result<Option<alerts::Model>, DbErr> {
        let resolved = if notify {
            let txn = self.db.begin().await?;
            let resolved = store::resolve_open(&txn, device_id, rule.id, at).await?;
            if let Some(alert) = &resolved {
                tell(&txn, AlertEvent::Resolved, alert, (rule, &rule.actions), at).await?;
            }
            txn.commit().await?;
            resolved
        } else {
            store::resolve_quietly(&self.db, device_id, rule.id, at).await?
        };
        Ok(self.announce(resolved, AlertEvent::Resolved))
    }

    /// A person (`by`, their email) is on an active alert: it is acknowledged and its rule's
    /// webhooks hear of it. Acknowledging again changes nothing; a resolved alert cannot be.
    pub async fn acknowledge(
        &self,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Handled, AlertError> {
        let txn = self.db.begin().await?;
        let acknowledged = store::acknowledge(&txn, id, by, at).await?;
        self.by_person(txn, id, acknowledged, AlertEvent::Acknowledged, at)
            .await
    }

    /// A person resolves an alert: like its rule clearing, with every notification of its
    /// rule. Resolving again changes nothing.
    pub async fn resolve_by_hand(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Handled, AlertError> {
        let txn = self.db.begin().await?;
        let resolved = store::resolve_one(&txn, id, at).await?;
        self.by_person(txn, id, resolved, AlertEvent::Resolved, at)
            .await
    }

    /// Ends a person's change to alert `id` made in `txn`: `changed` is the alert as changed,
    /// notified through the actions of its rule that hear of `event`, then committed and
    /// announced; `None` when it already stood so (or does not exist, or is resolved and cannot
    /// be acknowledged).
    async fn by_person(
        &self,
        txn: DatabaseTransaction,
        id: Uuid,
        changed: Option<alerts::Model>,
        event: AlertEvent,
        at: DateTime<Utc>,
    ) -> Result<Handled, AlertError> {
        let Some(alert) = changed else {
            return match alerts::Entity::find_by_id(id).one(&txn).await? {
                None => Err(AlertError::NotFound(id)),
                Some(alert)
                    if event == AlertEvent::Acknowledged
                        && alert.status == AlertStatus::Resolved =>
                {
                    Err(AlertError::Resolved)
                }
                Some(alert) => Ok(Handled::Unchanged(alert)),
            };
        };
        if let Some(rule) = rule_of(&txn, &alert).await? {
            let actions: Vec<Action> = rule
                .actions
                .iter()
                .filter(|action| hears(event, action))
                .cloned()
                .collect();
            tell(&txn, event, &alert, (&rule, &actions), at).await?;
        }
        txn.commit().await?;
        self.announce(Some(alert.clone()), event);
        Ok(Handled::Changed(alert))
    }

    /// A rule is disabled (or about to be deleted): its open alerts are resolved as if its
    /// condition had cleared, with their notifications, in one transaction. Returns how many.
    pub async fn resolve_rule(
        &self,
        rule: &rules::Model,
        at: DateTime<Utc>,
    ) -> Result<usize, DbErr> {
        let open = store::open_of_rule(&self.db, rule.id).await?;
        if open.is_empty() {
            return Ok(0);
        }
        let rule_ref = RuleRef::from(rule);
        let txn = self.db.begin().await?;
        let mut resolved = Vec::with_capacity(open.len());
        for id in open {
            if let Some(alert) = store::resolve_one(&txn, id, at).await? {
                tell(
                    &txn,
                    AlertEvent::Resolved,
                    &alert,
                    (&rule_ref, &rule_ref.actions),
                    at,
                )
                .await?;
                resolved.push(alert);
            }
        }
        txn.commit().await?;
        let count = resolved.len();
        for alert in resolved {
            self.announce(Some(alert), AlertEvent::Resolved);
        }
        Ok(count)
    }

    /// Deletes a rule. Its open alerts are resolved first, with their notifications: they would
    /// otherwise lose their rule (set null) and read as alerts of the built-in rule. Any raised
    /// meanwhile are resolved quietly with the deletion.
    pub async fn delete_rule(&self, rule: &rules::Model) -> Result<(), DbErr> {
        self.resolve_rule(rule, Utc::now()).await?;
        let txn = self.db.begin().await?;
        store::resolve_rule(&txn, rule.id, Utc::now()).await?;
        rule.clone().delete(&txn).await?;
        txn.commit().await
    }

    /// Tells the event stream about a stored change (logged too).
    fn announce(&self, alert: Option<alerts::Model>, event: AlertEvent) -> Option<alerts::Model> {
        let alert = alert?;
        tracing::info!(device_id = %alert.device_id, alert_id = %alert.id,
            severity = alert.severity.as_str(), event = event.as_str(),
            chattering = alert.chattering, "{}", alert.message);
        let _ = self.events.send(DeviceEvent::Alert {
            alert: Box::new(alert.clone()),
            event,
        });
        Some(alert)
    }
}

/// Whether `action` is told of `event`: every action of raises and resolutions, only webhooks of
/// acknowledgements.
fn hears(event: AlertEvent, action: &Action) -> bool {
    event != AlertEvent::Acknowledged || matches!(action, Action::Webhook { .. })
}

/// The rule of a stored alert, as its notifications need it (`None`: the built-in rule, or
/// deleted).
async fn rule_of<C: ConnectionTrait>(
    db: &C,
    alert: &alerts::Model,
) -> Result<Option<RuleRef>, DbErr> {
    let Some(rule_id) = alert.rule_id else {
        return Ok(None);
    };
    let rule = rules::Entity::find_by_id(rule_id).one(db).await?;
    Ok(rule.as_ref().map(RuleRef::from))
}

/// Writes the outbox rows of `event` through `actions`, due at `at` (the device is read only if
/// there are any).
async fn tell<C: ConnectionTrait>(
    db: &C,
    event: AlertEvent,
    alert: &alerts::Model,
    (rule, actions): (&RuleRef, &[Action]),
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    if actions.is_empty() {
        return Ok(());
    }
    // The device's name, area and location go into notifications.
    let device = devices::Entity::find_by_id(alert.device_id).one(db).await?;
    let outgoing = notifications(event, alert, device.as_ref(), rule, actions);
    enqueue(db, alert.id, outgoing, at).await
}
