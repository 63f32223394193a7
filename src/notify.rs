//! The notifier: delivers what the outbox (`notification_deliveries`) holds — emails, webhooks
//! and MQTT commands — and records every attempt. Rows are written with the alert change that causes
//! them (same transaction), so a restart loses nothing: pending rows are simply picked up again.
//!
//! Webhooks: a JSON POST of `{event, alert, device, rule}`, signed with
//! `X-INSA-Signature: sha256=<hex HMAC-SHA256 of the body>` when the action has a secret; 2xx is
//! delivered, 4xx other than 408/429 is final, anything else is retried with exponential backoff
//! and jitter up to `webhooks.max_attempts`. URLs resolving to loopback, private, link-local or
//! other internal addresses are refused unless `webhooks.allow_private` (SSRF guard,
//! [`crate::webhook_guard`]: the addresses checked are the ones connected to).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use insa_actors::{DeviceEvent, Pipeline};
use insa_domain::notification::{AlertNotification, ReportEvent, ReportNotification};
use insa_domain::{Action, AlertEvent, Channel, DeliveryStatus, NotificationPayload};
use insa_entities::notification_deliveries as deliveries;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Notify;

use crate::mqtt::commands::Commands;
use crate::settings::{ServerSettings, SmtpSettings, WebhookSettings};

/// Deliveries attempted together.
const BATCH: u64 = 32;
/// How often due retries are looked for.
const TICK: Duration = Duration::from_millis(500);

/// What one attempt came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Worth another attempt.
    Retry(String),
    /// Never worth another attempt.
    Final(String),
}

/// What the notifier works with: the outbox's database, how to reach recipients, and the
/// pipeline whose alerts wake it.
pub struct NotifierState {
    /// Where the outbox is.
    pub db: DatabaseConnection,
    pub settings: NotifierSettings,
    /// Its alert events wake the notifier at once.
    pub pipeline: Pipeline,
    /// Rule commands, acknowledged by the broker (`None`: MQTT is off).
    pub commands: Option<Commands>,
}

/// The settings the notifier reads.
pub struct NotifierSettings {
    /// Timeouts, retries, the SSRF guard (emails share the timeout).
    pub webhooks: WebhookSettings,
    /// How emails are sent.
    pub smtp: SmtpSettings,
    /// The transport for `smtp.url`, built once at start-up ([`smtp_transport`]; `None`: no
    /// `smtp.url`, emails wait for one).
    pub mailer: Option<Mailer>,
    /// Where the platform is reached: the links in emails.
    pub server: ServerSettings,
}

