//! Telemetry queries shared by the API and reports: aggregation intervals and functions, how many
//! buckets a request would produce, and the aggregate query itself (portable SQL) with its
//! [`Bucket`]s.

use chrono::{DateTime, Duration, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement, Value as SqlValue};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One aggregate bucket of one key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// Start of the bucket (aligned to the interval since 1970-01-01T00:00:00Z).
    pub timestamp: DateTime<Utc>,
    pub key: String,
    /// The aggregate; `null` when the bucket holds only text values.
    pub value: Option<f64>,
    /// Numeric points in the bucket.
    pub count: i64,
}

/// What a bucket holds of its points' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Avg,
    Min,
    Max,
    Sum,
    Count,
}

impl Function {
    /// `avg`, `min`, `max`, `sum` or `count`.
    pub fn parse(name: &str) -> Option<Function> {
        match name {
            "avg" => Some(Function::Avg),
            "min" => Some(Function::Min),
            "max" => Some(Function::Max),
            "sum" => Some(Function::Sum),
            "count" => Some(Function::Count),
            _ => None,
        }
    }

    /// Its name in queries and answers.
    pub fn name(self) -> &'static str {
        match self {
            Function::Avg => "avg",
            Function::Min => "min",
            Function::Max => "max",
            Function::Sum => "sum",
            Function::Count => "count",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Function::Avg => "AVG",
            Function::Min => "MIN",
            Function::Max => "MAX",
            Function::Sum => "SUM",
            Function::Count => "COUNT",
        }
    }
}

/// `function` of each key of a device per `interval` bucket over `[start, end)`, ordered by
/// bucket then key. `keys` empty: every key.
pub async fn aggregate(
    db: &impl ConnectionTrait,
    device_id: Uuid,
    keys: &[String],
    interval: Interval,
    function: Function,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    ascending: bool,
) -> Result<Vec<Bucket>, DbErr> {
    let backend = db.get_database_backend();
    // The n-th bound value: `$n` on PostgreSQL, `?n` on SQLite.
    let mark = |n: usize| match backend {
        DatabaseBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    };
    // Bucket start in epoch seconds (SQLite has no floor(); its integer division floors here).
    let bucket = match backend {
        DatabaseBackend::Postgres => {
            format!(
                "CAST(floor(extract(epoch FROM timestamp) / {s}) * {s} AS BIGINT)",
                s = mark(1)
            )
        }
        _ => format!(
            "(CAST(strftime('%s', timestamp) AS INTEGER) / {s}) * {s}",
            s = mark(1)
        ),
    };
    let mut sql = format!(
        "SELECT key, {bucket} AS bucket, \
         CAST({function}(value) AS DOUBLE PRECISION) AS value, COUNT(value) AS n FROM telemetry \
         WHERE device_id = {d} AND timestamp >= {from} AND timestamp < {to}",
        function = function.sql(),
        d = mark(2),
        from = mark(3),
        to = mark(4),
    );
    let mut values: Vec<SqlValue> = vec![
        interval.seconds.into(),
        device_id.into(),
        start.into(),
        end.into(),
    ];
    if !keys.is_empty() {
        let first = values.len() + 1;
        let marks: Vec<String> = (first..first + keys.len()).map(mark).collect();
        sql.push_str(&format!(" AND key IN ({})", marks.join(", ")));
        values.extend(keys.iter().map(|k| SqlValue::from(k.clone())));
    }
    let direction = if ascending { "ASC" } else { "DESC" };
    sql.push_str(&format!(
        " GROUP BY key, bucket ORDER BY bucket {direction}, key"
    ));
    let rows = db
        .query_all(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        let seconds: i64 = row.try_get("", "bucket")?;
        data.push(Bucket {
            timestamp: Utc.timestamp_opt(seconds, 0).single().unwrap_or_default(),
            key: row.try_get("", "key")?,
            value: row.try_get("", "value")?,
            count: row.try_get("", "n")?,
        });
    }
    Ok(data)
}

/// Buckets per key one aggregate request may produce; beyond, a coarser interval is suggested.
pub const MAX_BUCKETS: i64 = 10_000;

/// An aggregation interval such as `30s`, `5m`, `1h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub seconds: i64,
}

impl Interval {
    /// Parses `<n><unit>`, unit one of s, m, h, d, n at least 1.
    pub fn parse(text: &str) -> Option<Interval> {
        let text = text.trim();
        let unit = text.chars().last()?;
        let count: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return None,
        };
        let seconds = count.checked_mul(scale)?;
        (count >= 1 && seconds <= 366 * 86_400 * 100).then_some(Interval { seconds })
    }

    /// The shortest way to write it.
    pub fn label(self) -> String {
        let s = self.seconds;
        if s % 86_400 == 0 {
            format!("{}d", s / 86_400)
        } else if s % 3_600 == 0 {
            format!("{}h", s / 3_600)
        } else if s % 60 == 0 {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

/// Buckets of `interval` needed to cover `range`.
pub fn buckets(range: Duration, interval: Interval) -> i64 {
    let secs = range.num_seconds().max(0);
    (secs + interval.seconds - 1) / interval.seconds.max(1)
}

/// The finest usual interval that covers `range` within [`MAX_BUCKETS`].
pub fn suggest(range: Duration) -> Interval {
    const USUAL: [i64; 17] = [
        1, 5, 10, 15, 30, 60, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200, 86_400,
        604_800,
    ];
    USUAL
        .iter()
        .map(|&seconds| Interval { seconds })
        .find(|&interval| buckets(range, interval) <= MAX_BUCKETS)
        .unwrap_or_else(|| {
            let days =
                (range.num_seconds().max(1) + MAX_BUCKETS * 86_400 - 1) / (MAX_BUCKETS * 86_400);
            Interval {
                seconds: days.max(1) * 86_400,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_print() {
        assert_eq!(Interval::parse("1m"), Some(Interval { seconds: 60 }));
        assert_eq!(
            Interval::parse("90s").map(Interval::label),
            Some("90s".into())
        );
        assert_eq!(
            Interval::parse("120m").map(Interval::label),
            Some("2h".into())
        );
        assert_eq!(Interval::parse("1d").map(|i| i.seconds), Some(86_400));
        for bad in [
            "",
            "m",
            "0h",
            "-1h",
            "1w",
            "1.5h",
            "h1",
            "99999999999999999d",
        ] {
            assert_eq!(Interval::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_over_large_request_gets_a_coarser_suggestion() {
        let day = Duration::days(1);
        assert_eq!(buckets(day, Interval { seconds: 60 }), 1_440);
        assert_eq!(buckets(day, Interval { seconds: 1 }), 86_400);
        assert_eq!(suggest(day).label(), "10s");
        assert_eq!(suggest(Duration::days(365)).label(), "1h");
        assert_eq!(suggest(Duration::days(365 * 100)).label(), "7d");
        assert_eq!(suggest(Duration::days(365 * 1000)).label(), "37d");
        assert!(
            buckets(
                Duration::days(365 * 100),
                suggest(Duration::days(365 * 100))
            ) <= MAX_BUCKETS
        );
    }
}
