//! `insa-bench`: load a running insa-iiot over HTTP or MQTT, count what it persisted in the
//! database, and measure a raw COPY of the same rows into the same table in the same run, so
//! results are ratios to what the database alone can take.
//!
//! ```text
//! insa-bench http --concurrency 16 --records 100 --duration 20 --pid $(pidof insa-iiot)
//! insa-bench mqtt --devices 1000 --rate 20000 --duration 20 --pid $(pidof insa-iiot)
//! insa-bench http --concurrency 16 --watchers 10   # with 10 live-feed clients watching it all
//! insa-bench mqtts --devices 1000 --rate 5000 --plain-port 18884 --tls-port 18885
//! ```
//! The platform must use PostgreSQL (`--database-url`, the same database) for the baseline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use uuid::Uuid;

mod mqtts;
mod storage;

#[derive(Parser)]
#[command(name = "insa-bench", about = "Benchmarks for insa-iiot")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP ingest: `concurrency` keep-alive clients posting readings as fast as they are answered.
    Http {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Readings (of 3 points) per request: 1 = the single-reading form, more = the batch form.
        #[arg(long, default_value_t = 1)]
        records: usize,
        /// Live-feed (WebSocket) clients watching every device while the load runs.
        #[arg(long, default_value_t = 0)]
        watchers: usize,
    },
    /// MQTT ingest: devices publishing the seed's 3-key reading at a total rate.
    Mqtt {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "127.0.0.1")]
        mqtt_host: String,
        #[arg(long, default_value_t = 1883)]
        mqtt_port: u16,
        /// Messages per second over all devices.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Publishing connections (devices are spread over them, as a gateway would).
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 1)]
        qos: u8,
    },
    /// MQTTS against plain MQTT on the embedded broker, in the same run: every device on a
    /// connection of its own (its certificate over MQTTS, its API key over MQTT), all connecting
    /// at once, then QoS 1 readings at `rate` messages/s in all; rounds alternate the two.
    Mqtts {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "127.0.0.1")]
        mqtt_host: String,
        #[arg(long, default_value_t = 1883)]
        plain_port: u16,
        #[arg(long, default_value_t = 8883)]
        tls_port: u16,
        /// Messages per second over all devices.
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Bytes per stored data point: seeds points straight into a migrated, empty platform
    /// database (PostgreSQL or SQLite) and measures the table and its indexes.
    Storage {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, default_value_t = 2_000_000)]
        points: u64,
        #[arg(long, default_value_t = 10)]
        devices: usize,
        /// The table shape measured (`current`: the platform's own table).
        #[arg(long, value_enum, default_value_t = storage::Shape::Current)]
        shape: storage::Shape,
    },
    /// Breach-to-webhook latency: a rule with a webhook on every device, breaches sent one at a
    /// time (optionally under background HTTP load), the time from sending the breaching
    /// reading to the webhook arriving. The platform must run with `webhooks.allow_private`.
    Alerts {
        #[command(flatten)]
        common: Common,
        /// Breaches to time.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Background single readings per second from other devices (0: idle).
        #[arg(long, default_value_t = 0)]
        background_rate: u64,
        /// Port of the webhook receiver this tool starts.
        #[arg(long, default_value_t = 18099)]
        receiver_port: u16,
    },
    /// Report generation: seeds `points` points (the devices x 3 keys, one reading a second)
    /// straight into the database, then runs each format as a report job, timing it and taking
    /// the platform's peak RSS over the job (reset before each); the baseline is PostgreSQL's own
    /// `COPY (SELECT ...) TO STDOUT` of the same rows.
    Reports {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 5_000_000)]
        points: u64,
        #[arg(long, default_value = "csv,xlsx,pdf,zip")]
        formats: String,
        /// Save the files here (the PDF's first page goes to docs/img).
        #[arg(long)]
        keep: Option<std::path::PathBuf>,
    },
    /// Memory per active device actor: registers `devices` devices (straight into the database,
    /// for speed), sends each one reading so its actor starts, and compares the platform's RSS.
    Actors {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Devices to send a reading to (default: all registered): the rest stay registered
        /// and idle, without an actor.
        #[arg(long)]
        activate: Option<usize>,
    },
}

