//! Reports opened with independent readers (csv, calamine, pdf-extract, zip) and checked against
//! what was stored.

use std::io::{Cursor, Read};

use calamine::{Data, DataType, Reader, Xlsx};
use chrono::{DateTime, Duration, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, As, TestApp};

/// A small site with known readings over the last hour: (token, wellhead id, separator id,
/// report start, report end).
struct Site {
    token: String,
    wellhead: String,
    separator: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// The wellhead's reading times, oldest first.
    times: Vec<DateTime<Utc>>,
}

const PRESSURES: [f64; 6] = [80.5, 82.0, 90.25, 85.0, 79.5, 88.0];
const TEMPERATURES: [f64; 6] = [60.0, 61.5, 63.0, 62.0, 61.0, 64.5];

async fn site(app: &TestApp) -> Site {
    let token = app.admin_token().await;
    let wellhead = app
        .create_device_id(
            &token,
            json!({"name": "Wellhead 7", "type": "pressure", "area": "North", "location": "Pad 2"}),
        )
        .await;
    let separator = app
        .create_device_id(
            &token,
            json!({"name": "Separator V-101", "type": "level", "area": "North",
                   "config": {"alert_threshold": 90}}),
        )
        .await;
    let now = Utc::now()
        .duration_trunc(Duration::seconds(1))
        .expect("whole seconds");
    let start = now - Duration::hours(1);
    let times: Vec<DateTime<Utc>> = (0..6)
        .map(|i| start + Duration::minutes(5 + 10 * i))
        .collect();
    let records: Vec<Value> = times
        .iter()
        .enumerate()
        .map(|(i, at)| {
            json!({"timestamp": at.to_rfc3339(), "telemetry": {
                "pressure": {"value": PRESSURES[i], "unit": "bar"},
                "temperature": {"value": TEMPERATURES[i], "unit": "°C"},
                "mode": if i % 2 == 0 { "RUNNING" } else { "IDLE" }}})
        })
        .collect();
    let stored = app
        .post(
            "/api/v1/telemetry",
            As::Bearer(&token),
            &json!({"device_id": wellhead, "records": records}),
        )
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{stored:?}");
    // The separator's last level breaks its threshold: one warning alert.
    for (minutes, level) in [(15, 70.0), (35, 95.5)] {
        let stored = app
            .post(
                "/api/v1/telemetry",
                As::Bearer(&token),
                &json!({"device_id": separator, "timestamp": (start + Duration::minutes(minutes)).to_rfc3339(),
                        "telemetry": {"level": {"value": level, "unit": "%"}}}),
            )
            .await;
        assert_eq!(stored.status, StatusCode::CREATED, "{stored:?}");
    }
    crate::helpers::eventually(std::time::Duration::from_secs(10), "the alert", || async {
        let alerts = app.get("/api/v1/alerts", As::Bearer(&token)).await;
        (alerts.body["total"] == 1).then_some(())
    })
    .await;
    Site {
        token,
        wellhead,
        separator,
        start,
        end: now + Duration::minutes(1),
        times,
    }
}

