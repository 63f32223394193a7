//! What answers at an MQTT address: nothing, a broker that lets anyone in, or one that refuses
//! anonymous logins (`auto` mode uses only the last, and only with `mqtt.dynsec`).

use std::time::Duration;

use rumqttc::{ConnectionError, Event, Packet};

/// How long the probe waits for a TCP connection and then for a CONNACK.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Nothing listens there.
    Nothing,
    /// Something listens but did not answer an MQTT CONNECT (not a broker, or too slow).
    NotMqtt,
    /// A broker that accepted a login without credentials: anyone may publish as any device.
    AcceptsAnonymous,
    /// A broker that refused a login without credentials.
    RefusesAnonymous,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Nothing => "nothing",
            Answer::NotMqtt => "not an MQTT broker",
            Answer::AcceptsAnonymous => "a broker accepting anonymous logins",
            Answer::RefusesAnonymous => "a broker refusing anonymous logins",
        }
    }
}

/// Connects to `host:port` and tries an anonymous MQTT login (over `tls` when given).
pub async fn probe(host: &str, port: u16, tls: Option<&rumqttc::TlsConfiguration>) -> Answer {
    let tcp = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await;
    if !matches!(tcp, Ok(Ok(_))) {
        return Answer::Nothing;
    }
    let client_id = format!("insa-iiot-probe-{}", uuid::Uuid::new_v4().simple());
    // Anonymous: what the broker does with anyone.
    let mut options = insa_actors::mqtt::broker_options(client_id, host, port, None, tls);
    options.set_keep_alive(Duration::from_secs(5));
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 1);
    let answer = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return if ack.code == rumqttc::ConnectReturnCode::Success {
                        Answer::AcceptsAnonymous
                    } else {
                        Answer::RefusesAnonymous
                    };
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(_)) => return Answer::RefusesAnonymous,
                Err(_) => return Answer::NotMqtt,
            }
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, answer)
        .await
        .unwrap_or(Answer::NotMqtt)
}
