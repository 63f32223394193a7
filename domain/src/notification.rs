//! What the outbox (`notification_deliveries`) holds for each delivery ([`NotificationPayload`]):
//! written with the change that causes it, read back by the notifier to send it. Alert changes
//! ([`AlertNotification`]) and scheduled reports ([`ReportNotification`]) share the outbox.
//! [`DeliveryStatus`] is where a delivery stands.
//!
//! The JSON is what webhook receivers get (less the `action`, which holds the secret), so its
//! shape is a promise: docs/ALERTS.md shows it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter, FromJsonQueryResult};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::action::Action;
use crate::alert::{AlertEvent, AlertStatus, Severity};

/// Where a delivery stands: waiting (maybe for a retry), done, or given up.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "sent")]
    Sent,
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl DeliveryStatus {
    /// Every delivery status.
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Sent, Self::Failed];
    /// Their names, as the API and the database write them.
    pub const NAMES: [&str; 3] = ["pending", "sent", "failed"];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// One delivery's payload (the `notification_deliveries.payload` JSON column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(untagged)]
pub enum NotificationPayload {
    Alert(AlertNotification),
    Report(ReportNotification),
}

impl NotificationPayload {
    /// The payload's `event` (`raised`, ..., `report`, `report_failed`).
    pub fn event(&self) -> &'static str {
        match self {
            Self::Alert(alert) => alert.event.as_str(),
            Self::Report(report) => report.event.as_str(),
        }
    }

    /// The action that sends it.
    pub fn action(&self) -> &Action {
        match self {
            Self::Alert(alert) => &alert.action,
            Self::Report(report) => &report.action,
        }
    }
}

/// An alert change, told through one action of its rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNotification {
    pub event: AlertEvent,
    pub alert: AlertSnapshot,
    /// `None` when the device was not found (deleted meanwhile).
    pub device: Option<DeviceSnapshot>,
    pub rule: RuleSnapshot,
    /// The action this delivery carries out (never sent to receivers).
    pub action: Action,
}

/// The alert as it stood when the change was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSnapshot {
    pub id: Uuid,
    pub device_id: Uuid,
    pub rule_id: Option<Uuid>,
    pub severity: Severity,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub status: AlertStatus,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The alerting device, for people reading the notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub device_type: String,
    pub area: Option<String>,
    pub location: Option<String>,
}

/// The rule behind the alert (`id` `None` for a device's built-in rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSnapshot {
    pub id: Option<Uuid>,
    pub name: String,
}

/// What webhook receivers get: the notification without its action.
#[derive(Serialize)]
struct WebhookBody<'a> {
    event: AlertEvent,
    alert: &'a AlertSnapshot,
    device: &'a Option<DeviceSnapshot>,
    rule: &'a RuleSnapshot,
}

impl AlertNotification {
    /// The webhook body: the notification without its action, keys in the order receivers have
    /// always seen (sorted, as a JSON object value writes them).
    pub fn webhook_body(&self) -> serde_json::Result<Vec<u8>> {
        let body = serde_json::to_value(WebhookBody {
            event: self.event,
            alert: &self.alert,
            device: &self.device,
            rule: &self.rule,
        })?;
        serde_json::to_vec(&body)
    }
}

/// Whether a scheduled report was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportEvent {
    Report,
    ReportFailed,
}

impl ReportEvent {
    /// The payload's `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Report => "report",
            Self::ReportFailed => "report_failed",
        }
    }
}

/// A scheduled report's email: the file made (or why none was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportNotification {
    pub event: ReportEvent,
    /// Why the run failed (`report_failed`).
    pub error: Option<String>,
    pub report: ReportSummary,
    pub attachment: Attachment,
    /// The email action to the schedule's recipients.
    pub action: Action,
}

/// What a scheduled report covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    pub schedule_id: Uuid,
    /// The schedule's name.
    pub schedule: String,
    pub job_id: Uuid,
    /// `telemetry` or `alerts`.
    pub kind: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// The period, as people read it (`2026-11-27 06:00 UTC to ...`), empty when unknown.
    pub period: String,
    pub rows: Option<i64>,
}

/// The report's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Where the file is on the platform's disk.
    pub path: String,
    /// The name it is sent as.
    pub name: Option<String>,
    pub content_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An alert payload as the outbox has always held it.
    fn stored_alert() -> serde_json::Value {
        json!({
            "event": "raised",
            "alert": {
                "id": Uuid::nil(), "device_id": Uuid::nil(), "rule_id": Uuid::nil(),
                "severity": "critical", "message": "High pressure: pressure 91.5 > 80",
                "value": 91.5, "threshold": 80.0, "status": "active",
                "created_at": "2026-11-27T10:00:01.123456Z", "resolved_at": null,
            },
            "device": {"id": Uuid::nil(), "name": "Wellhead 9", "type": "pressure",
                       "area": "North", "location": null},
            "rule": {"id": Uuid::nil(), "name": "High pressure"},
            "action": {"type": "webhook", "url": "https://x.example/h", "secret": "s"},
        })
    }

    #[test]
    fn an_alert_payload_round_trips_and_its_webhook_body_leaves_the_action_out() {
        let stored = stored_alert();
        let payload: NotificationPayload = serde_json::from_value(stored.clone()).expect("decodes");
        let NotificationPayload::Alert(alert) = &payload else {
            panic!("an alert payload: {payload:?}");
        };
        assert_eq!(alert.alert.severity, Severity::Critical);
        assert_eq!(payload.event(), "raised");
        assert_eq!(serde_json::to_value(&payload).expect("encodes"), stored);

        let mut expected = stored;
        expected
            .as_object_mut()
            .expect("an object")
            .remove("action");
        let body = alert.webhook_body().expect("a body");
        assert_eq!(body, serde_json::to_vec(&expected).expect("bytes"));

        // A device deleted meanwhile, a built-in rule, a resolved alert.
        let mut resolved = stored_alert();
        resolved["event"] = json!("resolved");
        resolved["device"] = json!(null);
        resolved["rule"]["id"] = json!(null);
        resolved["alert"]["status"] = json!("resolved");
        resolved["alert"]["resolved_at"] = json!("2026-11-27T10:05:00Z");
        let payload: NotificationPayload =
            serde_json::from_value(resolved.clone()).expect("decodes");
        assert_eq!(serde_json::to_value(&payload).expect("encodes"), resolved);
    }

    #[test]
    fn a_report_payload_round_trips() {
        let stored = json!({
            "event": "report_failed",
            "error": "no data",
            "report": {"schedule_id": Uuid::nil(), "schedule": "Daily", "job_id": Uuid::nil(),
                       "kind": "telemetry", "start": "2026-11-27T06:00:00Z",
                       "end": "2026-11-28T06:00:00Z",
                       "period": "2026-11-27 06:00 UTC to 2026-11-28 06:00 UTC", "rows": null},
            "attachment": {"path": "/data/reports/x", "name": null, "content_type": "text/csv"},
            "action": {"type": "email", "to": ["ops@example.com"]},
        });
        let payload: NotificationPayload = serde_json::from_value(stored.clone()).expect("decodes");
        assert!(
            matches!(&payload, NotificationPayload::Report(r) if r.event == ReportEvent::ReportFailed)
        );
        assert_eq!(payload.event(), "report_failed");
        assert_eq!(serde_json::to_value(&payload).expect("encodes"), stored);
    }
}
