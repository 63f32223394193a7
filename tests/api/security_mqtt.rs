//! The MQTT device boundary: client ids bound to the login, revocation reaching live connections,
//! the broker `auto` mode never adopts, per-device limits, and commands acknowledged by the broker.

use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::helpers::{
    eventually, external_broker, seed_device, spawn_app_with, with_mqtt, As, TestApp,
};

/// One MQTT connection of a test device, its events read in the background.
struct Client {
    client: AsyncClient,
    events: UnboundedReceiver<Event>,
}

/// How a connection ended or began.
#[derive(Debug, PartialEq)]
enum Outcome {
    Accepted,
    Refused(ConnectReturnCode),
    Closed,
}

impl Client {
    /// Connects to `addr` as `username` / `password` with `client_id`.
    fn open(addr: (String, u16), client_id: &str, username: &str, password: &str) -> Self {
        Self::open_with(addr, client_id, username, password, |_| {})
    }

    fn open_with(
        addr: (String, u16),
        client_id: &str,
        username: &str,
        password: &str,
        customize: impl FnOnce(&mut MqttOptions),
    ) -> Self {
        let mut options = MqttOptions::new(client_id, addr.0, addr.1);
        options
            .set_credentials(username, password)
            .set_keep_alive(Duration::from_secs(10))
            .set_max_packet_size(1 << 20, 1 << 20);
        customize(&mut options);
        let (client, eventloop) = AsyncClient::new(options, 100);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        actix_web::rt::spawn(crate::mqtt::drive(eventloop, tx));
        Self { client, events }
    }

    /// Waits for the first event `pick` accepts (at most `within`).
    async fn next<T>(
        &mut self,
        within: Duration,
        what: &str,
        pick: impl Fn(&Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap_or_else(|| panic!("connection ended waiting for {what}"));
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    }

    /// The answer to the CONNECT.
    async fn login(&mut self) -> Outcome {
        self.next(Duration::from_secs(10), "CONNACK or close", |e| match e {
            Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
                Some(Outcome::Accepted)
            }
            Event::Incoming(Packet::ConnAck(ack)) => Some(Outcome::Refused(ack.code)),
            Event::Outgoing(rumqttc::Outgoing::Disconnect) => Some(Outcome::Closed),
            _ => None,
        })
        .await
    }

    /// Publishes QoS 1 and returns whether the broker answered PUBACK (or closed the connection).
    async fn publish(&mut self, topic: &str, retain: bool, body: Vec<u8>) -> Outcome {
        if self
            .client
            .publish(topic, QoS::AtLeastOnce, retain, body)
            .await
            .is_err()
        {
            // The connection has already ended.
            return Outcome::Closed;
        }
        self.next(Duration::from_secs(10), "PUBACK or close", |e| match e {
            Event::Incoming(Packet::PubAck(_)) => Some(Outcome::Accepted),
            Event::Outgoing(rumqttc::Outgoing::Disconnect) => Some(Outcome::Closed),
            _ => None,
        })
        .await
    }

    async fn closed_within(&mut self, within: Duration, what: &str) {
        self.next(within, what, |e| {
            matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)).then_some(())
        })
        .await
    }
}

/// A device and a read+write key bound to it: (device id, key, key id).
async fn device_with_key(app: &TestApp, token: &str, extra: Value) -> (String, String, String) {
    let device = app.create_device(token, seed_device()).await;
    let id = device["id"].as_str().expect("id").to_string();
    let mut body = json!({"name": "mqtt", "device_id": id,
                          "permissions": {"read": true, "write": true}});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (key, info) = app.create_api_key(token, body).await;
    let key_id = info["id"].as_str().expect("key id").to_string();
    (id, key, key_id)
}

fn embedded_only(test: &str) -> bool {
    if external_broker() {
        eprintln!("{test}: not applicable with MQTT_URL (the external broker's own ACLs apply)");
        return false;
    }
    true
}

