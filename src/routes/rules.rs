//! Alert rules: `GET/POST /rules`, `GET/PUT/DELETE /rules/{id}`.
//!
//! A rule watches one key of one device, or of every device of a type and/or area, and raises an
//! alert when its condition has held for `for` seconds. Engineers and admins manage rules;
//! operators and viewers read them. Evaluation happens in the device actors (docs/ALERTS.md).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use insa_actors::rules::{Condition, SEVERITIES};
use insa_entities::{alerts, devices, rules, Role};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code, FieldProblem};
use crate::routes::rule_actions::{self, check_action, Target};
use crate::state::AppState;
use crate::web::list::{list_query, one_of, Items, Listed, Paged};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/rules")
            .route(web::get().to(list_rules))
            .route(web::post().to(create_rule)),
    )
    .service(
        web::resource("/rules/{id}")
            .route(web::get().to(get_rule))
            .route(web::put().to(update_rule))
            .route(web::delete().to(delete_rule)),
    );
}

const NAME_MAX: usize = 255;
const DESCRIPTION_MAX: usize = 2000;
const KEY_MAX: usize = 100;
/// A week: longer holds are better expressed as reports.
const FOR_MAX_SECONDS: u32 = 7 * 24 * 3600;
const ACTIONS_MAX: usize = 20;

/// A rule as written by a client (POST body; PUT bodies are merged onto the stored rule first).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    #[schema(example = "High wellhead pressure")]
    pub name: Option<String>,
    pub description: Option<String>,
    /// One device ...
    pub device_id: Option<Uuid>,
    /// ... or every device of this type and/or area.
    pub device_type: Option<String>,
    pub area: Option<String>,
    /// The telemetry key watched (not used by `offline`).
    #[schema(example = "pressure")]
    pub key: Option<String>,
    /// `>`, `>=`, `<`, `<=`, `==`, `!=`, `between`, `outside` or `offline`.
    #[schema(example = ">")]
    pub condition: Option<String>,
    /// For `>`, `>=`, `<`, `<=`, `==`, `!=`.
    pub threshold: Option<f64>,
    /// For `between` / `outside`.
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Seconds the condition must hold before an alert is raised (default 0).
    #[serde(rename = "for")]
    #[schema(rename = "for")]
    pub for_seconds: Option<u32>,
    /// How far back past the threshold a value must go before the alert clears (default 0).
    pub hysteresis: Option<f64>,
    /// `info`, `warning` (default) or `critical`.
    pub severity: Option<String>,
    /// Resolve the alert when the condition clears (default true).
    pub auto_resolve: Option<bool>,
    /// Default true.
    pub enabled: Option<bool>,
    /// `{"type":"email","to":[...]}`, `{"type":"webhook","url","secret"?,"headers"?}`,
    /// `{"type":"mqtt","topic"?,"payload"}`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub actions: Option<Vec<Value>>,
}

/// A rule as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleResponse {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub device_id: Option<Uuid>,
    pub device_type: Option<String>,
    pub area: Option<String>,
    pub key: String,
    pub condition: String,
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    #[serde(rename = "for")]
    #[schema(rename = "for")]
    pub for_seconds: i32,
    pub hysteresis: f64,
    pub severity: String,
    pub auto_resolve: bool,
    pub enabled: bool,
    /// Webhook `secret`s and header values are shown as `***` (write-only).
    #[schema(value_type = Vec<Object>)]
    pub actions: Value,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn is_band(condition: &str) -> bool {
    Condition::parse(condition).is_some_and(Condition::is_band)
}

