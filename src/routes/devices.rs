//! `/devices`: register, list, inspect, change and remove field devices.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use insa_domain::text::{check_optional, check_required, NAME_MAX_CHARS};
use insa_entities::{api_keys, devices, DeviceStatus, Role};
use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::{AuthUser, Caller};
use crate::devices::{find_device, with_live_state};
use crate::error::{ApiError, FieldProblem};
use crate::state::AppState;
use crate::web::list::{list_query, one_of, Items, Listed, Paged};
use crate::web::patch::present;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/devices")
            .route(web::get().to(list_devices))
            .route(web::post().to(create_device)),
    )
    .service(
        web::resource("/devices/{id}")
            .route(web::get().to(get_device))
            .route(web::put().to(update_device))
            .route(web::delete().to(delete_device)),
    );
}

/// A device as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceResponse {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(example = "temperature")]
    pub device_type: String,
    pub location: Option<String>,
    pub area: Option<String>,
    pub protocol: Option<String>,
    pub connection_string: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    #[schema(example = "offline")]
    pub status: &'static str,
    pub last_seen: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<devices::Model> for DeviceResponse {
    fn from(d: devices::Model) -> Self {
        Self {
            id: d.id,
            name: d.name,
            device_type: d.device_type,
            location: d.location,
            area: d.area,
            protocol: d.protocol,
            connection_string: d.connection_string,
            config: d.config,
            status: d.status.as_str(),
            last_seen: d.last_seen,
            metadata: d.metadata,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

impl Items for DeviceResponse {
    const FIELD: &'static str = "devices";
    const LIST: &'static str = "DeviceList";
}

/// `{devices, total, limit, offset}`.
pub type DeviceList = Listed<DeviceResponse>;

list_query! {
    pub struct DeviceQuery {
        /// online, offline, maintenance or error
        #[param(pattern = "^(online|offline|maintenance|error)$")]
        pub status: Option<String>,
        pub area: Option<String>,
        #[serde(rename = "type")]
        #[param(rename = "type")]
        pub device_type: Option<String>,
        pub protocol: Option<String>,
        /// Case-insensitive search in the name.
        pub q: Option<String>,
    }
}

/// The longest text fields, in characters (the name's is every name's: [`NAME_MAX_CHARS`]).
const TYPE_MAX: usize = 50;
const LOCATION_MAX: usize = 255;
const AREA_MAX: usize = 100;
const PROTOCOL_MAX: usize = 50;
const CONNECTION_MAX: usize = 2048;

fn check_object(problems: &mut Vec<FieldProblem>, field: &str, value: Option<&Value>) {
    if value.is_some_and(|v| !v.is_object()) {
        problems.push(FieldProblem::new(field, "must be a JSON object"));
    }
}

fn parse_status(problems: &mut Vec<FieldProblem>, value: Option<&str>) -> Option<DeviceStatus> {
    let value = value?;
    let status = DeviceStatus::parse(value);
    if status.is_none() {
        problems.push(FieldProblem::new(
            "status",
            "must be one of online, offline, maintenance, error",
        ));
    }
    status
}

/// `%` and `_` in a search term match themselves.
fn like_contains(term: &str) -> LikeExpr {
    let mut escaped = String::with_capacity(term.len() + 2);
    escaped.push('%');
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    LikeExpr::new(escaped).escape('\\')
}

/// List devices, filtered and paged.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceQuery),
    responses((status = 200, body = DeviceList), (status = 400, description = "`invalid_query`")),
    security(("bearer" = [])))]
pub async fn list_devices(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<DeviceQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    let query = query.into_inner();
    let page = query.page()?;
    let mut select = devices::Entity::find();
    if let Some(status) = &query.status {
        let status = one_of("status", status, DeviceStatus::ALL)?;
        select = select.filter(devices::Column::Status.eq(status));
    }
    if let Some(area) = query.area {
        select = select.filter(devices::Column::Area.eq(area));
    }
    if let Some(device_type) = query.device_type {
        select = select.filter(devices::Column::DeviceType.eq(device_type));
    }
    if let Some(protocol) = query.protocol {
        select = select.filter(devices::Column::Protocol.eq(protocol));
    }
    if let Some(q) = query.q.filter(|q| !q.is_empty()) {
        select = select.filter(
            Expr::expr(Func::lower(Expr::col((
                devices::Entity,
                devices::Column::Name,
            ))))
            .like(like_contains(&q)),
        );
    }
    let select = select
        .order_by_asc(devices::Column::Name)
        .order_by_asc(devices::Column::Id);
    let mut listed = page.fetch(&state.db, select).await?;
    let devices = futures_util::future::join_all(
        std::mem::take(&mut listed.items)
            .into_iter()
            .map(|device| with_live_state(&state.pipeline, device)),
    )
    .await;
    let devices = devices.into_iter().map(DeviceResponse::from).collect();
    Ok(HttpResponse::Ok().json(listed.with(devices)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    #[schema(
        example = "Temperature Sensor 01",
        required = true,
        nullable = false,
        pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000]*$",
        max_length = 255
    )]
    pub name: Option<String>,
    #[serde(rename = "type")]
    #[schema(
        example = "temperature",
        required = true,
        nullable = false,
        pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000]*$",
        max_length = 50
    )]
    pub device_type: Option<String>,
    #[schema(max_length = 255)]
    pub location: Option<String>,
    #[schema(max_length = 100)]
    pub area: Option<String>,
    #[schema(max_length = 50)]
    pub protocol: Option<String>,
    #[schema(max_length = 2048)]
    pub connection_string: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// `offline` (default) or `maintenance`; devices turn themselves online.
    #[schema(pattern = "^(offline|maintenance)$")]
    pub status: Option<String>,
}

