//! Bytes per stored data point: seeds `points` realistic points (devices x 3 keys at 1 Hz:
//! slowly varying values with noise, a unit and a quality on every point) straight into the
//! `telemetry` table of a migrated, otherwise empty platform database, then reports what the
//! table and its indexes take on disk per point.
//!
//! ```text
//! insa-iiot migrate   # with INSA__DATABASE__URL set to the same database
//! insa-bench storage --database-url postgres://... --points 2000000
//! insa-bench storage --database-url sqlite:///tmp/s.db --points 2000000
//! ```
//! PostgreSQL: `pg_relation_size` (heap, with its TOAST and maps) and `pg_indexes_size`, after
//! `VACUUM ANALYZE`. SQLite: the database file's growth, after `VACUUM` (one file holds the table
//! and its indexes).

use std::time::Instant;

use anyhow::Context;
use uuid::Uuid;

/// The seed's keys with a unit each, and the level they vary around.
const KEYS: [(&str, &str, f64); 3] = [
    ("temperature", "C", 60.0),
    ("pressure", "bar", 90.0),
    ("flow", "m3/h", 30.0),
];

/// One point's value: a slow wave plus noise, as a sensor reads.
fn value(level: f64, second: u64, device: usize) -> f64 {
    let phase = (second as f64 + device as f64 * 97.0) / 900.0;
    let noise = fastrand::f64() * 0.2 - 0.1;
    ((level + level * 0.05 * phase.sin() + noise) * 1000.0).round() / 1000.0
}

pub async fn run(database_url: &str, points: u64, devices: usize) -> anyhow::Result<()> {
    let readings = points / (KEYS.len() as u64 * devices as u64);
    let total = readings * KEYS.len() as u64 * devices as u64;
    let start = chrono::Utc::now() - chrono::Duration::seconds(readings as i64 + 3600);
    let ids: Vec<Uuid> = (0..devices).map(|_| Uuid::new_v4()).collect();
    let seeded = Instant::now();
    let (table, indexes, backend) = if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database_url).await?;
        for (n, id) in ids.iter().enumerate() {
            sqlx::query(
                "INSERT INTO devices (id, name, type, status, created_at, updated_at) \
                 VALUES ($1, $2, 'temperature', 'offline', now(), now())",
            )
            .bind(id)
            .bind(format!("storage-{n}"))
            .execute(&pool)
            .await?;
        }
        for (n, id) in ids.iter().enumerate() {
            let mut written = 0;
            while written < readings {
                let batch = (readings - written).min(20_000);
                let mut buf = String::with_capacity(batch as usize * 3 * 90);
                for second in written..written + batch {
                    let at = (start + chrono::Duration::seconds(second as i64))
                        .format("%Y-%m-%d %H:%M:%S+00");
                    for (key, unit, level) in KEYS {
                        let v = value(level, second, n);
                        buf.push_str(&format!("{at}\t{id}\t{key}\t{v}\t{unit}\t100\t\\N\n"));
                    }
                }
                let mut conn = pool.acquire().await?;
                let mut copy = conn
                    .copy_in_raw("COPY telemetry (timestamp, device_id, key, value, unit, quality, metadata) FROM STDIN")
                    .await?;
                copy.send(buf.into_bytes()).await?;
                copy.finish().await?;
                written += batch;
            }
        }
        sqlx::query("VACUUM ANALYZE telemetry").execute(&pool).await?;
        let (table, indexes): (i64, i64) = sqlx::query_as(
            "SELECT pg_relation_size('telemetry') + pg_relation_size('telemetry', 'fsm') \
                    + pg_relation_size('telemetry', 'vm') \
                    + COALESCE((SELECT pg_total_relation_size(reltoastrelid) FROM pg_class \
                                WHERE oid = 'telemetry'::regclass AND reltoastrelid <> 0), 0), \
                    pg_indexes_size('telemetry')",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        (table as f64, Some(indexes as f64), "PostgreSQL")
    } else {
        let path = database_url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string();
        let pool = sqlx::SqlitePool::connect(database_url).await?;
        sqlx::query("VACUUM").execute(&pool).await?;
        let before = std::fs::metadata(&path).context("the SQLite file")?.len();
        for (n, id) in ids.iter().enumerate() {
            sqlx::query(
                "INSERT INTO devices (id, name, type, status, created_at, updated_at) \
                 VALUES (?, ?, 'temperature', 'offline', datetime('now'), datetime('now'))",
            )
            .bind(id)
            .bind(format!("storage-{n}"))
            .execute(&pool)
            .await?;
        }
        for (n, id) in ids.iter().enumerate() {
            let mut written = 0;
            while written < readings {
                // 7 bound values a row; SQLite takes 32766 per statement.
                let batch = (readings - written).min(1_500);
                let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO telemetry (timestamp, device_id, key, value, unit, quality, metadata) ",
                );
                let rows = (written..written + batch)
                    .flat_map(|second| KEYS.iter().map(move |k| (second, *k)));
                insert.push_values(rows, |mut row, (second, (key, unit, level))| {
                    row.push_bind(start + chrono::Duration::seconds(second as i64))
                        .push_bind(id)
                        .push_bind(key)
                        .push_bind(value(level, second, n))
                        .push_bind(unit)
                        .push_bind(100)
                        .push_bind(Option::<String>::None);
                });
                insert.build().execute(&pool).await?;
                written += batch;
            }
        }
        sqlx::query("VACUUM").execute(&pool).await?;
        pool.close().await;
        let after = std::fs::metadata(&path).context("the SQLite file")?.len();
        ((after - before) as f64, None, "SQLite")
    };
    let seconds = seeded.elapsed().as_secs_f64();
    let per = |bytes: f64| bytes / total as f64;
    println!("| backend | points | seeded in s | table MB | indexes MB | bytes/point table | bytes/point indexes | bytes/point total |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let whole = table + indexes.unwrap_or(0.0);
    println!(
        "| {backend} | {total} | {seconds:.1} | {:.1} | {} | {} | {} | {:.1} |",
        table / 1e6,
        indexes.map_or("(in the file)".into(), |i| format!("{:.1}", i / 1e6)),
        indexes.map_or("-".into(), |_| format!("{:.1}", per(table))),
        indexes.map_or("-".into(), |i| format!("{:.1}", per(i))),
        per(whole),
    );
    Ok(())
}