/// Starts the notifier on the current arbiter; a new alert wakes it at once.
pub fn start(state: NotifierState) {
    let wake = Arc::new(Notify::new());
    let mut events = state.pipeline.subscribe();
    let waker = wake.clone();
    tokio::task::spawn_local(async move {
        loop {
            match events.recv().await {
                Ok(DeviceEvent::Alert { alert, event }) => {
                    metrics::counter!("insa_alerts_total", "event" => event.as_str(),
                        "severity" => alert.severity.as_str())
                    .increment(1);
                    waker.notify_one();
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => waker.notify_one(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    tokio::task::spawn_local(async move {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(state.settings.webhooks.timeout_secs))
            .redirect(reqwest::redirect::Policy::none());
        if !state.settings.webhooks.allow_private {
            // The client connects only to addresses the guard has seen; a proxy would connect
            // elsewhere, so none is used.
            builder = builder
                .dns_resolver(Arc::new(crate::webhook_guard::PublicOnly))
                .no_proxy();
        }
        let client = match builder.build() {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(error = %err, "cannot start the notifier");
                return;
            }
        };
        loop {
            if let Err(err) = deliver_due(&state, &client).await {
                tracing::warn!(error = %err, "notifier: cannot read the outbox");
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

/// Attempts every delivery that is due, together, and records each outcome.
async fn deliver_due(
    state: &NotifierState,
    client: &reqwest::Client,
) -> Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    let due = deliveries::Entity::find()
        .filter(deliveries::Column::Status.eq(DeliveryStatus::Pending))
        .filter(
            Condition::any()
                .add(deliveries::Column::NextAttemptAt.is_null())
                .add(deliveries::Column::NextAttemptAt.lte(now)),
        )
        .order_by_asc(deliveries::Column::CreatedAt)
        .limit(BATCH)
        .all(&state.db)
        .await?;
    let attempts = due.into_iter().map(|delivery| async move {
        let outcome = attempt(state, client, &delivery).await;
        record(state, delivery, outcome).await
    });
    for result in futures_util::future::join_all(attempts).await {
        result?;
    }
    Ok(())
}

async fn attempt(
    state: &NotifierState,
    client: &reqwest::Client,
    delivery: &deliveries::Model,
) -> Outcome {
    match delivery.channel {
        Channel::Webhook => webhook(client, &state.settings.webhooks, &delivery.payload).await,
        Channel::Mqtt => mqtt_command(state, delivery).await,
        Channel::Email => email(state, &delivery.payload).await,
    }
}

/// `sha256=<hex HMAC-SHA256 of body with secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn webhook(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    payload: &NotificationPayload,
) -> Outcome {
    let NotificationPayload::Alert(notification) = payload else {
        return Outcome::Final("a webhook carries alert changes only".into());
    };
    let Action::Webhook {
        url,
        secret,
        headers,
    } = &notification.action
    else {
        return Outcome::Final("the action is not a webhook".into());
    };
    let Ok(url) = url::Url::parse(url) else {
        return Outcome::Final("the action has no valid url".into());
    };
    if !settings.allow_private {
        // Names are checked by the client's resolver as it connects.
        if let Err(refused) = crate::webhook_guard::literal_allowed(&url) {
            return Outcome::Final(refused.to_string());
        }
    }
    let body = match notification.webhook_body() {
        Ok(body) => body,
        Err(err) => return Outcome::Final(format!("cannot encode the body: {err}")),
    };
    let mut request = client
        .post(url)
        .header("Content-Type", "application/json")
        .header(
            "User-Agent",
            concat!("insa-iiot/", env!("CARGO_PKG_VERSION")),
        );
    request = request.header("X-INSA-Event", notification.event.as_str());
    if let Some(secret) = secret {
        request = request.header("X-INSA-Signature", signature(secret, &body));
    }
    for (name, value) in headers.iter().flatten() {
        request = request.header(name.as_str(), value.as_str());
    }
    match request.body(body).send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Outcome::Delivered
            } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                Outcome::Final(format!("the receiver answered {status}"))
            } else {
                Outcome::Retry(format!("the receiver answered {status}"))
            }
        }
        Err(err) => sending_failed(&err),
    }
}

/// What a failed request comes to, told without the addresses tried (delivery errors are shown
/// to every role).
fn sending_failed(err: &reqwest::Error) -> Outcome {
    use crate::webhook_guard::{refusal, Refused};
    match refusal(err) {
        Some(refused @ Refused::NotPublic) => Outcome::Final(refused.to_string()),
        Some(refused @ Refused::CannotResolve) => Outcome::Retry(refused.to_string()),
        None if err.is_timeout() => Outcome::Retry("the receiver did not answer in time".into()),
        None if err.is_connect() => Outcome::Retry("cannot connect to the receiver".into()),
        None => Outcome::Retry("the request to the receiver failed".into()),
    }
}

/// What sends emails.
pub type Mailer = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;

/// The transport for `smtp.url` (`None` when unset), built once: plain for `smtp://`; for
/// `smtp+starttls://` STARTTLS is required (a server not offering it gets no message) and for
/// `smtps://` TLS starts at once. Either way the server's certificate must chain to the CAs of
/// `smtp.ca_file` (else the public webpki roots) and name the url's host. Errors never quote
/// the url (it may hold a password).
pub fn smtp_transport(smtp: &SmtpSettings, timeout: Duration) -> anyhow::Result<Option<Mailer>> {
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};

    let Some(url) = &smtp.url else {
        return Ok(None);
    };
    let url = url.expose();
    let parsed = url::Url::parse(url).map_err(|err| anyhow::anyhow!("smtp.url: {err}"))?;
    // lettre knows `smtp://` and `smtps://`; STARTTLS is set below.
    let lettre_url = match url.strip_prefix("smtp+starttls://") {
        Some(rest) => format!("smtp://{rest}"),
        None => url.to_string(),
    };
    let builder = Mailer::from_url(&lettre_url)
        .map_err(|err| anyhow::anyhow!("smtp.url: {err}"))?
        .timeout(Some(timeout));
    let tls: fn(TlsParameters) -> Tls = match parsed.scheme() {
        "smtps" => Tls::Wrapper,
        "smtp+starttls" => Tls::Required,
        _ => return Ok(Some(builder.build())),
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("smtp.url: no host"))?;
    let mut parameters = TlsParameters::builder(host.to_string());
    if let Some(ca_file) = &smtp.ca_file {
        parameters = parameters.certificate_store(CertificateStore::None);
        for root in crate::tls_files::read_certificates("smtp.ca_file", ca_file)? {
            let root = Certificate::from_der(root.to_vec())
                .map_err(|err| anyhow::anyhow!("smtp.ca_file: {err}"))?;
            parameters = parameters.add_root_certificate(root);
        }
    }
    let parameters = parameters
        .build()
        .map_err(|err| anyhow::anyhow!("smtp TLS: {err}"))?;
    Ok(Some(builder.tls(tls(parameters)).build()))
}

/// `[CRITICAL] High pressure on Wellhead 9`, or `[RESOLVED] ...`.
pub fn email_subject(notification: &AlertNotification) -> String {
    let tag = match notification.event {
        AlertEvent::Resolved => "RESOLVED".to_string(),
        _ => notification.alert.severity.as_str().to_uppercase(),
    };
    let rule = &notification.rule.name;
    match &notification.device {
        Some(device) => format!("[{tag}] {rule} on {}", device.name),
        None => format!("[{tag}] {rule}"),
    }
}

/// A value as the email shows it: `-` when absent, text as it is, anything else as JSON writes
/// it (`80.0`, `2026-11-27T10:00:01Z`).
fn shown(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::Null) | Err(_) => "-".to_string(),
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
    }
}

