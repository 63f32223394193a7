//! `/api/v1/openapi.json`: the OpenAPI 3 document, generated from the handlers' annotations.
//!
//! Patterns in the annotations spell whitespace out as the set the platform trims (Rust's
//! `char::is_whitespace`) rather than `\s`, whose set differs between regex dialects (U+0085,
//! U+FEFF), so a client and the platform agree on every value.

use std::sync::LazyLock;

use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::{ApiError, Code};

use super::{
    alerts, api_keys, audit, auth, certificates, devices, health, live, notifications,
    report_schedules, reports, rules, telemetry, users,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "insa-iiot", description = "Industrial IoT platform for oil & gas sites"),
    paths(
        health::health,
        health::status,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::me,
        auth::change_password,
        users::list_users,
        users::create_user,
        users::get_user,
        users::update_user,
        users::delete_user,
        devices::list_devices,
        devices::create_device,
        devices::get_device,
        devices::update_device,
        devices::delete_device,
        api_keys::list_api_keys,
        api_keys::create_api_key,
        api_keys::get_api_key,
        api_keys::revoke_api_key,
        certificates::ca_certificate,
        certificates::issue_certificate,
        certificates::list_certificates,
        certificates::revoke_certificate,
        rules::list_rules,
        rules::create_rule,
        rules::get_rule,
        rules::update_rule,
        rules::delete_rule,
        alerts::list_alerts,
        alerts::get_alert,
        alerts::acknowledge_alert,
        alerts::resolve_alert,
        notifications::list_notifications,
        notifications::retry_notification,
        reports::telemetry_report,
        reports::alert_report,
        reports::create_job,
        reports::list_jobs,
        reports::get_job,
        reports::download_job,
        report_schedules::create_schedule,
        report_schedules::list_schedules,
        report_schedules::get_schedule,
        report_schedules::update_schedule,
        report_schedules::delete_schedule,
        report_schedules::run_schedule,
        audit::list_audit_log,
        telemetry::post_telemetry,
        telemetry::get_telemetry,
        telemetry::get_latest,
        live::create_ticket,
        openapi_json,
    ),
    modifiers(&Security, &ErrorResponses),
    components(schemas(ErrorBody)),
    tags(
        (name = "auth", description = "Login, tokens, the current user"),
        (name = "users", description = "Accounts (admin)"),
        (name = "devices", description = "Field devices"),
        (name = "api-keys", description = "Device credentials"),
        (name = "certificates", description = "The platform CA and device certificates (MQTTS client authentication)"),
        (name = "rules", description = "Alert rules"),
        (name = "alerts", description = "Alerts: list, acknowledge, resolve"),
        (name = "notifications", description = "Alert notification deliveries"),
        (name = "reports", description = "Telemetry and alert reports: CSV, Excel, PDF, ZIP"),
        (name = "audit", description = "Audit log (admin)"),
        (name = "telemetry", description = "Readings in, history and latest values out"),
        (name = "live", description = "Live feed (WebSocket `GET /api/v1/ws`) tickets"),
        (name = "operations", description = "Health, status, this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "refresh_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The error body every 4xx/5xx answer carries (src/error.rs).
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// A stable snake_case code (docs/API.md, "Errors").
    code: String,
    message: String,
    /// Per-field problems, limits or other context; `null` when there is none.
    #[schema(value_type = Object, nullable)]
    details: Option<serde_json::Value>,
}

/// Documents on every operation the error answers it can give, with the error body, so a client
/// generated from this document knows them all (the contract test checks every answer is listed):
/// 400 (query, path or body that does not parse), 401/403 (operations behind credentials),
/// 404 (anything naming a resource), 413/415 (operations with a body), 422 (validation),
/// 429 (operations a device key or a login can call), 503 (the database or ingest is down).
struct ErrorResponses;

impl ErrorResponses {
    fn statuses(op: &Operation) -> Vec<(&'static str, &'static str)> {
        let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
        let by_key = op.security.as_ref().is_some_and(|reqs| {
            serde_json::to_value(reqs).is_ok_and(|v| v.to_string().contains("\"api_key\""))
        });
        let has_body = op.request_body.is_some();
        let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
        let mut statuses = Vec::new();
        if has_body || has_params {
            statuses.push(("400", "`invalid_json`, `invalid_query` or `invalid_id`"));
        }
        if secured {
            statuses.push(("401", "Missing, invalid or expired credentials"));
            statuses.push(("403", "The caller's role or key does not allow this"));
        }
        if secured || has_params {
            statuses.push(("404", "A resource named in the request does not exist"));
        }
        if has_body {
            statuses.push(("413", "`payload_too_large`"));
            statuses.push((
                "415",
                "`unsupported_media_type`: send `Content-Type: application/json`",
            ));
        }
        if has_body || has_params {
            statuses.push((
                "422",
                "`validation_failed`: the request parsed but a value is not allowed",
            ));
        }
        if by_key {
            statuses.push((
                "429",
                "`rate_limited`: the key's hourly rate limit is spent",
            ));
        }
        statuses.push((
            "503",
            "`database_unavailable` (or ingest saturated): retry later",
        ));
        statuses
    }
}

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = || Content::new(Some(Ref::from_schema_name("Error")));
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                for (status, description) in Self::statuses(op) {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(Response::new(description)));
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        if !status.starts_with('2') && response.content.is_empty() {
                            response.content.insert("application/json".into(), error());
                        }
                    }
                }
            }
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json));
}