fn reading(value: f64) -> Vec<u8> {
    json!({"pressure": value}).to_string().into_bytes()
}

#[actix_web::test]
async fn a_device_may_only_use_client_ids_bound_to_its_own_identity() {
    if !embedded_only("client ids") {
        return;
    }
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.client_id = "insa-platform".into();
    })
    .await;
    let addr = app.mqtt.clone().expect("MQTT on");
    let token = app.admin_token().await;
    let (a, key_a, key_a_id) = device_with_key(&app, &token, json!({})).await;
    let (b, key_b, _) = device_with_key(&app, &token, json!({})).await;

    // Device B is connected with a persistent session and subscribed to its commands.
    let mut victim = Client::open_with(addr.clone(), &b, &b, &key_b, |o| {
        o.set_clean_session(false);
    });
    assert_eq!(victim.login().await, Outcome::Accepted);
    victim
        .client
        .subscribe(format!("devices/{b}/commands"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    victim
        .next(Duration::from_secs(10), "SUBACK", |e| {
            matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
        })
        .await;

    // Device A, with its own valid key, tries B's client id, a made-up one and the platform's.
    for stolen in [b.clone(), format!("{b}-x"), "sensor-1".into()] {
        let mut thief = Client::open_with(addr.clone(), &stolen, &a, &key_a, |o| {
            o.set_clean_session(false);
        });
        assert_eq!(
            thief.login().await,
            Outcome::Refused(ConnectReturnCode::NotAuthorized),
            "client id {stolen}"
        );
    }
    // The platform's own client ids are reserved whatever the key.
    for reserved in ["insa-platform", "insa-platform-status"] {
        let mut thief = Client::open(addr.clone(), reserved, &a, &key_a);
        assert_eq!(
            thief.login().await,
            Outcome::Refused(ConnectReturnCode::NotAuthorized),
            "client id {reserved}"
        );
    }

    // B's connection is untouched by the refused attempts: it still publishes and is stored.
    assert_eq!(
        victim
            .publish(&format!("devices/{b}/telemetry"), false, reading(1.0))
            .await,
        Outcome::Accepted
    );
    assert_eq!(app.stored_rows(&token, &b).await, 1);

    // A's own ids work: its device id, its key id, each with a suffix.
    for own in [a.clone(), format!("{a}-pump"), format!("{key_a_id}-gw")] {
        let mut device = Client::open(addr.clone(), &own, &a, &key_a);
        assert_eq!(device.login().await, Outcome::Accepted, "client id {own}");
    }
}

#[actix_web::test]
async fn a_revoked_keys_live_connection_is_closed_within_5_s_and_nothing_after_is_stored() {
    if !embedded_only("revocation") {
        return;
    }
    let app = spawn_app_with(with_mqtt).await;
    let addr = app.mqtt.clone().expect("MQTT on");
    let token = app.admin_token().await;
    let (id, key, key_id) = device_with_key(&app, &token, json!({})).await;
    let topic = format!("devices/{id}/telemetry");
    let mut device = Client::open(addr.clone(), &format!("{id}-1"), &id, &key);
    assert_eq!(device.login().await, Outcome::Accepted);
    assert_eq!(
        device.publish(&topic, false, reading(1.0)).await,
        Outcome::Accepted
    );

    let revoked = app
        .delete(&format!("/api/v1/api-keys/{key_id}"), As::Bearer(&token))
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    // Published after the revocation was answered: the connection is closed (at once for a
    // revocation, docs/MQTT.md) instead of the publish being acknowledged, and it is never stored.
    assert_eq!(
        device.publish(&topic, false, reading(2.0)).await,
        Outcome::Closed
    );
    assert_eq!(app.stored_rows(&token, &id).await, 1);
    let mut again = Client::open(addr, &format!("{id}-again"), &id, &key);
    assert_eq!(
        again.login().await,
        Outcome::Refused(ConnectReturnCode::BadUserNamePassword),
        "the key is refused"
    );
}

#[actix_web::test]
async fn an_idle_connection_is_closed_when_its_key_is_revoked_expires_or_its_device_is_deleted() {
    if !embedded_only("revocation") {
        return;
    }
    let app = spawn_app_with(with_mqtt).await;
    let addr = app.mqtt.clone().expect("MQTT on");
    let token = app.admin_token().await;

    // Revoked: the connection is closed without the device doing anything.
    let (id, key, key_id) = device_with_key(&app, &token, json!({})).await;
    let mut device = Client::open(addr.clone(), &id, &id, &key);
    assert_eq!(device.login().await, Outcome::Accepted);
    app.delete(&format!("/api/v1/api-keys/{key_id}"), As::Bearer(&token))
        .await;
    device
        .closed_within(Duration::from_secs(5), "close after revocation")
        .await;

    // Expired: closed within 5 s of the expiry.
    let expires = chrono::Utc::now() + chrono::Duration::seconds(3);
    let (id, key, _) = device_with_key(&app, &token, json!({"expires_at": expires})).await;
    let mut device = Client::open(addr.clone(), &id, &id, &key);
    assert_eq!(device.login().await, Outcome::Accepted);
    device
        .closed_within(Duration::from_secs(3 + 5), "close after expiry")
        .await;
    assert!(chrono::Utc::now() >= expires);

    // Device deleted (its keys with it).
    let (id, key, _) = device_with_key(&app, &token, json!({})).await;
    let mut device = Client::open(addr.clone(), &id, &id, &key);
    assert_eq!(device.login().await, Outcome::Accepted);
    let deleted = app
        .delete(&format!("/api/v1/devices/{id}"), As::Bearer(&token))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    device
        .closed_within(Duration::from_secs(5), "close after device deletion")
        .await;
}

/// A listener that accepts MQTT connections and lets anyone in (CONNACK 0), never acknowledging
/// a publish: an open broker, as far as a probe can tell, and one that loses commands.
async fn open_broker_that_never_acks() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    actix_web::rt::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            actix_web::rt::spawn(async move {
                loop {
                    // Fixed header, remaining length (varint), body.
                    let Ok(kind) = socket.read_u8().await else {
                        return;
                    };
                    let (mut length, mut shift) = (0usize, 0);
                    loop {
                        let Ok(byte) = socket.read_u8().await else {
                            return;
                        };
                        length |= usize::from(byte & 0x7f) << shift;
                        shift += 7;
                        if byte & 0x80 == 0 {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if socket.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let answer: &[u8] = match kind >> 4 {
                        1 => &[0x20, 0x02, 0x00, 0x00], // CONNECT -> CONNACK accepted
                        12 => &[0xd0, 0x00],            // PINGREQ -> PINGRESP
                        _ => &[],                       // PUBLISH, SUBSCRIBE: never answered
                    };
                    if socket.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[actix_web::test]
async fn auto_mode_never_adopts_an_open_broker_and_says_which_broker_it_uses() {
    let taken = open_broker_that_never_acks().await;
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.mode = insa_iiot::settings::MqttMode::Auto;
        s.mqtt.url = format!("mqtt://127.0.0.1:{taken}");
    })
    .await;
    let status = app.get("/api/v1/status", As::Nobody).await;
    let mqtt = &status.body["mqtt"];
    assert_eq!(mqtt["mode"], "embedded", "{mqtt}");
    assert_eq!(mqtt["device_auth"], "api_key", "{mqtt}");
    let address = mqtt["address"].as_str().expect("address").to_string();
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("port");
    assert_ne!(port, taken, "not the open broker's port");

    // Devices reach the embedded broker there, with their keys; anonymous logins are refused.
    let token = app.admin_token().await;
    let (id, key, _) = device_with_key(&app, &token, json!({})).await;
    let mut anonymous = Client::open_with((host.into(), port), &id, "", "", |o| {
        o.set_credentials("", "");
    });
    assert_ne!(anonymous.login().await, Outcome::Accepted);
    let mut device = Client::open((host.into(), port), &id, &id, &key);
    assert_eq!(device.login().await, Outcome::Accepted);
    assert_eq!(
        device
            .publish(&format!("devices/{id}/telemetry"), false, reading(3.0))
            .await,
        Outcome::Accepted
    );
    assert_eq!(app.stored_rows(&token, &id).await, 1);
}

#[actix_web::test]
async fn auto_mode_uses_a_broker_that_checks_devices_with_dynamic_security() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(broker) = crate::mqtt::mosquitto_with_dynsec(dir.path()) else {
        eprintln!("not run: needs mosquitto, mosquitto_ctrl and the dynamic-security plugin");
        return;
    };
    let port = broker.port;
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.mode = insa_iiot::settings::MqttMode::Auto;
        s.mqtt.url = format!("mqtt://127.0.0.1:{port}");
        s.mqtt.username = Some("admin".into());
        s.mqtt.password = Some(insa_iiot::settings::Secret::new("adminpw"));
        s.mqtt.dynsec = true;
    })
    .await;
    let status = app.get("/api/v1/status", As::Nobody).await;
    let mqtt = &status.body["mqtt"];
    assert_eq!(mqtt["mode"], "external", "{mqtt}");
    assert_eq!(mqtt["address"], format!("127.0.0.1:{port}"));
    assert_eq!(mqtt["device_auth"], "dynsec", "{mqtt}");
    assert!(mqtt["warning"].is_null(), "{mqtt}");
}

#[actix_web::test]
async fn an_external_broker_without_dynsec_is_reported_as_not_checking_devices() {
    let open = open_broker_that_never_acks().await;
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.mode = insa_iiot::settings::MqttMode::External;
        s.mqtt.url = format!("mqtt://127.0.0.1:{open}");
        s.mqtt.dynsec = false;
    })
    .await;
    let status = app.get("/api/v1/status", As::Nobody).await;
    let mqtt = &status.body["mqtt"];
    assert_eq!(mqtt["mode"], "external", "{mqtt}");
    assert_eq!(mqtt["address"], format!("127.0.0.1:{open}"));
    assert_eq!(mqtt["device_auth"], "none", "{mqtt}");
    assert!(
        mqtt["warning"]
            .as_str()
            .is_some_and(|w| w.contains("device identity")),
        "{mqtt}"
    );
}

