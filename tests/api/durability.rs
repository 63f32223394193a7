//! An acknowledged reading survives `kill -9` of the platform.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use insa_entities::telemetry;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::json;

use crate::helpers::{eventually, fresh_database_url, ADMIN_PASSWORD};

/// The platform binary as a separate process; killed (SIGKILL) when dropped.
struct Platform {
    child: Child,
    /// `http://127.0.0.1:{port}`, the port it bound.
    base: String,
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(dir: &std::path::Path, database_url: &str) -> Platform {
    start_with(dir, database_url, &[("INSA__MQTT__MODE", "off")]).await
}

/// Starts the platform on port 0 and reads the port it bound from its log (JSON lines, only the
/// start-up's info line and errors), then waits until it answers.
async fn start_with(dir: &std::path::Path, database_url: &str, env: &[(&str, &str)]) -> Platform {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_insa-iiot"))
        .current_dir(dir)
        .env_remove("INSA_ENV")
        .env("INSA_SETTINGS_DIR", dir.join("no-settings"))
        .env("INSA__DATA_DIR", dir.join("data"))
        .env("INSA__DATABASE__URL", database_url)
        .env("INSA__SERVER__PORT", "0")
        .env("INSA__AUTH__ADMIN_PASSWORD", ADMIN_PASSWORD)
        .envs(env.iter().copied())
        .env("INSA__LOG__FORMAT", "json")
        .env("RUST_LOG", "error,insa_iiot::startup=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start insa-iiot");
    let log = child.stderr.take().expect("the platform's log");
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    // Reads the log to its end, so that the platform never waits on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(log).lines().map_while(Result::ok) {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if entry["fields"]["message"] == "insa-iiot listening" {
                if let Some(port) = entry["fields"]["port"].as_u64() {
                    let _ = port_tx.send(port);
                }
            }
        }
    });
    let port = tokio::task::spawn_blocking(move || port_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .expect("waiting for the log")
        .expect("the platform says where it listens");
    Platform {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// The administrator's access token.
async fn login(client: &reqwest::Client, base: &str) -> String {
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "admin@insa.com", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    login["access_token"].as_str().expect("token").to_string()
}

/// Registers a pressure device; its id.
async fn create_device(client: &reqwest::Client, base: &str, token: &str, name: &str) -> String {
    let device: serde_json::Value = client
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(token)
        .json(&json!({"name": name, "type": "pressure"}))
        .send()
        .await
        .expect("create device")
        .json()
        .await
        .expect("device");
    device["id"].as_str().expect("id").to_string()
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    eventually(Duration::from_secs(30), "platform healthy", || async {
        let reply = client.get(format!("{base}/health")).send().await.ok()?;
        reply.status().is_success().then_some(())
    })
    .await;
}

/// `GET /api/v1/status` once the platform is healthy.
async fn healthy_status(client: &reqwest::Client, base: &str) -> serde_json::Value {
    wait_healthy(client, base).await;
    client
        .get(format!("{base}/api/v1/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json")
}

#[actix_web::test]
async fn no_acknowledged_reading_is_lost_when_the_platform_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database_url(dir.path()).await;
    let client = reqwest::Client::new();
    let platform = start(dir.path(), &database_url).await;
    let base = platform.base.clone();
    wait_healthy(&client, &base).await;

    let token = login(&client, &base).await;
    let device_id = create_device(&client, &base, &token, "Wellhead 4").await;
    let created: serde_json::Value = client
        .post(format!("{base}/api/v1/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "k", "device_id": device_id, "rate_limit": 10000000}))
        .send()
        .await
        .expect("key")
        .json()
        .await
        .expect("json");
    let key = created["api_key"].as_str().expect("key").to_string();

    // Four senders stream readings; every 201 is recorded.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut senders = Vec::new();
    for sender in 0..4u64 {
        let (client, base, key, device_id, acked) = (
            client.clone(),
            base.clone(),
            key.clone(),
            device_id.clone(),
            acked.clone(),
        );
        senders.push(actix_web::rt::spawn(async move {
            for i in 0.. {
                let seq = sender * 1_000_000 + i;
                let reading = json!({"device_id": device_id, "telemetry": {"seq": seq}});
                let sent = client
                    .post(format!("{base}/api/v1/telemetry"))
                    .header("X-API-Key", &key)
                    .json(&reading)
                    .send()
                    .await;
                match sent {
                    Ok(reply) if reply.status() == reqwest::StatusCode::CREATED => {
                        acked.lock().expect("lock").insert(seq);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    eventually(
        Duration::from_secs(30),
        "a stream of acknowledged readings",
        || async { (acked.lock().expect("lock").len() >= 400).then_some(()) },
    )
    .await;
    drop(platform); // SIGKILL, mid-stream
    for sender in senders {
        let _ = sender.await;
    }
    let acked = acked.lock().expect("lock").clone();

    let platform = start(dir.path(), &database_url).await;
    wait_healthy(&client, &platform.base).await;
    let db = Database::connect(&database_url).await.expect("connect");
    let stored: BTreeSet<u64> = telemetry::Entity::find()
        .filter(telemetry::Column::DeviceId.eq(uuid::Uuid::parse_str(&device_id).expect("uuid")))
        .all(&db)
        .await
        .expect("rows")
        .into_iter()
        .filter_map(|row| row.value.map(|v| v as u64))
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged readings lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(acked.len() >= 400);
    drop(platform);
}

#[actix_web::test]
async fn a_killed_platform_restarts_at_once_though_device_connections_linger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database_url(dir.path()).await;
    let client = reqwest::Client::new();
    let first = [
        ("INSA__MQTT__MODE", "embedded"),
        ("INSA__MQTT__URL", "mqtt://127.0.0.1:0"),
    ];
    let platform = start_with(dir.path(), &database_url, &first).await;
    let status = healthy_status(&client, &platform.base).await;
    let mqtt_port: u16 = status["mqtt"]["address"]
        .as_str()
        .and_then(|address| address.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .expect("the embedded broker's port");

    // A device connected to the embedded broker when the platform dies: the broker's side of
    // that connection lingers (TIME_WAIT) once the device closes it.
    let device = std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).expect("connect");
    drop(platform);
    drop(device);

    // The same broker port again, which is the point (taken by another process meanwhile, this
    // start fails: nothing can hand a port to a process that is down).
    let mqtt_url = format!("mqtt://127.0.0.1:{mqtt_port}");
    let again = [
        ("INSA__MQTT__MODE", "embedded"),
        ("INSA__MQTT__URL", mqtt_url.as_str()),
    ];
    let platform = start_with(dir.path(), &database_url, &again).await;
    let status = healthy_status(&client, &platform.base).await;
    assert_eq!(status["mqtt"]["mode"], "embedded");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).is_ok(),
        "the embedded broker listens again"
    );
}

#[actix_web::test]
async fn a_webhook_queued_while_its_receiver_is_down_is_delivered_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database_url(dir.path()).await;
    // The receiver's port is held, bound but not listening (connections are refused, as by a
    // receiver that is down), and handed to the receiver when it starts.
    let held =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    held.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let receiver_port = held
        .local_addr()
        .ok()
        .and_then(|address| address.as_socket())
        .expect("bound address")
        .port();
    let env = [
        ("INSA__MQTT__MODE", "off"),
        ("INSA__WEBHOOKS__ALLOW_PRIVATE", "true"),
        ("INSA__WEBHOOKS__RETRY_BASE_MS", "200"),
        ("INSA__WEBHOOKS__RETRY_MAX_SECS", "1"),
    ];
    let client = reqwest::Client::new();
    let platform = start_with(dir.path(), &database_url, &env).await;
    let base = platform.base.clone();
    wait_healthy(&client, &base).await;
    let token = login(&client, &base).await;
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let id = create_device(&client, &base, &token, "Wellhead 4").await;
    let url = format!("http://127.0.0.1:{receiver_port}/hook");
    let rule = post(
        "/api/v1/rules",
        json!({"name": "High pressure", "device_id": id, "key": "pressure", "condition": ">",
               "threshold": 80, "actions": [{"type": "webhook", "url": url}]}),
    )
    .await
    .expect("create rule");
    assert_eq!(rule.status(), reqwest::StatusCode::CREATED);
    let reading = post(
        "/api/v1/telemetry",
        json!({"device_id": id, "telemetry": {"pressure": 95}}),
    )
    .await
    .expect("reading");
    assert_eq!(reading.status(), reqwest::StatusCode::CREATED);

    // The receiver is down: the delivery is attempted, and stays pending.
    eventually(Duration::from_secs(10), "a failed attempt", || async {
        let log: serde_json::Value = client
            .get(format!("{base}/api/v1/notifications"))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let delivery = &log["notifications"][0];
        (delivery["status"] == "pending" && delivery["attempts"].as_i64() >= Some(1)).then_some(())
    })
    .await;
    drop(platform);

    held.listen(128).expect("listen");
    let receiver = crate::webhooks::Receiver::start_on(held.into(), 0, 200);
    let platform = start_with(dir.path(), &database_url, &env).await;
    wait_healthy(&client, &platform.base).await;
    eventually(
        Duration::from_secs(15),
        "delivered after the restart",
        || async { (receiver.count() == 1).then_some(()) },
    )
    .await;
    assert_eq!(receiver.body(0)["event"], "raised");
    assert_eq!(receiver.body(0)["device"]["name"], "Wellhead 4");
}

#[actix_web::test]
async fn a_report_job_cut_short_by_a_stop_runs_again_at_the_next_start() {
    use insa_entities::report_jobs;
    use sea_orm::{ActiveModelTrait, Set};

    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database_url(dir.path()).await;
    let client = reqwest::Client::new();
    let platform = start(dir.path(), &database_url).await;
    let base = platform.base.clone();
    wait_healthy(&client, &base).await;
    let token = login(&client, &base).await;
    let id = create_device(&client, &base, &token, "Wellhead 5").await;
    let stored = client
        .post(format!("{base}/api/v1/telemetry"))
        .bearer_auth(&token)
        .json(&json!({"device_id": id, "telemetry": {"pressure": 77.25}}))
        .send()
        .await
        .expect("reading");
    assert_eq!(stored.status(), reqwest::StatusCode::CREATED);
    drop(platform);

    // What a stop in the middle of a job leaves: the job marked running, no file.
    let db = Database::connect(&database_url).await.expect("database");
    let job = uuid::Uuid::new_v4();
    let now = chrono::Utc::now();
    report_jobs::ActiveModel {
        id: Set(job),
        kind: Set("telemetry".into()),
        format: Set("csv".into()),
        query: Set(
            json!({"device_id": [id], "start": now - chrono::Duration::hours(1),
                          "end": now + chrono::Duration::minutes(1), "format": "csv"}),
        ),
        status: Set("running".into()),
        rows: Set(Some(1)),
        rows_done: Set(0),
        file_name: Set(Some("telemetry-report.csv".into())),
        file_size: Set(None),
        error: Set(None),
        created_by: Set(None),
        schedule_id: Set(None),
        created_at: Set(now),
        started_at: Set(Some(now)),
        finished_at: Set(None),
        expires_at: Set(None),
    }
    .insert(&db)
    .await
    .expect("a job");
    db.close().await.expect("close");

    let platform = start(dir.path(), &database_url).await;
    let base = platform.base.clone();
    wait_healthy(&client, &base).await;
    let token = login(&client, &base).await;
    eventually(
        Duration::from_secs(20),
        "the job done after the restart",
        || async {
            let job: serde_json::Value = client
                .get(format!("{base}/api/v1/reports/{job}"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (job["status"] == "done").then_some(())
        },
    )
    .await;
    let csv = client
        .get(format!("{base}/api/v1/reports/{job}/download"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("Wellhead 5,pressure,77.25"), "{csv}");
}
