//! The outbox rows of an alert change: one per action of its rule, each carrying what its sender
//! needs ([`AlertNotification`]), written in the transaction of the change that causes them.

use chrono::{DateTime, Utc};
use insa_domain::notification::{AlertSnapshot, DeviceSnapshot, RuleSnapshot};
use insa_domain::{Action, AlertEvent, DeliveryStatus, NotificationPayload, Rule};
use insa_entities::{alerts, devices, notification_deliveries, rules};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Set};
use uuid::Uuid;

pub use insa_domain::notification::AlertNotification;

/// The rule behind an alert change, for its notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRef {
    /// `None`: a device's built-in rule.
    pub id: Option<Uuid>,
    pub name: String,
    pub actions: Vec<Action>,
}

impl From<&Rule> for RuleRef {
    fn from(rule: &Rule) -> Self {
        Self {
            id: rule.id,
            name: rule.name.clone(),
            actions: rule.actions.clone(),
        }
    }
}

impl From<&rules::Model> for RuleRef {
    fn from(rule: &rules::Model) -> Self {
        Self {
            id: Some(rule.id),
            name: rule.name.clone(),
            actions: rule.actions.0.clone(),
        }
    }
}

/// A notification to deliver: where to, and what.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Addresses, a URL or a topic.
    pub target: String,
    pub notification: AlertNotification,
}

/// The notifications of an alert change through `actions` (those of `rule`, or fewer).
pub fn notifications(
    event: AlertEvent,
    alert: &alerts::Model,
    device: Option<&devices::Model>,
    rule: &RuleRef,
    actions: &[Action],
) -> Vec<Outgoing> {
    let snapshot = AlertSnapshot {
        id: alert.id,
        device_id: alert.device_id,
        rule_id: alert.rule_id,
        severity: alert.severity,
        message: alert.message.clone(),
        value: alert.value,
        threshold: alert.threshold,
        status: alert.status,
        created_at: alert.created_at,
        resolved_at: alert.resolved_at,
    };
    let device = device.map(|d| DeviceSnapshot {
        id: d.id,
        name: d.name.clone(),
        device_type: d.device_type.clone(),
        area: d.area.clone(),
        location: d.location.clone(),
    });
    actions
        .iter()
        .filter_map(|action| {
            let Some(target) = action.target(alert.device_id) else {
                tracing::warn!(device_id = %alert.device_id, rule = %rule.name,
                    "mqtt action skipped: its topic is not the device's command topic");
                return None;
            };
            Some(Outgoing {
                target,
                notification: AlertNotification {
                    event,
                    alert: snapshot.clone(),
                    device: device.clone(),
                    rule: RuleSnapshot {
                        id: rule.id,
                        name: rule.name.clone(),
                    },
                    action: action.clone(),
                },
            })
        })
        .collect()
}

/// Queues notifications for an alert (in the caller's transaction, if any), due at `at`: one
/// statement for all of them.
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    alert_id: Uuid,
    outgoing: Vec<Outgoing>,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    if outgoing.is_empty() {
        return Ok(());
    }
    let rows = outgoing
        .into_iter()
        .map(|out| notification_deliveries::ActiveModel {
            id: Set(Uuid::new_v4()),
            alert_id: Set(Some(alert_id)),
            channel: Set(out.notification.action.channel()),
            target: Set(out.target),
            payload: Set(NotificationPayload::Alert(out.notification)),
            status: Set(DeliveryStatus::Pending),
            attempts: Set(0),
            next_attempt_at: Set(Some(at)),
            last_error: Set(None),
            sent_at: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
        });
    notification_deliveries::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}