/// Register a device. It starts `offline` until it sends data.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", request_body = CreateDevice,
    responses((status = 201, body = DeviceResponse), (status = 422, description = "`validation_failed`")),
    security(("bearer" = [])))]
pub async fn create_device(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: crate::body::Json<CreateDevice>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let body = body.into_inner();
    let mut problems = Vec::new();
    check_required(&mut problems, "name", body.name.as_deref(), NAME_MAX_CHARS);
    check_required(&mut problems, "type", body.device_type.as_deref(), TYPE_MAX);
    for (field, value, max) in [
        ("location", &body.location, LOCATION_MAX),
        ("area", &body.area, AREA_MAX),
        ("protocol", &body.protocol, PROTOCOL_MAX),
        ("connection_string", &body.connection_string, CONNECTION_MAX),
    ] {
        check_optional(&mut problems, field, value.as_deref(), max);
    }
    check_object(&mut problems, "config", body.config.as_ref());
    check_object(&mut problems, "metadata", body.metadata.as_ref());
    let status =
        parse_status(&mut problems, body.status.as_deref()).unwrap_or(DeviceStatus::Offline);
    if !matches!(status, DeviceStatus::Offline | DeviceStatus::Maintenance) {
        problems.push(FieldProblem::new(
            "status",
            "a new device starts offline or in maintenance; it turns online when it sends data",
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let now = Utc::now();
    let device = devices::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(body.name.unwrap_or_default().trim().to_string()),
        device_type: Set(body.device_type.unwrap_or_default().trim().to_string()),
        location: Set(body.location),
        area: Set(body.area),
        protocol: Set(body.protocol),
        connection_string: Set(body.connection_string),
        config: Set(body.config),
        status: Set(status),
        last_seen: Set(None),
        metadata: Set(body.metadata),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&state.db)
    .await?;
    Audit::by("device.create", &user, &req)
        .target("device", device.id)
        .details(json!({ "name": device.name }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/devices/{}", device.id)))
        .json(DeviceResponse::from(device)))
}

/// One device. Users of any role, or a device key with `read` for this device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = Uuid, Path, description = "Device id")),
    responses((status = 200, body = DeviceResponse), (status = 404, description = "`device_not_found`")),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn get_device(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match &caller {
        Caller::User(user) => user.require(Role::Viewer)?,
        Caller::Device(key) if !key.read => {
            return Err(ApiError::forbidden("this API key has no read permission"))
        }
        Caller::Device(key) if !key.covers(id) => {
            return Err(ApiError::forbidden(
                "this API key belongs to another device",
            ))
        }
        Caller::Device(_) => {}
    }
    let device = with_live_state(&state.pipeline, find_device(&state.db, id).await?).await;
    Ok(HttpResponse::Ok().json(DeviceResponse::from(device)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDevice {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000]*$", max_length = 255)]
    pub name: Option<Option<String>>,
    #[serde(default, rename = "type", deserialize_with = "present")]
    #[schema(value_type = String, pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000]*$", max_length = 50)]
    pub device_type: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 255)]
    pub location: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    pub area: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 50)]
    pub protocol: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 2048)]
    pub connection_string: Option<Option<String>>,
    /// Merged into the stored config (RFC 7396: `null` removes a key).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Option<Value>>,
    /// Merged into the stored metadata (RFC 7396).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<Value>>,
    /// online, offline, maintenance or error
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, pattern = "^(online|offline|maintenance|error)$")]
    pub status: Option<Option<String>>,
}