/// The report's bytes and its headers.
async fn download(
    app: &TestApp,
    token: &str,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

/// Waits until the report job `id` has `status` (`done` or `failed`); the job.
async fn job_ending(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    crate::helpers::eventually(
        std::time::Duration::from_secs(20),
        &format!("the job {status}"),
        || async {
            let job = app
                .get(&format!("/api/v1/reports/{id}"), As::Bearer(token))
                .await;
            (job.body["status"] == status).then_some(job.body)
        },
    )
    .await
}

/// A CSV body read with the csv crate: its header and its records.
fn csv_table(body: &[u8]) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_reader(body);
    let heads = reader
        .headers()
        .expect("headers")
        .iter()
        .map(String::from)
        .collect();
    let rows = reader.records().map(|r| r.expect("a record")).collect();
    (heads, rows)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn period(site: &Site) -> String {
    format!(
        "start={}&end={}",
        site.start.to_rfc3339().replace('+', "%2B"),
        site.end.to_rfc3339().replace('+', "%2B")
    )
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[actix_web::test]
async fn a_csv_report_lists_every_point_in_time_order_with_the_period_in_its_name() {
    let app = spawn_app().await;
    let site = site(&app).await;
    let path = format!(
        "/api/v1/reports/telemetry?device_id={}&device_id={}&{}&format=csv",
        site.wellhead,
        site.separator,
        period(&site)
    );
    let (status, headers, body) = download(&app, &site.token, &path).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(header(&headers, "content-type").starts_with("text/csv"));
    let name = format!(
        "telemetry-report_{}_{}.csv",
        site.start.format("%Y-%m-%d"),
        site.end.format("%Y-%m-%d")
    );
    assert_eq!(
        header(&headers, "content-disposition"),
        format!("attachment; filename=\"{name}\"")
    );
    assert!(body.windows(2).any(|w| w == b"\r\n"), "RFC 4180 line ends");

    let (heads, rows) = csv_table(&body);
    assert_eq!(
        heads,
        [
            "timestamp",
            "device_id",
            "device",
            "key",
            "value",
            "unit",
            "quality",
            "text"
        ]
    );
    // 6 readings x 3 keys for the wellhead, 2 for the separator.
    assert_eq!(rows.len(), 6 * 3 + 2);
    let pressures: Vec<f64> = rows
        .iter()
        .filter(|r| &r[2] == "Wellhead 7" && &r[3] == "pressure")
        .map(|r| r[4].parse().expect("a number"))
        .collect();
    assert_eq!(pressures, PRESSURES);
    let modes: Vec<&str> = rows
        .iter()
        .filter(|r| &r[3] == "mode")
        .map(|r| &r[7])
        .collect();
    assert_eq!(
        modes,
        ["RUNNING", "IDLE", "RUNNING", "IDLE", "RUNNING", "IDLE"]
    );
    let wellhead_times: Vec<DateTime<Utc>> = rows
        .iter()
        .filter(|r| &r[1] == site.wellhead.as_str())
        .map(|r| r[0].parse().expect("RFC 3339"))
        .collect();
    assert!(
        wellhead_times.windows(2).all(|w| w[0] <= w[1]),
        "time order"
    );
    assert_eq!(wellhead_times.first(), site.times.first());
    let level = rows
        .iter()
        .find(|r| &r[2] == "Separator V-101")
        .expect("the separator's rows");
    assert_eq!((&level[3], &level[4], &level[5]), ("level", "70", "%"));
}

#[actix_web::test]
async fn an_excel_report_has_a_summary_and_a_sheet_per_device_with_date_cells() {
    let app = spawn_app().await;
    let site = site(&app).await;
    let path = format!(
        "/api/v1/reports/telemetry?area=North&{}&format=xlsx",
        period(&site)
    );
    let (status, headers, body) = download(&app, &site.token, &path).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        header(&headers, "content-type"),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(header(&headers, "content-disposition").contains(".xlsx\""));

    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(body)).expect("an xlsx");
    assert_eq!(
        book.sheet_names(),
        ["Summary", "Separator V-101", "Wellhead 7"]
    );

    let summary = book.worksheet_range("Summary").expect("summary");
    let find = |key: &str| {
        summary
            .rows()
            .find(|row| row.get(2) == Some(&Data::String(key.into())))
            .unwrap_or_else(|| panic!("a summary row for {key}"))
            .to_vec()
    };
    let pressure = find("pressure");
    assert_eq!(pressure[0], Data::String("Wellhead 7".into()));
    assert_eq!(pressure[3], Data::String("bar".into()));
    assert_eq!(pressure[4].as_f64(), Some(6.0));
    assert_eq!(pressure[5].as_f64(), Some(79.5));
    assert_eq!(pressure[6].as_f64(), Some(90.25));
    assert!((pressure[7].as_f64().expect("a number") - mean(&PRESSURES)).abs() < 1e-9);
    let warnings = summary
        .rows()
        .find(|row| row.first() == Some(&Data::String("warning".into())))
        .expect("alerts by severity");
    assert_eq!(warnings[1].as_f64(), Some(1.0));

    let sheet = book
        .worksheet_range("Wellhead 7")
        .expect("the device sheet");
    let rows: Vec<&[Data]> = sheet.rows().collect();
    assert_eq!(
        rows[0],
        [
            Data::String("Timestamp (UTC)".into()),
            Data::String("mode".into()),
            Data::String("pressure (bar)".into()),
            Data::String("temperature (°C)".into()),
        ]
    );
    assert_eq!(rows.len(), 1 + 6, "one row per reading time");
    for (i, row) in rows[1..].iter().enumerate() {
        let at = row[0].as_datetime().expect("a date cell").and_utc();
        assert_eq!(at, site.times[i]);
        assert_eq!(row[2].as_f64(), Some(PRESSURES[i]));
        assert_eq!(row[3].as_f64(), Some(TEMPERATURES[i]));
    }
    assert_eq!(rows[1][1], Data::String("RUNNING".into()));
}

#[actix_web::test]
async fn a_pdf_report_has_the_summary_the_alerts_and_a_chart_per_key() {
    let app = spawn_app().await;
    let site = site(&app).await;
    let path = format!(
        "/api/v1/reports/telemetry?area=North&{}&format=pdf",
        period(&site)
    );
    let (status, headers, body) = download(&app, &site.token, &path).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "content-type"), "application/pdf");
    assert!(body.starts_with(b"%PDF-"));
    if let Some(dir) = std::env::var_os("INSA_SCREENSHOTS") {
        std::fs::write(std::path::Path::new(&dir).join("report-sample.pdf"), &body).expect("save");
    }
    let text = pdf_extract::extract_text_from_mem(&body).expect("readable text");
    for expected in [
        "Telemetry report",
        &format!("Period: {}", site.start.format("%Y-%m-%d %H:%M UTC")),
        "Wellhead 7",
        "Separator V-101",
        "90.25",
        "79.5",
        format!("{:.3}", mean(&PRESSURES)).trim_end_matches('0'),
        "level above alert_threshold",
        "Wellhead 7 - pressure (bar)",
        "Separator V-101 - level (%)",
        "page 1 of",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` is missing from:\n{text}"
        );
    }
}

#[actix_web::test]
async fn a_zip_report_holds_the_excel_pdf_and_csv_of_the_same_report() {
    let app = spawn_app().await;
    let site = site(&app).await;
    let path = format!(
        "/api/v1/reports/telemetry?device_id={}&{}&format=zip",
        site.wellhead,
        period(&site)
    );
    let (status, headers, body) = download(&app, &site.token, &path).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "content-type"), "application/zip");
    let stem = format!(
        "telemetry-report_{}_{}",
        site.start.format("%Y-%m-%d"),
        site.end.format("%Y-%m-%d")
    );
    let mut archive = zip::ZipArchive::new(Cursor::new(body)).expect("a zip");
    let mut names: Vec<String> = archive
        .file_names()
        .map(|n| n.expect("a name").to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("{stem}.csv"),
            format!("{stem}.pdf"),
            format!("{stem}.xlsx")
        ]
    );
    let mut csv_text = String::new();
    archive
        .by_name(&format!("{stem}.csv"))
        .expect("the csv")
        .read_to_string(&mut csv_text)
        .expect("text");
    assert_eq!(csv_text.lines().count(), 1 + 6 * 3);
    let mut xlsx = Vec::new();
    archive
        .by_name(&format!("{stem}.xlsx"))
        .expect("the xlsx")
        .read_to_end(&mut xlsx)
        .expect("bytes");
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(xlsx)).expect("an xlsx");
    assert_eq!(book.sheet_names(), ["Summary", "Wellhead 7"]);
    let mut pdf = Vec::new();
    archive
        .by_name(&format!("{stem}.pdf"))
        .expect("the pdf")
        .read_to_end(&mut pdf)
        .expect("bytes");
    assert!(pdf_extract::extract_text_from_mem(&pdf)
        .expect("text")
        .contains("Wellhead 7 - pressure (bar)"));
    let _ = book.worksheet_range("Wellhead 7").expect("its sheet");
}

#[actix_web::test]
async fn an_aggregated_report_has_one_row_per_bucket_and_key() {
    let app = spawn_app().await;
    let site = site(&app).await;
    // 30-minute averages: the readings at 5, 15, 25 min and at 35, 45, 55 min fall in two
    // buckets when the hour starts on a half hour; align the period so they do.
    let start = site
        .start
        .duration_trunc(Duration::minutes(30))
        .expect("aligned");
    let end = start + Duration::minutes(90);
    let path = format!(
        "/api/v1/reports/telemetry?device_id={}&key=pressure&interval=30m&agg=max&start={}&end={}",
        site.wellhead,
        start.to_rfc3339().replace('+', "%2B"),
        end.to_rfc3339().replace('+', "%2B"),
    );
    let (status, _, body) = download(&app, &site.token, &path).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (heads, rows) = csv_table(&body);
    assert_eq!(
        heads,
        [
            "timestamp",
            "device_id",
            "device",
            "key",
            "max",
            "unit",
            "count"
        ]
    );
    // Each reading lands in the 30-minute bucket that holds it.
    let mut expected: Vec<(DateTime<Utc>, f64, i64)> = Vec::new();
    for (at, value) in site.times.iter().zip(PRESSURES) {
        let bucket = at.duration_trunc(Duration::minutes(30)).expect("bucket");
        match expected.last_mut() {
            Some(last) if last.0 == bucket => {
                last.1 = last.1.max(value);
                last.2 += 1;
            }
            _ => expected.push((bucket, value, 1)),
        }
    }
    let got: Vec<(DateTime<Utc>, f64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r[0].parse().expect("time"),
                r[4].parse().expect("max"),
                r[6].parse().expect("count"),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(rows.iter().all(|r| &r[3] == "pressure" && &r[5] == "bar"));
}

#[actix_web::test]
async fn an_alert_report_lists_the_alerts_of_the_period() {
    let app = spawn_app().await;
    let site = site(&app).await;
    let (_, _, viewer) = app.user_with_role(&site.token, "viewer").await;
    let (status, headers, body) = download(
        &app,
        &viewer,
        &format!("/api/v1/reports/alerts?{}&format=csv", period(&site)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(header(&headers, "content-disposition").contains("alerts-report_"));
    let (_, rows) = csv_table(&body);
    assert_eq!(rows.len(), 1);
    let stored = app.get("/api/v1/alerts", As::Bearer(&site.token)).await;
    let alert = &stored.body["alerts"][0];
    assert_eq!(&rows[0][1], alert["id"].as_str().expect("id"));
    assert_eq!(&rows[0][3], "Separator V-101");
    assert_eq!(&rows[0][4], "warning");
    assert_eq!(&rows[0][5], "active");
    assert_eq!(&rows[0][7], "95.5");

    let (status, _, body) = download(
        &app,
        &viewer,
        &format!(
            "/api/v1/reports/alerts?{}&severity=critical&format=xlsx",
            period(&site)
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(body)).expect("an xlsx");
    assert_eq!(book.sheet_names(), ["Summary", "Alerts"]);
    let alerts = book.worksheet_range("Alerts").expect("the alerts sheet");
    assert_eq!(
        alerts.rows().count(),
        1,
        "only the header: no critical alerts"
    );
}

#[actix_web::test]
async fn reports_beyond_the_limits_are_refused_with_what_to_do() {
    let app = spawn_app_with(|settings| {
        settings.reports.max_sync_points = 10;
        settings.reports.max_points = 19;
    })
    .await;
    let site = site(&app).await;
    let base = format!(
        "/api/v1/reports/telemetry?device_id={}&{}",
        site.wellhead,
        period(&site)
    );
    // 18 points: CSV streams them; Excel at once would hold more than 10.
    let (status, _, _) = download(&app, &site.token, &format!("{base}&format=csv")).await;
    assert_eq!(status, StatusCode::OK);
    let refused = app
        .get(&format!("{base}&format=xlsx"), As::Bearer(&site.token))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "report_too_large");
    assert_eq!(refused.body["error"]["details"]["rows"], 18);
    assert_eq!(
        refused.body["error"]["details"]["job"],
        "POST /api/v1/reports"
    );
    // Both devices: 20 points, more than any report may hold.
    let refused = app
        .get(
            &format!(
                "/api/v1/reports/telemetry?area=North&{}&format=csv",
                period(&site)
            ),
            As::Bearer(&site.token),
        )
        .await;
    assert_eq!(refused.code(), "report_too_large", "{refused:?}");
    assert!(refused.body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("interval=1h&agg=avg")));
}

#[actix_web::test]
async fn bad_report_requests_get_clear_errors() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for (path, status, code) in [
        (
            "/api/v1/reports/telemetry",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/reports/telemetry?area=Nowhere",
            StatusCode::NOT_FOUND,
            "device_not_found",
        ),
        (
            "/api/v1/reports/telemetry?device_id=00000000-0000-0000-0000-000000000001",
            StatusCode::NOT_FOUND,
            "device_not_found",
        ),
        (
            "/api/v1/reports/telemetry?area=North&format=docx",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/reports/alerts?start=2026-11-27T00:00:00Z&end=2026-11-26T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/reports/alerts?key=pressure",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/reports/alerts?severity=urgent",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
    ] {
        let reply = app.get(path, As::Bearer(&token)).await;
        assert_eq!(reply.status, status, "{path}: {reply:?}");
        assert_eq!(reply.code(), code, "{path}");
    }
    let reply = app.get("/api/v1/reports/alerts", As::Nobody).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn a_report_too_large_to_answer_at_once_runs_as_a_job_with_progress_and_a_download() {
    let app = spawn_app_with(|settings| settings.reports.max_sync_points = 5).await;
    let site = site(&app).await;
    let body = json!({"kind": "telemetry", "format": "xlsx", "device_id": [site.wellhead],
                      "start": site.start, "end": site.end});
    let queued = app
        .post("/api/v1/reports", As::Bearer(&site.token), &body)
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{queued:?}");
    let id = queued.body["id"].as_str().expect("id").to_string();
    assert_eq!(
        queued.header("location"),
        Some(format!("/api/v1/reports/{id}").as_str())
    );
    assert_eq!(queued.body["rows"], 18);
    assert!(["queued", "running"].contains(&queued.body["status"].as_str().unwrap_or("")));

    let done = job_ending(&app, &site.token, &id, "done").await;
    assert_eq!(done["progress"], 100);
    assert_eq!(done["rows_done"], 18);
    assert_eq!(
        done["download"],
        format!("/api/v1/reports/{id}/download").as_str()
    );
    assert!(done["expires_at"].is_string());
    let listed = app.get("/api/v1/reports", As::Bearer(&site.token)).await;
    assert_eq!(listed.body["reports"][0]["id"], id.as_str());

    let (status, headers, body) =
        download(&app, &site.token, &format!("/api/v1/reports/{id}/download")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "content-disposition"),
        format!(
            "attachment; filename=\"telemetry-report_{}_{}.xlsx\"",
            site.start.format("%Y-%m-%d"),
            site.end.format("%Y-%m-%d")
        )
    );
    assert_eq!(done["file_size"], body.len());
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(body)).expect("an xlsx");
    let sheet = book
        .worksheet_range("Wellhead 7")
        .expect("the device sheet");
    let pressures: Vec<f64> = sheet.rows().skip(1).filter_map(|r| r[2].as_f64()).collect();
    assert_eq!(pressures, PRESSURES);
}

#[actix_web::test]
async fn a_job_not_finished_cannot_be_downloaded_and_says_how_far_it_is() {
    use insa_entities::report_jobs;
    use sea_orm::{ActiveModelTrait, Set};

    let app = spawn_app().await;
    let token = app.admin_token().await;
    let id = uuid::Uuid::new_v4();
    // A job the runner is writing (the runner leaves running jobs alone).
    report_jobs::ActiveModel {
        id: Set(id),
        kind: Set("telemetry".into()),
        format: Set("csv".into()),
        query: Set(json!({})),
        status: Set("running".into()),
        rows: Set(Some(400)),
        rows_done: Set(100),
        file_name: Set(Some("telemetry-report.csv".into())),
        file_size: Set(None),
        error: Set(None),
        created_by: Set(None),
        schedule_id: Set(None),
        created_at: Set(Utc::now()),
        started_at: Set(Some(Utc::now())),
        finished_at: Set(None),
        expires_at: Set(None),
    }
    .insert(&app.db)
    .await
    .expect("a job");
    let job = app
        .get(&format!("/api/v1/reports/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(job.body["progress"], 25);
    assert!(job.body["download"].is_null());
    let early = app
        .get(
            &format!("/api/v1/reports/{id}/download"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert_eq!(early.code(), "report_not_ready");
    assert!(early.body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("25 %")));
    let missing = app
        .get(
            &format!("/api/v1/reports/{}", uuid::Uuid::new_v4()),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(missing.code(), "report_not_found");
    let unknown = app
        .post(
            "/api/v1/reports",
            As::Bearer(&token),
            &json!({"kind": "telemetry", "area": "North", "colour": "red"}),
        )
        .await;
    assert!(unknown.status.is_client_error(), "{unknown:?}");
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("colour")),
        "{unknown:?}"
    );
}

/// The attachment of a MIME message: (file name, decoded bytes).
fn attachment(data: &str) -> (String, Vec<u8>) {
    use base64::Engine;
    let lines: Vec<&str> = data.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Content-Disposition: attachment"))
        .unwrap_or_else(|| panic!("no attachment in:\n{data}"));
    // The header with its folded continuation lines (`filename*0="..."` per RFC 2231).
    let header: String = std::iter::once(lines[at])
        .chain(
            lines[at + 1..]
                .iter()
                .copied()
                .take_while(|l| l.starts_with([' ', '\t'])),
        )
        .collect();
    let name = header
        .split_once("filename")
        .and_then(|(_, rest)| rest.split('"').nth(1))
        .unwrap_or("")
        .to_string();
    let body_start = at
        + lines[at..]
            .iter()
            .position(|l| l.is_empty())
            .expect("a body")
        + 1;
    let encoded: String = lines[body_start..]
        .iter()
        .take_while(|l| !l.starts_with("--"))
        .map(|l| l.trim())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    (name, bytes)
}

#[actix_web::test]
async fn a_due_schedule_emails_its_report_as_an_attachment_and_moves_to_its_next_run() {
    use insa_entities::report_schedules;
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};

    let smtp = crate::email::SmtpServer::start().await;
    let app = spawn_app_with(|s| {
        s.smtp.url = Some(insa_iiot::settings::Secret::new(format!(
            "smtp://127.0.0.1:{}",
            smtp.port
        )));
    })
    .await;
    let site = site(&app).await;
    let created = app
        .post(
            "/api/v1/report-schedules",
            As::Bearer(&site.token),
            &json!({"name": "Daily North", "kind": "telemetry", "area": "North", "format": "xlsx",
                    "frequency": "daily", "hour": 6,
                    "recipients": ["ops@example.com", "night@example.com"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().expect("id").to_string();
    let next: DateTime<Utc> = created.body["next_run_at"]
        .as_str()
        .expect("next_run_at")
        .parse()
        .expect("a time");
    assert!(next > Utc::now() && next - Utc::now() <= Duration::days(1));
    assert_eq!(next.format("%H:%M").to_string(), "06:00");
    assert_eq!(created.body["area"], "North");

    // Due a minute ago: the scheduler runs it by itself.
    let due = Utc::now() - Duration::minutes(1);
    let schedule = report_schedules::Entity::find_by_id(uuid::Uuid::parse_str(&id).expect("uuid"))
        .one(&app.db)
        .await
        .expect("query")
        .expect("the schedule");
    let mut row = schedule.into_active_model();
    row.next_run_at = Set(due);
    row.update(&app.db).await.expect("update");

    let mails = crate::helpers::eventually(
        std::time::Duration::from_secs(20),
        "the report email",
        || async {
            let mails = smtp.mails();
            (!mails.is_empty()).then_some(mails)
        },
    )
    .await;
    let mail = &mails[0];
    assert_eq!(mail.recipients, ["ops@example.com", "night@example.com"]);
    let subject = format!(
        "Subject: [REPORT] Daily North: {} to {}",
        (due - Duration::days(1)).format("%Y-%m-%d"),
        due.format("%Y-%m-%d")
    );
    assert!(mail.data.contains(&subject), "{}", mail.data);
    let (name, bytes) = attachment(&mail.data);
    assert!(
        name.starts_with("telemetry-report_") && name.ends_with(".xlsx"),
        "{name}"
    );
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes)).expect("an xlsx");
    assert_eq!(
        book.sheet_names(),
        ["Summary", "Separator V-101", "Wellhead 7"]
    );
    let sheet = book
        .worksheet_range("Wellhead 7")
        .expect("the device sheet");
    let pressures: Vec<f64> = sheet.rows().skip(1).filter_map(|r| r[2].as_f64()).collect();
    assert_eq!(pressures, PRESSURES);

    let after = app
        .get(
            &format!("/api/v1/report-schedules/{id}"),
            As::Bearer(&site.token),
        )
        .await;
    assert!(after.body["last_job_id"].is_string(), "{after:?}");
    let next: DateTime<Utc> = after.body["next_run_at"]
        .as_str()
        .expect("next_run_at")
        .parse()
        .expect("a time");
    assert!(next > Utc::now(), "the next run is ahead: {next}");
    assert_eq!(smtp.mails().len(), 1, "one run, one email");
}

#[actix_web::test]
async fn schedules_are_checked_and_only_engineers_manage_them() {
    let app = spawn_app().await;
    let site = site(&app).await;
    let bad = app
        .post(
            "/api/v1/report-schedules",
            As::Bearer(&site.token),
            &json!({"name": "", "kind": "telemetry", "area": "North", "frequency": "hourly",
                    "hour": 24, "recipients": ["not-an-address"]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    let mut fields = bad.fields();
    fields.sort();
    assert_eq!(fields, ["frequency", "hour", "name", "recipients[0]"]);
    let with_period = app
        .post(
            "/api/v1/report-schedules",
            As::Bearer(&site.token),
            &json!({"name": "x", "kind": "alerts", "frequency": "daily", "start": site.start,
                    "recipients": ["a@example.com"]}),
        )
        .await;
    assert_eq!(with_period.fields(), ["start"]);

    let weekly = app
        .post(
            "/api/v1/report-schedules",
            As::Bearer(&site.token),
            &json!({"name": "Weekly alerts", "kind": "alerts", "format": "pdf",
                    "frequency": "weekly", "weekday": 1, "hour": 7,
                    "recipients": ["ops@example.com"]}),
        )
        .await;
    assert_eq!(weekly.status, StatusCode::CREATED, "{weekly:?}");
    let next: DateTime<Utc> = weekly.body["next_run_at"]
        .as_str()
        .expect("next")
        .parse()
        .expect("time");
    assert_eq!(
        next.format("%u %H:%M").to_string(),
        "1 07:00",
        "a Monday, 07:00"
    );
    let id = weekly.body["id"].as_str().expect("id").to_string();
    let changed = app
        .put(
            &format!("/api/v1/report-schedules/{id}"),
            As::Bearer(&site.token),
            &json!({"frequency": "monthly", "day": 15}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_eq!(changed.body["day"], 15);
    assert!(changed.body["weekday"].is_null());
    assert_eq!(changed.body["format"], "pdf");

    let (_, _, viewer) = app.user_with_role(&site.token, "viewer").await;
    let refused = app
        .post(
            "/api/v1/report-schedules",
            As::Bearer(&viewer),
            &json!({"name": "mine", "kind": "alerts", "frequency": "daily",
                    "recipients": ["a@example.com"]}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let listed = app
        .get("/api/v1/report-schedules", As::Bearer(&viewer))
        .await;
    assert_eq!(listed.body["total"], 1);
    let gone = app
        .delete(
            &format!("/api/v1/report-schedules/{id}"),
            As::Bearer(&site.token),
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let audit = app
        .get(
            "/api/v1/audit-log?action=report_schedule.delete",
            As::Bearer(&site.token),
        )
        .await;
    assert_eq!(
        audit.body["entries"][0]["target_id"],
        id.as_str(),
        "{audit:?}"
    );
    assert_eq!(audit.body["entries"][0]["details"]["name"], "Weekly alerts");
    let missing = app
        .get(
            &format!("/api/v1/report-schedules/{id}"),
            As::Bearer(&site.token),
        )
        .await;
    assert_eq!(missing.code(), "schedule_not_found");
}

#[actix_web::test]
async fn a_scheduled_run_over_the_limits_fails_and_tells_the_recipients_why() {
    let smtp = crate::email::SmtpServer::start().await;
    let app = spawn_app_with(|settings| {
        settings.reports.max_points = 5;
        settings.smtp.url = Some(insa_iiot::settings::Secret::new(format!(
            "smtp://127.0.0.1:{}",
            smtp.port
        )));
    })
    .await;
    let site = site(&app).await;
    let created = app
        .post(
            "/api/v1/report-schedules",
            As::Bearer(&site.token),
            &json!({"name": "Too big", "kind": "telemetry", "area": "North",
                    "frequency": "daily", "recipients": ["ops@example.com"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().expect("id");
    let run = app
        .post(
            &format!("/api/v1/report-schedules/{id}/run"),
            As::Bearer(&site.token),
            &json!({}),
        )
        .await;
    assert_eq!(run.status, StatusCode::ACCEPTED, "{run:?}");
    let job = run.body["id"].as_str().expect("job id").to_string();
    let failed = job_ending(&app, &site.token, &job, "failed").await;
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("report_too_large")),
        "{failed}"
    );
    let download = app
        .get(
            &format!("/api/v1/reports/{job}/download"),
            As::Bearer(&site.token),
        )
        .await;
    assert_eq!(download.code(), "report_not_ready");
    let mails = crate::helpers::eventually(
        std::time::Duration::from_secs(20),
        "the failure email",
        || async {
            let mails = smtp.mails();
            (!mails.is_empty()).then_some(mails)
        },
    )
    .await;
    let mail = &mails[0];
    assert_eq!(mail.recipients, ["ops@example.com"]);
    assert!(
        mail.data.contains("Subject: [REPORT FAILED] Too big"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("report_too_large"), "{}", mail.data);
    assert!(!mail.data.contains("Content-Disposition: attachment"));
}

#[actix_web::test]
async fn a_report_longer_than_a_page_has_every_point_once_in_time_order() {
    // Reports read 5000 points a query; 12,000 here, every time stored three times (as
    // retries can), so equal times straddle a page boundary.
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let device = app
        .create_device_id(&token, json!({"name": "Flow meter 3", "type": "flow"}))
        .await;
    let start = Utc::now()
        .duration_trunc(Duration::seconds(1))
        .expect("whole seconds")
        - Duration::hours(2);
    for copy in 0..3 {
        let records: Vec<Value> = (0..4000)
            .map(|i| {
                json!({"timestamp": (start + Duration::seconds(i)).to_rfc3339(),
                       "telemetry": {"flow": copy * 10_000 + i}})
            })
            .collect();
        let stored = app
            .post(
                "/api/v1/telemetry",
                As::Bearer(&token),
                &json!({"device_id": device, "records": records}),
            )
            .await;
        assert_eq!(stored.status, StatusCode::CREATED, "{stored:?}");
    }
    let path = format!(
        "/api/v1/reports/telemetry?device_id={device}&start={}&format=csv",
        start.to_rfc3339().replace('+', "%2B")
    );
    let (status, _, body) = download(&app, &token, &path).await;
    assert_eq!(status, StatusCode::OK);
    let rows: Vec<(DateTime<Utc>, i64)> = csv_table(&body)
        .1
        .iter()
        .map(|r| {
            (
                r[0].parse().expect("time"),
                r[4].parse().expect("a whole number"),
            )
        })
        .collect();
    assert_eq!(rows.len(), 12_000);
    assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0), "time order");
    let mut values: Vec<i64> = rows.iter().map(|r| r.1).collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), 12_000, "no point twice, none missing");
}
