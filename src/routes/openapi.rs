//! `/api/v1/openapi.json`: the OpenAPI 3 document, generated from the handlers' annotations.

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    alerts, api_keys, audit, auth, devices, health, live, notifications, report_schedules, reports,
    rules, telemetry, users,
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
    modifiers(&Security),
    tags(
        (name = "auth", description = "Login, tokens, the current user"),
        (name = "users", description = "Accounts (admin)"),
        (name = "devices", description = "Field devices"),
        (name = "api-keys", description = "Device credentials"),
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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json));
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
