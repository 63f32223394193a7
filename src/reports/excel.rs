//! Excel (.xlsx): a summary sheet, then the data: one sheet per device (a row per timestamp, a
//! column per key with its unit in the header) for telemetry, or one sheet of alerts. Dates are
//! date cells (UTC), header rows frozen, columns sized. Data sheets use constant-memory mode
//! (rows stream to a temporary file); a device with more rows than Excel's limit continues on
//! a sheet named "<device> (2)".

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use insa_domain::Severity;
use rust_xlsxwriter::{
    Color, ExcelDateTime, Format as CellFormat, FormatBorder, Workbook, Worksheet, XlsxError,
};
use sea_orm::DatabaseConnection;

use super::{AlertRows, Contents, DeviceRows, Kind, Progress, Report, ReportError, Row};

/// Rows per sheet in Excel, the header included.
const EXCEL_ROWS: u32 = 1_048_576;

struct Styles {
    title: CellFormat,
    bold: CellFormat,
    header: CellFormat,
    date: CellFormat,
    number: CellFormat,
}

impl Styles {
    fn new() -> Self {
        Self {
            title: CellFormat::new().set_bold().set_font_size(14),
            bold: CellFormat::new().set_bold(),
            header: CellFormat::new()
                .set_bold()
                .set_background_color(Color::RGB(0xDDE7F0))
                .set_border_bottom(FormatBorder::Thin),
            date: CellFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            number: CellFormat::new().set_num_format("0.###"),
        }
    }
}

/// An Excel serial date-time (days since 1899-12-30), to the millisecond.
fn excel_time(at: DateTime<Utc>) -> Result<ExcelDateTime, XlsxError> {
    ExcelDateTime::from_serial_datetime(at.timestamp_millis() as f64 / 86_400_000.0 + 25_569.0)
}

/// A sheet name Excel accepts (at most 31 UTF-16 units, none of `[]:*?/\`), unique in the book.
fn sheet_name(base: &str, used: &mut HashSet<String>) -> String {
    let clean: String = base
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { '_' } else { c })
        .collect();
    let clean = clean.trim_matches('\'').trim();
    let clean = if clean.is_empty() { "Device" } else { clean };
    for n in 1.. {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!(" ({n})")
        };
        // Excel counts UTF-16 units (an emoji is two), and refuses the whole book past 31.
        let mut room = 31 - suffix.encode_utf16().count();
        let name: String = clean
            .chars()
            .take_while(|c| {
                let fits = c.len_utf16() <= room;
                room = room.saturating_sub(c.len_utf16());
                fits
            })
            .collect::<String>()
            + &suffix;
        if used.insert(name.to_lowercase()) {
            return name;
        }
    }
    unreachable!("some suffix is always free")
}

pub async fn write(
    db: &DatabaseConnection,
    report: &Report,
    contents: &Contents,
    path: &Path,
    progress: &Progress,
) -> Result<(), ReportError> {
    let styles = Styles::new();
    let mut workbook = Workbook::new();
    let mut used = HashSet::from(["summary".to_string()]);
    summary(workbook.add_worksheet(), report, contents, &styles)?;
    match report.kind {
        Kind::Telemetry => {
            for device in &report.devices {
                device_sheets(
                    db,
                    &mut workbook,
                    report,
                    contents,
                    device,
                    &mut used,
                    &styles,
                    progress,
                )
                .await?;
            }
        }
        Kind::Alerts => alert_sheet(db, &mut workbook, report, &styles, progress).await?,
    }
    // Zipping the sheets is the one long CPU step: off the async threads.
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || workbook.save(path))
        .await
        .map_err(|err| ReportError::Other(format!("excel task: {err}")))??;
    Ok(())
}

