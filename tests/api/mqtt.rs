//! Readings over MQTT: the embedded broker by default, the broker at `MQTT_URL` when set.

use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

use crate::helpers::{
    eventually, external_broker, seed_device, seed_reading, spawn_app_with, with_mqtt, As, TestApp,
};

/// A connected device client: (client, its event loop driven in the background).
async fn connect(
    app: &TestApp,
    username: &str,
    password: &str,
) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<Event>) {
    let (host, port) = app.mqtt.clone().expect("MQTT is on");
    // A client id bound to the login: `{username}-{suffix}`.
    let client_id = format!(
        "{username}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_credentials(username, password)
        .set_keep_alive(Duration::from_secs(10));
    let (client, eventloop) = AsyncClient::new(options, 100);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    actix_web::rt::spawn(drive(eventloop, tx));
    (client, rx)
}

/// Forwards a client's events; a connection error ends the stream with `Outgoing::Disconnect`,
/// after passing on a refused CONNACK (rumqttc reports one as an error).
pub(crate) async fn drive(mut eventloop: EventLoop, tx: tokio::sync::mpsc::UnboundedSender<Event>) {
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                if tx.send(event).is_err() {
                    return;
                }
            }
            Err(err) => {
                if let rumqttc::ConnectionError::ConnectionRefused(code) = err {
                    let ack = rumqttc::ConnAck {
                        session_present: false,
                        code,
                    };
                    let _ = tx.send(Event::Incoming(Packet::ConnAck(ack)));
                }
                let _ = tx.send(Event::Outgoing(rumqttc::Outgoing::Disconnect));
                return;
            }
        }
    }
}

