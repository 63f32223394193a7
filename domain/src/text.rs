//! Text the databases can store, checked where it enters the platform.
//!
//! PostgreSQL refuses U+0000 (NUL) in a `text` value and the escape `\u0000` in a `jsonb` one;
//! SQLite stores it, but the platform refuses it on both backends so that what a client may send
//! never depends on the database behind it. (Rust strings cannot hold the other thing PostgreSQL
//! refuses, invalid UTF-8 and lone surrogates: serde_json already rejects those.)
//!
//! Every edge that stores text a client or a device sends goes through this module: the payload
//! decoder (HTTP and MQTT telemetry) and the web layer's JSON bodies. Named fields (names,
//! descriptions, locations) are also held to a length in characters here, one rule for the API
//! and the settings alike: [`check_len`] is the rule; [`optional_text`] and [`required_text`]
//! take a field the platform stores trimmed, [`check_optional`] and [`check_required`] check one
//! it stores as sent (or trims itself), counting what was sent. Email addresses have
//! [`looks_like_email`] and [`check_email`].

use serde_json::Value;

use crate::FieldProblem;

/// The most characters of a name people give (devices, rules, users, keys, schedules).
pub const NAME_MAX_CHARS: usize = 255;

/// The longest email address accepted anywhere (RFC 5321's path limit).
pub const EMAIL_MAX_CHARS: usize = 254;

/// What a refused string is told.
pub const REFUSED_MESSAGE: &str = "must not contain U+0000 (NUL): the database cannot store it";

/// What a required field that is absent or blank is told.
pub const REQUIRED_MESSAGE: &str = "is required and must not be empty";

/// Whether the databases can store `text`.
pub fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// `text` as it can be shown in a field name or a log line: NUL written `\u0000`.
pub fn shown(text: &str) -> String {
    text.replace('\0', "\\u0000")
}

