//! How the API shows a user, an alert and a report job: the answers more than one resource
//! gives (a user: `/users` and `/auth/me`; an alert: `/alerts` and the live feed; a job:
//! `/reports` and `/report-schedules/{id}/run`). Answers of one resource stay with it in `routes/`.

use chrono::{DateTime, Utc};
use insa_domain::{AlertStatus, Severity};
use insa_entities::{alerts, report_jobs as jobs, users};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A user as the API shows it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
    #[schema(example = "engineer")]
    pub role: &'static str,
    pub name: Option<String>,
    pub is_active: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<users::Model> for UserResponse {
    fn from(user: users::Model) -> Self {
        Self {
            id: user.id,
            email: user.email,
            role: user.role.as_str(),
            name: user.name,
            is_active: user.is_active,
            last_login_at: user.last_login_at,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// An alert as the API shows it (the product README's columns).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertResponse {
    pub id: Uuid,
    pub device_id: Uuid,
    pub rule_id: Option<Uuid>,
    #[schema(value_type = String, example = "critical")]
    pub severity: Severity,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// `active`, `acknowledged` or `resolved`.
    #[schema(value_type = String)]
    pub status: AlertStatus,
    /// The email of who acknowledged it.
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Times the condition was raised while this alert stood for it (more than 1 once it
    /// chatters: a flapping condition re-opens this alert instead of raising new ones).
    pub raise_count: i32,
    /// The condition changed more often than `alerts.max_notifications_per_window` per
    /// `alerts.chatter_window_secs`: the changes beyond were recorded here, not notified.
    pub chattering: bool,
}

impl From<alerts::Model> for AlertResponse {
    fn from(a: alerts::Model) -> Self {
        Self {
            id: a.id,
            device_id: a.device_id,
            rule_id: a.rule_id,
            severity: a.severity,
            message: a.message,
            value: a.value,
            threshold: a.threshold,
            status: a.status,
            acknowledged_by: a.acknowledged_by,
            acknowledged_at: a.acknowledged_at,
            resolved_at: a.resolved_at,
            created_at: a.created_at,
            metadata: a.metadata,
            raise_count: a.raise_count,
            chattering: a.chattering,
        }
    }
}

/// A report job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResponse {
    pub id: Uuid,
    pub kind: String,
    pub format: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// Percent written, 0 to 100.
    pub progress: u8,
    /// Rows the report holds (points, buckets or alerts).
    pub rows: Option<i64>,
    pub rows_done: i64,
    pub file_name: Option<String>,
    pub file_size: Option<i64>,
    pub error: Option<String>,
    /// Where to fetch the file, once `done`.
    pub download: Option<String>,
    #[schema(value_type = Object)]
    pub query: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the file and this job are removed.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<jobs::Model> for JobResponse {
    fn from(job: jobs::Model) -> Self {
        let progress = match (job.status.as_str(), job.rows) {
            ("done", _) => 100,
            (_, Some(rows)) if rows > 0 => (job.rows_done.max(0) * 100 / rows).min(99) as u8,
            _ => 0,
        };
        Self {
            download: (job.status == "done")
                .then(|| format!("/api/v1/reports/{}/download", job.id)),
            id: job.id,
            kind: job.kind,
            format: job.format,
            status: job.status,
            progress,
            rows: job.rows,
            rows_done: job.rows_done,
            file_name: job.file_name,
            file_size: job.file_size,
            error: job.error,
            query: job.query,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            expires_at: job.expires_at,
        }
    }
}