/// Waits for the first event that `pick` accepts.
async fn next<T>(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    what: &str,
    pick: impl Fn(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("connection ended waiting for {what}"));
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

fn connack(event: &Event) -> Option<rumqttc::ConnectReturnCode> {
    match event {
        Event::Incoming(Packet::ConnAck(ack)) => Some(ack.code),
        _ => None,
    }
}

/// Waits until the platform's own subscriber is connected to the broker.
pub(crate) async fn subscribed(app: &TestApp) {
    eventually(Duration::from_secs(10), "platform subscribed", || async {
        let status = app.get("/api/v1/status", As::Nobody).await;
        (status.body["mqtt"]["connected"] == true).then_some(())
    })
    .await;
}

/// The CONNACK code, or `None` when the broker closed the connection instead.
async fn login_outcome(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Option<rumqttc::ConnectReturnCode> {
    next(events, "CONNACK or close", |e| match e {
        Event::Incoming(Packet::ConnAck(ack)) => Some(Some(ack.code)),
        Event::Outgoing(rumqttc::Outgoing::Disconnect) => Some(None),
        _ => None,
    })
    .await
}

/// Publishes QoS 1 and waits for the broker's PUBACK.
async fn publish_acked(
    client: &AsyncClient,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    topic: &str,
    body: Value,
) {
    client
        .publish(topic, QoS::AtLeastOnce, false, body.to_string())
        .await
        .expect("publish");
    next(events, "PUBACK", |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;
}

/// A device with a write key; the MQTT login is (device id, key).
async fn device(app: &TestApp, token: &str) -> (String, String) {
    let device = app.create_device(token, seed_device()).await;
    let id = device["id"].as_str().expect("id").to_string();
    let (key, _) = app
        .create_api_key(
            token,
            json!({"name": "mqtt", "device_id": id, "permissions": {"read": true, "write": true}}),
        )
        .await;
    (id, key)
}

#[actix_web::test]
async fn mqtt_readings_are_stored_and_acknowledged_after_commit() {
    let app = spawn_app_with(with_mqtt).await;
    let token = app.admin_token().await;
    let (id, key) = device(&app, &token).await;
    subscribed(&app).await;

    let (client, mut events) = connect(&app, &id, &key).await;
    assert_eq!(
        next(&mut events, "CONNACK", connack).await,
        rumqttc::ConnectReturnCode::Success
    );
    let topic = format!("devices/{id}/telemetry");
    // The HTTP body, QoS 1.
    publish_acked(&client, &mut events, &topic, seed_reading(&id)).await;
    // Only the telemetry object, QoS 1 and QoS 0.
    publish_acked(&client, &mut events, &topic, json!({"flow": 12.5})).await;
    client
        .publish(
            &topic,
            QoS::AtMostOnce,
            false,
            json!({"level": 3}).to_string(),
        )
        .await
        .expect("publish");

    let count = eventually(Duration::from_secs(10), "5 points stored", || async {
        let n = app.stored_rows(&token, &id).await;
        (n >= 5).then_some(n)
    })
    .await;
    assert_eq!(count, 5);
    let latest = app
        .get(
            &format!("/api/v1/telemetry/latest?device_id={id}"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(latest.body["values"]["temperature"]["value"], 25.5);
    assert_eq!(latest.body["values"]["flow"]["value"], 12.5);
    assert_eq!(latest.body["values"]["level"]["value"], 3.0);
    assert_eq!(latest.body["status"], "online");
}

#[actix_web::test]
async fn the_embedded_broker_acknowledges_a_reading_only_once_it_is_stored() {
    if external_broker() {
        eprintln!("not applicable: with MQTT_URL the device's PUBACK comes from that broker");
        return;
    }
    let app = spawn_app_with(with_mqtt).await;
    let token = app.admin_token().await;
    let (id, key) = device(&app, &token).await;
    let (client, mut events) = connect(&app, &id, &key).await;
    assert_eq!(
        next(&mut events, "CONNACK", connack).await,
        rumqttc::ConnectReturnCode::Success
    );
    let topic = format!("devices/{id}/telemetry");
    for n in 1..=20 {
        publish_acked(&client, &mut events, &topic, json!({"pressure": n})).await;
        // No waiting: the PUBACK itself says the reading is in the database.
        assert_eq!(app.stored_rows(&token, &id).await, n, "after PUBACK {n}");
    }
    let status = app.get("/api/v1/status", As::Nobody).await;
    assert_eq!(status.body["mqtt"]["messages_stored"], 20);
}

#[actix_web::test]
async fn malformed_messages_are_counted_and_never_stop_ingest() {
    let app = spawn_app_with(with_mqtt).await;
    let token = app.admin_token().await;
    let (id, key) = device(&app, &token).await;
    subscribed(&app).await;
    let (client, mut events) = connect(&app, &id, &key).await;
    next(&mut events, "CONNACK", connack).await;
    let topic = format!("devices/{id}/telemetry");
    for bad in [
        "not json",
        "{\"t\": {\"value\": \"hot\"}}",
        "[]",
        "{\"device_id\": \"00000000-0000-0000-0000-000000000000\", \"telemetry\": {\"t\": 1}}",
    ] {
        client
            .publish(&topic, QoS::AtLeastOnce, false, bad)
            .await
            .expect("publish");
    }
    client
        .publish(
            &topic,
            QoS::AtLeastOnce,
            false,
            json!({"temperature": 19.0}).to_string(),
        )
        .await
        .expect("publish");
    eventually(
        Duration::from_secs(10),
        "the good reading stored",
        || async { (app.stored_rows(&token, &id).await == 1).then_some(()) },
    )
    .await;
    let status = app.get("/api/v1/status", As::Nobody).await;
    assert_eq!(
        status.body["mqtt"]["messages_malformed"], 4,
        "{}",
        status.body
    );
    assert_eq!(status.body["mqtt"]["messages_stored"], 1);
    let latest = app
        .get(
            &format!("/api/v1/telemetry/latest?device_id={id}"),
            As::Bearer(&token),
        )
        .await;
    assert_eq!(latest.body["values"]["temperature"]["value"], 19.0);
}

#[actix_web::test]
async fn the_embedded_broker_lets_a_device_publish_only_as_itself() {
    if external_broker() {
        eprintln!(
            "not applicable: with MQTT_URL the broker's own ACLs protect topics (docs/MQTT.md)"
        );
        return;
    }
    let app = spawn_app_with(with_mqtt).await;
    let token = app.admin_token().await;
    let (id, key) = device(&app, &token).await;
    let (other, _) = device(&app, &token).await;

    let (_, mut refused) = connect(&app, &id, "wrong-key").await;
    let code = login_outcome(&mut refused).await;
    assert_ne!(
        code,
        Some(rumqttc::ConnectReturnCode::Success),
        "a wrong key is refused"
    );
    let (_, mut impostor) = connect(&app, &other, &key).await;
    let code = login_outcome(&mut impostor).await;
    assert_ne!(
        code,
        Some(rumqttc::ConnectReturnCode::Success),
        "a key logs in only as its device"
    );

    let (client, mut events) = connect(&app, &id, &key).await;
    next(&mut events, "CONNACK", connack).await;
    client
        .publish(
            format!("devices/{other}/telemetry"),
            QoS::AtLeastOnce,
            false,
            json!({"temperature": 99}).to_string(),
        )
        .await
        .expect("publish");
    // The broker refuses and drops the connection; nothing lands for the other device.
    next(&mut events, "disconnect", |e| {
        matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)).then_some(())
    })
    .await;
    let sneaky = json!({"device_id": other, "telemetry": {"temperature": 99}});
    let (client, mut events) = connect(&app, &id, &key).await;
    next(&mut events, "CONNACK", connack).await;
    client
        .publish(
            format!("devices/{id}/telemetry"),
            QoS::AtLeastOnce,
            false,
            sneaky.to_string(),
        )
        .await
        .expect("publish");
    client
        .publish(
            format!("devices/{id}/telemetry"),
            QoS::AtLeastOnce,
            false,
            json!({"temperature": 20}).to_string(),
        )
        .await
        .expect("publish");
    eventually(Duration::from_secs(10), "own reading stored", || async {
        (app.stored_rows(&token, &id).await == 1).then_some(())
    })
    .await;
    assert_eq!(app.stored_rows(&token, &other).await, 0);
}

#[actix_web::test]
async fn status_changes_are_published_retained() {
    let app = spawn_app_with(with_mqtt).await;
    let token = app.admin_token().await;
    let (id, key) = device(&app, &token).await;
    subscribed(&app).await;
    let reading = json!({"device_id": id, "telemetry": {"temperature": 21}});
    assert_eq!(
        app.post("/api/v1/telemetry", As::ApiKey(&key), &reading)
            .await
            .status,
        StatusCode::CREATED
    );

    // Subscribing after the fact still gets the status: it is retained.
    let (client, mut events) = connect(&app, &id, &key).await;
    next(&mut events, "CONNACK", connack).await;
    client
        .subscribe(format!("devices/{id}/status"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let status: Value = next(&mut events, "retained status", |e| match e {
        Event::Incoming(Packet::Publish(p)) => serde_json::from_slice(&p.payload).ok(),
        _ => None,
    })
    .await;
    assert_eq!(status["status"], "online");
    assert_eq!(status["device_id"], id.as_str());
}

/// A throw-away Mosquitto listening on loopback at `port`; killed when dropped.
pub(crate) struct Mosquitto {
    child: std::process::Child,
    pub(crate) port: u16,
    /// Its log lines so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _conf: tempfile::TempDir,
}

/// Why Mosquitto did not start.
enum Launch {
    NotInstalled,
    /// It stopped before saying it runs: its port was taken.
    Stopped,
}

impl Mosquitto {
    /// Mosquitto letting anyone in, on a free port; `None` where it is not installed.
    fn start() -> Option<Self> {
        Self::on_free_port(plain)
    }

    /// Mosquitto with the configuration `conf(port)`, on a port that was free a moment ago:
    /// Mosquitto cannot bind port 0 and say which port it got, so when another process took the
    /// port meanwhile, another port is tried.
    pub(crate) fn on_free_port(conf: impl Fn(u16) -> String) -> Option<Self> {
        for _ in 0..5 {
            match Self::on_port(crate::helpers::free_port(), &conf) {
                Ok(broker) => return Some(broker),
                Err(Launch::NotInstalled) => return None,
                Err(Launch::Stopped) => continue,
            }
        }
        panic!("mosquitto found no free port in 5 tries");
    }

    /// Mosquitto on `port`, once it says it runs (every listener open).
    fn on_port(port: u16, conf: &impl Fn(u16) -> String) -> Result<Self, Launch> {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("mosquitto.conf");
        std::fs::write(&file, conf(port)).expect("write mosquitto.conf");
        let mut child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|_| Launch::NotInstalled)?;
        let stderr = child.stderr.take().expect("mosquitto's stderr");
        let (running, said) = std::sync::mpsc::channel();
        let log = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
        let kept = log.clone();
        // Reads its log to the end, so that it never waits on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.ends_with(" running") {
                    let _ = running.send(());
                }
                kept.lock().expect("mosquitto's log").push(line);
            }
        });
        match said.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => Ok(Self {
                child,
                port,
                log,
                _conf: dir,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(Launch::Stopped)
            }
        }
    }
}

