//! The live feed: `GET /api/v1/ws` (WebSocket).
//!
//! Log in with `?ticket=` (from `POST /ws/ticket`: single use, short-lived, what the dashboard
//! uses since browsers cannot set headers on a WebSocket), `Authorization: Bearer <JWT>`,
//! `?token=<JWT>` (kept for existing clients; the request log never shows it), or `X-API-Key`
//! for a key with `read` (its own device only). Then send
//! `{"action":"subscribe","device_ids":[...]}`, `{"action":"subscribe","alerts":true}` or the
//! same with `"unsubscribe"`; the server pushes `telemetry`, `status` and `alert` messages for
//! what is subscribed, and nothing else.
//!
//! Fan-out is the pipeline's broadcast channels: ingest never waits for a client. A client that
//! falls behind (its socket not draining) is closed with the reason `too slow`, rather than
//! slowing anyone or growing memory. Pings every 20 s; no answer for 60 s closes the connection.
//! At most `live.max_connections_per_user` connections per user or key, each subscribed to at
//! most `live.max_devices_per_connection` devices.
//!
//! A connection lives only as long as its credentials: when the session ends (logout, password
//! change, the user disabled or deleted) or the key is revoked, expires or loses its device, it
//! is closed with code 1008 and nothing more is sent. Changes made through the API are announced
//! ([`crate::auth::revocation`]) and checked before every message; others are found by
//! re-checking every `live.recheck_secs`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use insa_actors::DeviceEvent;
use insa_entities::Role;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::extract::{authenticate_user, key_still_valid, session_user};
use crate::auth::revocation::Revoked;
use crate::auth::tickets::TicketHolder;
use crate::auth::{AuthUser, Caller};
use crate::error::{ApiError, Code};
use crate::live::Slot;
use crate::state::AppState;
use crate::web::answers::AlertResponse;

const PING_EVERY: Duration = Duration::from_secs(20);
const SILENCE_LIMIT: Duration = Duration::from_secs(60);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").route(web::get().to(live)))
        .service(web::resource("/ws/ticket").route(web::post().to(create_ticket)));
}

/// A ticket for one live-feed connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketResponse {
    /// Send as `GET /api/v1/ws?ticket=...`, once.
    pub ticket: String,
    /// Seconds the ticket may wait to be used.
    pub expires_in: u64,
}

/// A single-use ticket for the live feed, bound to the caller's session.
#[utoipa::path(post, path = "/api/v1/ws/ticket", tag = "live",
    responses((status = 200, description = "A ticket", body = TicketResponse),
              (status = 401, description = "Not logged in or session ended")),
    security(("bearer" = [])))]
pub async fn create_ticket(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Viewer)?;
    let ttl = state.settings.live.ticket_ttl_secs;
    let ticket = state.tickets.issue(
        TicketHolder {
            user: user.id,
            session: user.session_id,
        },
        Duration::from_secs(ttl),
    );
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(TicketResponse {
            ticket,
            expires_in: ttl,
        }))
}

