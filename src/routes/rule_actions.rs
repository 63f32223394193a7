//! A rule's actions as clients write and read them.
//!
//! - Checking: each action is checked and kept in its stored form (only the known fields). An
//!   `mqtt` action may only publish to its device's own command topic (`devices/{id}/commands`
//!   or below): never a `$` system topic, a wildcard, or another device's topic.
//! - Secrets are write-only: a webhook's `secret` and its header values are shown as
//!   [`MASK`] to every role. A change that omits them, or sends the mask back, keeps the stored
//!   ones, but only for the same webhook URL (a secret never follows a URL that changed).

use insa_actors::rules::{command_topic, DEVICE_PLACEHOLDER};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::auth::password::looks_like_email;
use crate::error::FieldProblem;

/// What answers show in place of a webhook secret or header value.
pub const MASK: &str = "***";

const RECIPIENTS_MAX: usize = 50;
/// Whom a rule targets: one device, or several (by type and/or area).
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Device(Uuid),
    Several,
}

/// Whether `topic` is a command topic the rule's device(s) own: `devices/{id}/commands` or
/// below it, `{id}` being the rule's device or the `{device_id}` placeholder (filled with the
/// alerting device; the only form a rule of several devices may use).
pub fn command_topic_allowed(topic: &str, target: Target) -> bool {
    match target {
        Target::Device(id) => command_topic(Some(topic), id).is_some(),
        Target::Several => {
            topic.starts_with(&format!("devices/{DEVICE_PLACEHOLDER}/"))
                && command_topic(Some(topic), Uuid::nil()).is_some()
        }
    }
}

/// Checks one action and returns it in its stored form (only the known fields).
pub fn check_action(
    problems: &mut Vec<FieldProblem>,
    i: usize,
    action: Value,
    target: Target,
) -> Value {
    let field = |name: &str| format!("actions[{i}].{name}");
    let Value::Object(action) = action else {
        problems.push(FieldProblem::new(
            format!("actions[{i}]"),
            "must be an object",
        ));
        return Value::Null;
    };
    let allowed: &[&str] = match action.get("type").and_then(Value::as_str) {
        Some("email") => &["type", "to"],
        Some("webhook") => &["type", "url", "secret", "headers"],
        Some("mqtt") => &["type", "topic", "payload"],
        _ => {
            problems.push(FieldProblem::new(
                field("type"),
                "must be email, webhook or mqtt",
            ));
            return Value::Object(action);
        }
    };
    for unknown in action.keys().filter(|k| !allowed.contains(&k.as_str())) {
        problems.push(FieldProblem::new(
            field(unknown),
            "is not a field of this action",
        ));
    }
    match action.get("type").and_then(Value::as_str) {
        Some("email") => {
            let to = action.get("to").and_then(Value::as_array);
            match to {
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
                    field("to"),
                    format!("1 to {RECIPIENTS_MAX} email addresses"),
                )),
            }
        }
        Some("webhook") => check_webhook(problems, i, &action),
        _ => {
            if let Some(topic) = action.get("topic") {
                if !topic
                    .as_str()
                    .is_some_and(|t| command_topic_allowed(t, target))
                {
                    let own = match target {
                        Target::Device(id) => format!("devices/{id}/commands"),
                        Target::Several => format!("devices/{DEVICE_PLACEHOLDER}/commands"),
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
    }
    Value::Object(action)
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

/// The actions as answers show them: webhook secrets and header values masked.
pub fn masked(actions: &Value) -> Value {
    let Some(list) = actions.as_array() else {
        return actions.clone();
    };
    Value::Array(
        list.iter()
            .map(|action| {
                let mut action = action.clone();
                if action["type"] == "webhook" {
                    if let Some(fields) = action.as_object_mut() {
                        if fields.contains_key("secret") {
                            fields.insert("secret".into(), MASK.into());
                        }
                        if let Some(Value::Object(headers)) = fields.get_mut("headers") {
                            for value in headers.values_mut() {
                                *value = MASK.into();
                            }
                        }
                    }
                }
                action
            })
            .collect(),
    )
}

/// Puts the stored secrets back into webhook actions sent without them (or with the mask): the
/// stored action with the same URL (at the same position first) lends its `secret` (when
/// `secret` is absent or masked; `null` removes it), its `headers` (when absent) and the
/// values of masked headers. A webhook whose URL changed gets nothing.
pub fn keep_secrets(actions: &mut [Value], stored: &[Value]) {
    for (i, action) in actions.iter_mut().enumerate() {
        let Some(fields) = action.as_object_mut() else {
            continue;
        };
        if fields.get("type").and_then(Value::as_str) != Some("webhook") {
            continue;
        }
        let url = fields.get("url").cloned();
        let same = |s: &&Value| s["type"] == "webhook" && url.as_ref() == s.get("url");
        let Some(old) = stored
            .get(i)
            .filter(same)
            .or_else(|| stored.iter().find(same))
        else {
            continue;
        };
        match fields.get("secret") {
            None => {
                if let Some(secret) = old.get("secret") {
                    fields.insert("secret".into(), secret.clone());
                }
            }
            Some(Value::String(s)) if s == MASK => {
                if let Some(secret) = old.get("secret") {
                    fields.insert("secret".into(), secret.clone());
                }
            }
            Some(Value::Null) => {
                fields.remove("secret");
            }
            Some(_) => {}
        }
        match fields.get_mut("headers") {
            None => {
                if let Some(headers) = old.get("headers") {
                    fields.insert("headers".into(), headers.clone());
                }
            }
            Some(Value::Object(headers)) => {
                for (name, value) in headers.iter_mut() {
                    if value.as_str() != Some(MASK) {
                        continue;
                    }
                    let kept = old["headers"].as_object().and_then(|h| {
                        h.iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.clone())
                    });
                    if let Some(kept) = kept {
                        *value = kept;
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

    #[test]
    fn only_the_devices_own_command_topics_are_allowed() {
        let id = Uuid::new_v4();
        let other = Uuid::new_v4();
        let one = Target::Device(id);
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
        assert!(command_topic_allowed(
            "devices/{device_id}/commands",
            Target::Several
        ));
        assert!(!command_topic_allowed(
            &format!("devices/{id}/commands"),
            Target::Several
        ));
    }

    #[test]
    fn secrets_and_header_values_are_masked() {
        let shown = masked(&json!([
            {"type": "webhook", "url": "https://x", "secret": "s", "headers": {"Authorization": "Bearer t"}},
            {"type": "webhook", "url": "https://y"},
            {"type": "email", "to": ["a@b.c"]},
        ]));
        assert_eq!(
            shown,
            json!([
                {"type": "webhook", "url": "https://x", "secret": "***", "headers": {"Authorization": "***"}},
                {"type": "webhook", "url": "https://y"},
                {"type": "email", "to": ["a@b.c"]},
            ])
        );
    }

    #[test]
    fn omitted_or_masked_secrets_are_kept_for_the_same_url_only() {
        let stored = vec![json!(
            {"type": "webhook", "url": "https://x", "secret": "s", "headers": {"A": "1", "B": "2"}}
        )];
        let mut same = vec![json!({"type": "webhook", "url": "https://x"})];
        keep_secrets(&mut same, &stored);
        assert_eq!(same[0], stored[0]);

        let mut masked_back = vec![masked(&Value::Array(stored.clone()))[0].clone()];
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