/// The plain-text body: what happened, where, the value and threshold, when, and a link.
pub fn email_body(notification: &AlertNotification, base_url: &str) -> String {
    let alert = &notification.alert;
    let device = notification.device.as_ref();
    let resolved = notification.event == AlertEvent::Resolved;
    format!(
        "{headline}\n\n\
         Message:   {message}\n\
         Severity:  {severity}\n\
         Device:    {device}\n\
         Area:      {area}\n\
         Location:  {location}\n\
         Value:     {value}\n\
         Threshold: {threshold}\n\
         Raised at: {raised}\n\
         {resolved_line}\n\
         Alert:     {base}/api/v1/alerts/{id}\n",
        headline = if resolved {
            "The alert has been resolved."
        } else {
            "An alert has been raised."
        },
        message = alert.message,
        severity = alert.severity.as_str(),
        device = shown(&device.map(|d| &d.name)),
        area = shown(&device.and_then(|d| d.area.as_ref())),
        location = shown(&device.and_then(|d| d.location.as_ref())),
        value = shown(&alert.value),
        threshold = shown(&alert.threshold),
        raised = shown(&alert.created_at),
        resolved_line = if resolved {
            format!("Resolved:  {}\n", shown(&alert.resolved_at))
        } else {
            String::new()
        },
        base = base_url.trim_end_matches('/'),
        id = alert.id,
    )
}