#[actix_web::test]
async fn an_external_broker_with_dynsec_that_accepts_anonymous_logins_is_warned_about() {
    let open = open_broker_that_never_acks().await;
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.mode = insa_iiot::settings::MqttMode::External;
        s.mqtt.url = format!("mqtt://127.0.0.1:{open}");
        s.mqtt.username = Some("admin".into());
        s.mqtt.password = Some(insa_iiot::settings::Secret::new("adminpw"));
        s.mqtt.dynsec = true;
    })
    .await;
    let status = app.get("/api/v1/status", As::Nobody).await;
    let mqtt = &status.body["mqtt"];
    assert_eq!(mqtt["device_auth"], "dynsec", "{mqtt}");
    assert!(
        mqtt["warning"]
            .as_str()
            .is_some_and(|w| w.contains("anonymous")),
        "{mqtt}"
    );
}

#[actix_web::test]
async fn a_rules_mqtt_command_is_sent_only_once_the_broker_acknowledged_it() {
    let silent = open_broker_that_never_acks().await;
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.mode = insa_iiot::settings::MqttMode::External;
        s.mqtt.url = format!("mqtt://127.0.0.1:{silent}");
        s.mqtt.command_ack_timeout_secs = 1;
    })
    .await;
    let (token, id) = app
        .watched_wellhead(json!({"type": "mqtt", "payload": {"command": "close_valve"}}))
        .await;
    app.send_reading(&token, &id, json!({"pressure": 95})).await;
    let delivery = eventually(Duration::from_secs(20), "a first attempt", || async {
        let list = app.get("/api/v1/notifications", As::Bearer(&token)).await;
        list.body["notifications"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|d| d["channel"] == "mqtt" && d["attempts"].as_i64() >= Some(1))
            })
            .cloned()
    })
    .await;
    assert_eq!(delivery["status"], "pending", "{delivery}");
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("PUBACK") || e.contains("acknowledged")),
        "{delivery}"
    );
}

