//! Actors of insa-iiot.
//!
//! - [`registry`]: where a device's actor is found, and which partition a device belongs to.
//!
//! Device actors, the ingest actors and the batched writers are added here by the telemetry
//! pipeline (see `docs/ARCHITECTURE.md`); the partition function is fixed now so that routing never
//! changes when a multi-node mode changes which partitions a node owns.

pub mod registry;

pub use registry::{partition_of, DeviceRegistry};
