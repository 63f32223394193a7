//! CSV (RFC 4180: comma-separated, CRLF line ends, quotes where needed), written as rows are read:
//! to a file, or to an HTTP response through a bounded channel (constant memory either way).

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::DatabaseConnection;
use tokio::io::AsyncWriteExt;

use super::{AlertRows, Contents, DeviceRows, Kind, Progress, Report, ReportError};

/// Rows buffered before they are handed on.
const CHUNK_ROWS: u64 = 2_000;

/// Where the CSV goes.
pub enum Out {
    File(tokio::io::BufWriter<tokio::fs::File>),
    /// An HTTP response body; a full channel holds the writer back (back-pressure).
    Stream(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>),
}

impl Out {
    async fn put(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self {
            Out::File(file) => file.write_all(&bytes).await,
            Out::Stream(channel) => channel.send(Ok(bytes)).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            }),
        }
    }

    pub async fn finish(self) -> std::io::Result<()> {
        match self {
            Out::File(mut file) => file.flush().await,
            Out::Stream(_) => Ok(()),
        }
    }
}

/// A text cell that a spreadsheet will show as text, never run: one starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return gets a leading `'` (OWASP's advice against CSV injection).
/// Only text goes through here: numbers are written as numbers (a negative one stays a number).
pub fn text_cell(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

pub fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// CSV lines, handed on every [`CHUNK_ROWS`] rows (progress counted with them).
struct Lines<'a> {
    writer: csv::Writer<Vec<u8>>,
    pending: u64,
    out: &'a mut Out,
    progress: &'a Progress,
}

impl<'a> Lines<'a> {
    fn new(out: &'a mut Out, progress: &'a Progress, header: &[&str]) -> Result<Self, ReportError> {
        let mut lines = Lines {
            writer: crlf(),
            pending: 0,
            out,
            progress,
        };
        lines.writer.write_record(header).map_err(csv_error)?;
        Ok(lines)
    }

    async fn row<I, T>(&mut self, record: I) -> Result<(), ReportError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.writer.write_record(record).map_err(csv_error)?;
        self.pending += 1;
        if self.pending == CHUNK_ROWS {
            self.drain().await?;
        }
        Ok(())
    }

    /// Hands the buffered rows on; writing goes on with a fresh buffer.
    async fn drain(&mut self) -> Result<(), ReportError> {
        let full = std::mem::replace(&mut self.writer, crlf());
        let bytes = full
            .into_inner()
            .map_err(|err| ReportError::Other(format!("csv: {err}")))?;
        self.out.put(bytes).await?;
        self.progress.add(std::mem::take(&mut self.pending));
        Ok(())
    }
}

fn crlf() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

fn csv_error(err: csv::Error) -> ReportError {
    ReportError::Other(format!("csv: {err}"))
}

pub async fn write(
    db: &DatabaseConnection,
    report: &Report,
    contents: &Contents,
    out: &mut Out,
    progress: &Progress,
) -> Result<(), ReportError> {
    match report.kind {
        Kind::Telemetry => telemetry(db, report, contents, out, progress).await,
        Kind::Alerts => alerts(db, report, out, progress).await,
    }
}

async fn telemetry(
    db: &DatabaseConnection,
    report: &Report,
    contents: &Contents,
    out: &mut Out,
    progress: &Progress,
) -> Result<(), ReportError> {
    let header: &[&str] = match report.aggregation {
        None => &[
            "timestamp",
            "device_id",
            "device",
            "key",
            "value",
            "unit",
            "quality",
            "text",
        ],
        Some(aggregation) => &[
            "timestamp",
            "device_id",
            "device",
            "key",
            aggregation.function.name(),
            "unit",
            "count",
        ],
    };
    let mut lines = Lines::new(out, progress, header)?;
    for device in &report.devices {
        let id = device.id.to_string();
        let mut rows = DeviceRows::open(db, report, contents, device.id).await?;
        while let Some(row) = rows.next(db).await? {
            let mut record = vec![
                time(row.timestamp),
                id.clone(),
                text_cell(device.name.clone()),
                text_cell(row.key),
                row.value.map(|v| v.to_string()).unwrap_or_default(),
                text_cell(row.unit.unwrap_or_default()),
            ];
            match report.aggregation {
                None => record.extend([
                    row.quality.map(|q| q.to_string()).unwrap_or_default(),
                    text_cell(row.text.unwrap_or_default()),
                ]),
                Some(_) => record.push(row.count.unwrap_or_default().to_string()),
            }
            lines.row(&record).await?;
        }
    }
    lines.drain().await
}

async fn alerts(
    db: &DatabaseConnection,
    report: &Report,
    out: &mut Out,
    progress: &Progress,
) -> Result<(), ReportError> {
    let mut lines = Lines::new(
        out,
        progress,
        &[
            "raised_at",
            "alert_id",
            "device_id",
            "device",
            "severity",
            "status",
            "message",
            "value",
            "threshold",
            "acknowledged_by",
            "acknowledged_at",
            "resolved_at",
        ],
    )?;
    let mut rows = AlertRows::new(report);
    let number = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let when = |v: Option<DateTime<Utc>>| v.map(time).unwrap_or_default();
    while let Some(alert) = rows.next(db).await? {
        lines
            .row([
                time(alert.created_at),
                alert.id.to_string(),
                alert.device_id.to_string(),
                text_cell(report.device_name(alert.device_id)),
                alert.severity.as_str().into(),
                alert.status.as_str().into(),
                text_cell(alert.message),
                number(alert.value),
                number(alert.threshold),
                text_cell(alert.acknowledged_by.unwrap_or_default()),
                when(alert.acknowledged_at),
                when(alert.resolved_at),
            ])
            .await?;
    }
    lines.drain().await
}

#[cfg(test)]
mod tests {
    use super::text_cell;

    #[test]
    fn text_that_a_spreadsheet_would_run_is_quoted() {
        for risky in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(text_cell(risky.into()), format!("'{risky}"));
        }
        for plain in ["pressure", "", "bar", "1-2", "a=b"] {
            assert_eq!(text_cell(plain.into()), plain);
        }
    }
}
