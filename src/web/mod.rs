//! The web layer's shared parts: what several `routes/` modules use and that is no resource
//! itself. A route module imports from here (and from the services), never from another route
//! module.
//!
//! - [`answers`]: how the API shows a user, an alert and a report job
//! - [`list`]: the list endpoints' query string, checked page, counted select and answer
//! - [`patch`]: PUT bodies that tell an absent field from a `null` one
//! - [`query`]: query strings read strictly, and the schema of a telemetry key in one

pub mod answers;
pub mod list;
pub mod patch;
pub mod query;