async fn email(state: &NotifierState, payload: &NotificationPayload) -> Outcome {
    use lettre::message::header::ContentType;
    use lettre::{AsyncTransport, Message};

    let Some(transport) = &state.settings.mailer else {
        return Outcome::Retry("smtp.url is not set".into());
    };
    let from = match state.settings.smtp.from.parse() {
        Ok(from) => from,
        Err(err) => return Outcome::Final(format!("smtp.from: {err}")),
    };
    let mut message = Message::builder().from(from);
    let Action::Email { to: recipients } = payload.action() else {
        return Outcome::Final("the action is not an email".into());
    };
    for to in recipients {
        match to.parse() {
            Ok(to) => message = message.to(to),
            Err(err) => return Outcome::Final(format!("recipient {to}: {err}")),
        }
    }
    let server = &state.settings.server;
    let base = server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{}://{}:{}", server.scheme(), server.host, server.port));
    let built = match payload {
        NotificationPayload::Report(report) => report_email(message, report, &base).await,
        NotificationPayload::Alert(notification) => message
            .subject(email_subject(notification))
            .header(ContentType::TEXT_PLAIN)
            .body(email_body(notification, &base))
            .map_err(cannot_build),
    };
    let message = match built {
        Ok(message) => message,
        Err(outcome) => return outcome,
    };
    match transport.send(message).await {
        Ok(_) => Outcome::Delivered,
        Err(err) if err.is_permanent() => Outcome::Final(format!("the SMTP server refused: {err}")),
        Err(err) => Outcome::Retry(format!("cannot send: {err}")),
    }
}

fn cannot_build(err: lettre::error::Error) -> Outcome {
    Outcome::Final(format!("cannot build the message: {err}"))
}

/// Reports larger than this are linked, not attached (mail servers refuse big messages).
const MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;

/// A scheduled report's email: what it covers and the file attached (or linked, when large).
async fn report_email(
    message: lettre::message::MessageBuilder,
    payload: &ReportNotification,
    base_url: &str,
) -> Result<lettre::Message, Outcome> {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment, MultiPart, SinglePart};

    let report = &payload.report;
    let text = |v: Option<&String>| v.map_or_else(|| "-".to_string(), String::clone);
    let name = text(payload.attachment.name.as_ref());
    let link = format!(
        "{}/api/v1/reports/{}/download",
        base_url.trim_end_matches('/'),
        report.job_id
    );
    if payload.event == ReportEvent::ReportFailed {
        let body = format!(
            "{schedule}\n\n\
             This run produced no report.\n\
             Report:  {kind}\n\
             Period:  {period}\n\
             Reason:  {reason}\n",
            schedule = report.schedule,
            kind = report.kind,
            period = report.period,
            reason = text(payload.error.as_ref()),
        );
        let subject = format!("[REPORT FAILED] {}", report.schedule);
        return message
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(cannot_build);
    }
    let path = std::path::PathBuf::from(&payload.attachment.path);
    let size = tokio::fs::metadata(&path)
        .await
        .map_err(|err| Outcome::Final(format!("the report file is gone: {err}")))?
        .len();
    let attach = size <= MAX_ATTACHMENT_BYTES;
    let body = format!(
        "{schedule}\n\n\
         Report:  {kind}\n\
         Period:  {period}\n\
         Rows:    {rows}\n\
         File:    {name} ({size} bytes){attached}\n\
         Download (while kept): {link}\n",
        schedule = report.schedule,
        kind = report.kind,
        period = report.period,
        rows = Value::from(report.rows),
        attached = if attach {
            ", attached"
        } else {
            ", too large to attach"
        },
    );
    let day = |at: Option<chrono::DateTime<Utc>>| {
        at.map_or_else(|| "-".to_string(), |at| at.format("%Y-%m-%d").to_string())
    };
    let subject = format!(
        "[REPORT] {}: {} to {}",
        report.schedule,
        day(report.start),
        day(report.end),
    );
    let message = message.subject(subject);
    if !attach {
        return message
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(cannot_build);
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|err| Outcome::Retry(format!("cannot read the report file: {err}")))?;
    let content_type = ContentType::parse(&payload.attachment.content_type)
        .map_err(|err| Outcome::Final(format!("content type: {err}")))?;
    message
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(body))
                .singlepart(Attachment::new(name).body(bytes, content_type)),
        )
        .map_err(cannot_build)
}