static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// The document as served: [`DOCUMENT`] with every free-text string declared free of U+0000,
/// which the platform refuses everywhere (the databases cannot store it).
static SERVED: LazyLock<serde_json::Value> = LazyLock::new(|| {
    let mut document = serde_json::to_value(&*DOCUMENT).unwrap_or_default();
    forbid_nul(&mut document);
    document
});

/// U+0000 in a JSON pattern: what no free text may hold.
const NO_NUL: &str = "^[^\\u0000]*$";

/// A string schema with no pattern, format or enumeration of its own gets [`NO_NUL`]; a
/// free-form object (config, metadata, actions) gets NUL-free member names and members that are
/// `StorableJson`: any JSON whose strings and names are free of U+0000.
fn forbid_nul(value: &mut serde_json::Value) {
    forbid_nul_in(value);
    if let Some(schemas) = value
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        let any = serde_json::json!({"$ref": "#/components/schemas/StorableJson"});
        schemas.insert(
            "StorableJson".into(),
            serde_json::json!({
                "description": "Any JSON whose strings and member names hold no U+0000",
                "anyOf": [
                    {"type": "null"}, {"type": "boolean"}, {"type": "number"},
                    {"type": "string", "pattern": NO_NUL},
                    {"type": "array", "items": any},
                    {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": any},
                ]
            }),
        );
    }
}

fn forbid_nul_in(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            let has_type = |name: &str| match object.get("type") {
                Some(serde_json::Value::String(t)) => t == name,
                Some(serde_json::Value::Array(types)) => types.iter().any(|t| t == name),
                _ => false,
            };
            let (is_string, is_object) = (has_type("string"), has_type("object"));
            let own_rule = ["pattern", "format", "enum", "const"]
                .iter()
                .any(|k| object.contains_key(*k));
            if is_string && !own_rule {
                object.insert("pattern".into(), NO_NUL.into());
            }
            let free_form = !object.contains_key("properties")
                && object.get("additionalProperties") != Some(&serde_json::Value::Bool(false));
            if is_object && free_form {
                object.insert(
                    "propertyNames".into(),
                    serde_json::json!({ "pattern": NO_NUL }),
                );
                object.insert(
                    "additionalProperties".into(),
                    serde_json::json!({"$ref": "#/components/schemas/StorableJson"}),
                );
            }
            object.values_mut().for_each(forbid_nul_in);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(forbid_nul_in),
        _ => {}
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(&*SERVED)
}

/// The answer for a request no route took: 405 with `Allow` when the path is one of the API's
/// and only the method is wrong, else 404.
pub async fn no_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    let allowed = DOCUMENT
        .paths
        .paths
        .iter()
        .find(|(template, _)| path_matches(template, path))
        .map(|(_, item)| {
            [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ]
            .into_iter()
            .filter_map(|(m, on)| on.then_some(m))
            .collect::<Vec<_>>()
            .join(", ")
        });
    match allowed {
        Some(allow) => Err(ApiError::new(
            Code::MethodNotAllowed,
            format!("{} is not allowed here; allowed: {allow}", req.method()),
        )
        .header("allow", allow)),
        None => Err(ApiError::new(Code::NotFound, "no such route")),
    }
}

/// Whether a concrete path matches a template like `/api/v1/devices/{id}`.
fn path_matches(template: &str, path: &str) -> bool {
    let mut parts = path.trim_end_matches('/').split('/');
    let mut matched = template.split('/').all(|segment| match parts.next() {
        Some(part) if segment.starts_with('{') => !part.is_empty(),
        Some(part) => part == segment,
        None => false,
    });
    matched &= parts.next().is_none();
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_paths_only() {
        assert!(path_matches("/api/v1/devices/{id}", "/api/v1/devices/abc"));
        assert!(path_matches("/health", "/health"));
        assert!(!path_matches("/api/v1/devices/{id}", "/api/v1/devices"));
        assert!(!path_matches(
            "/api/v1/devices/{id}",
            "/api/v1/devices/abc/x"
        ));
        assert!(!path_matches("/api/v1/devices/{id}", "/api/v1/devices/"));
    }

    #[test]
    fn every_operation_documents_its_error_answers_with_the_error_body() {
        let doc = &*SERVED;
        let users = &doc["paths"]["/api/v1/users"]["post"]["responses"];
        for status in ["400", "401", "403", "413", "415", "422", "503"] {
            assert_eq!(
                users[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "POST /users {status}"
            );
        }
        let ingest = &doc["paths"]["/api/v1/telemetry"]["post"]["responses"];
        assert!(
            ingest.get("429").is_some(),
            "a device key can be rate limited"
        );
        assert!(doc["paths"]["/health"]["get"]["responses"]
            .get("401")
            .is_none());
    }

    #[test]
    fn free_text_is_declared_free_of_nul() {
        let doc = &*SERVED;
        let user = &doc["components"]["schemas"]["CreateUser"]["properties"];
        assert_eq!(user["name"]["pattern"], "^[^\\u0000]*$");
        assert_eq!(user["password"]["pattern"], "^[^\\u0000]*$");
        // Declared formats and patterns are kept.
        assert_eq!(
            user["email"]["pattern"],
            "^[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^@\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+@[^@\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
        );
        let id = &doc["paths"]["/api/v1/devices/{id}"]["get"]["parameters"][0]["schema"];
        assert_eq!(id["format"], "uuid");
        assert!(id.get("pattern").is_none());
    }
}