impl From<rules::Model> for RuleResponse {
    fn from(r: rules::Model) -> Self {
        let range = is_band(&r.condition);
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            device_id: r.device_id,
            device_type: r.device_type,
            area: r.area,
            key: r.key,
            threshold: (!range).then_some(r.threshold).flatten(),
            low: range.then_some(r.threshold).flatten(),
            high: range.then_some(r.threshold_high).flatten(),
            condition: r.condition,
            for_seconds: r.for_seconds,
            hysteresis: r.hysteresis,
            severity: r.severity,
            auto_resolve: r.auto_resolve,
            enabled: r.enabled,
            actions: rule_actions::masked(&r.actions),
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl From<&rules::Model> for RuleBody {
    fn from(r: &rules::Model) -> Self {
        let response = RuleResponse::from(r.clone());
        Self {
            name: Some(response.name),
            description: response.description,
            device_id: response.device_id,
            device_type: response.device_type,
            area: response.area,
            key: Some(response.key).filter(|k| !k.is_empty()),
            condition: Some(response.condition),
            threshold: response.threshold,
            low: response.low,
            high: response.high,
            for_seconds: u32::try_from(response.for_seconds).ok(),
            hysteresis: Some(response.hysteresis),
            severity: Some(response.severity),
            auto_resolve: Some(response.auto_resolve),
            enabled: Some(response.enabled),
            // The stored actions, secrets included: a change that leaves them out keeps them.
            actions: r.actions.as_array().cloned(),
        }
    }
}

fn text(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: Option<String>,
    max: usize,
) -> Option<String> {
    let value = value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())?;
    if value.chars().count() > max {
        problems.push(FieldProblem::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Some(value)
}

fn finite(problems: &mut Vec<FieldProblem>, field: &str, value: Option<f64>) -> Option<f64> {
    let value = value?;
    if !value.is_finite() {
        problems.push(FieldProblem::new(field, "must be a finite number"));
    }
    Some(value)
}

/// Checks everything that needs no database (`device_exists` is answered by the caller) and
/// returns the rule's stored columns; id and creation fields are left to the caller.
fn check(body: RuleBody, device_exists: Option<bool>) -> Result<rules::ActiveModel, ApiError> {
    let mut problems = Vec::new();
    let name = text(&mut problems, "name", body.name, NAME_MAX);
    if name.is_none() {
        problems.push(FieldProblem::new(
            "name",
            "is required and must not be empty",
        ));
    }
    let description = text(
        &mut problems,
        "description",
        body.description,
        DESCRIPTION_MAX,
    );
    let device_type = text(&mut problems, "device_type", body.device_type, 50);
    let area = text(&mut problems, "area", body.area, 100);
    match (body.device_id, device_type.is_some() || area.is_some()) {
        (None, false) => problems.push(FieldProblem::new(
            "device_id",
            "a rule targets one device (device_id) or the devices of a device_type and/or area",
        )),
        (Some(_), true) => problems.push(FieldProblem::new(
            "device_id",
            "give either device_id or device_type/area, not both",
        )),
        _ => {}
    }
    if let (Some(id), Some(false)) = (body.device_id, device_exists) {
        problems.push(FieldProblem::new(
            "device_id",
            format!("no device with id {id}"),
        ));
    }

    let condition = body.condition.unwrap_or_default();
    let known = Condition::parse(&condition).is_some();
    if !known {
        problems.push(FieldProblem::new(
            "condition",
            format!("must be one of {}", Condition::NAMES.join(", ")),
        ));
    }
    let offline = condition == "offline";
    let key = text(&mut problems, "key", body.key, KEY_MAX);
    if key.is_none() && !offline {
        problems.push(FieldProblem::new(
            "key",
            "is required: the telemetry key to watch",
        ));
    }
    let threshold = finite(&mut problems, "threshold", body.threshold);
    let low = finite(&mut problems, "low", body.low);
    let high = finite(&mut problems, "high", body.high);
    let (threshold, threshold_high) = if is_band(&condition) {
        match (low, high) {
            (Some(low), Some(high)) if low < high => {}
            (Some(_), Some(_)) => problems.push(FieldProblem::new("high", "must be above low")),
            _ => problems.push(FieldProblem::new(
                "low",
                format!("`{condition}` needs both low and high"),
            )),
        }
        if threshold.is_some() {
            problems.push(FieldProblem::new(
                "threshold",
                format!("`{condition}` uses low and high"),
            ));
        }
        (low, high)
    } else if offline {
        (None, None)
    } else {
        if threshold.is_none() && known {
            problems.push(FieldProblem::new(
                "threshold",
                format!("is required for `{condition}`"),
            ));
        }
        if low.is_some() || high.is_some() {
            problems.push(FieldProblem::new(
                "low",
                "low and high are for between/outside",
            ));
        }
        (threshold, None)
    };
    let for_seconds = body.for_seconds.unwrap_or(0);
    if for_seconds > FOR_MAX_SECONDS {
        problems.push(FieldProblem::new(
            "for",
            format!("at most {FOR_MAX_SECONDS} seconds"),
        ));
    }
    let hysteresis = finite(&mut problems, "hysteresis", body.hysteresis).unwrap_or(0.0);
    if hysteresis < 0.0 {
        problems.push(FieldProblem::new("hysteresis", "must not be negative"));
    }
    let severity = body.severity.unwrap_or_else(|| "warning".into());
    if !SEVERITIES.contains(&severity.as_str()) {
        problems.push(FieldProblem::new(
            "severity",
            format!("must be one of {}", SEVERITIES.join(", ")),
        ));
    }
    let actions = body.actions.unwrap_or_default();
    if actions.len() > ACTIONS_MAX {
        problems.push(FieldProblem::new(
            "actions",
            format!("at most {ACTIONS_MAX}"),
        ));
    }
    let target = match body.device_id {
        Some(id) => Target::Device(id),
        None => Target::Several,
    };
    let actions: Vec<Value> = actions
        .into_iter()
        .enumerate()
        .map(|(i, action)| check_action(&mut problems, i, action, target))
        .collect();
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    Ok(rules::ActiveModel {
        name: Set(name.unwrap_or_default()),
        description: Set(description),
        device_id: Set(body.device_id),
        device_type: Set(device_type),
        area: Set(area),
        key: Set(key.unwrap_or_default()),
        condition: Set(condition),
        threshold: Set(threshold),
        threshold_high: Set(threshold_high),
        for_seconds: Set(i32::try_from(for_seconds).unwrap_or(i32::MAX)),
        hysteresis: Set(hysteresis),
        severity: Set(severity),
        actions: Set(Value::Array(actions)),
        auto_resolve: Set(body.auto_resolve.unwrap_or(true)),
        enabled: Set(body.enabled.unwrap_or(true)),
        updated_at: Set(Utc::now()),
        ..Default::default()
    })
}

/// Resolves the rule's open alerts (it is being deleted or disabled), each with its
/// notifications and event, as if its condition had cleared.
async fn close_alerts(state: &AppState, rule: &rules::Model) -> Result<(), ApiError> {
    let open: Vec<Uuid> = alerts::Entity::find()
        .select_only()
        .column(alerts::Column::DeviceId)
        .filter(alerts::Column::RuleId.eq(rule.id))
        .filter(alerts::Column::Status.ne("resolved"))
        .into_tuple()
        .all(&state.db)
        .await?;
    let rule_ref = insa_actors::device::RuleRef::from(rule);
    for device_id in open {
        let device = devices::Entity::find_by_id(device_id)
            .one(&state.db)
            .await?;
        let resolved = insa_actors::alerts::resolve_and_notify(
            &state.db,
            device_id,
            Some(rule.id),
            Utc::now(),
            |alert| {
                insa_actors::device::notifications("resolved", alert, device.as_ref(), &rule_ref)
            },
        )
        .await?;
        if let Some(alert) = resolved {
            state.pipeline.announce(insa_actors::DeviceEvent::Alert {
                alert: Box::new(alert),
                event: insa_actors::AlertEvent::Resolved,
            });
        }
    }
    Ok(())
}

/// Device actors evaluate the rules as they now are.
async fn reload(state: &AppState) {
    if let Err(err) = state.pipeline.reload_rules().await {
        tracing::error!(error = %err, "rules changed but could not be reloaded");
    }
}

async fn find_rule(state: &AppState, id: Uuid) -> Result<rules::Model, ApiError> {
    rules::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::new(Code::RuleNotFound, format!("no rule with id {id}")))
}

async fn device_exists(state: &AppState, id: Option<Uuid>) -> Result<Option<bool>, ApiError> {
    match id {
        Some(id) => Ok(Some(
            devices::Entity::find_by_id(id)
                .one(&state.db)
                .await?
                .is_some(),
        )),
        None => Ok(None),
    }
}

impl Items for RuleResponse {
    const FIELD: &'static str = "rules";
    const LIST: &'static str = "RuleList";
}

/// `{rules, total, limit, offset}`.
pub type RuleList = Listed<RuleResponse>;

list_query! {
    pub struct RuleQuery {
        /// Rules targeting this device (by id) only.
        pub device_id: Option<Uuid>,
        pub enabled: Option<bool>,
        #[param(pattern = "^(info|warning|critical)$")]
        pub severity: Option<String>,
    }
}

/// List rules (any role).
#[utoipa::path(get, path = "/api/v1/rules", tag = "rules", params(RuleQuery),
    responses((status = 200, body = RuleList), (status = 400, description = "`invalid_query`")),
    security(("bearer" = [])))]
