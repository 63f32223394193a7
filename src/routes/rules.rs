//! Alert rules: `GET/POST /rules`, `GET/PUT/DELETE /rules/{id}`.
//!
//! A rule watches one key of one device, or of every device of a type and/or area, and raises an
//! alert when its condition has held for `for` seconds. Engineers and admins manage rules;
//! operators and viewers read them. Evaluation happens in the device actors (docs/ALERTS.md).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use insa_domain::{Action, Problems, RuleDefinition, RuleParts, Severity, Thresholds};
use insa_entities::{rules, Role};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code};
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

/// A rule as written by a client (POST body; PUT bodies are merged onto the stored rule first),
/// parsed into the domain's rule by [`RuleBody::parse`].
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
    #[schema(value_type = String)]
    pub severity: Severity,
    pub auto_resolve: bool,
    pub enabled: bool,
    /// Webhook `secret`s and header values are shown as `***` (write-only).
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Action>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<rules::Model> for RuleResponse {
    fn from(r: rules::Model) -> Self {
        // A stored condition that does not parse is shown as it is.
        let shown = r.condition().map_or(
            Thresholds {
                threshold: r.threshold,
                ..Thresholds::default()
            },
            |condition| condition.thresholds(),
        );
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            device_id: r.device_id,
            device_type: r.device_type,
            area: r.area,
            key: r.key,
            threshold: shown.threshold,
            low: shown.low,
            high: shown.high,
            condition: r.condition,
            for_seconds: r.for_seconds,
            hysteresis: r.hysteresis,
            severity: r.severity,
            auto_resolve: r.auto_resolve,
            enabled: r.enabled,
            actions: r.actions.iter().map(Action::masked).collect(),
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
            severity: Some(response.severity.as_str().into()),
            auto_resolve: Some(response.auto_resolve),
            enabled: Some(response.enabled),
            // The stored actions, secrets included: a change that leaves them out keeps them.
            actions: Some(
                r.actions
                    .iter()
                    .filter_map(|action| serde_json::to_value(action).ok())
                    .collect(),
            ),
        }
    }
}

impl RuleBody {
    /// The rule this body defines, or every problem with it at once (`device_exists`: whether
    /// its device exists, when the caller asked).
    fn parse(self, device_exists: Option<bool>) -> Result<RuleDefinition, Problems> {
        RuleDefinition::parse(
            RuleParts {
                name: self.name,
                description: self.description,
                device_id: self.device_id,
                device_type: self.device_type,
                area: self.area,
                key: self.key,
                condition: self.condition,
                thresholds: Thresholds {
                    threshold: self.threshold,
                    low: self.low,
                    high: self.high,
                },
                for_seconds: self.for_seconds,
                hysteresis: self.hysteresis,
                severity: self.severity,
                auto_resolve: self.auto_resolve,
                enabled: self.enabled,
                actions: self.actions,
            },
            device_exists,
        )
    }
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
        Some(id) => Ok(Some(crate::devices::device_exists(&state.db, id).await?)),
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
        let severity = one_of("severity", &severity, Severity::ALL)?;
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
    let now = Utc::now();
    let created = rules::ActiveModel {
        id: Set(Uuid::new_v4()),
        created_by: Set(Some(user.id)),
        created_at: Set(now),
        updated_at: Set(now),
        ..body.parse(exists)?.into()
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
    let mut merged = serde_json::to_value(RuleBody::from(&existing)).map_err(ApiError::internal)?;
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
    let mut body: RuleBody = crate::body::parse(merged)?;
    if let Some(actions) = body.actions.as_mut() {
        insa_domain::action::keep_secrets(actions, &existing.actions);
    }
    let exists = device_exists(&state, body.device_id).await?;
    let updated = rules::ActiveModel {
        id: Set(existing.id),
        updated_at: Set(Utc::now()),
        ..body.parse(exists)?.into()
    }
    .update(&state.db)
    .await?;
    if !updated.enabled {
        // Its open alerts resolve, with their notifications, as if its condition had cleared.
        state
            .pipeline
            .alerts()
            .resolve_rule(&updated, Utc::now())
            .await?;
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
    // Its open alerts resolve, with their notifications.
    state.pipeline.alerts().delete_rule(&rule).await?;
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
    //! the typed body, its parse) gives a storable rule or a 4xx, never a panic.

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
            let checked = crate::body::storable(body).and_then(crate::body::parse::<RuleBody>);
            let parsed = checked
                .and_then(|body| body.parse(device_exists).map_err(ApiError::from))
                .map(rules::ActiveModel::from);
            match parsed {
                Err(err) => prop_assert!(err.code.status().is_client_error(), "{:?}", err),
                Ok(rule) => {
                    prop_assert!(storable_text(&rule.name));
                    prop_assert!(storable_text(&rule.key));
                    prop_assert!(storable_text(&rule.condition));
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
                        let actions = serde_json::to_value(actions).expect("actions as JSON");
                        prop_assert!(!holds_nul(&actions));
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
