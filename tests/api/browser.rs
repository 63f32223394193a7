//! The dashboard in a real browser: Debian's headless Chromium driven through chromedriver.
//!
//! Where chromedriver is missing the test says it skipped, unless `INSA_BROWSER_TESTS=required`
//! (set by `.ci/run`, which installs `chromium` and `chromium-driver`). With
//! `INSA_SCREENSHOTS=<dir>` it also saves the screenshots used in the README, at
//! `INSA_WINDOW=<width>,<height>` (default 1280,900; 820,1180 is a tablet).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, free_port, spawn_app, As, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

const WAIT: Duration = Duration::from_secs(20);

/// chromedriver, killed when the test ends.
struct Driver {
    process: Child,
    _profile: tempfile::TempDir,
    /// Where the browser saves downloads (without asking).
    downloads: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn installed(variable: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    path.exists().then_some(path)
}

/// A browser session, or `None` (skipped) where Chromium is not installed.
async fn browser() -> Option<(Driver, Client)> {
    let required = std::env::var("INSA_BROWSER_TESTS").is_ok_and(|v| v == "required");
    let (Some(chromedriver), Some(chromium)) = (
        installed("CHROMEDRIVER", "/usr/bin/chromedriver"),
        installed("CHROMIUM", "/usr/bin/chromium"),
    ) else {
        assert!(
            !required,
            "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: chromium or chromedriver not installed (apt-get install chromium chromium-driver)");
        return None;
    };
    // chromedriver takes a port number and cannot report one it picked: a port free a moment ago
    // (should another process take it first, chromedriver exits and no session connects below).
    let port = free_port();
    let process = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().expect("profile dir");
    let driver = Driver {
        process,
        _profile: profile,
        downloads: tempfile::tempdir().expect("downloads dir"),
    };
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            // No background networking: this machine has no internet and Chromium must not dial out.
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     format!("--window-size={}", std::env::var("INSA_WINDOW").unwrap_or_else(|_| "1280,900".into())),
                     format!("--user-data-dir={}", driver._profile.path().display())],
            "prefs": {"download.default_directory": driver.downloads.path(),
                      "download.prompt_for_download": false},
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = eventually(WAIT, "chromedriver accepts a session", || {
        let (url, capabilities) = (url.clone(), capabilities.clone());
        async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
                .ok()
        }
    })
    .await;
    Some((driver, client))
}

/// The text of the first element matching `css`, once it is `expected`.
async fn wait_text(client: &Client, css: &str, expected: &str) {
    eventually(WAIT, &format!("`{css}` reads `{expected}`"), || async {
        let element = client.find(Locator::Css(css)).await.ok()?;
        (element.text().await.ok()?.trim() == expected).then_some(())
    })
    .await
}

async fn wait_attr(client: &Client, css: &str, attribute: &str) -> String {
    eventually(WAIT, &format!("`{css}` has `{attribute}`"), || async {
        let element = client.find(Locator::Css(css)).await.ok()?;
        element.attr(attribute).await.ok()?
    })
    .await
}

async fn click(client: &Client, css: &str) {
    let element = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("`{css}` never appeared: {err}"));
    element.click().await.expect("click");
}

async fn log_in(client: &Client, app: &TestApp, email: &str, password: &str) {
    client.goto(&app.url("/")).await.expect("the dashboard");
    let form = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("form#login"))
        .await
        .expect("the login form");
    form.find(Locator::Css("#email"))
        .await
        .expect("email")
        .send_keys(email)
        .await
        .expect("type");
    form.find(Locator::Css("#password"))
        .await
        .expect("password")
        .send_keys(password)
        .await
        .expect("type");
    form.find(Locator::Css("button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
}

/// Waits until the live feed confirms it watches `devices` devices (so readings now are seen).
async fn watching(client: &Client, devices: usize) {
    wait_text(client, "#live", &format!("live · {devices}")).await;
}

async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("INSA_SCREENSHOTS") else {
        return;
    };
    // The page painted what it holds: two animation frames have passed.
    client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
            vec![],
        )
        .await
        .expect("two frames painted");
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(Path::new(&dir).join(name), png).expect("write screenshot");
}

