//! PDF (A4, the standard Helvetica fonts, nothing embedded): title, period, generation time, the
//! summary table, the alert table and, for telemetry, one line chart per key drawn from at most
//! [`CHART_BUCKETS`](super::CHART_BUCKETS) averages. Pages break as the content needs and are
//! numbered "page n of N".

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use insa_domain::Severity;
use pdf_writer::{Content, Date, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use sea_orm::DatabaseConnection;

use super::{AlertRows, Contents, Kind, Report, ReportError, CHART_BUCKETS};
use crate::query::{Function, Interval};

/// Alerts listed in a PDF; the CSV and Excel reports list them all.
const PDF_ALERTS: usize = 2_000;

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 48.0;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// Helvetica advance widths (1/1000 em) of the printable ASCII characters, space to `~`.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// Width of `text` in points (bold is about 5 % wider).
fn width(text: &str, size: f32, bold: bool) -> f32 {
    let em: u32 = text
        .chars()
        .map(|c| {
            let code = c as u32;
            if (32..127).contains(&code) {
                u32::from(HELVETICA[(code - 32) as usize])
            } else {
                556
            }
        })
        .sum();
    em as f32 * size / 1000.0 * if bold { 1.05 } else { 1.0 }
}

/// `text` cut with an ellipsis to fit `room` points.
fn fit(text: &str, size: f32, bold: bool, room: f32) -> String {
    if width(text, size, bold) <= room {
        return text.to_string();
    }
    let mut cut: String = text.to_string();
    while !cut.is_empty() && width(&cut, size, bold) + width("...", size, bold) > room {
        cut.pop();
    }
    cut + "..."
}

/// WinAnsi bytes of `text` (the encoding of the standard fonts); other characters become `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c as u32 {
            code @ (0x20..=0x7e | 0xa0..=0xff) => code as u8,
            0x20ac => 0x80,
            0x2026 => 0x85,
            0x2022 => 0x95,
            0x2013 => 0x96,
            0x2014 => 0x97,
            0x2019 => 0x92,
            _ => b'?',
        })
        .collect()
}

