//! The alert keeper: the one task that stores what device actors raise and resolve, one change
//! at a time and in order, notifying each within the chatter budget ([`crate::chatter`]); beyond
//! it a change is recorded on the alert (`raise_count`, `chattering`) without notifying.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::{Alerts, NewAlert, RuleRef};
use crate::events::DeviceEvent;

/// Raise or resolve an alert, as a device actor asks.
#[derive(Debug)]
pub enum AlertCommand {
    Raise(NewAlert, RuleRef),
    Resolve {
        device_id: Uuid,
        rule: RuleRef,
        at: DateTime<Utc>,
    },
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

/// Stores alerts as device actors raise and resolve them, one at a time and in order, through
/// the lifecycle ([`Alerts::raise`], [`Alerts::resolve`]). The database keeps at most one open
/// alert per (device, rule), so a repeated raise (after an actor restart, say) changes nothing.
/// A (device, rule) past its notification budget ([`crate::chatter::Chatter`]) has its changes
/// stored quietly.
pub(crate) async fn keep_alerts(
    db: DatabaseConnection,
    mut commands: mpsc::Receiver<AlertCommand>,
    events: broadcast::Sender<DeviceEvent>,
    config: AlertsConfig,
) {
    let alerts = Alerts::new(db, events);
    let mut chatter =
        crate::chatter::Chatter::new(config.max_notifications_per_window, config.chatter_window);
    while let Some(command) = commands.recv().await {
        let (device_id, rule_id) = match &command {
            AlertCommand::Raise(alert, rule) => (alert.device_id, rule.id),
            AlertCommand::Resolve {
                device_id, rule, ..
            } => (*device_id, rule.id),
        };
        let notify = chatter.allow(device_id, rule_id, std::time::Instant::now());
        let outcome = match command {
            AlertCommand::Raise(alert, rule) => alerts.raise(alert, &rule, notify).await,
            AlertCommand::Resolve { rule, at, .. } => {
                alerts.resolve(device_id, &rule, at, notify).await
            }
        };
        match outcome {
            Ok(Some(_)) => {}
            // Nothing changed, nothing was notified.
            Ok(None) if notify => chatter.refund(device_id, rule_id),
            Ok(None) => {}
            Err(err) => tracing::error!(error = %err, "alert not stored"),
        }
    }
}
