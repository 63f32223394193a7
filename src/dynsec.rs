//! Mosquitto's dynamic-security plugin kept in step with API keys (`mqtt.dynsec = true`, with an
//! external broker).
//!
//! Every API key with `write` becomes a broker client: username = the key's id, password = the
//! key, with a role of its own (`insa-key-{id}`) that allows publishing `devices/{device}/telemetry`
//! and receiving `devices/{device}/#` (for a key bound to no device, a gateway: any device). A
//! revoked, expired or deleted key loses its client (the broker disconnects it). The platform's
//! own login (`mqtt.username`) must hold dynsec's `admin` role; the platform adds the role
//! `insa-iiot-platform` to it so it may publish device status and commands.
//!
//! Keys created before this was turned on are not known to the broker: the platform keeps only
//! their hashes. Create new keys for MQTT devices (docs/MQTT.md).

use std::time::Duration;

use chrono::{DateTime, Utc};
use insa_entities::api_keys;
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{json, Value};
use uuid::Uuid;

const CONTROL: &str = "$CONTROL/dynamic-security/v1";
const RESPONSES: &str = "$CONTROL/dynamic-security/v1/response";
const PLATFORM_ROLE: &str = "insa-iiot-platform";
/// How often expired keys are looked for.
const EXPIRY_SWEEP: Duration = Duration::from_secs(60);

/// Sends dynamic-security commands on a connection of its own.
#[derive(Clone)]
pub struct Dynsec {
    client: AsyncClient,
}

/// What to connect with.
pub struct DynsecConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// The platform's login, which gets [`PLATFORM_ROLE`].
    pub credentials: Option<(String, String)>,
    /// TLS (`mqtts://`), as the platform's other connections.
    pub tls: Option<rumqttc::TlsConfiguration>,
}

impl Dynsec {
    /// Connects (retrying in the background), gives the platform its role, and removes the
    /// clients of keys that expire from now on.
    pub fn start(config: DynsecConfig, db: DatabaseConnection) -> Self {
        let mut options = insa_actors::mqtt::broker_options(
            format!("{}-dynsec", config.client_id),
            config.host,
            config.port,
            config.credentials.as_ref(),
            config.tls.as_ref(),
        );
        options.set_keep_alive(Duration::from_secs(30));
        let (client, eventloop) = AsyncClient::new(options, 256);
        let dynsec = Self { client };
        let platform_user = config.credentials.map(|(user, _)| user);
        actix::spawn(drive(eventloop, dynsec.clone(), platform_user));
        actix::spawn(sweep_expired(dynsec.clone(), db));
        dynsec
    }

    async fn send(&self, commands: Vec<Value>) {
        let body = json!({ "commands": commands }).to_string();
        if let Err(err) = self
            .client
            .publish(CONTROL, QoS::AtLeastOnce, false, body)
            .await
        {
            tracing::warn!(error = %err, "cannot send a dynamic-security command");
        }
    }

    /// A key was created: the broker accepts it from now on (keys with `write` only).
    pub async fn key_created(&self, key: &api_keys::Model, secret: &str) {
        let write = key
            .permissions
            .get("write")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !write || key.expires_at.is_some_and(|at| at <= Utc::now()) {
            return;
        }
        let role = role_name(key.id);
        self.send(vec![
            json!({"command": "createRole", "rolename": role, "acls": key_acls(key.device_id)}),
            json!({"command": "createClient", "username": key.id.to_string(), "password": secret,
                   "textname": key.name, "roles": [{"rolename": role}]}),
        ])
        .await;
    }

    /// A key was revoked, expired or deleted: the broker refuses it and drops its connection.
    pub async fn key_removed(&self, key_id: Uuid) {
        self.send(vec![
            json!({"command": "deleteClient", "username": key_id.to_string()}),
            json!({"command": "deleteRole", "rolename": role_name(key_id)}),
        ])
        .await;
    }
}

fn role_name(key_id: Uuid) -> String {
    format!("insa-key-{key_id}")
}

