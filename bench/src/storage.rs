//! Bytes per stored data point: seeds `points` realistic points (devices x 3 keys at 1 Hz:
//! slowly varying values with noise, a unit and a quality on every point) straight into the
//! `telemetry` table of a migrated, otherwise empty platform database, then reports what the
//! table and its indexes take on disk per point.
//!
//! ```text
//! insa-iiot migrate   # with INSA__DATABASE__URL set to the same database
//! insa-bench storage --database-url postgres://... --points 2000000
//! insa-bench storage --database-url sqlite:///tmp/s.db --points 2000000 [--shape current|pk|dict]
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

/// A table shape to measure: `current` is the platform's `telemetry` table as migrated; the
/// others are candidates, created beside it for the measurement only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// `telemetry` as it is: a surrogate id, the key as text, an index on (device, key, time).
    Current,
    /// No surrogate id: the primary key (device, key, time) is the only index (SQLite: a
    /// `WITHOUT ROWID` table, the rows kept in key order).
    Pk,
    /// As `pk`, with the key and its unit through a dictionary (an integer per (key, unit)), the
    /// quality as a small integer, columns ordered for alignment; SQLite: time as integer
    /// microseconds.
    Dict,
}

impl Shape {
    fn table(self) -> &'static str {
        match self {
            Shape::Current => "telemetry",
            Shape::Pk => "storage_pk",
            Shape::Dict => "storage_dict",
        }
    }

    fn create(self, postgres: bool) -> Option<&'static str> {
        match (self, postgres) {
            (Shape::Current, _) => None,
            (Shape::Pk, true) => Some(
                "CREATE TABLE storage_pk (timestamp timestamptz NOT NULL, device_id uuid NOT NULL, \
                 key text NOT NULL, value float8, unit text, quality int4, metadata jsonb, \
                 PRIMARY KEY (device_id, key, timestamp))",
            ),
            (Shape::Pk, false) => Some(
                "CREATE TABLE storage_pk (timestamp TEXT NOT NULL, device_id BLOB NOT NULL, \
                 key TEXT NOT NULL, value REAL, unit TEXT, quality INTEGER, metadata TEXT, \
                 PRIMARY KEY (device_id, key, timestamp)) WITHOUT ROWID",
            ),
            (Shape::Dict, true) => Some(
                "CREATE TABLE storage_dict (device_id uuid NOT NULL, timestamp timestamptz NOT NULL, \
                 value float8, key_id int4 NOT NULL, quality int2, metadata jsonb, \
                 PRIMARY KEY (device_id, key_id, timestamp))",
            ),
            (Shape::Dict, false) => Some(
                "CREATE TABLE storage_dict (device_id BLOB NOT NULL, key_id INTEGER NOT NULL, \
                 timestamp INTEGER NOT NULL, value REAL, quality INTEGER, metadata TEXT, \
                 PRIMARY KEY (device_id, key_id, timestamp)) WITHOUT ROWID",
            ),
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Shape::Current | Shape::Pk => {
                "(timestamp, device_id, key, value, unit, quality, metadata)"
            }
            Shape::Dict => "(device_id, timestamp, value, key_id, quality, metadata)",
        }
    }
}

pub async fn run(
    database_url: &str,
    points: u64,
    devices: usize,
    shape: Shape,
) -> anyhow::Result<()> {
    let readings = points / (KEYS.len() as u64 * devices as u64);
    let total = readings * KEYS.len() as u64 * devices as u64;
    let start = chrono::Utc::now() - chrono::Duration::seconds(readings as i64 + 3600);
    let ids: Vec<Uuid> = (0..devices).map(|_| Uuid::new_v4()).collect();
    let table_name = shape.table();
    let seeded = Instant::now();
    let (table, indexes, backend) = if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database_url).await?;
        if let Some(create) = shape.create(true) {
            sqlx::query(create).execute(&pool).await?;
        }
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
                    for (k, (key, unit, level)) in KEYS.iter().enumerate() {
                        let v = value(*level, second, n);
                        match shape {
                            Shape::Dict => {
                                buf.push_str(&format!("{id}\t{at}\t{v}\t{k}\t100\t\\N\n"))
                            }
                            _ => {
                                buf.push_str(&format!("{at}\t{id}\t{key}\t{v}\t{unit}\t100\t\\N\n"))
                            }
                        }
                    }
                }
                let mut conn = pool.acquire().await?;
                let mut copy = conn
                    .copy_in_raw(&format!("COPY {table_name} {} FROM STDIN", shape.columns()))
                    .await?;
                copy.send(buf.into_bytes()).await?;
                copy.finish().await?;
                written += batch;
            }
        }
        sqlx::query(&format!("VACUUM ANALYZE {table_name}"))
            .execute(&pool)
            .await?;
        let (table, indexes): (i64, i64) = sqlx::query_as(
            "SELECT pg_relation_size($1::regclass) + pg_relation_size($1::regclass, 'fsm') \
                    + pg_relation_size($1::regclass, 'vm') \
                    + COALESCE((SELECT pg_total_relation_size(reltoastrelid) FROM pg_class \
                                WHERE oid = $1::regclass AND reltoastrelid <> 0), 0), \
                    pg_indexes_size($1::regclass)",
        )
        .bind(table_name)
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
        if let Some(create) = shape.create(false) {
            sqlx::query(create).execute(&pool).await?;
        }
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
                // At most 7 bound values a row; SQLite takes 32766 per statement.
                let batch = (readings - written).min(1_500);
                let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                    "INSERT INTO {table_name} {} ",
                    shape.columns()
                ));
                let rows = (written..written + batch)
                    .flat_map(|second| KEYS.iter().enumerate().map(move |k| (second, k)));
                insert.push_values(rows, |mut row, (second, (k, (key, unit, level)))| {
                    let at = start + chrono::Duration::seconds(second as i64);
                    let v = value(*level, second, n);
                    match shape {
                        Shape::Dict => {
                            row.push_bind(id)
                                .push_bind(at.timestamp_micros())
                                .push_bind(v)
                                .push_bind(k as i64)
                                .push_bind(100)
                                .push_bind(Option::<String>::None);
                        }
                        _ => {
                            row.push_bind(at)
                                .push_bind(id)
                                .push_bind(*key)
                                .push_bind(v)
                                .push_bind(*unit)
                                .push_bind(100)
                                .push_bind(Option::<String>::None);
                        }
                    }
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
    println!("| backend | shape | points | seeded in s | table MB | indexes MB | bytes/point table | bytes/point indexes | bytes/point total |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let whole = table + indexes.unwrap_or(0.0);
    println!(
        "| {backend} | {shape:?} | {total} | {seconds:.1} | {:.1} | {} | {} | {} | {:.1} |",
        table / 1e6,
        indexes.map_or("(in the file)".into(), |i| format!("{:.1}", i / 1e6)),
        indexes.map_or("-".into(), |_| format!("{:.1}", per(table))),
        indexes.map_or("-".into(), |i| format!("{:.1}", per(i))),
        per(whole),
    );
    Ok(())
}