pub async fn list_rules(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<RuleQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    let query = query.into_inner();
    let page = query.page()?;
    let mut select = rules::Entity::find();
    if let Some(device_id) = query.device_id {
        select = select.filter(rules::Column::DeviceId.eq(device_id));
    }
    if let Some(enabled) = query.enabled {
        select = select.filter(rules::Column::Enabled.eq(enabled));
    }
    if let Some(severity) = query.severity {
        let severity = one_of("severity", &severity, SEVERITIES)?;
        select = select.filter(rules::Column::Severity.eq(severity));
    }
    let select = select
        .order_by_asc(rules::Column::Name)
        .order_by_asc(rules::Column::Id);
    let listed = page.fetch(&state.db, select).await?;
    Ok(HttpResponse::Ok().json(listed.map(RuleResponse::from)))
}

/// Create a rule (engineer or admin).
#[utoipa::path(post, path = "/api/v1/rules", tag = "rules", request_body = RuleBody,
    responses((status = 201, body = RuleResponse), (status = 422, description = "`validation_failed`")),
    security(("bearer" = [])))]
pub async fn create_rule(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: crate::body::Json<RuleBody>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let body = body.into_inner();
    let exists = device_exists(&state, body.device_id).await?;
    let created = rules::ActiveModel {
        id: Set(Uuid::new_v4()),
        created_by: Set(Some(user.id)),
        created_at: Set(Utc::now()),
        ..check(body, exists)?
    }
    .insert(&state.db)
    .await?;
    reload(&state).await;
    Audit::by("rule.create", &user, &req)
        .target("rule", created.id)
        .details(json!({ "name": created.name }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/rules/{}", created.id)))
        .json(RuleResponse::from(created)))
}

/// One rule (any role).
#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = Uuid, Path, description = "Rule id")),
    responses((status = 200, body = RuleResponse), (status = 404, description = "`rule_not_found`")),
    security(("bearer" = [])))]