/// RFC 7396 merge of `patch` into `current`; `null` clears the whole document.
fn merge_patch(current: Option<Value>, patch: Option<Value>) -> Option<Value> {
    let patch = patch?;
    let mut doc = current.unwrap_or_else(|| json!({}));
    json_patch::merge(&mut doc, &patch);
    Some(doc)
}

/// Change a device: only the fields given; `config` and `metadata` are merged.
#[utoipa::path(put, path = "/api/v1/devices/{id}", tag = "devices", request_body = UpdateDevice,
    params(("id" = Uuid, Path, description = "Device id")),
    responses((status = 200, body = DeviceResponse), (status = 404, description = "`device_not_found`"),
              (status = 422, description = "`validation_failed`")),
    security(("bearer" = [])))]
pub async fn update_device(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: crate::body::Json<UpdateDevice>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let body = body.into_inner();
    let mut problems = Vec::new();
    if let Some(name) = &body.name {
        check_required(&mut problems, "name", name.as_deref(), NAME_MAX_CHARS);
    }
    if let Some(device_type) = &body.device_type {
        check_required(&mut problems, "type", device_type.as_deref(), TYPE_MAX);
    }
    for (field, value, max) in [
        ("location", &body.location, LOCATION_MAX),
        ("area", &body.area, AREA_MAX),
        ("protocol", &body.protocol, PROTOCOL_MAX),
        ("connection_string", &body.connection_string, CONNECTION_MAX),
    ] {
        check_optional(
            &mut problems,
            field,
            value.as_ref().and_then(Option::as_deref),
            max,
        );
    }
    check_object(
        &mut problems,
        "config",
        body.config.as_ref().and_then(Option::as_ref),
    );
    check_object(
        &mut problems,
        "metadata",
        body.metadata.as_ref().and_then(Option::as_ref),
    );
    let status = match &body.status {
        Some(None) => {
            problems.push(FieldProblem::new("status", "must not be null"));
            None
        }
        Some(Some(status)) => parse_status(&mut problems, Some(status)),
        None => None,
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }

    let existing = find_device(&state.db, id.into_inner()).await?;
    let previous_status = existing.status;
    let mut device: devices::ActiveModel = existing.clone().into();
    if let Some(Some(name)) = body.name {
        device.name = Set(name.trim().to_string());
    }
    if let Some(Some(device_type)) = body.device_type {
        device.device_type = Set(device_type.trim().to_string());
    }
    if let Some(location) = body.location {
        device.location = Set(location);
    }
    if let Some(area) = body.area {
        device.area = Set(area);
    }
    if let Some(protocol) = body.protocol {
        device.protocol = Set(protocol);
    }
    if let Some(connection_string) = body.connection_string {
        device.connection_string = Set(connection_string);
    }
    if let Some(patch) = body.config {
        device.config = Set(merge_patch(existing.config, patch));
    }
    if let Some(patch) = body.metadata {
        device.metadata = Set(merge_patch(existing.metadata, patch));
    }
    if let Some(status) = status {
        device.status = Set(status);
    }
    device.updated_at = Set(Utc::now());
    let updated = device.update(&state.db).await?;
    state.pipeline.device_changed(
        updated.id,
        previous_status,
        updated.status,
        insa_actors::device::Profile {
            device_type: updated.device_type.clone(),
            area: updated.area.clone(),
            config: updated.config.clone(),
        },
    );
    Audit::by("device.update", &user, &req)
        .target("device", updated.id)
        .details(json!({
            "status": (updated.status != previous_status)
                .then(|| json!({ "from": previous_status.as_str(), "to": updated.status.as_str() })),
        }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::Ok().json(DeviceResponse::from(updated)))
}

/// Remove a device with its telemetry, alerts and API keys.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = Uuid, Path, description = "Device id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "`device_not_found`")),
    security(("bearer" = [])))]