#[derive(Args, Clone)]
struct Common {
    #[arg(long, default_value = "http://127.0.0.1:5002")]
    url: String,
    /// The platform's PostgreSQL database: persisted rows are counted there and the baseline
    /// COPY runs there.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, default_value = "admin@insa.com")]
    email: String,
    #[arg(long, env = "INSA_BENCH_PASSWORD")]
    password: String,
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// The platform's process id, to report its CPU and peak memory.
    #[arg(long)]
    pid: Option<u32>,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Report {
    mode: String,
    /// Seconds of load.
    seconds: f64,
    /// Seconds after the load until the persisted count stopped moving (what the broker held).
    drain_seconds: f64,
    acked_points: u64,
    persisted_points: u64,
    requests: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    cpu_percent: Option<f64>,
    peak_rss_mb: Option<f64>,
    copy_rows_per_sec: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Http {
            common,
            concurrency,
            records,
            watchers,
        } => {
            let client = reqwest::Client::new();
            let fleet = fleet(&client, &common).await?;
            let heard = match watchers {
                0 => None,
                n => Some(watch(
                    n,
                    &common,
                    &admin_token(&client, &common).await?,
                    &fleet.devices,
                )?),
            };
            let report = http(common, fleet, concurrency, records).await?;
            print(&report);
            if let Some(heard) = heard {
                let messages = heard.messages.load(Ordering::Relaxed);
                println!(
                    "live feed: {watchers} watchers heard {messages} telemetry messages ({:.0}/s, {:.2} per request per watcher); closed as too slow: {}",
                    messages as f64 / report.seconds,
                    messages as f64 / (report.requests.max(1) * watchers as u64) as f64,
                    heard.dropped.load(Ordering::Relaxed),
                );
            }
        }
        Command::Mqtt {
            common,
            mqtt_host,
            mqtt_port,
            rate,
            connections,
            qos,
        } => print(&mqtt(common, mqtt_host, mqtt_port, rate, connections, qos).await?),
        Command::Mqtts {
            common,
            mqtt_host,
            plain_port,
            tls_port,
            rate,
            rounds,
        } => mqtts::run(common, mqtt_host, plain_port, tls_port, rate, rounds).await?,
        Command::Storage {
            database_url,
            points,
            devices,
            shape,
        } => storage::run(&database_url, points, devices, shape).await?,
        Command::Actors {
            common,
            concurrency,
            activate,
        } => actors(common, concurrency, activate).await?,
        Command::Reports {
            common,
            points,
            formats,
            keep,
        } => reports(common, points, &formats, keep).await?,
        Command::Alerts {
            common,
            samples,
            background_rate,
            receiver_port,
        } => alerts(common, samples, background_rate, receiver_port).await?,
    }
    Ok(())
}

/// A memory figure of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in MB.
fn status_mb(pid: u32, field: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()
        .map(|kb| kb / 1024.0)
}

fn rss_mb(pid: u32) -> Option<f64> {
    status_mb(pid, "VmRSS:")
}

async fn actors(common: Common, concurrency: usize, activate: Option<usize>) -> anyhow::Result<()> {
    let pid = common
        .pid
        .context("--pid is needed to read the platform's memory")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let fleet = fleet(
        &client,
        &Common {
            devices: 1,
            ..common.clone()
        },
    )
    .await?;
    let pool = sqlx::PgPool::connect(&common.database_url).await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO devices (id, name, type, status, created_at, updated_at) \
         SELECT gen_random_uuid(), 'bench-actor-' || g, 'temperature', 'offline', now(), now() \
         FROM generate_series(1, $1) AS g RETURNING id",
    )
    .bind(common.devices as i64)
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_mb(pid).context("platform RSS")?;
    let registered = ids.len();
    let mut ids = ids;
    ids.truncate(activate.unwrap_or(registered));
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, ids, next, key, url) = (
            client.clone(),
            ids.clone(),
            next.clone(),
            fleet.key.clone(),
            common.url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(device) = ids.get(i) else { return };
                let body = json!({"device_id": device, "telemetry": telemetry(i as u64)});
                let _ = client
                    .post(format!("{url}/api/v1/telemetry"))
                    .header("X-API-Key", &key)
                    .json(&body)
                    .send()
                    .await;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let sent = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status: Value = client
        .get(format!("{}/api/v1/status", common.url))
        .send()
        .await?
        .json()
        .await?;
    let active = status["ingest"]["active_device_actors"]
        .as_u64()
        .unwrap_or(0);
    let after = rss_mb(pid).context("platform RSS")?;
    println!("| registered devices | active actors | RSS before MB | RSS after MB | KB per active actor | activation s |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {registered} | {active} | {before:.1} | {after:.1} | {:.2} | {sent:.1} |",
        (after - before) * 1024.0 / active.max(1) as f64
    );
    Ok(())
}