pub async fn get_rule(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(RuleResponse::from(find_rule(&state, *id).await?)))
}

/// Change a rule (engineer or admin): the fields given replace the stored ones (`null` clears an
/// optional field), and the whole rule is checked again.
#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "rules", request_body = RuleBody,
    params(("id" = Uuid, Path, description = "Rule id")),
    responses((status = 200, body = RuleResponse), (status = 404, description = "`rule_not_found`"),
              (status = 422, description = "`validation_failed`")),
    security(("bearer" = [])))]
pub async fn update_rule(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: crate::body::Json<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let existing = find_rule(&state, *id).await?;
    let mut merged = serde_json::to_value(RuleBody::from(&existing))
        .map_err(|err| ApiError::new(Code::Internal, err.to_string()))?;
    if let Some(target) = merged.as_object_mut() {
        // Naming a new target replaces the old one.
        if ["device_id", "device_type", "area"]
            .iter()
            .any(|k| body.contains_key(*k))
        {
            for k in ["device_id", "device_type", "area"] {
                target.insert(k.into(), Value::Null);
            }
        }
        // Switching between a threshold and a range drops the other form.
        if body.contains_key("condition") {
            for k in ["threshold", "low", "high"] {
                target.insert(k.into(), Value::Null);
            }
        }
        for (k, v) in body.into_inner() {
            target.insert(k, v);
        }
    }
    let mut body: RuleBody = serde_json::from_value(merged)
        .map_err(|err| ApiError::new(Code::ValidationFailed, format!("invalid body: {err}")))?;
    if let (Some(actions), Some(stored)) = (body.actions.as_mut(), existing.actions.as_array()) {
        rule_actions::keep_secrets(actions, stored);
    }
    let exists = device_exists(&state, body.device_id).await?;
    let mut rule = check(body, exists)?;
    rule.id = Set(existing.id);
    let updated = rule.update(&state.db).await?;
    if !updated.enabled {
        close_alerts(&state, &updated).await?;
    }
    reload(&state).await;
    Audit::by("rule.update", &user, &req)
        .target("rule", updated.id)
        .details(json!({ "name": updated.name }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::Ok().json(RuleResponse::from(updated)))
}

/// Delete a rule (engineer or admin).
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = Uuid, Path, description = "Rule id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "`rule_not_found`")),
    security(("bearer" = [])))]