fn summary(
    sheet: &mut Worksheet,
    report: &Report,
    contents: &Contents,
    styles: &Styles,
) -> Result<(), XlsxError> {
    sheet.set_name("Summary")?;
    sheet.write_string_with_format(0, 0, report.title(), &styles.title)?;
    sheet.write_string_with_format(1, 0, "Period", &styles.bold)?;
    sheet.write_string(1, 1, report.period())?;
    sheet.write_string_with_format(2, 0, "Generated (UTC)", &styles.bold)?;
    sheet.write_datetime_with_format(2, 1, excel_time(report.generated_at)?, &styles.date)?;
    sheet.write_string_with_format(3, 0, "Devices", &styles.bold)?;
    sheet.write_number(3, 1, report.devices.len() as f64)?;
    let mut row = 5;
    if report.kind == Kind::Telemetry {
        sheet.write_string_with_format(4, 0, "Values", &styles.bold)?;
        sheet.write_string(
            4,
            1,
            match report.aggregation {
                Some(a) => format!("{} per {}", a.function.name(), a.interval.label()),
                None => "every point".into(),
            },
        )?;
        row = 6;
        let heads = [
            "Device", "Area", "Key", "Unit", "Points", "Min", "Max", "Average",
        ];
        for (col, head) in heads.iter().enumerate() {
            sheet.write_string_with_format(row, col as u16, *head, &styles.header)?;
        }
        for stats in &contents.stats {
            row += 1;
            let device = report.devices.iter().find(|d| d.id == stats.device_id);
            sheet.write_string(row, 0, report.device_name(stats.device_id))?;
            sheet.write_string(
                row,
                1,
                device.and_then(|d| d.area.clone()).unwrap_or_default(),
            )?;
            sheet.write_string(row, 2, &stats.key)?;
            sheet.write_string(row, 3, stats.unit.clone().unwrap_or_default())?;
            sheet.write_number(row, 4, stats.count as f64)?;
            for (col, value) in [(5, stats.min), (6, stats.max), (7, stats.avg)] {
                if let Some(value) = value {
                    sheet.write_number_with_format(row, col, value, &styles.number)?;
                }
            }
        }
        row += 2;
    }
    sheet.write_string_with_format(row, 0, "Severity", &styles.header)?;
    sheet.write_string_with_format(row, 1, "Alerts", &styles.header)?;
    for severity in Severity::ALL.into_iter().rev() {
        row += 1;
        sheet.write_string(row, 0, severity.as_str())?;
        let count = contents
            .alerts_by_severity
            .get(&severity)
            .copied()
            .unwrap_or(0);
        sheet.write_number(row, 1, count as f64)?;
    }
    for (col, width) in [24, 30, 18, 10, 10, 12, 12, 12].into_iter().enumerate() {
        sheet.set_column_width(col as u16, width)?;
    }
    Ok(())
}

/// A new constant-memory sheet with its header row written and frozen.
fn data_sheet<'a>(
    workbook: &'a mut Workbook,
    name: String,
    heads: &[String],
    widths: &[f64],
    styles: &Styles,
) -> Result<&'a mut Worksheet, XlsxError> {
    let sheet = workbook.add_worksheet_with_constant_memory()?;
    sheet.set_name(name)?;
    for (col, width) in widths.iter().enumerate() {
        sheet.set_column_width(col as u16, *width)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    for (col, head) in heads.iter().enumerate() {
        sheet.write_string_with_format(0, col as u16, head, &styles.header)?;
    }
    Ok(sheet)
}

