//! The web layer's shared parts: what several `routes/` modules use. A route module imports from
//! here (and from the services), never from another route module.
//!
//! - [`answers`]: how the API shows a user, an alert and a report job
//! - [`query`]: query strings read strictly, and the schema of a telemetry key in one

pub mod answers;
pub mod query;