impl Mosquitto {
    /// The lines Mosquitto logged so far.
    pub(crate) fn log(&self) -> Vec<String> {
        self.log.lock().expect("mosquitto's log").clone()
    }
}

/// A configuration letting anyone in on `port` (loopback only).
fn plain(port: u16) -> String {
    format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn ingest_resumes_after_the_broker_restarts() {
    let Some(broker) = Mosquitto::start() else {
        eprintln!("not run: needs the mosquitto binary (apt-get install mosquitto)");
        return;
    };
    let port = broker.port;
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.mode = insa_iiot::settings::MqttMode::External;
        s.mqtt.url = format!("mqtt://127.0.0.1:{port}");
    })
    .await;
    let token = app.admin_token().await;
    let (id, key) = device(&app, &token).await;
    subscribed(&app).await;
    let topic = format!("devices/{id}/telemetry");
    let publish = |value: f64| {
        let (app, id, key, topic) = (&app, id.clone(), key.clone(), topic.clone());
        async move {
            let (client, mut events) = connect(app, &id, &key).await;
            next(&mut events, "CONNACK", connack).await;
            publish_acked(&client, &mut events, &topic, json!({"pressure": value})).await;
        }
    };
    publish(1.0).await;
    eventually(Duration::from_secs(10), "first reading stored", || async {
        (app.stored_rows(&token, &id).await == 1).then_some(())
    })
    .await;

    drop(broker);
    eventually(
        Duration::from_secs(10),
        "platform sees the broker gone",
        || async {
            let status = app.get("/api/v1/status", As::Nobody).await;
            (status.body["mqtt"]["connected"] == false).then_some(())
        },
    )
    .await;
    // The same port again (the platform's client reconnects there): taken by another process
    // meanwhile, this start fails; nothing can hand a port to a process that is down.
    let _broker = Mosquitto::on_port(port, &plain)
        .unwrap_or_else(|_| panic!("mosquitto restarts on port {port}"));
    subscribed(&app).await;
    publish(2.0).await;
    eventually(
        Duration::from_secs(10),
        "reading after the restart stored",
        || async { (app.stored_rows(&token, &id).await == 2).then_some(()) },
    )
    .await;
    let status = app.get("/api/v1/status", As::Nobody).await;
    assert!(status.body["mqtt"]["messages_stored"].as_u64() >= Some(2));
}

