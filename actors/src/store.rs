//! Batched storage of points: one COPY (PostgreSQL) or a few multi-row INSERTs (SQLite) per batch,
//! plus the newest value per (device, key) in `telemetry_latest`, in one transaction.

use std::collections::HashMap;
use std::fmt::Write as _;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection};
use sqlx::{QueryBuilder, Sqlite};

use crate::point::Point;

/// SQLite allows 32766 bound values per statement; 7 per row.
const SQLITE_ROWS_PER_INSERT: usize = 4000;
/// COPY data is streamed in pieces of about this size.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Writes the batch atomically: all points and their latest values, or nothing.
pub async fn write_points(db: &DatabaseConnection, points: &[Point]) -> Result<(), sqlx::Error> {
    if points.is_empty() {
        return Ok(());
    }
    let latest = newest_per_key(points);
    match db.get_database_backend() {
        DatabaseBackend::Postgres => write_postgres(db, points, &latest).await,
        DatabaseBackend::Sqlite => write_sqlite(db, points, &latest).await,
        DatabaseBackend::MySql => Err(sqlx::Error::Configuration("MySQL is not supported".into())),
    }
}

/// Whether the database refused a batch for what it holds (a data error: a value it cannot
/// store, a constraint such as a device deleted meanwhile), rather than for a passing reason
/// (connection lost, pool exhausted, shutdown), which fails the batch whatever it holds.
pub fn is_data_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            !matches!(db.kind(), sqlx::error::ErrorKind::Other)
                // SQLSTATE class 22: data exception (bad encoding, value out of range, ...).
                || db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some_and(|pg| pg.code().starts_with("22"))
        }
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// The newest point of each (device, key) in the batch (an upsert may touch a row only once).
fn newest_per_key(points: &[Point]) -> Vec<&Point> {
    let mut newest: HashMap<(uuid::Uuid, &str), &Point> = HashMap::new();
    for point in points {
        newest
            .entry((point.device_id, point.key.as_str()))
            .and_modify(|current| {
                if point.timestamp >= current.timestamp {
                    *current = point;
                }
            })
            .or_insert(point);
    }
    let mut newest: Vec<&Point> = newest.into_values().collect();
    // Every batch locks latest-value rows in the same order, so concurrent batches cannot
    // deadlock on them.
    newest.sort_unstable_by(|a, b| (a.device_id, &a.key).cmp(&(b.device_id, &b.key)));
    newest
}

