//! The audit log: logins (failed ones too), user, API-key and device changes.
//!
//! Writing an entry never fails the request it describes: a failure is logged instead. Entries
//! are plain values: who acted, and from where ([`Origin`], which the web layer reads off a
//! request).

use std::net::IpAddr;

use chrono::Utc;
use insa_entities::audit_log;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::AuthUser;

/// Where an action came from, as the log records it. The web layer builds one from a request
/// (the client's address through trusted proxies): `Audit::by(action, &user, &req)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client's address, when known.
    pub ip: Option<IpAddr>,
}

/// One entry, built up and then [`Audit::record`]ed.
#[must_use = "an audit entry does nothing until recorded"]
pub struct Audit {
    entry: audit_log::ActiveModel,
}

impl Audit {
    /// `action` is a dotted verb such as `auth.login` or `api_key.revoke`.
    pub fn new(action: &str) -> Self {
        Self {
            entry: audit_log::ActiveModel {
                at: Set(Utc::now()),
                action: Set(action.to_string()),
                success: Set(true),
                actor_id: Set(None),
                actor: Set(None),
                target_type: Set(None),
                target_id: Set(None),
                ip: Set(None),
                details: Set(None),
                ..Default::default()
            },
        }
    }

    /// An entry for what a logged-in user did, and from where.
    pub fn by(action: &str, user: &AuthUser, from: impl Into<Origin>) -> Self {
        Self::new(action)
            .actor(Some(user.id), &user.email)
            .ip(from.into().ip)
    }

    pub fn actor(mut self, id: Option<Uuid>, name: &str) -> Self {
        self.entry.actor_id = Set(id);
        self.entry.actor = Set(Some(name.chars().take(255).collect()));
        self
    }

    pub fn target(mut self, kind: &str, id: impl ToString) -> Self {
        self.entry.target_type = Set(Some(kind.to_string()));
        self.entry.target_id = Set(Some(id.to_string()));
        self
    }

    pub fn ip(mut self, ip: Option<IpAddr>) -> Self {
        self.entry.ip = Set(ip.map(|ip| ip.to_string()));
        self
    }

    pub fn failed(mut self) -> Self {
        self.entry.success = Set(false);
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.entry.details = Set(Some(details));
        self
    }

    pub async fn record(self, db: &impl ConnectionTrait) {
        self.record_returning_id(db).await;
    }

    /// Records the entry and returns its id (to complete its details later).
    pub async fn record_returning_id(self, db: &impl ConnectionTrait) -> Option<i64> {
        match self.entry.insert(db).await {
            Ok(row) => Some(row.id),
            Err(err) => {
                tracing::error!(error = %err, "cannot write the audit log");
                None
            }
        }
    }
}