async fn mqtt_command(state: &NotifierState, delivery: &deliveries::Model) -> Outcome {
    let Some(commands) = state.commands.clone() else {
        return Outcome::Retry("MQTT is off".into());
    };
    let Action::Mqtt { payload, .. } = delivery.payload.action() else {
        return Outcome::Final("the action is not an MQTT command".into());
    };
    let body = match payload {
        Value::String(text) => text.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    // Sent only once the broker acknowledged it (QoS 1 PUBACK), not when handed to the client.
    match commands.publish(delivery.target.clone(), body).await {
        Ok(()) => Outcome::Delivered,
        Err(err) => Outcome::Retry(format!("not acknowledged by the broker: {err}")),
    }
}

/// Records an attempt: delivered, retried later (exponential backoff with jitter) or failed.
async fn record(
    state: &NotifierState,
    delivery: deliveries::Model,
    outcome: Outcome,
) -> Result<(), sea_orm::DbErr> {
    let settings = &state.settings.webhooks;
    let attempts = delivery.attempts + 1;
    let now = Utc::now();
    let outcome_label = match &outcome {
        Outcome::Delivered => "sent",
        Outcome::Retry(_) => "retry",
        Outcome::Final(_) => "failed",
    };
    metrics::counter!("insa_notifications_total", "channel" => delivery.channel.as_str(),
        "outcome" => outcome_label)
    .increment(1);
    let mut row: deliveries::ActiveModel = delivery.into();
    row.attempts = Set(attempts);
    row.updated_at = Set(now);
    match outcome {
        Outcome::Delivered => {
            row.status = Set(DeliveryStatus::Sent);
            row.sent_at = Set(Some(now));
            row.next_attempt_at = Set(None);
            row.last_error = Set(None);
        }
        Outcome::Retry(why)
            if u32::try_from(attempts).unwrap_or(u32::MAX) < settings.max_attempts =>
        {
            let delay = backoff(settings, attempts);
            row.next_attempt_at = Set(Some(now + delay));
            row.last_error = Set(Some(why));
        }
        Outcome::Retry(why) | Outcome::Final(why) => {
            tracing::warn!(error = %why, attempts, "notification failed");
            row.status = Set(DeliveryStatus::Failed);
            row.next_attempt_at = Set(None);
            row.last_error = Set(Some(why));
        }
    }
    row.update(&state.db).await?;
    Ok(())
}

/// `retry_base_ms * 2^(attempts-1)`, at most `retry_max_secs`, plus up to 20% jitter.
fn backoff(settings: &WebhookSettings, attempts: i32) -> chrono::Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    let base = settings.retry_base_ms.saturating_mul(1 << exponent);
    let capped = base.min(settings.retry_max_secs.saturating_mul(1000));
    let jitter = fastrand::u64(0..=capped / 5);
    chrono::Duration::milliseconds(i64::try_from(capped + jitter).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let settings = WebhookSettings {
            allow_private: false,
            timeout_secs: 10,
            max_attempts: 8,
            retry_base_ms: 1000,
            retry_max_secs: 300,
        };
        let ms = |n| backoff(&settings, n).num_milliseconds();
        assert!((1000..=1200).contains(&ms(1)));
        assert!((4000..=4800).contains(&ms(3)));
        assert!((300_000..=360_000).contains(&ms(20)));
    }
}