async fn write_postgres(
    db: &DatabaseConnection,
    points: &[Point],
    latest: &[&Point],
) -> Result<(), sqlx::Error> {
    let pool = db.get_postgres_connection_pool();
    let mut tx = pool.begin().await?;
    let mut copy = tx
        .copy_in_raw(
            "COPY telemetry (timestamp, device_id, key, value, unit, quality, metadata) FROM STDIN",
        )
        .await?;
    let mut buf = String::with_capacity(points.len().min(20_000) * 96);
    for point in points {
        encode_copy_row(&mut buf, point);
        if buf.len() >= COPY_CHUNK_BYTES {
            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
        }
    }
    if !buf.is_empty() {
        copy.send(buf.into_bytes()).await?;
    }
    copy.finish().await?;

    let mut ids = Vec::with_capacity(latest.len());
    let mut keys = Vec::with_capacity(latest.len());
    let mut times = Vec::with_capacity(latest.len());
    let mut values = Vec::with_capacity(latest.len());
    let mut units = Vec::with_capacity(latest.len());
    let mut qualities = Vec::with_capacity(latest.len());
    let mut metadata = Vec::with_capacity(latest.len());
    for point in latest {
        ids.push(point.device_id);
        keys.push(point.key.as_str());
        times.push(point.timestamp);
        values.push(point.value);
        units.push(point.unit.as_deref());
        qualities.push(point.quality);
        metadata.push(point.metadata.clone());
    }
    sqlx::query(
        "INSERT INTO telemetry_latest (device_id, key, timestamp, value, unit, quality, metadata) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[], \
                              $6::int4[], $7::jsonb[]) \
         ON CONFLICT (device_id, key) DO UPDATE SET timestamp = EXCLUDED.timestamp, \
           value = EXCLUDED.value, unit = EXCLUDED.unit, quality = EXCLUDED.quality, \
           metadata = EXCLUDED.metadata \
         WHERE telemetry_latest.timestamp <= EXCLUDED.timestamp",
    )
    .bind(ids)
    .bind(keys)
    .bind(times)
    .bind(values)
    .bind(units)
    .bind(qualities)
    .bind(metadata)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// One row of COPY's text format: tab-separated, `\N` for NULL, backslash escapes.
fn encode_copy_row(buf: &mut String, point: &Point) {
    // Writing to a String cannot fail.
    let _ = write!(
        buf,
        "{}\t{}\t",
        point.timestamp.format("%Y-%m-%d %H:%M:%S%.6f+00"),
        point.device_id
    );
    escape_copy(buf, &point.key);
    buf.push('\t');
    match point.value {
        Some(value) => {
            let _ = write!(buf, "{value}");
        }
        None => buf.push_str("\\N"),
    }
    buf.push('\t');
    match &point.unit {
        Some(unit) => escape_copy(buf, unit),
        None => buf.push_str("\\N"),
    }
    buf.push('\t');
    match point.quality {
        Some(quality) => {
            let _ = write!(buf, "{quality}");
        }
        None => buf.push_str("\\N"),
    }
    buf.push('\t');
    match &point.metadata {
        Some(metadata) => escape_copy(buf, &metadata.to_string()),
        None => buf.push_str("\\N"),
    }
    buf.push('\n');
}

fn escape_copy(buf: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\t' => buf.push_str("\\t"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
}

async fn write_sqlite(
    db: &DatabaseConnection,
    points: &[Point],
    latest: &[&Point],
) -> Result<(), sqlx::Error> {
    let pool = db.get_sqlite_connection_pool();
    let mut tx = pool.begin().await?;
    for chunk in points.chunks(SQLITE_ROWS_PER_INSERT) {
        let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO telemetry (timestamp, device_id, key, value, unit, quality, metadata) ",
        );
        insert.push_values(chunk, |mut row, point| {
            row.push_bind(point.timestamp)
                .push_bind(point.device_id)
                .push_bind(point.key.as_str())
                .push_bind(point.value)
                .push_bind(point.unit.as_deref())
                .push_bind(point.quality)
                .push_bind(point.metadata.clone());
        });
        insert.build().execute(&mut *tx).await?;
    }
    for chunk in latest.chunks(SQLITE_ROWS_PER_INSERT) {
        let mut upsert: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO telemetry_latest (device_id, key, timestamp, value, unit, quality, metadata) ",
        );
        upsert.push_values(chunk, |mut row, point| {
            row.push_bind(point.device_id)
                .push_bind(point.key.as_str())
                .push_bind(point.timestamp)
                .push_bind(point.value)
                .push_bind(point.unit.as_deref())
                .push_bind(point.quality)
                .push_bind(point.metadata.clone());
        });
        upsert.push(
            " ON CONFLICT (device_id, key) DO UPDATE SET timestamp = excluded.timestamp, \
             value = excluded.value, unit = excluded.unit, quality = excluded.quality, \
             metadata = excluded.metadata WHERE telemetry_latest.timestamp <= excluded.timestamp",
        );
        upsert.build().execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Device status and `last_seen`, written behind in one statement per flush.
pub async fn write_device_state(
    db: &DatabaseConnection,
    seen: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
    statuses: &[(uuid::Uuid, insa_entities::DeviceStatus)],
) -> Result<(), sqlx::Error> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            let mut tx = pool.begin().await?;
            if !seen.is_empty() {
                let (ids, times): (Vec<_>, Vec<_>) = seen.iter().copied().unzip();
                sqlx::query(
                    "UPDATE devices SET last_seen = u.ls FROM UNNEST($1::uuid[], $2::timestamptz[]) AS u(id, ls) \
                     WHERE devices.id = u.id AND (devices.last_seen IS NULL OR devices.last_seen < u.ls)",
                )
                .bind(ids)
                .bind(times)
                .execute(&mut *tx)
                .await?;
            }
            if !statuses.is_empty() {
                let (ids, values): (Vec<_>, Vec<_>) = statuses
                    .iter()
                    .map(|(id, status)| (*id, status.as_str()))
                    .unzip();
                sqlx::query(
                    "UPDATE devices SET status = u.st, updated_at = now() \
                     FROM UNNEST($1::uuid[], $2::text[]) AS u(id, st) \
                     WHERE devices.id = u.id AND devices.status <> 'maintenance'",
                )
                .bind(ids)
                .bind(values)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        DatabaseBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            let mut tx = pool.begin().await?;
            for (id, at) in seen {
                sqlx::query(
                    "UPDATE devices SET last_seen = ?1 WHERE id = ?2 AND (last_seen IS NULL OR last_seen < ?1)",
                )
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            for (id, status) in statuses {
                sqlx::query(
                    "UPDATE devices SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status <> 'maintenance'",
                )
                .bind(status.as_str())
                .bind(chrono::Utc::now())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        DatabaseBackend::MySql => Err(sqlx::Error::Configuration("MySQL is not supported".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn point(key: &str, ts: &str) -> Point {
        Point {
            device_id: uuid::Uuid::from_u128(1),
            timestamp: DateTime::parse_from_rfc3339(ts)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            key: key.into(),
            value: Some(1.5),
            unit: None,
            quality: Some(100),
            metadata: None,
        }
    }

    #[test]
    fn copy_rows_escape_text_and_mark_nulls() {
        let mut p = point("tab\there", "2025-10-27T16:30:00.25Z");
        p.unit = Some("back\\slash".into());
        p.metadata = Some(json!({"text": "line\nbreak"}));
        let mut buf = String::new();
        encode_copy_row(&mut buf, &p);
        assert_eq!(
            buf,
            "2025-10-27 16:30:00.250000+00\t00000000-0000-0000-0000-000000000001\ttab\\there\t1.5\tback\\\\slash\t100\t{\"text\":\"line\\\\nbreak\"}\n"
        );
        p.value = None;
        p.unit = None;
        p.quality = None;
        p.metadata = None;
        let mut buf = String::new();
        encode_copy_row(&mut buf, &p);
        assert!(buf.ends_with("\t\\N\t\\N\t\\N\t\\N\n"), "{buf}");
    }

    #[test]
    fn only_the_newest_point_per_key_goes_to_latest() {
        let points = [
            point("t", "2025-10-27T16:30:00Z"),
            point("t", "2025-10-27T16:31:00Z"),
            point("t", "2025-10-27T16:29:00Z"),
            point("p", "2025-10-27T16:00:00Z"),
        ];
        let mut latest = newest_per_key(&points);
        latest.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(latest.len(), 2);
        assert_eq!(
            latest[1].timestamp.to_rfc3339(),
            "2025-10-27T16:31:00+00:00"
        );
    }
}