fn number(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v != 0.0 && (v.abs() >= 1e7 || v.abs() < 1e-3) => format!("{v:.3e}"),
        Some(v) => {
            let text = format!("{v:.3}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

/// A column of a table: heading, width, right-aligned or not.
struct Column {
    head: &'static str,
    width: f32,
    right: bool,
}

const fn col(head: &'static str, width: f32, right: bool) -> Column {
    Column { head, width, right }
}

/// Pages being laid out, top to bottom.
struct Doc {
    pages: Vec<Content>,
    y: f32,
}

impl Doc {
    fn new() -> Self {
        let mut doc = Doc {
            pages: Vec::new(),
            y: 0.0,
        };
        doc.page();
        doc
    }

    fn page(&mut self) {
        self.pages.push(Content::new());
        self.y = PAGE_H - MARGIN;
    }

    fn content(&mut self) -> &mut Content {
        if self.pages.is_empty() {
            self.page();
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Room for `height` points more, on a new page if need be.
    fn room(&mut self, height: f32) {
        if self.y - height < MARGIN + 14.0 {
            self.page();
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        let bytes = win_ansi(text);
        let content = self.content();
        content.begin_text();
        content.set_font(if bold { BOLD } else { REGULAR }, size);
        content.next_line(x, y);
        content.show(Str(&bytes));
        content.end_text();
    }

    /// A line of text at the cursor, which moves down.
    fn line(&mut self, size: f32, bold: bool, text: &str) {
        self.room(size * 1.5);
        self.y -= size * 1.4;
        let y = self.y;
        self.text(MARGIN, y, size, bold, text);
    }

    /// A section heading, kept with at least `first` points of what follows it.
    fn heading(&mut self, text: &str, first: f32) {
        self.room(30.0 + first);
        self.y -= 10.0;
        self.line(13.0, true, text);
        self.y -= 4.0;
    }

    fn table_head(&mut self, columns: &[Column]) {
        let y = self.y - 16.0;
        let total: f32 = columns.iter().map(|c| c.width).sum();
        let content = self.content();
        content.set_fill_rgb(0.87, 0.91, 0.94);
        content.rect(MARGIN, y - 4.0, total, 16.0);
        content.fill_nonzero();
        content.set_fill_gray(0.0);
        self.cells(
            y,
            columns,
            &columns
                .iter()
                .map(|c| c.head.to_string())
                .collect::<Vec<_>>(),
            true,
        );
        self.y = y - 4.0;
    }

    fn cells(&mut self, y: f32, columns: &[Column], values: &[String], bold: bool) {
        let mut x = MARGIN;
        for (column, value) in columns.iter().zip(values) {
            let text = fit(value, 9.0, bold, column.width - 6.0);
            let at = if column.right {
                x + column.width - 3.0 - width(&text, 9.0, bold)
            } else {
                x + 3.0
            };
            self.text(at, y, 9.0, bold, &text);
            x += column.width;
        }
    }

    /// A table, its heading repeated on every page it runs onto.
    fn table(&mut self, columns: &[Column], rows: impl IntoIterator<Item = Vec<String>>) {
        self.room(36.0);
        self.table_head(columns);
        for row in rows {
            if self.y - 14.0 < MARGIN + 14.0 {
                self.page();
                self.table_head(columns);
            }
            self.y -= 13.0;
            let y = self.y;
            self.cells(y, columns, &row, false);
            let total: f32 = columns.iter().map(|c| c.width).sum();
            let content = self.content();
            content.set_stroke_gray(0.85);
            content.set_line_width(0.4);
            content.move_to(MARGIN, y - 3.5);
            content.line_to(MARGIN + total, y - 3.5);
            content.stroke();
        }
        self.y -= 6.0;
    }

    /// A line chart of `points` (time, value) over `range`, `height` points tall.
    fn chart(
        &mut self,
        title: &str,
        points: &[(DateTime<Utc>, f64)],
        range: (DateTime<Utc>, DateTime<Utc>),
    ) {
        const HEIGHT: f32 = 150.0;
        self.room(HEIGHT + 40.0);
        self.y -= 16.0;
        let title_y = self.y;
        self.text(MARGIN, title_y, 10.0, true, title);
        let (left, right) = (MARGIN + 52.0, PAGE_W - MARGIN);
        let (top, bottom) = (self.y - 8.0, self.y - 8.0 - HEIGHT);
        let low = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let high = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let (low, high) = if !low.is_finite() {
            (0.0, 1.0)
        } else if low == high {
            (low - 1.0, high + 1.0)
        } else {
            // A little room so the line never runs along the frame.
            let pad = (high - low) * 0.06;
            (low - pad, high + pad)
        };
        let span = (range.1 - range.0).num_milliseconds().max(1) as f32;
        let x = |at: DateTime<Utc>| {
            left + (at - range.0).num_milliseconds() as f32 / span * (right - left)
        };
        let y = |v: f64| bottom + ((v - low) / (high - low)) as f32 * (top - bottom);
        {
            let content = self.content();
            content.set_stroke_gray(0.75);
            content.set_line_width(0.5);
            content.rect(left, bottom, right - left, top - bottom);
            content.stroke();
            content.set_stroke_gray(0.9);
            for i in 1..4 {
                let at = bottom + (top - bottom) * i as f32 / 4.0;
                content.move_to(left, at);
                content.line_to(right, at);
            }
            content.stroke();
        }
        for (value, at) in [
            (high, top),
            ((low + high) / 2.0, (top + bottom) / 2.0),
            (low, bottom),
        ] {
            let label = number(Some(value));
            self.text(
                left - 4.0 - width(&label, 8.0, false),
                at - 3.0,
                8.0,
                false,
                &label,
            );
        }
        let start = when(range.0);
        let end = when(range.1);
        self.text(left, bottom - 11.0, 8.0, false, &start);
        self.text(
            right - width(&end, 8.0, false),
            bottom - 11.0,
            8.0,
            false,
            &end,
        );
        if points.is_empty() {
            self.text(
                left + 8.0,
                (top + bottom) / 2.0,
                9.0,
                false,
                "no numeric values in the period",
            );
        } else {
            let content = self.content();
            content.set_stroke_rgb(0.12, 0.47, 0.8);
            content.set_line_width(1.2);
            for (i, (at, value)) in points.iter().enumerate() {
                if i == 0 {
                    content.move_to(x(*at), y(*value));
                } else {
                    content.line_to(x(*at), y(*value));
                }
            }
            if points.len() == 1 {
                let (px, py) = (x(points[0].0), y(points[0].1));
                content.rect(px - 1.5, py - 1.5, 3.0, 3.0);
            }
            content.stroke();
        }
        self.y = bottom - 22.0;
    }

    /// The finished file, every page numbered.
    fn finish(mut self, title: &str, generated: DateTime<Utc>) -> Vec<u8> {
        let total = self.pages.len();
        for n in 0..total {
            let footer = format!("insa-iiot - {title} - page {} of {total}", n + 1);
            let at = PAGE_W - MARGIN - width(&footer, 8.0, false);
            let bytes = win_ansi(&footer);
            let content = &mut self.pages[n];
            content.set_fill_gray(0.45);
            content.begin_text();
            content.set_font(REGULAR, 8.0);
            content.next_line(at, MARGIN - 20.0);
            content.show(Str(&bytes));
            content.end_text();
        }
        let mut pdf = Pdf::new();
        let catalog = Ref::new(1);
        let tree = Ref::new(2);
        let regular = Ref::new(3);
        let bold = Ref::new(4);
        let info = Ref::new(5);
        let first = 6;
        let page_ids: Vec<Ref> = (0..total).map(|i| Ref::new(first + 2 * i as i32)).collect();
        pdf.catalog(catalog).pages(tree);
        pdf.pages(tree)
            .kids(page_ids.iter().copied())
            .count(total as i32);
        pdf.type1_font(regular)
            .base_font(Name(b"Helvetica"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.type1_font(bold)
            .base_font(Name(b"Helvetica-Bold"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.document_info(info)
            .title(TextStr(title))
            .producer(TextStr(concat!("insa-iiot ", env!("CARGO_PKG_VERSION"))))
            .creation_date(
                Date::new(generated.year() as u16)
                    .month(generated.month() as u8)
                    .day(generated.day() as u8)
                    .hour(generated.hour() as u8)
                    .minute(generated.minute() as u8)
                    .second(generated.second() as u8)
                    .utc_offset_hour(0),
            );
        for (i, content) in self.pages.into_iter().enumerate() {
            let page_id = page_ids[i];
            let content_id = Ref::new(page_id.get() + 1);
            let mut page = pdf.page(page_id);
            page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
            page.parent(tree);
            page.contents(content_id);
            page.resources()
                .fonts()
                .pair(REGULAR, regular)
                .pair(BOLD, bold);
            page.finish();
            pdf.stream(content_id, &content.finish());
        }
        pdf.finish()
    }
}

pub async fn write(
    db: &DatabaseConnection,
    report: &Report,
    contents: &Contents,
) -> Result<Vec<u8>, ReportError> {
    let mut doc = Doc::new();
    let title = report.title();
    doc.line(18.0, true, &title);
    doc.y -= 4.0;
    doc.line(10.0, false, &format!("Period: {}", report.period()));
    doc.line(
        10.0,
        false,
        &format!(
            "Generated: {}",
            report.generated_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    );
    let names: Vec<&str> = report.devices.iter().map(|d| d.name.as_str()).collect();
    let devices = if names.len() <= 6 {
        names.join(", ")
    } else {
        format!("{} devices", names.len())
    };
    doc.line(10.0, false, &format!("Devices: {devices}"));
    let counts = &contents.alerts_by_severity;
    let count = |s: Severity| counts.get(&s).copied().unwrap_or(0);
    doc.line(
        10.0,
        false,
        &format!(
            "Alerts: {} critical, {} warning, {} info",
            count(Severity::Critical),
            count(Severity::Warning),
            count(Severity::Info)
        ),
    );

    if report.kind == Kind::Telemetry {
        doc.heading("Summary", 50.0);
        let columns = [
            col("Device", 130.0, false),
            col("Key", 90.0, false),
            col("Unit", 45.0, false),
            col("Points", 55.0, true),
            col("Min", 60.0, true),
            col("Max", 60.0, true),
            col("Average", 59.0, true),
        ];
        doc.table(
            &columns,
            contents.stats.iter().map(|s| {
                vec![
                    report.device_name(s.device_id),
                    s.key.clone(),
                    s.unit.clone().unwrap_or_default(),
                    s.count.to_string(),
                    number(s.min),
                    number(s.max),
                    number(s.avg),
                ]
            }),
        );
    }

    let total_alerts: u64 = counts.values().sum();
    doc.heading("Alerts", 40.0);
    let mut listed = Vec::new();
    let mut rows = AlertRows::new(report);
    while listed.len() < PDF_ALERTS {
        let Some(alert) = rows.next(db).await? else {
            break;
        };
        listed.push(vec![
            when(alert.created_at),
            report.device_name(alert.device_id),
            alert.severity.as_str().into(),
            alert.status.as_str().into(),
            alert.message,
        ]);
    }
    if listed.is_empty() {
        doc.line(10.0, false, "No alerts in the period.");
    } else {
        let columns = [
            col("Raised (UTC)", 82.0, false),
            col("Device", 100.0, false),
            col("Severity", 52.0, false),
            col("Status", 70.0, false),
            col("Message", 195.0, false),
        ];
        doc.table(&columns, listed);
        if total_alerts > PDF_ALERTS as u64 {
            doc.line(
                9.0,
                false,
                &format!("The first {PDF_ALERTS} of {total_alerts} alerts; the CSV and Excel reports list them all."),
            );
        }
    }

    if report.kind == Kind::Telemetry {
        doc.heading("Charts", 200.0);
        let range = (report.start, report.end);
        let step = ((report.end - report.start).num_seconds() + CHART_BUCKETS - 1) / CHART_BUCKETS;
        let interval = Interval {
            seconds: step.max(1),
        };
        for stats in contents.stats.iter().filter(|s| s.min.is_some()) {
            let buckets = crate::query::aggregate(
                db,
                stats.device_id,
                std::slice::from_ref(&stats.key),
                interval,
                Function::Avg,
                range,
                true,
            )
            .await?;
            // Each average drawn at the middle of its bucket.
            let half = Duration::seconds(interval.seconds / 2);
            let points: Vec<(DateTime<Utc>, f64)> = buckets
                .iter()
                .filter_map(|b| {
                    b.value
                        .map(|v| ((b.timestamp + half).clamp(range.0, range.1), v))
                })
                .collect();
            let unit = stats
                .unit
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default();
            let title = format!(
                "{} - {}{unit}",
                report.device_name(stats.device_id),
                stats.key
            );
            doc.chart(&title, &points, range);
        }
    }
    Ok(doc.finish(&title, report.generated_at))
}