/// A device key: its own topics; a gateway key (no device): every device's.
fn key_acls(device: Option<Uuid>) -> Vec<Value> {
    let id = device.map_or_else(|| "+".to_string(), |d| d.to_string());
    vec![
        json!({"acltype": "publishClientSend", "topic": format!("devices/{id}/telemetry"), "allow": true}),
        json!({"acltype": "subscribePattern", "topic": format!("devices/{id}/#"), "allow": true}),
        json!({"acltype": "publishClientReceive", "topic": format!("devices/{id}/#"), "allow": true}),
    ]
}

/// The platform's own rights beyond dynsec's `admin` role: publishing status, and commands on
/// `devices/{id}/commands` and below (a rule may address `devices/{id}/commands/valve`).
fn platform_commands(user: &str) -> Vec<Value> {
    let acls: Vec<Value> = ["devices/+/status", "devices/+/commands/#"]
        .iter()
        .map(|topic| json!({"acltype": "publishClientSend", "topic": topic, "allow": true}))
        .collect();
    vec![
        json!({"command": "createRole", "rolename": PLATFORM_ROLE, "acls": acls}),
        json!({"command": "addClientRole", "username": user, "rolename": PLATFORM_ROLE}),
    ]
}

/// Errors that only say the broker already is as asked.
fn harmless(error: &str) -> bool {
    ["already exists", "not found"]
        .iter()
        .any(|e| error.to_ascii_lowercase().contains(e))
}

/// Drives the connection: on every (re)connection, listens to the broker's answers and gives
/// the platform its role; logs every command the broker refused.
async fn drive(mut eventloop: EventLoop, dynsec: Dynsec, platform_user: Option<String>) {
    let mut backoff = insa_actors::mqtt::Backoff::default();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                if let Err(err) = dynsec.client.try_subscribe(RESPONSES, QoS::AtLeastOnce) {
                    tracing::warn!(error = %err, "cannot listen to dynamic-security answers");
                }
                if let Some(user) = &platform_user {
                    let body = json!({ "commands": platform_commands(user) }).to_string();
                    if let Err(err) =
                        dynsec
                            .client
                            .try_publish(CONTROL, QoS::AtLeastOnce, false, body)
                    {
                        tracing::warn!(error = %err, "cannot give the platform its broker role");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(answer))) => {
                let Ok(answer) = serde_json::from_slice::<Value>(&answer.payload) else {
                    continue;
                };
                let responses = answer["responses"].as_array().cloned().unwrap_or_default();
                for response in responses {
                    if let Some(error) = response["error"].as_str().filter(|e| !harmless(e)) {
                        tracing::error!(command = %response["command"], %error,
                            "the broker refused a dynamic-security command");
                    }
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(error = %err, "dynamic-security connection down; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// Removes the broker clients of keys as they expire (and, at start, of every expired key).
async fn sweep_expired(dynsec: Dynsec, db: DatabaseConnection) {
    let mut since: Option<DateTime<Utc>> = None;
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    loop {
        tick.tick().await;
        let now = Utc::now();
        let mut query = api_keys::Entity::find()
            .select_only()
            .column(api_keys::Column::Id)
            .filter(api_keys::Column::ExpiresAt.lte(now));
        if let Some(since) = since {
            query = query.filter(api_keys::Column::ExpiresAt.gt(since));
        }
        match query.into_tuple::<Uuid>().all(&db).await {
            Ok(expired) => {
                for key_id in expired {
                    dynsec.key_removed(key_id).await;
                }
                since = Some(now);
            }
            Err(err) => tracing::warn!(error = %err, "cannot look for expired API keys"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_key_reaches_only_its_device_and_a_gateway_key_every_device() {
        let device = Uuid::new_v4();
        let topics = |acls: Vec<Value>| -> Vec<String> {
            acls.iter()
                .map(|a| {
                    format!(
                        "{} {}",
                        a["acltype"].as_str().unwrap_or(""),
                        a["topic"].as_str().unwrap_or("")
                    )
                })
                .collect()
        };
        assert_eq!(
            topics(key_acls(Some(device))),
            [
                format!("publishClientSend devices/{device}/telemetry"),
                format!("subscribePattern devices/{device}/#"),
                format!("publishClientReceive devices/{device}/#"),
            ]
        );
        assert_eq!(
            topics(key_acls(None)),
            [
                "publishClientSend devices/+/telemetry",
                "subscribePattern devices/+/#",
                "publishClientReceive devices/+/#",
            ]
        );
    }
}
