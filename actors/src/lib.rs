//! Actors of insa-iiot: the telemetry pipeline.
//!
//! - [`alerts`]: the alert lifecycle: raise, acknowledge, resolve (by rule, by hand, by rule
//!   deletion), each with its outbox rows and event; device actors' changes stored in order,
//!   notified within each (device, rule)'s budget ([`chatter`])
//! - [`pipeline`]: [`Pipeline`], the handle the HTTP and MQTT ingest use
//! - [`registry`]: device id -> partition -> device actor; [`partition_of`] is fixed for good
//! - [`device`]: [`device::DeviceActor`], one per active device: status, last_seen, latest values,
//!   inactivity timer
//! - [`watch`]: where each rule ([`insa_domain::Rule`]) stands for a device, the state machine
//!   the device actor runs (pure)
//! - [`writer`]: the batched telemetry writer (group commit) and its memory [`writer::Gate`]
//! - [`state`]: status and `last_seen`, written behind
//! - [`store`]: the SQL of both (COPY on PostgreSQL, multi-row INSERT on SQLite)
//! - [`mqtt`]: the MQTT subscriber (acks after commit, in order) and status publisher
//! - [`payload`]: decoding and checking telemetry payloads (pure)
//! - [`point`], [`events`]: the data that flows
//!
//! Rules, conditions and actions are the domain's (`insa_domain`).

pub mod alerts;
#[cfg(any(test, feature = "test-hooks"))]
pub mod arbitrary;
pub mod chatter;
pub mod device;
pub mod events;
pub mod mqtt;
pub mod payload;
pub mod pipeline;
pub mod point;
pub mod registry;
pub mod state;
pub mod store;
pub mod watch;
pub mod writer;

pub use events::{AlertEvent, DeviceEvent, TelemetryEvent};
pub use pipeline::{IngestError, Pipeline, PipelineConfig};
pub use point::Point;
pub use registry::{partition_of, DeviceRegistry};