pub async fn delete_rule(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let rule = find_rule(&state, *id).await?;
    // Its open alerts are resolved first: they would otherwise lose their rule (set null) and
    // read as alerts of the built-in rule.
    close_alerts(&state, &rule).await?;
    let txn = state.db.begin().await?;
    insa_actors::alerts::resolve_rule(&txn, rule.id, Utc::now()).await?;
    rules::Entity::delete_by_id(rule.id).exec(&txn).await?;
    txn.commit().await?;
    reload(&state).await;
    Audit::by("rule.delete", &user, &req)
        .target("rule", rule.id)
        .details(json!({ "name": rule.name }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod properties {
    //! Rule validation over arbitrary bodies: what `POST /rules` does with one (the edge check,
    //! the typed body, `check`) gives a storable rule or a 4xx, never a panic.

    use super::*;
    use insa_actors::arbitrary::{holds_nul, json};
    use proptest::prelude::*;
    use sea_orm::ActiveValue;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                ">",
                ">=",
                "<",
                "<=",
                "==",
                "!=",
                "between",
                "outside",
                "offline",
                "info",
                "warning",
                "critical",
                "email",
                "webhook",
                "mqtt",
                "pressure",
                "devices/{device_id}/commands",
                "$CONTROL/dynamic-security/v1",
                "http://127.0.0.1/hook",
                "https://example.com/hook",
                "ops@example.com",
            ])
            .prop_map(str::to_string),
            "[a-z\\x00/+#$ ]{0,6}",
            any::<String>(),
        ]
    }

    fn action() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(vec!["email", "webhook", "mqtt", "sms"]),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "to", "url", "secret", "headers", "topic", "payload", "x",
                    ]),
                    json(text),
                ),
                0..4,
            ),
        )
            .prop_map(|(kind, fields)| {
                let mut action: Map<String, Value> = fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                action.insert("type".into(), Value::from(kind));
                Value::Object(action)
            })
    }

    fn rule_body() -> impl Strategy<Value = Value> {
        let field = prop_oneof![
            Just("name"),
            Just("description"),
            Just("device_id"),
            Just("device_type"),
            Just("area"),
            Just("key"),
            Just("condition"),
            Just("threshold"),
            Just("low"),
            Just("high"),
            Just("for"),
            Just("hysteresis"),
            Just("severity"),
            Just("auto_resolve"),
            Just("enabled"),
        ];
        (
            prop::collection::vec((field, json(text)), 0..4),
            prop::option::of(prop::collection::vec(action(), 0..3)),
        )
            .prop_map(|(fields, actions)| {
                // A valid rule, then changed: so both accepted and refused bodies are reached.
                let mut body = json!({"name": "High", "key": "pressure", "condition": ">",
                                      "threshold": 80, "device_type": "pump"});
                let body = body.as_object_mut().expect("an object");
                for (field, value) in fields {
                    body.insert(field.to_string(), value);
                }
                let mut body = std::mem::take(body);
                if let Some(actions) = actions {
                    body.insert("actions".into(), Value::Array(actions));
                }
                Value::Object(body)
            })
    }

    fn storable_text(value: &ActiveValue<String>) -> bool {
        match value {
            ActiveValue::Set(s) | ActiveValue::Unchanged(s) => !s.contains('\0'),
            ActiveValue::NotSet => true,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_rule_body_gives_a_storable_rule_or_a_4xx(
            body in rule_body(),
            device_exists in prop::option::of(any::<bool>()),
        ) {
            let checked = crate::body::storable(body).and_then(|body| {
                serde_json::from_value::<RuleBody>(body).map_err(|err| {
                    ApiError::new(Code::ValidationFailed, format!("invalid body: {err}"))
                })
            });
            match checked.and_then(|body| check(body, device_exists)) {
                Err(err) => prop_assert!(err.code.status().is_client_error(), "{:?}", err),
                Ok(rule) => {
                    prop_assert!(storable_text(&rule.name));
                    prop_assert!(storable_text(&rule.key));
                    prop_assert!(storable_text(&rule.condition));
                    prop_assert!(storable_text(&rule.severity));
                    for text in [&rule.description, &rule.device_type, &rule.area] {
                        if let ActiveValue::Set(Some(text)) = text {
                            prop_assert!(!text.contains('\0'));
                        }
                    }
                    for number in [&rule.threshold, &rule.threshold_high] {
                        if let ActiveValue::Set(Some(number)) = number {
                            prop_assert!(number.is_finite());
                        }
                    }
                    if let ActiveValue::Set(hysteresis) = rule.hysteresis {
                        prop_assert!(hysteresis.is_finite());
                    }
                    if let ActiveValue::Set(actions) = &rule.actions {
                        prop_assert!(!holds_nul(actions));
                        // An MQTT action never leaves the device's own command topics.
                        for action in actions.as_array().into_iter().flatten() {
                            if action["type"] == "mqtt" {
                                let topic = action["topic"].as_str().unwrap_or("devices/{device_id}/commands");
                                prop_assert!(topic.starts_with("devices/"), "{}", topic);
                                prop_assert!(!topic.contains(['#', '+', '$']), "{}", topic);
                            }
                        }
                    }
                }
            }
        }
    }
}