#[actix_web::test]
async fn a_rules_mqtt_command_acknowledged_by_the_broker_is_marked_sent() {
    let app = spawn_app_with(with_mqtt).await;
    let (token, id) = app
        .watched_wellhead(json!({"type": "mqtt", "payload": {"command": "close_valve"}}))
        .await;
    app.send_reading(&token, &id, json!({"pressure": 95})).await;
    eventually(Duration::from_secs(20), "the command sent", || async {
        let list = app.get("/api/v1/notifications", As::Bearer(&token)).await;
        list.body["notifications"].as_array().and_then(|all| {
            all.iter()
                .find(|d| d["channel"] == "mqtt" && d["status"] == "sent")
                .map(|_| ())
        })
    })
    .await;
}

#[actix_web::test]
async fn a_device_over_its_publish_rate_is_refused_and_nothing_beyond_is_stored() {
    if !embedded_only("publish rate") {
        return;
    }
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.max_publish_per_second_per_device = 1;
        s.mqtt.publish_burst_per_device = 3;
    })
    .await;
    let addr = app.mqtt.clone().expect("MQTT on");
    let token = app.admin_token().await;
    let (id, key, _) = device_with_key(&app, &token, json!({})).await;
    let topic = format!("devices/{id}/telemetry");
    let mut device = Client::open(addr, &id, &id, &key);
    assert_eq!(device.login().await, Outcome::Accepted);
    for n in 1..=3 {
        assert_eq!(
            device.publish(&topic, false, reading(n.into())).await,
            Outcome::Accepted
        );
    }
    // MQTT 3.1.1 cannot carry a reason in a PUBACK: the broker closes the connection.
    assert_eq!(
        device.publish(&topic, false, reading(4.0)).await,
        Outcome::Closed
    );
    assert_eq!(app.stored_rows(&token, &id).await, 3);
}