#[allow(clippy::too_many_arguments)]
async fn device_sheets(
    db: &DatabaseConnection,
    workbook: &mut Workbook,
    report: &Report,
    contents: &Contents,
    device: &insa_entities::devices::Model,
    used: &mut HashSet<String>,
    styles: &Styles,
    progress: &Progress,
) -> Result<(), ReportError> {
    let keys = contents.keys_of(device.id);
    let mut heads = vec!["Timestamp (UTC)".to_string()];
    heads.extend(keys.iter().map(|k| match (&k.unit, report.aggregation) {
        (Some(unit), Some(a)) => format!("{} ({unit}, {})", k.key, a.function.name()),
        (None, Some(a)) => format!("{} ({})", k.key, a.function.name()),
        (Some(unit), None) => format!("{} ({unit})", k.key),
        (None, None) => k.key.clone(),
    }));
    let mut widths = vec![20.0];
    widths.extend(
        heads[1..]
            .iter()
            .map(|h| (h.chars().count() as f64 + 2.0).max(12.0)),
    );
    let column = |key: &str| keys.iter().position(|k| k.key == key).map(|i| i as u16 + 1);

    let mut sheet = data_sheet(
        workbook,
        sheet_name(&device.name, used),
        &heads,
        &widths,
        styles,
    )?;
    let mut rows = DeviceRows::open(db, report, contents, device.id).await?;
    let mut line: u32 = 0;
    // The row being filled: its time and the columns set so far.
    let mut current: Option<DateTime<Utc>> = None;
    let mut filled: HashSet<u16> = HashSet::new();
    while let Some(Row {
        timestamp,
        key,
        value,
        text,
        ..
    }) = rows.next(db).await?
    {
        let Some(col) = column(&key) else { continue };
        if current != Some(timestamp) || filled.contains(&col) {
            line += 1;
            if line == EXCEL_ROWS {
                sheet = data_sheet(
                    workbook,
                    sheet_name(&device.name, used),
                    &heads,
                    &widths,
                    styles,
                )?;
                line = 1;
            }
            sheet.write_datetime_with_format(line, 0, excel_time(timestamp)?, &styles.date)?;
            current = Some(timestamp);
            filled.clear();
        }
        filled.insert(col);
        match (value, text) {
            (Some(value), _) => {
                sheet.write_number(line, col, value)?;
            }
            (None, Some(text)) => {
                sheet.write_string(line, col, text)?;
            }
            (None, None) => {}
        }
        progress.add(1);
    }
    Ok(())
}

async fn alert_sheet(
    db: &DatabaseConnection,
    workbook: &mut Workbook,
    report: &Report,
    styles: &Styles,
    progress: &Progress,
) -> Result<(), ReportError> {
    let heads: Vec<String> = [
        "Raised (UTC)",
        "Device",
        "Severity",
        "Status",
        "Message",
        "Value",
        "Threshold",
        "Acknowledged by",
        "Acknowledged (UTC)",
        "Resolved (UTC)",
    ]
    .map(String::from)
    .to_vec();
    let widths = [20.0, 24.0, 10.0, 14.0, 48.0, 10.0, 10.0, 24.0, 20.0, 20.0];
    let sheet = data_sheet(workbook, "Alerts".into(), &heads, &widths, styles)?;
    let mut rows = AlertRows::new(report);
    let mut line = 0;
    while let Some(alert) = rows.next(db).await? {
        line += 1;
        sheet.write_datetime_with_format(line, 0, excel_time(alert.created_at)?, &styles.date)?;
        sheet.write_string(line, 1, report.device_name(alert.device_id))?;
        sheet.write_string(line, 2, alert.severity.as_str())?;
        sheet.write_string(line, 3, alert.status.as_str())?;
        sheet.write_string(line, 4, &alert.message)?;
        if let Some(value) = alert.value {
            sheet.write_number(line, 5, value)?;
        }
        if let Some(threshold) = alert.threshold {
            sheet.write_number(line, 6, threshold)?;
        }
        if let Some(by) = &alert.acknowledged_by {
            sheet.write_string(line, 7, by)?;
        }
        for (col, at) in [(8, alert.acknowledged_at), (9, alert.resolved_at)] {
            if let Some(at) = at {
                sheet.write_datetime_with_format(line, col, excel_time(at)?, &styles.date)?;
            }
        }
        progress.add(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_fit_in_31_utf16_units_and_stay_unique() {
        let mut used = HashSet::new();
        let fire = "🔥".repeat(20);
        let first = sheet_name(&fire, &mut used);
        assert_eq!(first, "🔥".repeat(15));
        let second = sheet_name(&fire, &mut used);
        assert_eq!(second, "🔥".repeat(13) + " (2)");
        for name in [first, second] {
            assert!(name.encode_utf16().count() <= 31, "{name}");
        }
        assert_eq!(sheet_name("a/b", &mut used), "a_b");
    }
}
