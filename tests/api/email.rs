//! Alert emails sent over real SMTP to a small SMTP server listening on loopback in the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::{eventually, spawn_app_with, As, TestApp};

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub recipients: Vec<String>,
    pub data: String,
}

/// An SMTP server (EHLO, MAIL, RCPT, DATA, QUIT) that keeps what it receives.
pub struct SmtpServer {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let kept = mails.clone();
        actix_web::rt::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                actix_web::rt::spawn(session(socket, kept.clone()));
            }
        });
        Self { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("mails").clone()
    }
}

async fn session(socket: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 test-smtp ready\r\n").await;
    let mut recipients = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-test-smtp\r\n250 8BITMIME\r\n",
            "HELO" | "MAIL" | "RSET" | "NOOP" => b"250 OK\r\n",
            "RCPT" => {
                let to = line.split(['<', '>']).nth(1).unwrap_or("").to_string();
                recipients.push(to);
                b"250 OK\r\n"
            }
            "DATA" => {
                let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                let mut data = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == "." {
                        break;
                    }
                    data.push_str(&line);
                    data.push('\n');
                }
                mails.lock().expect("mails").push(Mail {
                    recipients: std::mem::take(&mut recipients),
                    data,
                });
                b"250 queued\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 not implemented\r\n",
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}

async fn send(app: &TestApp, token: &str, device: &str, pressure: f64) {
    app.send_reading(token, device, json!({"pressure": pressure}))
        .await;
}

#[actix_web::test]
async fn a_raised_and_a_resolved_alert_each_send_one_readable_email() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(|s| {
        s.smtp.url = Some(insa_iiot::settings::Secret::new(format!(
            "smtp://127.0.0.1:{}",
            smtp.port
        )));
        s.server.public_url = Some("https://iiot.example.com".into());
    })
    .await;
    let (token, id) = app
        .watched_wellhead(json!({"type": "email", "to": ["ops@example.com", "lead@example.com"]}))
        .await;

    send(&app, &token, &id, 85.5).await;
    let mails = eventually(Duration::from_secs(10), "the alert email", || async {
        let mails = smtp.mails();
        (mails.len() == 1).then_some(mails)
    })
    .await;
    let mail = &mails[0];
    assert_eq!(mail.recipients, ["ops@example.com", "lead@example.com"]);
    assert!(
        mail.data
            .contains("Subject: [CRITICAL] High pressure on Wellhead 9"),
        "{}",
        mail.data
    );
    for expected in [
        "Wellhead 9",
        "North",
        "Pad 3",
        "85.5",
        "80",
        "https://iiot.example.com/api/v1/alerts/",
    ] {
        assert!(
            mail.data.contains(expected),
            "{expected} missing from:\n{}",
            mail.data
        );
    }
    assert!(
        mail.data.contains("From: insa-iiot <alerts@insa.local>"),
        "{}",
        mail.data
    );

    send(&app, &token, &id, 60.0).await;
    let mails = eventually(Duration::from_secs(10), "the resolution email", || async {
        let mails = smtp.mails();
        (mails.len() == 2).then_some(mails)
    })
    .await;
    assert!(mails[1]
        .data
        .contains("Subject: [RESOLVED] High pressure on Wellhead 9"));
    assert!(mails[1].data.contains("resolved"));

    // The receiver has the mail a moment before the delivery is recorded as sent.
    let log = eventually(
        Duration::from_secs(10),
        "both deliveries recorded sent",
        || async {
            let log = app
                .get("/api/v1/notifications?status=sent", As::Bearer(&token))
                .await;
            (log.body["total"] == 2).then_some(log)
        },
    )
    .await;
    assert_eq!(log.body["notifications"][0]["channel"], "email");
    assert_eq!(
        log.body["notifications"][0]["target"],
        "ops@example.com, lead@example.com"
    );
}