#[actix_web::test]
async fn a_device_cannot_fill_the_broker_with_retained_or_oversized_messages() {
    if !embedded_only("retained and size limits") {
        return;
    }
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.max_retained_per_device = 2;
        s.mqtt.max_message_bytes = 4096;
    })
    .await;
    let addr = app.mqtt.clone().expect("MQTT on");
    let token = app.admin_token().await;
    let (id, key, _) = device_with_key(&app, &token, json!({})).await;
    let mut device = Client::open(addr.clone(), &id, &id, &key);
    assert_eq!(device.login().await, Outcome::Accepted);
    for sub in ["a", "b"] {
        let topic = format!("devices/{id}/state/{sub}");
        assert_eq!(
            device.publish(&topic, true, b"1".to_vec()).await,
            Outcome::Accepted
        );
    }
    let third = format!("devices/{id}/state/c");
    assert_eq!(
        device.publish(&third, true, b"1".to_vec()).await,
        Outcome::Closed
    );

    // A message above mqtt.max_message_bytes closes the connection and is not stored.
    let mut device = Client::open(addr, &format!("{id}-2"), &id, &key);
    assert_eq!(device.login().await, Outcome::Accepted);
    let big = json!({"note": "x".repeat(8000)}).to_string().into_bytes();
    let topic = format!("devices/{id}/telemetry");
    assert_eq!(device.publish(&topic, false, big).await, Outcome::Closed);
    assert_eq!(app.stored_rows(&token, &id).await, 0);
}

