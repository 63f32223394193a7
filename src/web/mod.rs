//! What the HTTP resources in `routes/` share and that is no resource itself.
//!
//! - [`list`]: the list endpoints' query string, checked page, counted select and answer
//! - [`patch`]: PUT bodies that tell an absent field from a `null` one

pub mod list;
pub mod patch;
