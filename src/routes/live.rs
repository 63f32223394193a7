//! The live feed: `GET /api/v1/ws` (WebSocket).
//!
//! Log in with `Authorization: Bearer <JWT>` or `?token=<JWT>` (browsers cannot set headers on a
//! WebSocket), or `X-API-Key` for a key with `read` (its own device only). Then send
//! `{"action":"subscribe","device_ids":[...]}`, `{"action":"subscribe","alerts":true}` or the
//! same with `"unsubscribe"`; the server pushes `telemetry`, `status` and `alert` messages for
//! what is subscribed, and nothing else.
//!
//! Fan-out is the pipeline's broadcast channels: ingest never waits for a client. A client that
//! falls behind (its socket not draining) is closed with the reason `too slow`, rather than
//! slowing anyone or growing memory. Pings every 20 s; no answer for 60 s closes the connection.
//! At most `live.max_connections_per_user` connections per user or key.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use dashmap::DashMap;
use insa_actors::DeviceEvent;
use insa_entities::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::auth::extract::authenticate_user;
use crate::auth::Caller;
use crate::error::{ApiError, Code};
use crate::state::AppState;

const PING_EVERY: Duration = Duration::from_secs(20);
const SILENCE_LIMIT: Duration = Duration::from_secs(60);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").route(web::get().to(live)));
}

/// Who watches: a person sees every device; a key only its own.
#[derive(Debug, Clone)]
enum Watcher {
    User(Uuid),
    Key { id: Uuid, device: Option<Uuid> },
}

impl Watcher {
    fn id(&self) -> Uuid {
        match self {
            Watcher::User(id) | Watcher::Key { id, .. } => *id,
        }
    }

    fn may_watch(&self, device: Uuid) -> bool {
        match self {
            Watcher::User(_) => true,
            Watcher::Key { device: own, .. } => own.is_none_or(|own| own == device),
        }
    }
}

/// Open connections per user or key.
#[derive(Default)]
pub struct LiveConnections(DashMap<Uuid, usize>);

impl LiveConnections {
    /// Open connections in all.
    pub fn clients(&self) -> usize {
        self.0.iter().map(|c| *c.value()).sum()
    }
}

/// Releases a connection slot when the session ends.
struct Slot {
    connections: Arc<LiveConnections>,
    owner: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut count) = self.connections.0.get_mut(&self.owner) {
            *count = count.saturating_sub(1);
        }
    }
}