/// A throw-away Mosquitto with its dynamic-security plugin (admin login `admin`/`adminpw`) on a
/// free port, its files in `dir`; `None` where mosquitto or the plugin is not installed.
pub(crate) fn mosquitto_with_dynsec(dir: &std::path::Path) -> Option<Mosquitto> {
    const PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
    if !std::path::Path::new(PLUGIN).exists() {
        return None;
    }
    let dynsec = dir.join("dynsec.json");
    let init = std::process::Command::new("mosquitto_ctrl")
        .args(["dynsec", "init"])
        .arg(&dynsec)
        .args(["admin", "adminpw"])
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    if !init.success() {
        return None;
    }
    // Run as root, mosquitto drops to its own user: let it read and write its files.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).ok()?;
    std::fs::set_permissions(&dynsec, std::fs::Permissions::from_mode(0o666)).ok()?;
    Mosquitto::on_free_port(|port| {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n\
             plugin {PLUGIN}\nplugin_opt_config_file {}\n",
            dynsec.display()
        )
    })
}

#[actix_web::test]
async fn mosquitto_dynamic_security_follows_api_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(broker) = mosquitto_with_dynsec(dir.path()) else {
        eprintln!("not run: needs mosquitto, mosquitto_ctrl and the dynamic-security plugin");
        return;
    };
    let port = broker.port;
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.mode = insa_iiot::settings::MqttMode::External;
        s.mqtt.url = format!("mqtt://127.0.0.1:{port}");
        s.mqtt.username = Some("admin".into());
        s.mqtt.password = Some(insa_iiot::settings::Secret::new("adminpw"));
        s.mqtt.dynsec = true;
    })
    .await;
    let token = app.admin_token().await;
    subscribed(&app).await;
    let (id, key) = device(&app, &token).await;
    let (other, _) = device(&app, &token).await;
    let keys = app.get("/api/v1/api-keys", As::Bearer(&token)).await;
    let key_id = keys.body["api_keys"]
        .as_array()
        .and_then(|all| all.iter().find(|k| k["device_id"] == id.as_str()))
        .and_then(|k| k["id"].as_str())
        .expect("the device's key")
        .to_string();

    // The broker learns the key: username = the key's id, password = the key.
    let (client, mut events) = eventually(
        Duration::from_secs(10),
        "the broker accepts the key",
        || async {
            let (client, mut events) = connect(&app, &key_id, &key).await;
            (login_outcome(&mut events).await == Some(rumqttc::ConnectReturnCode::Success))
                .then_some((client, events))
        },
    )
    .await;
    // Another device's topic is refused by the broker; its own topic is stored.
    client
        .publish(
            format!("devices/{other}/telemetry"),
            QoS::AtLeastOnce,
            false,
            json!({"flow": 1}).to_string(),
        )
        .await
        .expect("publish");
    publish_acked(
        &client,
        &mut events,
        &format!("devices/{id}/telemetry"),
        json!({"pressure": 7}),
    )
    .await;
    eventually(Duration::from_secs(10), "own reading stored", || async {
        (app.stored_rows(&token, &id).await == 1).then_some(())
    })
    .await;
    assert_eq!(
        app.stored_rows(&token, &other).await,
        0,
        "another device's topic"
    );
    // The platform may publish status (its broker role), and the key may read its own.
    client
        .subscribe(format!("devices/{id}/status"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let status: Value = next(&mut events, "retained status", |e| match e {
        Event::Incoming(Packet::Publish(p)) => serde_json::from_slice(&p.payload).ok(),
        _ => None,
    })
    .await;
    assert_eq!(status["status"], "online");

    // A revoked key is refused by the broker.
    let revoked = app
        .delete(&format!("/api/v1/api-keys/{key_id}"), As::Bearer(&token))
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    eventually(
        Duration::from_secs(10),
        "the broker refuses the revoked key",
        || async {
            let (_, mut events) = connect(&app, &key_id, &key).await;
            (login_outcome(&mut events).await != Some(rumqttc::ConnectReturnCode::Success))
                .then_some(())
        },
    )
    .await;
}

#[actix_web::test]
async fn a_rule_sends_its_mqtt_command_to_the_device() {
    let app = spawn_app_with(with_mqtt).await;
    let token = app.admin_token().await;
    let (id, key) = device(&app, &token).await;
    subscribed(&app).await;
    let (client, mut events) = connect(&app, &id, &key).await;
    next(&mut events, "CONNACK", connack).await;
    client
        .subscribe(format!("devices/{id}/commands"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    next(&mut events, "SUBACK", |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;
    let rule = app
        .post(
            "/api/v1/rules",
            As::Bearer(&token),
            &json!({"name": "Overpressure", "device_id": id, "key": "pressure",
                    "condition": ">", "threshold": 80,
                    "actions": [{"type": "mqtt", "payload": {"command": "close_valve"}}]}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{rule:?}");
    let reading = json!({"device_id": id, "telemetry": {"pressure": 95}});
    let sent = app
        .post("/api/v1/telemetry", As::Bearer(&token), &reading)
        .await;
    assert_eq!(sent.status, StatusCode::CREATED);
    let (topic, command) = next(&mut events, "the command", |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some((
            p.topic.clone(),
            serde_json::from_slice::<Value>(&p.payload).ok()?,
        )),
        _ => None,
    })
    .await;
    assert_eq!(topic, format!("devices/{id}/commands"));
    assert_eq!(command, json!({"command": "close_valve"}));
}