struct Fleet {
    devices: Vec<Uuid>,
    key: String,
    /// The key's id: its MQTT username at the embedded broker.
    key_id: String,
}

/// Logs in, registers the devices and a gateway key with room for any rate.
async fn admin_token(client: &reqwest::Client, common: &Common) -> anyhow::Result<String> {
    let login: Value = client
        .post(format!("{}/api/v1/auth/login", common.url))
        .json(&json!({"email": common.email, "password": common.password}))
        .send()
        .await?
        .error_for_status()
        .context("login")?
        .json()
        .await?;
    Ok(login["access_token"]
        .as_str()
        .context("access_token")?
        .to_string())
}

async fn fleet(client: &reqwest::Client, common: &Common) -> anyhow::Result<Fleet> {
    let token = admin_token(client, common).await?;
    let mut devices = Vec::with_capacity(common.devices);
    for i in 0..common.devices {
        let device: Value = client
            .post(format!("{}/api/v1/devices", common.url))
            .bearer_auth(&token)
            .json(&json!({"name": format!("bench-{i}"), "type": "temperature", "area": "bench"}))
            .send()
            .await?
            .error_for_status()
            .context("create device")?
            .json()
            .await?;
        devices.push(Uuid::parse_str(device["id"].as_str().context("id")?)?);
    }
    let key: Value = client
        .post(format!("{}/api/v1/api-keys", common.url))
        .bearer_auth(&token)
        .json(&json!({"name": "bench gateway", "rate_limit": 10_000_000}))
        .send()
        .await?
        .error_for_status()
        .context("create key")?
        .json()
        .await?;
    Ok(Fleet {
        devices,
        key: key["api_key"].as_str().context("api_key")?.to_string(),
        key_id: key["key_info"]["id"]
            .as_str()
            .context("key id")?
            .to_string(),
    })
}

/// The seed's 3-key reading.
fn telemetry(seq: u64) -> Value {
    json!({
        "temperature": {"value": 20.0 + (seq % 100) as f64 / 10.0, "unit": "C", "quality": 100},
        "humidity": {"value": 65, "unit": "%"},
        "pressure": {"value": 1013, "unit": "hPa"}
    })
}