/// The path (`metadata.tags[2]`, `config.a\u0000`) of the first string or object key in `value`
/// the databases cannot store, under `field`; `None` when all of it can be stored.
pub fn refused_in(field: &str, value: &Value) -> Option<String> {
    match value {
        Value::String(text) => (!storable(text)).then(|| field.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| refused_in(&format!("{field}[{i}]"), item)),
        Value::Object(object) => object.iter().find_map(|(key, item)| {
            let path = if field.is_empty() {
                shown(key)
            } else {
                format!("{field}.{}", shown(key))
            };
            if storable(key) {
                refused_in(&path, item)
            } else {
                Some(path)
            }
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// Whether every string and object key in `value` can be stored.
pub fn all_storable(value: &Value) -> bool {
    match value {
        Value::String(text) => storable(text),
        Value::Array(items) => items.iter().all(all_storable),
        Value::Object(object) => object
            .iter()
            .all(|(key, item)| storable(key) && all_storable(item)),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

/// `value` is at most `max_chars` characters (not bytes: names are often not ASCII) and storable.
pub fn check_len(field: &str, value: &str, max_chars: usize) -> Result<(), FieldProblem> {
    if !storable(value) {
        return Err(FieldProblem::new(field, REFUSED_MESSAGE));
    }
    if value.chars().count() > max_chars {
        return Err(FieldProblem::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    Ok(())
}

/// An optional text field: trimmed, empty taken as absent, then checked with [`check_len`] (a
/// problem is pushed and the value still returned, so later checks can use it).
pub fn optional_text(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: Option<String>,
    max_chars: usize,
) -> Option<String> {
    let value = value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())?;
    if let Err(problem) = check_len(field, &value, max_chars) {
        problems.push(problem);
    }
    Some(value)
}

/// A required text field: as [`optional_text`], and absent or blank is a problem.
pub fn required_text(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: Option<String>,
    max_chars: usize,
) -> Option<String> {
    let value = optional_text(problems, field, value, max_chars);
    if value.is_none() {
        problems.push(FieldProblem::new(field, REQUIRED_MESSAGE));
    }
    value
}

/// An optional text field kept as it was sent: when given, held to [`check_len`] as it is
/// (surrounding spaces count; an empty string is a value).
pub fn check_optional(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: Option<&str>,
    max_chars: usize,
) {
    if let Some(Err(problem)) = value.map(|value| check_len(field, value, max_chars)) {
        problems.push(problem);
    }
}

/// A required text field checked as it was sent: absent or blank is a problem, else it is held
/// to [`check_len`] as it is (the caller may store it trimmed).
pub fn check_required(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: Option<&str>,
    max_chars: usize,
) {
    match value {
        Some(value) if !value.trim().is_empty() => {
            check_optional(problems, field, Some(value), max_chars)
        }
        _ => problems.push(FieldProblem::new(field, REQUIRED_MESSAGE)),
    }
}

/// A cheap sanity check for an email address (`local@domain`, no spaces inside, surrounding
/// spaces allowed); delivery is the real test. The length bound, [`EMAIL_MAX_CHARS`], counts what
/// was sent, surrounding spaces included.
pub fn looks_like_email(email: &str) -> bool {
    let sent = email.chars().count();
    let email = email.trim();
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && sent <= EMAIL_MAX_CHARS
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// An email address field: at most [`EMAIL_MAX_CHARS`] as sent ([`check_len`]), then
/// [`looks_like_email`].
pub fn check_email(field: &str, email: &str) -> Result<(), FieldProblem> {
    check_len(field, email, EMAIL_MAX_CHARS)?;
    if looks_like_email(email) {
        Ok(())
    } else {
        Err(FieldProblem::new(field, "must be an email address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_path_of_the_first_refused_string_is_named() {
        assert_eq!(refused_in("metadata", &json!({"a": 1, "b": "ok"})), None);
        assert_eq!(
            refused_in("metadata", &json!({"tags": ["x", "y\u{0}"]})).as_deref(),
            Some("metadata.tags[1]")
        );
        assert_eq!(
            refused_in("", &json!({"k\u{0}": 1})).as_deref(),
            Some("k\\u0000")
        );
        assert_eq!(
            refused_in("", &json!({"a": {"b": "\u{0}"}})).as_deref(),
            Some("a.b")
        );
        assert!(!all_storable(&json!([{"x": "\u{0}"}])));
        assert!(all_storable(&json!([{"x": "\u{1}"}])));
    }

    #[test]
    fn names_are_counted_in_characters_trimmed_and_blank_is_absent() {
        let mut problems = Vec::new();
        let name = "é".repeat(NAME_MAX_CHARS);
        assert_eq!(
            optional_text(
                &mut problems,
                "name",
                Some(format!("  {name} ")),
                NAME_MAX_CHARS
            ),
            Some(name.clone())
        );
        assert!(problems.is_empty(), "255 two-byte characters fit");
        optional_text(
            &mut problems,
            "name",
            Some(format!("{name}é")),
            NAME_MAX_CHARS,
        );
        assert_eq!(
            problems,
            [FieldProblem::new("name", "must be at most 255 characters")]
        );
        problems.clear();
        assert_eq!(
            optional_text(&mut problems, "area", Some("  ".into()), 10),
            None
        );
        assert!(problems.is_empty());
        assert_eq!(
            required_text(&mut problems, "name", Some(" ".into()), 10),
            None
        );
        assert_eq!(problems[0].field, "name");
        assert_eq!(
            check_len("name", "a\u{0}", 10),
            Err(FieldProblem::new("name", REFUSED_MESSAGE))
        );
    }

    #[test]
    fn fields_kept_as_sent_count_what_was_sent() {
        let mut problems = Vec::new();
        check_optional(&mut problems, "area", None, 3);
        check_optional(&mut problems, "area", Some(""), 3);
        check_optional(&mut problems, "area", Some("abc"), 3);
        check_required(&mut problems, "name", Some(" é "), 3);
        assert!(problems.is_empty(), "{problems:?}");
        check_optional(&mut problems, "area", Some(" abc"), 3);
        check_required(&mut problems, "name", Some("abc "), 3);
        assert_eq!(
            problems,
            [
                FieldProblem::new("area", "must be at most 3 characters"),
                FieldProblem::new("name", "must be at most 3 characters"),
            ]
        );
        problems.clear();
        check_required(&mut problems, "name", None, 3);
        check_required(&mut problems, "type", Some(" \t"), 3);
        assert_eq!(
            problems,
            [
                FieldProblem::new("name", REQUIRED_MESSAGE),
                FieldProblem::new("type", REQUIRED_MESSAGE),
            ]
        );
    }

    #[test]
    fn email_addresses_are_checked_for_shape_and_length() {
        for good in ["a@b", " ops@insa.com ", "é@ü.example"] {
            assert!(looks_like_email(good), "{good}");
            assert_eq!(check_email("email", good), Ok(()));
        }
        for bad in [
            "",
            "ops",
            "@insa.com",
            "ops@",
            "a@b@c",
            "o ps@insa.com",
            "ops@in sa",
        ] {
            assert!(!looks_like_email(bad), "{bad}");
            assert_eq!(
                check_email("email", bad),
                Err(FieldProblem::new("email", "must be an email address"))
            );
        }
        let fits = format!("{}@insa.com", "b".repeat(245));
        assert_eq!(fits.chars().count(), EMAIL_MAX_CHARS);
        assert_eq!(check_email("email", &fits), Ok(()));
        let long = format!("{}@insa.com", "a".repeat(246));
        assert_eq!(
            check_email("email", &long),
            Err(FieldProblem::new("email", "must be at most 254 characters"))
        );
        // The bound counts surrounding spaces: they were sent.
        assert!(!looks_like_email(&format!(" {fits}")));
    }
}
