//! What every handler shares.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use insa_actors::DeviceRegistry;
use sea_orm::DatabaseConnection;

use crate::auth::throttle::LoginThrottle;
use crate::auth::tokens::JwtKeys;
use crate::settings::Settings;

pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub jwt: JwtKeys,
    pub login_throttle: LoginThrottle,
    /// Device -> partition (and, with the telemetry pipeline, -> actor).
    pub registry: DeviceRegistry,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
}