/// Who watches: a person sees every device; a key only its own.
#[derive(Debug, Clone)]
enum Watcher {
    User {
        id: Uuid,
        session: Uuid,
    },
    Key {
        id: Uuid,
        device: Option<Uuid>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

impl Watcher {
    fn id(&self) -> Uuid {
        match self {
            Watcher::User { id, .. } | Watcher::Key { id, .. } => *id,
        }
    }

    fn may_watch(&self, device: Uuid) -> bool {
        match self {
            Watcher::User { .. } => true,
            Watcher::Key { device: own, .. } => own.is_none_or(|own| own == device),
        }
    }

    /// Whether this announcement ends the watcher's credentials.
    fn ended_by(&self, revoked: Revoked) -> bool {
        match (self, revoked) {
            (Watcher::User { session, .. }, Revoked::Session(ended)) => *session == ended,
            (Watcher::User { id, session }, Revoked::User { user, except }) => {
                *id == user && except != Some(*session)
            }
            (Watcher::Key { id, .. }, Revoked::Key(key)) => *id == key,
            (Watcher::Key { device, .. }, Revoked::DeviceKeys(gone)) => *device == Some(gone),
            _ => false,
        }
    }

    /// Whether the credentials still hold, read from the database. A database error keeps the
    /// connection (announcements still end it); the next check tries again.
    async fn still_valid(&self, state: &AppState) -> bool {
        let checked = match self {
            Watcher::User { id, session } => match session_user(state, *id, *session).await {
                Ok(_) => Ok(true),
                Err(err) if matches!(err.code, Code::Internal | Code::DatabaseUnavailable) => {
                    Err(err)
                }
                Err(_) => Ok(false),
            },
            Watcher::Key { id, .. } => key_still_valid(state, *id).await,
        };
        checked.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "cannot re-check a live-feed connection's credentials");
            true
        })
    }

    fn close_reason(&self) -> CloseReason {
        let description = match self {
            Watcher::User { .. } => "session ended: log in again",
            Watcher::Key { .. } => "API key revoked or expired",
        };
        CloseReason {
            code: CloseCode::Policy,
            description: Some(description.into()),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Query {
    token: Option<String>,
    ticket: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Request {
    action: String,
    #[serde(default)]
    device_ids: Vec<Uuid>,
    alerts: Option<bool>,
}

/// `?ticket=` or `?token=` (what a browser can send), else the API's usual credentials (bearer
/// or key).
async fn who(state: &AppState, req: &HttpRequest) -> Result<Watcher, ApiError> {
    let query = web::Query::<Query>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or(Query {
            token: None,
            ticket: None,
        });
    let caller = match (query.ticket, query.token) {
        (Some(ticket), _) => {
            let holder = state.tickets.redeem(&ticket).ok_or_else(|| {
                ApiError::new(
                    Code::InvalidToken,
                    "the ticket is not valid: unknown, already used or expired",
                )
            })?;
            Caller::User(session_user(state, holder.user, holder.session).await?)
        }
        (None, Some(token)) => Caller::User(authenticate_user(state, &token).await?),
        (None, None) => Caller::extract(req).await?,
    };
    match caller {
        Caller::User(user) => {
            user.require(Role::Viewer)?;
            Ok(Watcher::User {
                id: user.id,
                session: user.session_id,
            })
        }
        Caller::Device(key) if !key.read => {
            Err(ApiError::forbidden("this API key has no read permission"))
        }
        Caller::Device(key) => Ok(Watcher::Key {
            id: key.key_id,
            device: key.device_id,
            expires_at: key.expires_at,
        }),
    }
}

/// Upgrade to a WebSocket (authenticated first: an unauthenticated upgrade gets 401).
pub async fn live(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Listening before the credentials are checked: an end announced after the check is heard.
    let revocations = state.revocations.subscribe();
    let watcher = who(&state, &req).await?;
    let owner = watcher.id();
    let limit = state.settings.live.max_connections_per_user;
    let Some(slot) = state.live.open(owner, limit) else {
        return Err(ApiError::new(
            Code::RateLimited,
            format!("at most {limit} live connections per user"),
        ));
    };
    let (response, session, messages) = actix_ws::handle(&req, body).map_err(|err| {
        ApiError::new(Code::BadRequest, format!("not a WebSocket upgrade: {err}"))
    })?;
    actix_web::rt::spawn(serve(state, watcher, revocations, session, messages, slot));
    Ok(response)
}

/// Sleeps until the key expires; forever for a key without expiry.
async fn expiry(at: Option<chrono::DateTime<chrono::Utc>>) {
    match at.map(|at| (at - chrono::Utc::now()).to_std()) {
        Some(Ok(left)) => tokio::time::sleep(left).await,
        Some(Err(_)) => {}
        None => std::future::pending().await,
    }
}

async fn serve(
    state: web::Data<AppState>,
    watcher: Watcher,
    mut revocations: tokio::sync::broadcast::Receiver<Revoked>,
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
    _slot: Slot,
) {
    let max_devices = state.settings.live.max_devices_per_connection;
    let expires = match &watcher {
        Watcher::Key { expires_at, .. } => *expires_at,
        Watcher::User { .. } => None,
    };
    let expired = expiry(expires);
    tokio::pin!(expired);
    let recheck_every = Duration::from_secs(state.settings.live.recheck_secs);
    let mut recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + recheck_every, recheck_every);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            // In this order: an ended credential is seen before anything else is sent.
            biased;
            revoked = revocations.recv() => match revoked {
                Ok(revoked) if watcher.ended_by(revoked) => break Some(watcher.close_reason()),
                Ok(_) => None,
                Err(RecvError::Lagged(_)) if !watcher.still_valid(&state).await => {
                    break Some(watcher.close_reason())
                }
                Err(_) => None,
            },
            () = &mut expired => break Some(watcher.close_reason()),
            _ = recheck.tick() => {
                if !watcher.still_valid(&state).await {
                    break Some(watcher.close_reason());
                }
                None
            }
            message = messages.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    heard = Instant::now();
                    Some(handle(&watcher, &text, &mut devices, &mut alerts, max_devices).to_string())
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
                                "alert": AlertResponse::from(*alert)}).to_string())
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

/// Applies a client request; answers what is now subscribed, or an error (and changes nothing).
fn handle(
    watcher: &Watcher,
    text: &str,
    devices: &mut HashSet<Uuid>,
    alerts: &mut bool,
    max_devices: usize,
) -> Value {
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
    if subscribe {
        let added: HashSet<&Uuid> = request
            .device_ids
            .iter()
            .filter(|d| !devices.contains(d))
            .collect();
        if devices.len() + added.len() > max_devices {
            return json!({"type": "error",
                          "message": format!("at most {max_devices} devices per connection: \
                                              {} subscribed, {} more asked; unsubscribe some first",
                                             devices.len(), added.len()),
                          "max_devices": max_devices});
        }
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