#[derive(Debug, Deserialize)]
struct Query {
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Request {
    action: String,
    #[serde(default)]
    device_ids: Vec<Uuid>,
    alerts: Option<bool>,
}

/// `?token=` (what a browser can send), else the API's usual credentials (bearer or key).
async fn who(state: &AppState, req: &HttpRequest) -> Result<Watcher, ApiError> {
    let query = web::Query::<Query>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or(Query { token: None });
    let caller = match query.token {
        Some(token) => Caller::User(authenticate_user(state, &token).await?),
        None => Caller::extract(req).await?,
    };
    match caller {
        Caller::User(user) => {
            user.require(Role::Viewer)?;
            Ok(Watcher::User(user.id))
        }
        Caller::Device(key) if !key.read => {
            Err(ApiError::forbidden("this API key has no read permission"))
        }
        Caller::Device(key) => Ok(Watcher::Key {
            id: key.key_id,
            device: key.device_id,
        }),
    }
}

/// Upgrade to a WebSocket (authenticated first: an unauthenticated upgrade gets 401).
pub async fn live(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let watcher = who(&state, &req).await?;
    let owner = watcher.id();
    let limit = state.settings.live.max_connections_per_user;
    {
        let mut count = state.live.0.entry(owner).or_insert(0);
        if *count >= limit {
            return Err(ApiError::new(
                Code::RateLimited,
                format!("at most {limit} live connections per user"),
            ));
        }
        *count += 1;
    }
    let slot = Slot {
        connections: state.live.clone(),
        owner,
    };
    let (response, session, messages) = actix_ws::handle(&req, body).map_err(|err| {
        ApiError::new(Code::BadRequest, format!("not a WebSocket upgrade: {err}"))
    })?;
    actix_web::rt::spawn(serve(state, watcher, session, messages, slot));
    Ok(response)
}

async fn serve(
    state: web::Data<AppState>,
    watcher: Watcher,
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
    _slot: Slot,
) {
    let mut events = state.pipeline.subscribe();
    let mut telemetry = state.pipeline.subscribe_telemetry();
    let mut devices: HashSet<Uuid> = HashSet::new();
    let mut alerts = false;
    let mut heard = Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    // A send that takes longer than this means the client is not reading.
    let send_timeout = Duration::from_millis(state.settings.live.send_timeout_ms);
    let reason = loop {
        let out: Option<String> = tokio::select! {
            message = messages.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    heard = Instant::now();
                    Some(handle(&watcher, &text, &mut devices, &mut alerts).to_string())
                }
                Some(Ok(Message::Ping(bytes))) => {
                    heard = Instant::now();
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                    None
                }
                Some(Ok(Message::Pong(_))) => {
                    heard = Instant::now();
                    None
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => None,
            },
            event = telemetry.recv() => match event {
                Ok(event) if devices.contains(&event.device_id) => Some(event.message().to_owned()),
                Ok(_) => None,
                Err(RecvError::Lagged(_)) => break Some(too_slow()),
                Err(RecvError::Closed) => break None,
            },
            event = events.recv() => match event {
                Ok(DeviceEvent::StatusChanged { device_id, from, to, at }) if devices.contains(&device_id) => {
                    Some(json!({"type": "status", "device_id": device_id, "status": to.as_str(),
                                "previous": from.as_str(), "at": at}).to_string())
                }
                Ok(DeviceEvent::Alert { alert, event })
                    if alerts && watcher.may_watch(alert.device_id) =>
                {
                    Some(json!({"type": "alert", "event": event.as_str(),
                                "alert": crate::routes::alerts::AlertResponse::from(*alert)}).to_string())
                }
                Ok(_) => None,
                Err(RecvError::Lagged(_)) => break Some(too_slow()),
                Err(RecvError::Closed) => break None,
            },
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    break Some(CloseReason { code: CloseCode::Away, description: Some("no answer to pings".into()) });
                }
                if session.ping(b"").await.is_err() {
                    return;
                }
                None
            }
        };
        if let Some(out) = out {
            match tokio::time::timeout(send_timeout, session.text(out)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => break Some(too_slow()),
            }
        }
    };
    let _ = session.close(reason).await;
}

fn too_slow() -> CloseReason {
    CloseReason {
        code: CloseCode::Policy,
        description: Some("too slow: the client did not keep up with the feed".into()),
    }
}

/// Applies a client request; answers what is now subscribed, or an error.
fn handle(watcher: &Watcher, text: &str, devices: &mut HashSet<Uuid>, alerts: &mut bool) -> Value {
    let request: Request = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(err) => return json!({"type": "error", "message": format!("invalid request: {err}")}),
    };
    let subscribe = match request.action.as_str() {
        "subscribe" => true,
        "unsubscribe" => false,
        other => {
            return json!({"type": "error",
                          "message": format!("unknown action `{other}`: subscribe or unsubscribe")})
        }
    };
    if let Some(refused) = request.device_ids.iter().find(|d| !watcher.may_watch(**d)) {
        return json!({"type": "error", "message": format!("this key may not watch device {refused}")});
    }
    for device in request.device_ids {
        if subscribe {
            devices.insert(device);
        } else {
            devices.remove(&device);
        }
    }
    if request.alerts == Some(true) {
        *alerts = subscribe;
    }
    let mut ids: Vec<String> = devices.iter().map(Uuid::to_string).collect();
    ids.sort();
    json!({"type": "subscribed", "device_ids": ids, "alerts": *alerts})
}
