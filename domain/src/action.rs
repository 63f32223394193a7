//! What a rule does when its alert changes: send an email, call a webhook, publish an MQTT
//! command ([`Action`]), parsed from what a client writes, stored in `rules.actions` ([`Actions`])
//! and carried in each outbox row.
//!
//! - Parsing ([`Action::parse`]) keeps only the known fields and names each field at fault. An
//!   `mqtt` action may only publish to its device's own command topic ([`command_topic`]):
//!   never a `$` system topic, a wildcard, or another device's topic.
//! - Secrets are write-only: a webhook's `secret` and its header values are shown as [`MASK`]
//!   ([`Action::masked`]). A change that omits them, or sends the mask back, keeps the stored
//!   ones, but only for the same webhook URL ([`keep_secrets`]: a secret never follows a URL that
//!   changed).

use std::collections::BTreeMap;

use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter, FromJsonQueryResult};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::text::looks_like_email;
use crate::FieldProblem;

/// What answers show in place of a webhook secret or header value.
pub const MASK: &str = "***";
/// The placeholder a rule's MQTT topic uses for the alerting device's id.
pub const DEVICE_PLACEHOLDER: &str = "{device_id}";
/// The most recipients of one email action.
pub const RECIPIENTS_MAX: usize = 50;
const TOPIC_MAX: usize = 255;

/// One action of a rule, as stored (`{"type": "email", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Action {
    /// One message to all of `to`.
    Email { to: Vec<String> },
    /// A signed JSON POST (signed when there is a `secret`), with these extra `headers`.
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        headers: Option<BTreeMap<String, String>>,
    },
    /// `payload` published to `topic` (default `devices/{id}/commands`).
    Mqtt {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        payload: Value,
    },
}

/// How a notification travels: an action's kind, stored with each outbox row.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[sea_orm(string_value = "email")]
    Email,
    #[sea_orm(string_value = "webhook")]
    Webhook,
    #[sea_orm(string_value = "mqtt")]
    Mqtt,
}

impl Channel {
    /// The name used in the API, metrics and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Mqtt => "mqtt",
        }
    }
}

/// A rule's actions: the `rules.actions` JSON column (a JSON array).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(transparent)]
pub struct Actions(pub Vec<Action>);

impl std::ops::Deref for Actions {
    type Target = Vec<Action>;

    fn deref(&self) -> &Vec<Action> {
        &self.0
    }
}

impl Action {
    /// Parses one action a client wrote (the `i`th), pushing a problem for each field at fault.
    /// `device` is the rule's one device, `None` for a rule of several devices (its MQTT topics
    /// must use [`DEVICE_PLACEHOLDER`]).
    pub fn parse(
        problems: &mut Vec<FieldProblem>,
        i: usize,
        action: Value,
        device: Option<Uuid>,
    ) -> Option<Action> {
        let before = problems.len();
        let field = |name: &str| format!("actions[{i}].{name}");
        let Value::Object(action) = action else {
            problems.push(FieldProblem::new(
                format!("actions[{i}]"),
                "must be an object",
            ));
            return None;
        };
        let kind = action.get("type").and_then(Value::as_str);
        let allowed: &[&str] = match kind {
            Some("email") => &["type", "to"],
            Some("webhook") => &["type", "url", "secret", "headers"],
            Some("mqtt") => &["type", "topic", "payload"],
            _ => {
                problems.push(FieldProblem::new(
                    field("type"),
                    "must be email, webhook or mqtt",
                ));
                return None;
            }
        };
        for unknown in action.keys().filter(|k| !allowed.contains(&k.as_str())) {
            problems.push(FieldProblem::new(
                field(unknown),
                "is not a field of this action",
            ));
        }
        match kind {
            Some("email") => check_email(problems, i, &action),
            Some("webhook") => check_webhook(problems, i, &action),
            _ => check_mqtt(problems, i, &action, device),
        }
        if problems.len() > before {
            return None;
        }
        // The checks above hold exactly what the stored form needs.
        serde_json::from_value(Value::Object(action)).ok()
    }

    /// The kind of notification this action makes.
    pub fn channel(&self) -> Channel {
        match self {
            Self::Email { .. } => Channel::Email,
            Self::Webhook { .. } => Channel::Webhook,
            Self::Mqtt { .. } => Channel::Mqtt,
        }
    }

    /// Where a notification of `device_id`'s alert goes: the addresses, the URL, or the command
    /// topic; `None` for an MQTT topic that is not the device's own (one stored before topics
    /// were checked is not trusted either).
    pub fn target(&self, device_id: Uuid) -> Option<String> {
        match self {
            Self::Email { to } => Some(to.join(", ")),
            Self::Webhook { url, .. } => Some(url.clone()),
            Self::Mqtt { topic, .. } => command_topic(topic.as_deref(), device_id),
        }
    }

