//! MQTTS against plain MQTT on the embedded broker, in the same run: `devices` devices, each on
//! its own connection (its certificate over MQTTS; its own API key over plain MQTT), all
//! connecting at once (connections/s), then publishing QoS 1 readings at a total rate (PUBACK
//! p50/p99, points persisted per second). Rounds alternate plain and TLS so both see the same
//! machine; the summary gives medians and the TLS/plain ratios.
//!
//! ```text
//! insa-bench mqtts --devices 1000 --rate 5000 --duration 20 --rounds 3 \
//!   --plain-port 18884 --tls-port 18885 --pid $(pidof insa-iiot)
//! ```
//! The platform runs its embedded broker with MQTTS on (`mqtt.tls.enabled`), its broker
//! certificate issued by its own CA for 127.0.0.1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{admin_token, percentile, persisted, telemetry, Common, Monitor};

/// One device's credentials for both transports.
struct Device {
    id: Uuid,
    key: String,
    tls: Arc<rustls::ClientConfig>,
}

/// Registers the devices, each with an API key and a certificate (the platform's CA).
async fn devices(common: &Common) -> anyhow::Result<Vec<Device>> {
    let client = reqwest::Client::new();
    let token = admin_token(&client, common).await?;
    let ca = client
        .get(format!("{}/api/v1/ca", common.url))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let post = |path: String, body: Value| {
        let (client, token, url) = (client.clone(), token.clone(), common.url.clone());
        async move {
            client
                .post(format!("{url}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?
                .error_for_status()
                .with_context(|| format!("POST {path}"))?
                .json::<Value>()
                .await
                .context("JSON answer")
        }
    };
    let mut all = Vec::with_capacity(common.devices);
    for i in 0..common.devices {
        let device = post(
            "/api/v1/devices".into(),
            json!({"name": format!("mqtts-bench-{i}"), "type": "temperature", "area": "bench"}),
        )
        .await?;
        let id = Uuid::parse_str(device["id"].as_str().context("id")?)?;
        let key = post(
            "/api/v1/api-keys".into(),
            json!({"name": "bench", "device_id": id, "rate_limit": 10_000_000}),
        )
        .await?;
        let issued = post(format!("/api/v1/devices/{id}/certificates"), json!({})).await?;
        let chain = CertificateDer::pem_slice_iter(
            issued["certificate_pem"]
                .as_str()
                .context("certificate_pem")?
                .as_bytes(),
        )
        .collect::<Result<Vec<_>, _>>()?;
        let private = PrivateKeyDer::from_pem_slice(
            issued["private_key_pem"]
                .as_str()
                .context("private_key_pem")?
                .as_bytes(),
        )?;
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain, private)?;
        all.push(Device {
            id,
            key: key["api_key"].as_str().context("api_key")?.to_string(),
            tls: Arc::new(tls),
        });
    }
    Ok(all)
}

/// What one phase measured.
struct Phase {
    transport: &'static str,
    round: usize,
    connect_seconds: f64,
    connected: usize,
    acked_points: u64,
    persisted_points: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
    errors: u64,
    cpu_percent: Option<f64>,
}

impl Phase {
    fn connects_per_sec(&self) -> f64 {
        self.connected as f64 / self.connect_seconds
    }

    fn persisted_per_sec(&self) -> f64 {
        self.persisted_points as f64 / self.seconds
    }
}

/// One connection: its client and what its event loop saw (PUBACK latencies, the last PUBACK).
struct Connection {
    client: AsyncClient,
    poller: tokio::task::JoinHandle<(Vec<u64>, Option<Instant>)>,
}

async fn phase(
    common: &Common,
    devices: &[Device],
    host: &str,
    port: u16,
    tls: bool,
    rate: u64,
    round: usize,
) -> anyhow::Result<Phase> {
    let ids: Vec<Uuid> = devices.iter().map(|d| d.id).collect();
    let before = persisted(&common.database_url, &ids).await?;
    let monitor = Monitor::start(common.pid);
    let acked = Arc::new(AtomicU64::new(0));
    let (connected_tx, mut connected_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let started = Instant::now();
    let mut connections = Vec::with_capacity(devices.len());
    for device in devices {
        let mut options = MqttOptions::new(device.id.to_string(), host, port);
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_inflight(100);
        if tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                device.tls.clone(),
            )));
        } else {
            options.set_credentials(device.id.to_string(), device.key.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (acked, connected_tx) = (acked.clone(), connected_tx.clone());
        // PUBACK latency: from the PUBLISH leaving the client to its PUBACK, by packet id.
        let poller = tokio::spawn(async move {
            let mut sent = HashMap::<u16, Instant>::new();
            let mut mine = Vec::new();
            let mut last = None;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = connected_tx.send(());
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) if pkid != 0 => {
                        sent.insert(pkid, Instant::now());
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        acked.fetch_add(3, Ordering::Relaxed);
                        last = Some(Instant::now());
                        if let Some(at) = sent.remove(&ack.pkid) {
                            mine.push(at.elapsed().as_micros() as u64);
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break (mine, last),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        connections.push(Connection { client, poller });
    }
    drop(connected_tx);
    // Every device connecting at once: until each has its CONNACK (at most a minute).
    let mut connected = 0;
    let wait = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(wait);
    while connected < devices.len() {
        tokio::select! {
            got = connected_rx.recv() => match got {
                Some(()) => connected += 1,
                None => break,
            },
            _ = &mut wait => break,
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();

    // QoS 1 readings at `rate` messages/s over all devices, round robin.
    let errors = Arc::new(AtomicU64::new(0));
    let load = Instant::now();
    let deadline = load + Duration::from_secs(common.duration);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut sent, mut seq) = (0u64, 0u64);
    while Instant::now() < deadline {
        tick.tick().await;
        let due = (load.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let n = (seq as usize) % devices.len();
            let topic = format!("devices/{}/telemetry", devices[n].id);
            if connections[n]
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, telemetry(seq).to_string())
                .is_err()
            {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            seq += 1;
            sent += 1;
        }
    }
    // Let in-flight messages be acknowledged, then end the connections.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut last_ack = load;
    for connection in connections {
        let _ = connection.client.disconnect().await;
        if let Ok(Ok((mine, last))) =
            tokio::time::timeout(Duration::from_secs(5), connection.poller).await
        {
            latencies.lock().map(|mut all| all.extend(mine)).ok();
            last_ack = last_ack.max(last.unwrap_or(load));
        }
    }
    // From the first reading sent to the last acknowledged (acknowledged means stored).
    let seconds = (last_ack - load).as_secs_f64().max(f64::EPSILON);
    // Acknowledged means stored: the count is final once the PUBACKs are in.
    let persisted_points = persisted(&common.database_url, &ids).await? - before;
    let (cpu_percent, _) = monitor.finish(started.elapsed().as_secs_f64());
    let mut latencies_us = latencies
        .lock()
        .map(|mut all| std::mem::take(&mut *all))
        .unwrap_or_default();
    latencies_us.sort_unstable();
    Ok(Phase {
        transport: if tls { "mqtts" } else { "mqtt" },
        round,
        connect_seconds,
        connected,
        acked_points: acked.load(Ordering::Relaxed),
        persisted_points,
        seconds,
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
        cpu_percent,
    })
}

/// One figure of a phase.
type Figure = dyn Fn(&Phase) -> Option<f64>;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn run(
    common: Common,
    host: String,
    plain_port: u16,
    tls_port: u16,
    rate: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    let registering = Instant::now();
    let devices = devices(&common).await?;
    println!(
        "registered {} devices with a key and a certificate each in {:.1} s",
        devices.len(),
        registering.elapsed().as_secs_f64()
    );
    println!("| transport | round | devices connected | connect s | connects/s | acked points | persisted points | persisted pts/s | PUBACK p50 ms | PUBACK p99 ms | errors | platform CPU % |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut phases = Vec::new();
    for round in 1..=rounds {
        for (tls, port) in [(false, plain_port), (true, tls_port)] {
            let p = phase(&common, &devices, &host, port, tls, rate, round).await?;
            let ms = |q| percentile(&p.latencies_us, q).map_or("-".into(), |v| format!("{v:.1}"));
            println!(
                "| {} | {} | {} | {:.2} | {:.0} | {} | {} | {:.0} | {} | {} | {} | {} |",
                p.transport,
                p.round,
                p.connected,
                p.connect_seconds,
                p.connects_per_sec(),
                p.acked_points,
                p.persisted_points,
                p.persisted_per_sec(),
                ms(0.5),
                ms(0.99),
                p.errors,
                p.cpu_percent.map_or("-".into(), |c| format!("{c:.0}")),
            );
            phases.push(p);
            // The broker forgets the closed sessions before the next phase connects.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let of = |transport: &str, f: &Figure| {
        median(
            phases
                .iter()
                .filter(|p| p.transport == transport)
                .filter_map(f)
                .collect(),
        )
    };
    println!();
    println!("| median of {rounds} rounds | mqtt | mqtts | mqtts / mqtt |");
    println!("| --- | --- | --- | --- |");
    let rows: [(&str, &Figure); 4] = [
        ("connects/s (all devices at once)", &|p| {
            Some(p.connects_per_sec())
        }),
        ("persisted points/s", &|p| Some(p.persisted_per_sec())),
        ("PUBACK p50 ms", &|p| percentile(&p.latencies_us, 0.5)),
        ("PUBACK p99 ms", &|p| percentile(&p.latencies_us, 0.99)),
    ];
    for (name, f) in rows {
        let (plain, tls) = (of("mqtt", f), of("mqtts", f));
        println!("| {name} | {plain:.1} | {tls:.1} | {:.2} |", tls / plain);
    }
    Ok(())
}