async fn http(
    common: Common,
    fleet: Fleet,
    concurrency: usize,
    records: usize,
) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let fleet = Arc::new(fleet);
    let deadline = Instant::now() + Duration::from_secs(common.duration);
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let monitor = Monitor::start(common.pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, fleet, acked, errors, latencies, url) = (
            client.clone(),
            fleet.clone(),
            acked.clone(),
            errors.clone(),
            latencies.clone(),
            common.url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut seq = worker as u64 * 1_000_000_000;
            let mut request = worker;
            while Instant::now() < deadline {
                // Workers take devices in turn, whatever the batch size.
                let device = fleet.devices[request % fleet.devices.len()];
                request += concurrency;
                let body = if records == 1 {
                    json!({"device_id": device, "telemetry": telemetry(seq)})
                } else {
                    let now = chrono::Utc::now();
                    let list: Vec<Value> = (0..records)
                        .map(|r| {
                            let at = now + chrono::Duration::microseconds(r as i64);
                            json!({"timestamp": at.to_rfc3339(), "telemetry": telemetry(seq + r as u64)})
                        })
                        .collect();
                    json!({"device_id": device, "records": list})
                };
                seq += records as u64;
                let sent = Instant::now();
                match client
                    .post(format!("{url}/api/v1/telemetry"))
                    .header("X-API-Key", &fleet.key)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(reply) if reply.status().as_u16() == 201 => {
                        mine.push(sent.elapsed().as_micros() as u64);
                        acked.fetch_add(records as u64 * 3, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let Ok(mut all) = latencies.lock() {
                all.extend(mine);
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu_percent, peak_rss_mb) = monitor.finish(seconds);
    finish(
        format!("http c={concurrency} records={records}"),
        &common,
        &fleet.devices,
        (seconds, 0.0),
        acked.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        Arc::try_unwrap(latencies)
            .ok()
            .and_then(|m| m.into_inner().ok())
            .unwrap_or_default(),
        cpu_percent,
        peak_rss_mb,
    )
    .await
}

async fn mqtt(
    common: Common,
    host: String,
    port: u16,
    rate: u64,
    connections: usize,
    qos: u8,
) -> anyhow::Result<Report> {
    let client = reqwest::Client::new();
    let fleet = Arc::new(fleet(&client, &common).await?);
    let qos = if qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let deadline = Instant::now() + Duration::from_secs(common.duration);
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let monitor = Monitor::start(common.pid);
    let started = Instant::now();
    let per_connection = rate as f64 / connections as f64;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..connections {
        // A gateway key may publish for every device (embedded broker: username = the key's id,
        // password = the key, client id bound to the key; an external broker applies its own ACL).
        let mut options =
            MqttOptions::new(format!("{}-bench-{c}", fleet.key_id), host.clone(), port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(1000)
            .set_credentials(fleet.key_id.clone(), fleet.key.clone());
        let (mqtt, mut eventloop) = AsyncClient::new(options, 10_000);
        let (fleet, acked, errors) = (fleet.clone(), acked.clone(), errors.clone());
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            // Ack latency: from the PUBLISH leaving the client to its PUBACK, by packet id.
            let poller = tokio::spawn(async move {
                let mut sent = std::collections::HashMap::<u16, Instant>::new();
                let mut mine = Vec::new();
                let finished = loop {
                    match eventloop.poll().await {
                        Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) if pkid != 0 => {
                            sent.insert(pkid, Instant::now());
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            acked.fetch_add(3, Ordering::Relaxed);
                            if let Some(at) = sent.remove(&ack.pkid) {
                                mine.push(at.elapsed().as_micros() as u64);
                            }
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break mine,
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                };
                finished
            });
            // Paced by elapsed time, so fractional per-connection rates hold.
            let begun = Instant::now();
            let mut seq = c as u64 * 1_000_000_000;
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while Instant::now() < deadline {
                tick.tick().await;
                let due = (begun.elapsed().as_secs_f64() * per_connection) as u64;
                while sent < due {
                    let device = fleet.devices[(seq as usize) % fleet.devices.len()];
                    let payload = telemetry(seq).to_string();
                    seq += 1;
                    sent += 1;
                    if mqtt
                        .publish(format!("devices/{device}/telemetry"), qos, false, payload)
                        .await
                        .is_err()
                    {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // Let in-flight messages be acknowledged, then end the connection.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = mqtt.disconnect().await;
            if let Ok(Ok(mine)) = tokio::time::timeout(Duration::from_secs(5), poller).await {
                latencies.lock().map(|mut all| all.extend(mine)).ok();
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64() - 2.0;
    // Wait for the platform to store what the broker still holds: until the count stops moving
    // for 3 s (at most 5 min). What the broker acknowledged and never reached the database is lost.
    let drain = Instant::now();
    let (mut last, mut still) = (0, 0);
    while still < 3 && drain.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = persisted(&common.database_url, &fleet.devices).await?;
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    // The broker may still hold messages it acknowledged: the platform's rate counts the time it
    // took to store them.
    let drain_seconds = (drain.elapsed().as_secs_f64() - 3.0).max(0.0);
    let (cpu_percent, peak_rss_mb) = monitor.finish(seconds + drain_seconds);
    let all_latencies = latencies
        .lock()
        .map(|mut all| std::mem::take(&mut *all))
        .unwrap_or_default();
    finish(
        format!("mqtt rate={rate}/s qos={} conns={connections}", qos as u8),
        &common,
        &fleet.devices,
        (seconds, drain_seconds),
        acked.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        all_latencies,
        cpu_percent,
        peak_rss_mb,
    )
    .await
}

async fn persisted(database_url: &str, devices: &[Uuid]) -> anyhow::Result<u64> {
    let pool = sqlx::PgPool::connect(database_url).await?;
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM telemetry WHERE device_id = ANY($1)")
            .bind(devices)
            .fetch_one(&pool)
            .await?;
    pool.close().await;
    Ok(count as u64)
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    mode: String,
    common: &Common,
    devices: &[Uuid],
    (seconds, drain_seconds): (f64, f64),
    acked_points: u64,
    errors: u64,
    mut latencies_us: Vec<u64>,
    cpu_percent: Option<f64>,
    peak_rss_mb: Option<f64>,
) -> anyhow::Result<Report> {
    latencies_us.sort_unstable();
    let persisted_points = persisted(&common.database_url, devices).await?;
    let copy_rows_per_sec = copy_baseline(
        &common.database_url,
        devices,
        persisted_points.clamp(100_000, 2_000_000),
    )
    .await?;
    Ok(Report {
        mode,
        seconds,
        drain_seconds,
        acked_points,
        persisted_points,
        requests: latencies_us.len() as u64,
        errors,
        latencies_us,
        cpu_percent,
        peak_rss_mb,
        copy_rows_per_sec,
    })
}

/// Raw COPY of `rows` rows of the same shape into the same table, in batches of 5000 over
/// `COPY_CONNECTIONS` connections like the platform's writer (`ingest.max_in_flight_batches`);
/// the rows are removed afterwards.
const COPY_CONNECTIONS: u64 = 3;

async fn copy_baseline(database_url: &str, devices: &[Uuid], rows: u64) -> anyhow::Result<f64> {
    if devices.is_empty() {
        bail!("no devices");
    }
    let pool = sqlx::PgPool::connect(database_url).await?;
    let now = chrono::Utc::now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..COPY_CONNECTIONS {
        let (pool, devices) = (pool.clone(), devices.to_vec());
        tasks.push(tokio::spawn(async move {
            let share = rows / COPY_CONNECTIONS;
            let mut written = 0u64;
            while written < share {
                let batch = (share - written).min(5000);
                let mut buf = String::with_capacity(batch as usize * 100);
                for i in 0..batch {
                    let n = connection * share + written + i;
                    let at = now + chrono::Duration::microseconds(n as i64);
                    let device = devices[(n as usize) % devices.len()];
                    buf.push_str(&format!(
                        "{}\t{device}\tbaseline_temperature\t{}\tC\t100\t\\N\n",
                        at.format("%Y-%m-%d %H:%M:%S%.6f+00"),
                        20.0 + (n % 100) as f64 / 10.0
                    ));
                }
                let mut conn = pool.acquire().await?;
                let mut copy = conn
                    .copy_in_raw("COPY telemetry (timestamp, device_id, key, value, unit, quality, metadata) FROM STDIN")
                    .await?;
                copy.send(buf.into_bytes()).await?;
                copy.finish().await?;
                written += batch;
            }
            Ok::<u64, anyhow::Error>(written)
        }));
    }
    let mut written = 0;
    for task in tasks {
        written += task.await??;
    }
    let rate = written as f64 / started.elapsed().as_secs_f64();
    sqlx::query("DELETE FROM telemetry WHERE key = 'baseline_temperature'")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(rate)
}

/// Samples the platform's CPU time and peak RSS from /proc.
struct Monitor {
    pid: Option<u32>,
    cpu_start: Option<u64>,
}

impl Monitor {
    fn start(pid: Option<u32>) -> Self {
        Self {
            cpu_start: pid.and_then(cpu_ticks),
            pid,
        }
    }

    /// (average CPU % over `seconds`, peak RSS in MB).
    fn finish(self, seconds: f64) -> (Option<f64>, Option<f64>) {
        let Some(pid) = self.pid else {
            return (None, None);
        };
        // Linux reports CPU time in clock ticks of 1/100 s on every machine this runs on.
        let cpu = cpu_ticks(pid)
            .zip(self.cpu_start)
            .map(|(end, start)| (end - start) as f64 / 100.0 / seconds * 100.0);
        (cpu, status_mb(pid, "VmHWM:"))
    }
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(index).map(|us| *us as f64 / 1000.0)
}

fn print(r: &Report) {
    // Persisted points over the whole time the platform took to store them.
    let rate = r.persisted_points as f64 / (r.seconds + r.drain_seconds);
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!("| mode | seconds | drain s | acked points | persisted points | lost | persisted dp/s | raw COPY rows/s | ratio | req/s | p50 ms | p99 ms | errors | platform CPU % | platform peak RSS MB |");
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    println!(
        "| {} | {:.1} | {:.1} | {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {} | {} | {} | {} | {} |",
        r.mode,
        r.seconds,
        r.drain_seconds,
        r.acked_points,
        r.persisted_points,
        r.acked_points.saturating_sub(r.persisted_points),
        rate,
        r.copy_rows_per_sec,
        rate / r.copy_rows_per_sec,
        r.requests as f64 / r.seconds,
        fmt(percentile(&r.latencies_us, 0.5)),
        fmt(percentile(&r.latencies_us, 0.99)),
        r.errors,
        fmt(r.cpu_percent),
        fmt(r.peak_rss_mb),
    );
}

/// What the live-feed clients heard.
#[derive(Default)]
struct Heard {
    messages: AtomicU64,
    /// Clients the platform closed (as too slow).
    dropped: AtomicU64,
}

/// `count` WebSocket clients on their own thread (awc), each watching every device and reading
/// as fast as it can; returns once all are subscribed.
fn watch(
    count: usize,
    common: &Common,
    token: &str,
    devices: &[Uuid],
) -> anyhow::Result<Arc<Heard>> {
    use futures_util::{SinkExt, StreamExt};
    let heard = Arc::new(Heard::default());
    let url = format!(
        "{}/api/v1/ws?token={token}",
        common.url.replacen("http", "ws", 1)
    );
    let subscribe = json!({"action": "subscribe", "device_ids": devices}).to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let shared = heard.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let mut clients = Vec::new();
            for _ in 0..count {
                let (url, subscribe, heard, ready) = (
                    url.clone(),
                    subscribe.clone(),
                    shared.clone(),
                    ready_tx.clone(),
                );
                clients.push(actix_web::rt::spawn(async move {
                    let connected = awc::Client::new()
                        .ws(url)
                        .max_frame_size(1 << 20)
                        .connect()
                        .await;
                    let mut socket = match connected {
                        Ok((_, socket)) => socket,
                        Err(err) => {
                            let _ = ready.send(Err(anyhow::anyhow!("WebSocket: {err}")));
                            return;
                        }
                    };
                    if let Err(err) = socket.send(awc::ws::Message::Text(subscribe.into())).await {
                        let _ = ready.send(Err(anyhow::anyhow!("subscribe: {err}")));
                        return;
                    }
                    let mut subscribed = false;
                    while let Some(Ok(frame)) = socket.next().await {
                        match frame {
                            awc::ws::Frame::Text(text) => {
                                if !subscribed {
                                    subscribed = true;
                                    let _ = ready.send(Ok(()));
                                } else if text.windows(18).any(|w| w == b"\"type\":\"telemetry\"") {
                                    heard.messages.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            awc::ws::Frame::Ping(bytes) => {
                                let _ = socket.send(awc::ws::Message::Pong(bytes)).await;
                            }
                            awc::ws::Frame::Close(_) => {
                                heard.dropped.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            _ => {}
                        }
                    }
                }));
            }
            for client in clients {
                let _ = client.await;
            }
        });
    });
    for _ in 0..count {
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("a watcher did not subscribe")??;
    }
    Ok(heard)
}

/// When each device's `raised` webhook arrived.
type Arrivals = Arc<Mutex<std::collections::HashMap<String, Instant>>>;

/// A webhook receiver on its own thread (actix-web), recording arrival times of `raised` events.
fn receiver(port: u16, arrivals: Arrivals) -> anyhow::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let arrivals = arrivals.clone();
                App::new().default_service(web::to(move |body: web::Json<Value>| {
                    let arrivals = arrivals.clone();
                    async move {
                        if body["event"] == "raised" {
                            if let Some(device) = body["alert"]["device_id"].as_str() {
                                if let Ok(mut seen) = arrivals.lock() {
                                    seen.insert(device.to_string(), Instant::now());
                                }
                            }
                        }
                        HttpResponse::Ok().finish()
                    }
                }))
            })
            .workers(1)
            .bind(("127.0.0.1", port));
            match server {
                Ok(server) => {
                    let _ = ready_tx.send(Ok(()));
                    let _ = server.run().await;
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                }
            }
        });
    });
    ready_rx.recv()??;
    Ok(())
}

async fn alerts(
    common: Common,
    samples: usize,
    background_rate: u64,
    receiver_port: u16,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let arrivals: Arrivals = Arc::default();
    receiver(receiver_port, arrivals.clone())?;
    let fleet = fleet(&client, &common).await?;
    let token = admin_token(&client, &common).await?;
    // The first half of the devices carry the rule; the rest make the background load.
    let watched = &fleet.devices[..fleet.devices.len().div_ceil(2)];
    let background: Vec<Uuid> = fleet.devices[watched.len()..].to_vec();
    for device in watched {
        client
            .post(format!("{}/api/v1/rules", common.url))
            .bearer_auth(&token)
            .json(
                &json!({"name": "bench breach", "device_id": device, "key": "temperature",
                          "condition": ">", "threshold": 1000,
                          "actions": [{"type": "webhook",
                                       "url": format!("http://127.0.0.1:{receiver_port}/hook")}]}),
            )
            .send()
            .await?
            .error_for_status()
            .context("create rule")?;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = (background_rate > 0 && !background.is_empty()).then(|| {
        let (client, url, key, stop) = (
            client.clone(),
            common.url.clone(),
            fleet.key.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = (background_rate / 100).max(1);
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..per_tick {
                    seq += 1;
                    let device = background[(seq as usize) % background.len()];
                    tokio::spawn(
                        client
                            .post(format!("{url}/api/v1/telemetry"))
                            .header("X-API-Key", &key)
                            .json(&json!({"device_id": device, "telemetry": telemetry(seq)}))
                            .send(),
                    );
                }
            }
        })
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let monitor = Monitor::start(common.pid);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(samples);
    let mut missed = 0;
    for i in 0..samples {
        let device = watched[i % watched.len()];
        let key = device.to_string();
        arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .remove(&key);
        let sent = Instant::now();
        client
            .post(format!("{}/api/v1/telemetry", common.url))
            .header("X-API-Key", &fleet.key)
            .json(&json!({"device_id": device, "telemetry": {"temperature": 1500.0}}))
            .send()
            .await?
            .error_for_status()?;
        let deadline = sent + Duration::from_secs(5);
        let arrived = loop {
            if let Some(at) = arrivals
                .lock()
                .map_err(|_| anyhow::anyhow!("lock"))?
                .get(&key)
            {
                break Some(*at);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        match arrived {
            Some(at) => latencies.push(at.duration_since(sent).as_micros() as u64),
            None => missed += 1,
        }
        // Back to normal: the alert resolves before the next breach of this device.
        client
            .post(format!("{}/api/v1/telemetry", common.url))
            .header("X-API-Key", &fleet.key)
            .json(&json!({"device_id": device, "telemetry": {"temperature": 20.0}}))
            .send()
            .await?
            .error_for_status()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(load) = load {
        let _ = load.await;
    }
    let (cpu, rss) = monitor.finish(seconds);
    latencies.sort_unstable();
    let ms = |p| percentile(&latencies, p).map_or("-".to_string(), |v| format!("{v:.1}"));
    println!("| background readings/s | samples | missed | p50 ms | p99 ms | max ms | platform CPU % | platform peak RSS MB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {background_rate} | {} | {missed} | {} | {} | {} | {} | {} |",
        latencies.len(),
        ms(0.5),
        ms(0.99),
        ms(1.0),
        cpu.map_or("-".into(), |c| format!("{c:.1}")),
        rss.map_or("-".into(), |r| format!("{r:.1}")),
    );
    Ok(())
}

/// Peak RSS of `pid` since the last reset, in MB; resets it for the next measure.
fn peak_rss_mb(pid: u32, reset: bool) -> Option<f64> {
    let peak = status_mb(pid, "VmHWM:");
    if reset {
        // "5" resets the peak to the current RSS (Linux 4.0+).
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    peak
}

async fn reports(
    common: Common,
    points: u64,
    formats: &str,
    keep: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let fleet = fleet(&client, &common).await?;
    let token = admin_token(&client, &common).await?;
    let pool = sqlx::PgPool::connect(&common.database_url).await?;
    // One reading (3 keys) a second per device, ending an hour ago.
    let readings = points / 3 / fleet.devices.len() as u64;
    let end = chrono::Utc::now() - chrono::Duration::hours(1);
    let start = end - chrono::Duration::seconds(readings as i64);
    let seeded = Instant::now();
    for device in &fleet.devices {
        let mut written = 0;
        while written < readings {
            let batch = (readings - written).min(20_000);
            let mut buf = String::with_capacity(batch as usize * 300);
            for i in written..written + batch {
                let at =
                    (start + chrono::Duration::seconds(i as i64)).format("%Y-%m-%d %H:%M:%S+00");
                let phase = i as f64 / 600.0;
                for (key, value, unit) in [
                    ("pressure", 90.0 + 8.0 * phase.sin(), "bar"),
                    ("temperature", 60.0 + 3.0 * (phase / 3.0).cos(), "C"),
                    ("flow", 30.0 + 5.0 * (phase * 2.0).sin(), "m3/h"),
                ] {
                    buf.push_str(&format!(
                        "{at}\t{device}\t{key}\t{value:.3}\t{unit}\t100\t\\N\n"
                    ));
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
    sqlx::query("ANALYZE telemetry").execute(&pool).await?;
    let total = readings * 3 * fleet.devices.len() as u64;
    println!(
        "seeded {total} points ({} devices x 3 keys x {readings} readings) in {:.1} s",
        fleet.devices.len(),
        seeded.elapsed().as_secs_f64()
    );

    // Baseline: PostgreSQL writing the same rows out itself.
    let ids: Vec<String> = fleet.devices.iter().map(|d| format!("'{d}'")).collect();
    let copied = Instant::now();
    let mut conn = pool.acquire().await?;
    let mut out = conn
        .copy_out_raw(&format!(
            "COPY (SELECT timestamp, device_id, key, value, unit, quality FROM telemetry WHERE device_id IN ({}) ORDER BY device_id, key, timestamp) TO STDOUT WITH CSV HEADER",
            ids.join(",")
        ))
        .await?;
    let mut copy_bytes = 0usize;
    while let Some(chunk) = futures_util::StreamExt::next(&mut out).await {
        copy_bytes += chunk?.len();
    }
    drop(out);
    let copy_seconds = copied.elapsed().as_secs_f64();
    println!(
        "baseline COPY TO: {total} rows, {:.1} MB in {copy_seconds:.2} s = {:.0} rows/s",
        copy_bytes as f64 / 1e6,
        total as f64 / copy_seconds
    );

    let idle = common.pid.and_then(|pid| peak_rss_mb(pid, true));
    println!(
        "platform RSS before the reports: {}",
        idle.map_or("-".into(), |v| format!("{v:.1} MB"))
    );
    println!("| format | points | seconds | points/s | ratio to COPY TO | file MB | platform peak RSS MB |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for format in formats.split(',') {
        let body = json!({"kind": "telemetry", "format": format, "device_id": fleet.devices,
                          "start": start, "end": end});
        let started = Instant::now();
        let job: Value = client
            .post(format!("{}/api/v1/reports", common.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?
            .error_for_status()
            .context("queue the report")?
            .json()
            .await?;
        let id = job["id"].as_str().context("job id")?.to_string();
        let done = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let job: Value = client
                .get(format!("{}/api/v1/reports/{id}", common.url))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            match job["status"].as_str() {
                Some("done") => break job,
                Some("failed") => bail!("the {format} report failed: {}", job["error"]),
                _ => {}
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let peak = common.pid.and_then(|pid| peak_rss_mb(pid, true));
        let size = done["file_size"].as_f64().unwrap_or(0.0) / 1e6;
        println!(
            "| {format} | {total} | {seconds:.1} | {:.0} | {:.2} | {size:.1} | {} |",
            total as f64 / seconds,
            copy_seconds / seconds,
            peak.map_or("-".into(), |v| format!("{v:.1}"))
        );
        if let Some(dir) = &keep {
            let bytes = client
                .get(format!("{}/api/v1/reports/{id}/download", common.url))
                .bearer_auth(&token)
                .send()
                .await?
                .bytes()
                .await?;
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(format!("report.{format}")), bytes)?;
        }
    }
    pool.close().await;
    Ok(())
}