#[actix_web::test]
async fn the_broker_queues_at_most_the_configured_messages_for_a_slow_device() {
    if !embedded_only("queue length") {
        return;
    }
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.max_queued_messages_per_client = 2;
        // One message in flight to a client at a time: the rest waits in its queue.
        s.mqtt.max_unacked = 1;
    })
    .await;
    let addr = app.mqtt.clone().expect("MQTT on");
    let token = app.admin_token().await;
    let (id, key, _) = device_with_key(&app, &token, json!({})).await;
    let events = format!("devices/{id}/events");
    // A slow device: it acknowledges nothing until told to.
    let mut slow = Client::open_with(addr.clone(), &format!("{id}-slow"), &id, &key, |o| {
        o.set_manual_acks(true);
    });
    assert_eq!(slow.login().await, Outcome::Accepted);
    slow.client
        .subscribe(&events, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    slow.next(Duration::from_secs(10), "SUBACK", |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;

    let mut sender = Client::open(addr, &format!("{id}-sender"), &id, &key);
    assert_eq!(sender.login().await, Outcome::Accepted);
    for n in 0..6 {
        assert_eq!(
            sender
                .publish(&events, false, n.to_string().into_bytes())
                .await,
            Outcome::Accepted
        );
    }
    // One message in flight, two queued (the newest), three dropped. The device now reads and
    // acknowledges; a marker sent once the second message is in (so the queue has room for it)
    // arrives after whatever was queued.
    let mut received = Vec::new();
    let mut marker_sent = false;
    loop {
        let publish = slow
            .next(Duration::from_secs(10), "messages", |e| match e {
                Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            })
            .await;
        slow.client.ack(&publish).await.expect("ack");
        if publish.payload.as_ref() == b"end" {
            break;
        }
        received.push(String::from_utf8_lossy(&publish.payload).to_string());
        if received.len() == 2 && !marker_sent {
            assert_eq!(
                sender.publish(&events, false, b"end".to_vec()).await,
                Outcome::Accepted
            );
            marker_sent = true;
        }
    }
    assert_eq!(
        received.len(),
        3,
        "in flight + mqtt.max_queued_messages_per_client: {received:?}"
    );
}

#[actix_web::test]
async fn an_mqtt_5_device_over_its_publish_rate_is_told_quota_exceeded_and_stays_connected() {
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};
    if !embedded_only("publish rate, MQTT 5") {
        return;
    }
    let app = spawn_app_with(|s| {
        with_mqtt(s);
        s.mqtt.max_publish_per_second_per_device = 1;
        s.mqtt.publish_burst_per_device = 2;
    })
    .await;
    let (host, port) = app.mqtt.clone().expect("MQTT on");
    let token = app.admin_token().await;
    let (id, key, _) = device_with_key(&app, &token, json!({})).await;
    let mut options = Options5::new(format!("{id}-v5"), host, port);
    options
        .set_credentials(id.clone(), key)
        .set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = Client5::new(options, 10);
    let topic = format!("devices/{id}/telemetry");
    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while reasons.len() < 3 {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("PUBACKs in time")
            .expect("the connection stays open");
        match event {
            Event5::Incoming(Packet5::ConnAck(_)) | Event5::Incoming(Packet5::PubAck(_))
                if sent < 3 =>
            {
                if let Event5::Incoming(Packet5::PubAck(ack)) = &event {
                    reasons.push(ack.reason);
                }
                client
                    .publish(&topic, QoS5::AtLeastOnce, false, reading(f64::from(sent)))
                    .await
                    .expect("publish");
                sent += 1;
            }
            Event5::Incoming(Packet5::PubAck(ack)) => reasons.push(ack.reason),
            _ => {}
        }
    }
    assert_eq!(
        reasons,
        [
            PubAckReason::Success,
            PubAckReason::Success,
            PubAckReason::QuotaExceeded
        ]
    );
    assert_eq!(app.stored_rows(&token, &id).await, 2);
}