/// A small site: a wellhead with an hour of history and a rule, a flow meter not yet heard
/// from, a separator over its threshold, a compressor in maintenance.
async fn site(app: &TestApp, token: &str) -> (String, String) {
    let create = |body: Value| async move { app.create_device_id(token, body).await };
    let wellhead = create(
        json!({"name": "Wellhead 7", "type": "pressure", "area": "North",
                                 "location": "Pad 2", "protocol": "mqtt"}),
    )
    .await;
    let flow = create(
        json!({"name": "Flow meter FT-201", "type": "flow", "area": "North",
                             "location": "Export line", "protocol": "http"}),
    )
    .await;
    let separator = create(json!({"name": "Separator V-101 level", "type": "level", "area": "South",
                                  "location": "Process train A", "config": {"alert_threshold": 80}}))
    .await;
    create(
        json!({"name": "Compressor K-1", "type": "temperature", "area": "South",
                  "location": "Compression", "status": "maintenance"}),
    )
    .await;

    let now = Utc::now();
    let records: Vec<Value> = (0..24)
        .map(|i| {
            let at = now - Span::seconds(3600 - 150 * i64::from(i) - 60);
            let phase = f64::from(i) / 3.0;
            json!({"timestamp": at.to_rfc3339(), "telemetry": {
                "pressure": {"value": ((95.0 + 8.0 * phase.sin()) * 10.0).round() / 10.0, "unit": "bar"},
                "temperature": {"value": ((61.0 + 2.5 * phase.cos()) * 10.0).round() / 10.0, "unit": "°C"}}})
        })
        .collect();
    let reply = app
        .post(
            "/api/v1/telemetry",
            As::Bearer(token),
            &json!({"device_id": wellhead, "records": records}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let rule = app
        .post(
            "/api/v1/rules",
            As::Bearer(token),
            &json!({"name": "High wellhead pressure", "device_id": wellhead, "key": "pressure",
                    "condition": ">", "threshold": 120, "severity": "critical",
                    "actions": [{"type": "email", "to": ["ops@example.com"]}]}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{rule:?}");
    app.send_reading(
        token,
        &separator,
        json!({"level": {"value": 86.5, "unit": "%"}}),
    )
    .await;
    (wellhead, flow)
}

#[actix_web::test]
async fn an_operator_sees_devices_come_online_charts_move_and_acknowledges_an_alert() {
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (wellhead, flow) = site(&app, &token).await;

    // Log in: the device list, the flow meter not yet heard from.
    log_in(&client, &app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let flow_row = format!("tr[data-device-id='{flow}']");
    wait_text(&client, &format!("{flow_row} .status"), "offline").await;
    wait_text(&client, "[data-tile='online'] .n", "2").await;
    watching(&client, 4).await;

    // A reading arrives: the row turns online without a reload.
    app.send_reading(
        &token,
        &flow,
        json!({"flow": {"value": 42.5, "unit": "m3/h"}}),
    )
    .await;
    wait_text(&client, &format!("{flow_row} .status"), "online").await;
    wait_text(&client, "[data-tile='online'] .n", "3").await;
    screenshot(&client, "dashboard-devices.png").await;

    // The wellhead's page: an hour of history on the chart, then a live point.
    click(&client, &format!("tr[data-device-id='{wellhead}'] a")).await;
    let chart = "canvas[data-key='pressure']";
    let before: usize = wait_attr(&client, chart, "data-points")
        .await
        .parse()
        .expect("a count");
    assert!(
        before >= 20,
        "the last hour's history is drawn: {before} points"
    );
    watching(&client, 1).await;
    app.send_reading(
        &token,
        &wellhead,
        json!({"pressure": {"value": 123.4, "unit": "bar"}}),
    )
    .await;
    let after = (before + 1).to_string();
    eventually(WAIT, "the live point is drawn", || async {
        let count = client.find(Locator::Css(chart)).await.ok()?;
        (count.attr("data-points").await.ok()?? == after).then_some(())
    })
    .await;
    wait_text(&client, "[data-value='pressure'] .v", "123.4 bar").await;
    // The reading broke the rule: the alert shows on the device's page as it is raised.
    wait_text(&client, "#device-alerts .alert-status", "active").await;
    screenshot(&client, "dashboard-device.png").await;

    // The alerts page: acknowledge it.
    click(&client, "a[data-nav='alerts']").await;
    let alerts = app
        .get(
            "/api/v1/alerts?status=active&severity=critical",
            As::Bearer(&token),
        )
        .await;
    let alert = alerts.body["alerts"][0]["id"]
        .as_str()
        .expect("the raised alert")
        .to_string();
    let row = format!("tr[data-alert-id='{alert}']");
    wait_text(&client, &format!("{row} .alert-status"), "active").await;
    screenshot(&client, "dashboard-alerts.png").await;
    click(&client, &format!("{row} button[data-action='acknowledge']")).await;
    eventually(WAIT, "the alert is acknowledged", || async {
        let reply = app
            .get(&format!("/api/v1/alerts/{alert}"), As::Bearer(&token))
            .await;
        (reply.body["status"] == "acknowledged").then_some(reply)
    })
    .await;
    let reply = app
        .get(&format!("/api/v1/alerts/{alert}"), As::Bearer(&token))
        .await;
    assert_eq!(reply.body["acknowledged_by"], ADMIN_EMAIL);
    click(&client, "button[data-status='acknowledged']").await;
    wait_text(&client, &format!("{row} .alert-status"), "acknowledged").await;

    // A viewer sees the same alert and no button to change it.
    click(&client, "#logout").await;
    let (viewer, password, _) = app.user_with_role(&token, "viewer").await;
    log_in(&client, &app, &viewer, &password).await;
    watching(&client, 4).await;
    click(&client, "a[data-nav='alerts']").await;
    click(&client, "button[data-status='acknowledged']").await;
    wait_text(&client, &format!("{row} .alert-status"), "acknowledged").await;
    let buttons = client
        .find_all(Locator::Css("#alerts button"))
        .await
        .expect("query");
    assert!(buttons.is_empty(), "a viewer sees no alert buttons");
    click(&client, "a[data-nav='rules']").await;
    wait_text(&client, "#rules tbody td", "High wellhead pressure").await;
    let buttons = client
        .find_all(Locator::Css("#rules button"))
        .await
        .expect("query");
    assert!(buttons.is_empty(), "a viewer sees no rule buttons");
    client.close().await.expect("close the browser");
}

#[actix_web::test]
async fn a_viewer_runs_a_pdf_report_in_the_background_and_gets_a_download() {
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (wellhead, _) = site(&app, &token).await;
    let (viewer, password, _) = app.user_with_role(&token, "viewer").await;

    log_in(&client, &app, &viewer, &password).await;
    wait_text(&client, "#who", &format!("{viewer} · viewer")).await;
    click(&client, "a[data-nav='reports']").await;
    click(
        &client,
        &format!("#report-devices option[value='{wellhead}']"),
    )
    .await;
    client
        .find(Locator::Css("#report-format"))
        .await
        .expect("the format")
        .select_by_value("pdf")
        .await
        .expect("choose PDF");
    click(&client, "#report-queue").await;
    // The job appears, runs, and offers its file.
    let row = "#report-jobs tbody tr";
    wait_text(&client, &format!("{row} .job-status"), "done").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!(
            "{row} button[data-action='download']"
        )))
        .await
        .expect("a download button");
    screenshot(&client, "dashboard-reports.png").await;

    let jobs = app.get("/api/v1/reports", As::Bearer(&token)).await;
    let job = &jobs.body["reports"][0];
    assert_eq!(job["format"], "pdf");
    assert_eq!(job["kind"], "telemetry");
    assert_eq!(job["query"]["device_id"], json!([wellhead]));
    assert_eq!(job["status"], "done");
    let problem = client
        .find(Locator::Css("#report-problem"))
        .await
        .expect("the problem line")
        .text()
        .await
        .expect("text");
    assert!(problem.is_empty(), "{problem}");
    client.close().await.expect("close the browser");
}

/// A file the browser saved, once it is complete (Chromium writes `name.crdownload` first).
async fn downloaded(driver: &Driver, name: &str) -> String {
    let path = driver.downloads.path().join(name);
    eventually(WAIT, &format!("the browser saved {name}"), || {
        let path = path.clone();
        async move {
            std::fs::read_to_string(path)
                .ok()
                .filter(|text| !text.is_empty())
        }
    })
    .await
}

#[actix_web::test]
async fn an_engineer_issues_a_device_certificate_saves_its_key_and_revokes_it() {
    let Some((driver, client)) = browser().await else {
        return;
    };
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let (wellhead, _) = site(&app, &token).await;
    let certificates = format!("/api/v1/devices/{wellhead}/certificates");
    // Older certificates: one revoked, one ten days from expiry; the panel points both out.
    let revoked = app
        .post(&certificates, As::Bearer(&token), &json!({}))
        .await;
    assert_eq!(revoked.status, StatusCode::CREATED, "{revoked:?}");
    let revoked_id = revoked.body["id"].as_str().expect("an id").to_string();
    let reply = app
        .delete(&format!("{certificates}/{revoked_id}"), As::Bearer(&token))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let old = app
        .post(
            &certificates,
            As::Bearer(&token),
            &json!({"valid_days": 10}),
        )
        .await;
    assert_eq!(old.status, StatusCode::CREATED, "{old:?}");
    let old_id = old.body["id"].as_str().expect("an id").to_string();
    let (engineer, password, engineer_token) = app.user_with_role(&token, "engineer").await;
    let me = app
        .get("/api/v1/auth/me", As::Bearer(&engineer_token))
        .await;
    assert!(me.body["id"].is_string(), "{me:?}");

    log_in(&client, &app, &engineer, &password).await;
    wait_text(&client, "#who", &format!("{engineer} · engineer")).await;
    click(&client, &format!("tr[data-device-id='{wellhead}'] a")).await;
    let old_row = format!("tr[data-cert-id='{old_id}']");
    wait_text(&client, &format!("{old_row} .cert-status"), "active").await;
    let expiry = wait_attr(&client, &format!("{old_row} td.expiry"), "class").await;
    assert!(
        expiry.contains("attention"),
        "ten days left is highlighted: {expiry}"
    );
    let left = client
        .find(Locator::Css(&format!("{old_row} td.expiry")))
        .await
        .expect("the expiry")
        .text()
        .await
        .expect("text");
    assert!(
        left.contains("expires in 9 days") || left.contains("expires in 10 days"),
        "{left}"
    );
    let gone = format!("tr[data-cert-id='{revoked_id}']");
    wait_text(&client, &format!("{gone} .cert-status"), "revoked").await;
    let expiry = wait_attr(&client, &format!("{gone} td.expiry"), "class").await;
    assert!(
        expiry.contains("attention"),
        "revoked is highlighted: {expiry}"
    );

    // Issue one with a generated key: the result offers the three files once, with the warning.
    click(&client, "#cert-open").await;
    click(&client, "#cert-issue").await;
    let key_link = "#cert-download-key";
    let href = wait_attr(&client, key_link, "href").await;
    assert!(href.starts_with("blob:"), "{href}");
    assert_eq!(wait_attr(&client, key_link, "download").await, "device.key");
    assert_eq!(
        wait_attr(&client, "#cert-download-cert", "download").await,
        "device.pem"
    );
    assert_eq!(
        wait_attr(&client, "#cert-download-ca", "download").await,
        "ca.pem"
    );
    let warning = client
        .find(Locator::Css("#cert-warning"))
        .await
        .expect("the warning")
        .text()
        .await
        .expect("text");
    assert!(warning.contains("cannot be retrieved later"), "{warning}");
    // The page's CSP allows only this origin to be fetched (a blob: URL included), so the key's
    // blob is read the way a user reads it: the browser saves the file.
    click(&client, key_link).await;
    let key = downloaded(&driver, "device.key").await;
    assert!(key.contains("-----BEGIN PRIVATE KEY-----"), "{key}");
    click(&client, "#cert-download-cert").await;
    let pem = downloaded(&driver, "device.pem").await;
    assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");

    let list = app.get(&certificates, As::Bearer(&token)).await;
    assert_eq!(list.body["total"], 3, "{list:?}");
    let issued = &list.body["certificates"][0];
    assert_eq!(issued["key_source"], "generated");
    assert_eq!(issued["created_by"], me.body["id"], "{me:?}");
    let id = issued["id"].as_str().expect("an id").to_string();
    let row = format!("tr[data-cert-id='{id}']");
    wait_text(&client, &format!("{row} .cert-status"), "active").await;
    let expiry = wait_attr(&client, &format!("{row} td.expiry"), "class").await;
    assert!(!expiry.contains("attention"), "a year left: {expiry}");
    client
        .execute(
            "document.getElementById('device-certificates').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the certificates");
    screenshot(&client, "dashboard-certificates.png").await;

    // Closing the result forgets the key: no link to it is left on the page.
    click(&client, "#cert-result-close").await;
    eventually(WAIT, "the key's link is gone", || async {
        let links = client.find_all(Locator::Css(key_link)).await.ok()?;
        links.is_empty().then_some(())
    })
    .await;

    // Revoke asks first: the first click changes nothing.
    click(&client, &format!("{row} button[data-action='revoke']")).await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!(
            "{row} button[data-action='confirm-revoke']"
        )))
        .await
        .expect("the confirm button");
    let reply = app.get(&certificates, As::Bearer(&token)).await;
    assert_eq!(reply.body["certificates"][0]["status"], "active");
    click(
        &client,
        &format!("{row} button[data-action='confirm-revoke']"),
    )
    .await;
    wait_text(&client, &format!("{row} .cert-status"), "revoked").await;
    let reply = app.get(&certificates, As::Bearer(&token)).await;
    assert_eq!(reply.body["certificates"][0]["status"], "revoked");
    assert_eq!(
        reply.body["certificates"][1]["status"], "active",
        "the other one stays"
    );
    let buttons = client
        .find_all(Locator::Css(&format!("{row} button")))
        .await
        .expect("query");
    assert!(buttons.is_empty(), "a revoked certificate has no buttons");

    // From the device's own request, for 20 days: no key to save, and the expiry stands out.
    // A request that is not one is refused, and the form says why.
    click(&client, "#cert-open").await;
    let csr_box = client
        .find(Locator::Css("#cert-csr"))
        .await
        .expect("the CSR box");
    csr_box
        .send_keys("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
        .await
        .expect("type");
    click(&client, "#cert-issue").await;
    let problem = eventually(WAIT, "the refusal is shown", || async {
        let text = client
            .find(Locator::Css("#cert-problem"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(problem.contains("csr_pem"), "{problem}");
    let device_key = rcgen::KeyPair::generate().expect("a key");
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&device_key)
        .expect("a CSR")
        .pem()
        .expect("PEM");
    csr_box.clear().await.expect("clear");
    csr_box.send_keys(&csr).await.expect("type");
    client
        .find(Locator::Css("#cert-days"))
        .await
        .expect("the days")
        .send_keys("20")
        .await
        .expect("type");
    click(&client, "#cert-issue").await;
    wait_attr(&client, "#cert-download-cert", "href").await;
    let links = client
        .find_all(Locator::Css(key_link))
        .await
        .expect("query");
    assert!(links.is_empty(), "no key to save: the device kept its own");
    let list = app.get(&certificates, As::Bearer(&token)).await;
    let from_csr = &list.body["certificates"][0];
    assert_eq!(from_csr["key_source"], "csr", "{list:?}");
    let days = from_csr["expires_in_days"].as_i64().expect("days");
    assert!((19..=20).contains(&days), "{from_csr}");
    let row = format!(
        "tr[data-cert-id='{}']",
        from_csr["id"].as_str().expect("an id")
    );
    wait_text(&client, &format!("{row} .cert-status"), "active").await;
    let expiry = wait_attr(&client, &format!("{row} td.expiry"), "class").await;
    assert!(expiry.contains("attention"), "20 days left: {expiry}");

    // A viewer's device page has no certificates panel, and asks nothing about certificates.
    click(&client, "#logout").await;
    let (viewer, password, _) = app.user_with_role(&token, "viewer").await;
    log_in(&client, &app, &viewer, &password).await;
    wait_text(&client, "#who", &format!("{viewer} · viewer")).await;
    click(&client, &format!("tr[data-device-id='{wellhead}'] a")).await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#device-alerts"))
        .await
        .expect("the device page");
    let panel = client
        .find_all(Locator::Css("#device-certificates"))
        .await
        .expect("query");
    assert!(panel.is_empty(), "a viewer sees no certificates panel");
    let asked = client
        .execute(
            "return performance.getEntriesByType('resource').map((e) => e.name) \
             .filter((name) => name.includes('/certificates'));",
            vec![],
        )
        .await
        .expect("the page's requests");
    assert_eq!(asked, json!([]), "a viewer's page asks for no certificates");
    client.close().await.expect("close the browser");
}
