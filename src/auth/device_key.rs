//! A device's API key, checked: known (from the cache when fresh, else the database), not
//! revoked, not expired, and within its hourly allowance, which the check counts. The HTTP API
//! (`X-API-Key`, [`super::extract`]) and the embedded broker (the MQTT password) both ask here;
//! each answers a refusal its own way.

use chrono::Utc;
use insa_entities::api_keys;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::api_keys::hash_key;
use super::key_cache::{KeyCache, OverLimit, RateInfo};

/// `last_used_at` is written at most this often per key, so ingest does not write per request.
const LAST_USED_GRANULARITY_SECS: u64 = 60;

/// A device authenticated by its API key.
#[derive(Debug, Clone)]
pub struct DeviceKey {
    pub key_id: Uuid,
    pub name: String,
    /// When set, the key may only act for this device.
    pub device_id: Option<Uuid>,
    pub read: bool,
    pub write: bool,
    /// When the key stops working, if it expires.
    pub expires_at: Option<chrono::DateTime<Utc>>,
    /// This request's place in the key's hourly allowance.
    pub rate: RateInfo,
}

impl DeviceKey {
    /// Whether the key may act for `device`.
    pub fn covers(&self, device: Uuid) -> bool {
        self.device_id.is_none_or(|own| own == device)
    }

    /// The `X-RateLimit-*` headers for the answer.
    pub fn rate_headers(&self) -> [(&'static str, String); 2] {
        [
            ("X-RateLimit-Limit", self.rate.limit.to_string()),
            ("X-RateLimit-Remaining", self.rate.remaining.to_string()),
        ]
    }
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefused {
    /// Unknown (or not a key at all).
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("the API key has expired")]
    Expired,
    /// The key's hourly allowance is spent.
    #[error(
        "API key rate limit exceeded: {} requests per hour; retry in {} s",
        .0.limit,
        .0.retry_after_secs
    )]
    RateLimited(OverLimit),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// Checks an API key (from the cache when fresh) and counts the request against its rate limit.
pub async fn authenticate_key(
    db: &DatabaseConnection,
    keys: &KeyCache,
    key: &str,
) -> Result<DeviceKey, KeyRefused> {
    if key.is_empty() || key.len() > 256 {
        return Err(KeyRefused::Invalid);
    }
    let hash = hash_key(key);
    let cached = match keys.get(&hash) {
        Some(cached) => cached,
        None => {
            let row = api_keys::Entity::find()
                .filter(api_keys::Column::KeyHash.eq(hash.as_str()))
                .one(db)
                .await?
                .ok_or(KeyRefused::Invalid)?;
            keys.put(hash.clone(), row)
        }
    };
    let row = &cached.row;
    let now = Utc::now();
    if row.revoked_at.is_some() {
        return Err(KeyRefused::Revoked);
    }
    if row.expires_at.is_some_and(|at| at <= now) {
        return Err(KeyRefused::Expired);
    }
    let rate_limit = u32::try_from(row.rate_limit).unwrap_or(1);
    let rate = keys
        .check_rate(row.id, rate_limit)
        .map_err(KeyRefused::RateLimited)?;
    let stale = cached
        .touched
        .is_none_or(|at| at.elapsed().as_secs() >= LAST_USED_GRANULARITY_SECS);
    if stale {
        keys.mark_touched(&hash);
        touch_key(db.clone(), row.id);
    }
    let permission = |name: &str| {
        row.permissions
            .get(name)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    Ok(DeviceKey {
        key_id: row.id,
        name: row.name.clone(),
        device_id: row.device_id,
        read: permission("read"),
        write: permission("write"),
        expires_at: row.expires_at,
        rate,
    })
}

/// Records use of a key without holding up the request (on whichever runtime the caller runs:
/// an HTTP worker or the embedded broker).
fn touch_key(db: sea_orm::DatabaseConnection, key_id: Uuid) {
    tokio::spawn(async move {
        let result = api_keys::Entity::update_many()
            .col_expr(
                api_keys::Column::LastUsedAt,
                sea_orm::sea_query::Expr::value(Utc::now()),
            )
            .filter(api_keys::Column::Id.eq(key_id))
            .exec(&db)
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, %key_id, "cannot record API key use");
        }
    });
}
