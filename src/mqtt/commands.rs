//! Device commands (rule action `mqtt`) published on a connection of their own
//! (`{client_id}-commands`), QoS 1, one at a time: [`Commands::publish`] returns only once the
//! broker has acknowledged the message (PUBACK), so the outbox marks a command `sent` only then.
//!
//! After a connection loss the connection is rebuilt from scratch (nothing is replayed): a command
//! whose PUBACK did not arrive is reported as not sent and the outbox retries it (at least once).

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

use insa_actors::mqtt::Backoff;

struct Request {
    topic: String,
    payload: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Publishes commands and waits for their acknowledgement; cheap to clone.
#[derive(Clone)]
pub struct Commands {
    requests: mpsc::Sender<Request>,
    /// How long one command may wait for the connection and its PUBACK.
    ack_timeout: Duration,
}

impl Commands {
    /// Connects (and reconnects) in the background on the current runtime.
    pub fn start(
        host: String,
        port: u16,
        client_id: String,
        credentials: Option<(String, String)>,
        tls: Option<rumqttc::TlsConfiguration>,
        ack_timeout: Duration,
    ) -> Self {
        let mut options = insa_actors::mqtt::broker_options(
            client_id,
            host,
            port,
            credentials.as_ref(),
            tls.as_ref(),
        );
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true);
        let (requests, inbox) = mpsc::channel(256);
        actix::spawn(drive(options, inbox, ack_timeout));
        Self {
            requests,
            ack_timeout,
        }
    }

    /// Publishes `payload` on `topic` (QoS 1); `Ok` once the broker acknowledged it.
    pub async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        let (done, acked) = oneshot::channel();
        let request = Request {
            topic,
            payload,
            done,
        };
        let sent = async {
            self.requests
                .send(request)
                .await
                .map_err(|_| "the command connection is closed".to_string())?;
            acked
                .await
                .map_err(|_| "the command connection is closed".to_string())?
        };
        tokio::time::timeout(self.ack_timeout, sent)
            .await
            .map_err(|_| "no PUBACK from the broker in time".to_string())?
    }
}

/// Drives the connection: takes the next request only when connected and nothing is awaiting
/// its PUBACK.
async fn drive(options: MqttOptions, mut inbox: mpsc::Receiver<Request>, ack_timeout: Duration) {
    let mut backoff = Backoff::default();
    let (mut client, mut eventloop) = new_connection(&options);
    let mut connected = false;
    let mut waiting: Option<oneshot::Sender<Result<(), String>>> = None;
    let mut deadline = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline), if waiting.is_some() => {
                // No PUBACK in time: start over on a fresh connection.
                if let Some(done) = waiting.take() {
                    let _ = done.send(Err("no PUBACK from the broker in time".into()));
                }
                connected = false;
                (client, eventloop) = new_connection(&options);
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    connected = ack.code == ConnectReturnCode::Success;
                    backoff.reset();
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    if let Some(done) = waiting.take() {
                        let _ = done.send(Ok(()));
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    connected = false;
                    if let Some(done) = waiting.take() {
                        let _ = done.send(Err(format!("connection lost before the PUBACK: {err}")));
                    }
                    tracing::debug!(error = %err, "command connection down; retrying");
                    backoff.wait().await;
                    // A fresh connection: rumqttc would otherwise resend what was in flight.
                    (client, eventloop) = new_connection(&options);
                }
            },
            request = inbox.recv(), if connected && waiting.is_none() => {
                let Some(request) = request else { return };
                // The caller gave up (timed out): it will retry; do not send it twice.
                if request.done.is_closed() {
                    continue;
                }
                match client.try_publish(request.topic, QoS::AtLeastOnce, false, request.payload) {
                    Ok(()) => {
                        waiting = Some(request.done);
                        deadline = tokio::time::Instant::now() + ack_timeout;
                    }
                    Err(err) => {
                        let _ = request.done.send(Err(format!("cannot publish: {err}")));
                    }
                }
            }
        }
    }
}

fn new_connection(options: &MqttOptions) -> (AsyncClient, EventLoop) {
    AsyncClient::new(options.clone(), 16)
}