    /// The action as answers show it: a webhook's secret and header values masked.
    pub fn masked(&self) -> Action {
        match self {
            Self::Webhook {
                url,
                secret,
                headers,
            } => Self::Webhook {
                url: url.clone(),
                secret: secret.as_ref().map(|_| MASK.to_string()),
                headers: headers.as_ref().map(|headers| {
                    headers
                        .keys()
                        .map(|name| (name.clone(), MASK.to_string()))
                        .collect()
                }),
            },
            other => other.clone(),
        }
    }
}

fn check_email(problems: &mut Vec<FieldProblem>, i: usize, action: &Map<String, Value>) {
    match action.get("to").and_then(Value::as_array) {
        Some(to) if !to.is_empty() && to.len() <= RECIPIENTS_MAX => {
            for (j, address) in to.iter().enumerate() {
                if !address.as_str().is_some_and(looks_like_email) {
                    problems.push(FieldProblem::new(
                        format!("actions[{i}].to[{j}]"),
                        "must be an email address",
                    ));
                }
            }
        }
        _ => problems.push(FieldProblem::new(
            format!("actions[{i}].to"),
            format!("1 to {RECIPIENTS_MAX} email addresses"),
        )),
    }
}

fn check_webhook(problems: &mut Vec<FieldProblem>, i: usize, action: &Map<String, Value>) {
    let field = |name: &str| format!("actions[{i}].{name}");
    let url = action.get("url").and_then(Value::as_str);
    let parsed = url.and_then(|u| url::Url::parse(u).ok());
    if !parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()) {
        problems.push(FieldProblem::new(
            field("url"),
            "must be an http:// or https:// URL",
        ));
    }
    match action.get("secret") {
        None => {}
        Some(Value::String(secret)) if secret == MASK => problems.push(FieldProblem::new(
            field("secret"),
            "is masked: no secret is stored for this url, send the secret itself",
        )),
        Some(Value::String(_)) => {}
        Some(_) => problems.push(FieldProblem::new(field("secret"), "must be a string")),
    }
    if let Some(headers) = action.get("headers") {
        let valid = headers.as_object().is_some_and(|h| {
            h.iter().all(|(name, value)| {
                value.is_string()
                    && !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        });
        if !valid {
            problems.push(FieldProblem::new(
                field("headers"),
                "must map header names to string values",
            ));
        } else if let Some(name) = headers
            .as_object()
            .and_then(|h| h.iter().find(|(_, v)| v.as_str() == Some(MASK)))
            .map(|(name, _)| name)
        {
            problems.push(FieldProblem::new(
                field("headers"),
                format!("{name} is masked: no value is stored for this url, send the value itself"),
            ));
        }
    }
}

fn check_mqtt(
    problems: &mut Vec<FieldProblem>,
    i: usize,
    action: &Map<String, Value>,
    device: Option<Uuid>,
) {
    let field = |name: &str| format!("actions[{i}].{name}");
    if let Some(topic) = action.get("topic") {
        if !topic
            .as_str()
            .is_some_and(|t| command_topic_allowed(t, device))
        {
            let own = match device {
                Some(id) => format!("devices/{id}/commands"),
                None => format!("devices/{DEVICE_PLACEHOLDER}/commands"),
            };
            problems.push(FieldProblem::new(
                field("topic"),
                format!(
                    "must be the rule's device command topic {own} or a topic below it \
                     (no wildcards, no $ topics; the default is {own})"
                ),
            ));
        }
    }
    if !action.contains_key("payload") {
        problems.push(FieldProblem::new(field("payload"), "is required"));
    }
}

/// The topic an `mqtt` action of a rule publishes to for `device_id`: `topic` with the
/// placeholder filled (default `devices/{id}/commands`), only if it is that device's own command
/// topic or below it — never a `$` system topic, a wildcard, an empty level or another device's
/// topic (the platform publishes with its own broker login).
pub fn command_topic(topic: Option<&str>, device_id: Uuid) -> Option<String> {
    let Some(topic) = topic else {
        return Some(format!("devices/{device_id}/commands"));
    };
    let topic = match topic.strip_prefix("devices/{device_id}/") {
        Some(rest) => format!("devices/{device_id}/{rest}"),
        None => topic.to_string(),
    };
    if topic.len() > TOPIC_MAX || topic.contains(['+', '#', '$', '\0']) {
        return None;
    }
    let mut levels = topic.split('/');
    let (Some("devices"), Some(id), Some("commands")) =
        (levels.next(), levels.next(), levels.next())
    else {
        return None;
    };
    let own = id.parse::<Uuid>().is_ok_and(|id| id == device_id);
    (own && levels.all(|level| !level.is_empty())).then_some(topic)
}

/// Whether `topic` is a command topic the rule's device(s) own: `devices/{id}/commands` or
/// below it, `{id}` being the rule's one `device` or the `{device_id}` placeholder (filled with
/// the alerting device; the only form a rule of several devices may use).
pub fn command_topic_allowed(topic: &str, device: Option<Uuid>) -> bool {
    match device {
        Some(id) => command_topic(Some(topic), id).is_some(),
        None => {
            topic.starts_with(&format!("devices/{DEVICE_PLACEHOLDER}/"))
                && command_topic(Some(topic), Uuid::nil()).is_some()
        }
    }
}

/// Puts the stored secrets back into webhook actions a client sent without them (or with the
/// mask), before they are parsed: the stored webhook with the same URL (at the same position
/// first) lends its `secret` (when `secret` is absent or masked; `null` removes it), its
/// `headers` (when absent) and the values of masked headers. A webhook whose URL changed gets
/// nothing.
pub fn keep_secrets(actions: &mut [Value], stored: &[Action]) {
    for (i, action) in actions.iter_mut().enumerate() {
        let Some(fields) = action.as_object_mut() else {
            continue;
        };
        if fields.get("type").and_then(Value::as_str) != Some("webhook") {
            continue;
        }
        let Some(url) = fields
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        let same = |s: &Action| match s {
            Action::Webhook {
                url: stored_url,
                secret,
                headers,
            } if *stored_url == url => Some((secret.clone(), headers.clone())),
            _ => None,
        };
        let Some((secret, headers)) = stored
            .get(i)
            .and_then(same)
            .or_else(|| stored.iter().find_map(same))
        else {
            continue;
        };
        match fields.get("secret") {
            Some(Value::Null) => {
                fields.remove("secret");
            }
            None => {
                if let Some(secret) = secret {
                    fields.insert("secret".into(), secret.into());
                }
            }
            Some(Value::String(s)) if s == MASK => {
                if let Some(secret) = secret {
                    fields.insert("secret".into(), secret.into());
                }
            }
            Some(_) => {}
        }
        match fields.get_mut("headers") {
            None => {
                if let Some(headers) = headers {
                    fields.insert("headers".into(), serde_json::json!(headers));
                }
            }
            Some(Value::Object(sent)) => {
                for (name, value) in sent.iter_mut() {
                    if value.as_str() != Some(MASK) {
                        continue;
                    }
                    let kept = headers.as_ref().and_then(|h| {
                        h.iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.clone())
                    });
                    if let Some(kept) = kept {
                        *value = kept.into();
                    }
                }
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(action: Value, device: Option<Uuid>) -> Result<Action, Vec<String>> {
        let mut problems = Vec::new();
        match Action::parse(&mut problems, 0, action, device) {
            Some(action) if problems.is_empty() => Ok(action),
            _ => Err(problems.into_iter().map(|p| p.field).collect()),
        }
    }

    #[test]
    fn actions_parse_to_their_stored_form_or_name_each_field_at_fault() {
        let webhook = json!({"type": "webhook", "url": "https://x.example/h", "secret": "s",
                             "headers": {"X-Site": "north"}});
        let parsed = parse(webhook.clone(), None).expect("a webhook");
        assert_eq!(serde_json::to_value(&parsed).expect("json"), webhook);
        assert_eq!(parsed.channel(), Channel::Webhook);
        let email = json!({"type": "email", "to": ["a@b.c", "d@e.f"]});
        let parsed = parse(email.clone(), None).expect("an email");
        assert_eq!(serde_json::to_value(&parsed).expect("json"), email);
        assert_eq!(parsed.target(Uuid::nil()).as_deref(), Some("a@b.c, d@e.f"));
        let mqtt = json!({"type": "mqtt", "payload": null});
        assert_eq!(
            parse(mqtt.clone(), None).map(|a| serde_json::to_value(a).expect("json")),
            Ok(mqtt)
        );

        for (action, fields) in [
            (json!("email"), vec!["actions[0]"]),
            (
                json!({"type": "sms", "to": ["+1"]}),
                vec!["actions[0].type"],
            ),
            (json!({"type": "email", "to": []}), vec!["actions[0].to"]),
            (
                json!({"type": "email", "to": ["ok@x.y", "nope"], "cc": 1}),
                vec!["actions[0].cc", "actions[0].to[1]"],
            ),
            (
                json!({"type": "webhook", "url": "ftp://x/y"}),
                vec!["actions[0].url"],
            ),
            (
                json!({"type": "webhook", "url": "https://x/", "secret": 5, "headers": {"A": 1}}),
                vec!["actions[0].secret", "actions[0].headers"],
            ),
            (
                json!({"type": "webhook", "url": "https://x/", "secret": "***", "headers": {"A": "***"}}),
                vec!["actions[0].secret", "actions[0].headers"],
            ),
            (json!({"type": "mqtt"}), vec!["actions[0].payload"]),
            (
                json!({"type": "mqtt", "topic": "devices/+/commands", "payload": 1}),
                vec!["actions[0].topic"],
            ),
        ] {
            let fields = fields.into_iter().map(String::from).collect();
            assert_eq!(parse(action.clone(), None), Err(fields), "{action}");
        }
    }

    #[test]
    fn only_the_devices_own_command_topics_are_allowed() {
        let id = Uuid::new_v4();
        let other = Uuid::new_v4();
        let one = Some(id);
        for topic in [
            format!("devices/{id}/commands"),
            format!("devices/{id}/commands/valve/1"),
            "devices/{device_id}/commands".to_string(),
        ] {
            assert!(command_topic_allowed(&topic, one), "{topic}");
        }
        for topic in [
            "$CONTROL/dynamic-security/v1".to_string(),
            "$SYS/broker".to_string(),
            format!("devices/{other}/commands"),
            format!("devices/{id}/telemetry"),
            format!("devices/{id}/status"),
            format!("devices/{id}/commands/+"),
            format!("devices/{id}/commands/#"),
            format!("devices/{id}/commands//x"),
            format!("devices/{id}/commands/"),
            format!("devices/{id}/commands/$x"),
            "devices/+/commands".to_string(),
            "other/topic".to_string(),
            String::new(),
        ] {
            assert!(!command_topic_allowed(&topic, one), "{topic}");
        }
        assert!(command_topic_allowed("devices/{device_id}/commands", None));
        assert!(!command_topic_allowed(
            &format!("devices/{id}/commands"),
            None
        ));
        assert_eq!(
            command_topic(Some("devices/{device_id}/commands/valve"), id),
            Some(format!("devices/{id}/commands/valve"))
        );
        assert_eq!(
            command_topic(None, id),
            Some(format!("devices/{id}/commands"))
        );
        let stray = Action::Mqtt {
            topic: Some("plant/valves".into()),
            payload: json!(1),
        };
        assert_eq!(
            stray.target(id),
            None,
            "an unchecked stored topic is skipped"
        );
    }

    #[test]
    fn secrets_and_header_values_are_masked() {
        let actions: Vec<Action> = serde_json::from_value(json!([
            {"type": "webhook", "url": "https://x", "secret": "s", "headers": {"Authorization": "Bearer t"}},
            {"type": "webhook", "url": "https://y"},
            {"type": "email", "to": ["a@b.c"]},
        ]))
        .expect("actions");
        let shown: Vec<Action> = actions.iter().map(Action::masked).collect();
        assert_eq!(
            serde_json::to_value(shown).expect("json"),
            json!([
                {"type": "webhook", "url": "https://x", "secret": "***", "headers": {"Authorization": "***"}},
                {"type": "webhook", "url": "https://y"},
                {"type": "email", "to": ["a@b.c"]},
            ])
        );
    }

    #[test]
    fn omitted_or_masked_secrets_are_kept_for_the_same_url_only() {
        let stored_json = json!({"type": "webhook", "url": "https://x", "secret": "s", "headers": {"A": "1", "B": "2"}});
        let stored: Vec<Action> =
            vec![serde_json::from_value(stored_json.clone()).expect("an action")];
        let mut same = vec![json!({"type": "webhook", "url": "https://x"})];
        keep_secrets(&mut same, &stored);
        assert_eq!(same[0], stored_json);

        let mut masked_back = vec![serde_json::to_value(stored[0].masked()).expect("json")];
        masked_back[0]["headers"]["B"] = json!("new");
        keep_secrets(&mut masked_back, &stored);
        assert_eq!(masked_back[0]["secret"], "s");
        assert_eq!(masked_back[0]["headers"], json!({"A": "1", "B": "new"}));

        let mut cleared = vec![json!({"type": "webhook", "url": "https://x", "secret": null})];
        keep_secrets(&mut cleared, &stored);
        assert!(cleared[0].get("secret").is_none());

        let mut moved = vec![json!({"type": "webhook", "url": "https://evil", "secret": "***"})];
        keep_secrets(&mut moved, &stored);
        assert_eq!(moved[0]["secret"], "***", "left masked, so refused");
        assert!(moved[0].get("headers").is_none());
    }
}