pub async fn delete_device(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Engineer)?;
    let device = find_device(&state.db, id.into_inner()).await?;
    // The device's keys go with it (foreign key cascade): so do their broker clients.
    let keys: Vec<Uuid> = match state.dynsec() {
        Some(_) => {
            api_keys::Entity::find()
                .select_only()
                .column(api_keys::Column::Id)
                .filter(api_keys::Column::DeviceId.eq(device.id))
                .into_tuple()
                .all(&state.db)
                .await?
        }
        None => Vec::new(),
    };
    devices::Entity::delete_by_id(device.id)
        .exec(&state.db)
        .await?;
    if let Some(dynsec) = state.dynsec() {
        for key_id in keys {
            dynsec.key_removed(key_id).await;
        }
    }
    state.pipeline.device_removed(device.id);
    state.keys.evict_device(device.id);
    state.credentials_ended(crate::auth::revocation::Revoked::DeviceKeys(device.id));
    Audit::by("device.delete", &user, &req)
        .target("device", device.id)
        .details(json!({ "name": device.name }))
        .record(&state.db)
        .await;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let current =
            Some(json!({"sampling_rate": 60, "alert_threshold": 50, "nested": {"a": 1, "b": 2}}));
        let patch = Some(json!({"sampling_rate": 30, "alert_threshold": null, "nested": {"b": 3}}));
        assert_eq!(
            merge_patch(current, patch),
            Some(json!({"sampling_rate": 30, "nested": {"a": 1, "b": 3}}))
        );
        assert_eq!(
            merge_patch(None, Some(json!({"x": 1}))),
            Some(json!({"x": 1}))
        );
        assert_eq!(merge_patch(Some(json!({"x": 1})), None), None);
    }

    #[test]
    fn the_documented_lengths_are_the_checked_ones() {
        use utoipa::PartialSchema;
        for schema in [CreateDevice::schema(), UpdateDevice::schema()] {
            let schema = serde_json::to_value(schema).expect("schema");
            for (field, max) in [
                ("name", NAME_MAX_CHARS),
                ("type", TYPE_MAX),
                ("location", LOCATION_MAX),
                ("area", AREA_MAX),
                ("protocol", PROTOCOL_MAX),
                ("connection_string", CONNECTION_MAX),
            ] {
                assert_eq!(schema["properties"][field]["maxLength"], max, "{field}");
            }
        }
    }

    #[test]
    fn search_terms_escape_wildcards() {
        let like = like_contains("50%_Valve");
        let sql = sea_orm::sea_query::Query::select()
            .expr(Expr::val("x").like(like))
            .to_string(sea_orm::sea_query::SqliteQueryBuilder);
        assert!(sql.contains(r"'%50\%\_valve%'"), "{sql}");
        assert!(sql.contains("ESCAPE"), "{sql}");
    }

    mod properties {
        use super::*;
        use crate::error::Code;
        use insa_actors::arbitrary::{holds_nul, json};
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec!["name", "config", "metadata", "a", "b"])
                    .prop_map(str::to_string),
                "[ab\\x00\\\\é]{0,3}",
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// What `PUT /devices/{id}` does with a body: the edge check, the typed body, the
            /// merge into what is stored. Any body is refused or merges into a storable document.
            #[test]
            fn any_merge_patch_is_refused_or_gives_a_storable_document(
                stored in json(text).prop_filter("stored documents are storable", |v| !holds_nul(v)),
                patch in json(text),
                field in prop::sample::select(vec!["config", "metadata"]),
            ) {
                let body = json!({ field: patch });
                match crate::body::storable(body) {
                    Err(err) => {
                        prop_assert!(holds_nul(&patch));
                        prop_assert_eq!(err.code, Code::ValidationFailed);
                        let named = err.details["fields"][0]["field"].as_str().unwrap_or_default().to_string();
                        prop_assert!(named.starts_with(field), "{}", named);
                    }
                    Ok(body) => {
                        prop_assert!(!holds_nul(&patch));
                        if let Ok(update) = serde_json::from_value::<UpdateDevice>(body) {
                            let patch = if field == "config" { update.config } else { update.metadata };
                            if let Some(patch) = patch {
                                let merged = merge_patch(Some(stored), patch);
                                prop_assert!(!merged.as_ref().is_some_and(holds_nul));
                            }
                        }
                    }
                }
            }
        }
    }
}
