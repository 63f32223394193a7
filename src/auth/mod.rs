//! Authentication and authorisation.
//!
//! - [`password`]: argon2id hashing and password rules
//! - [`tokens`]: HS256 access and refresh tokens (a token of one kind is never accepted as the other)
//! - [`extract`]: the [`AuthUser`], [`DeviceKey`] and [`Caller`] extractors handlers ask for
//! - [`throttle`]: login attempts per account and per client address
//! - [`api_keys`]: generating and hashing device keys
//! - [`revocation`]: announcing ended sessions and keys to open connections
//! - [`tickets`]: single-use WebSocket tickets
//! - [`client_address`]: the client's address, through trusted proxies only

pub mod api_keys;
pub mod client_address;
pub mod extract;
pub mod key_cache;
pub mod password;
pub mod revocation;
pub mod throttle;
pub mod tickets;
pub mod tokens;

pub use extract::{AuthUser, Caller, DeviceKey};
pub use password::password_problem;

use insa_entities::Role;

/// How much a role may do; each role may do everything the ones below it may.
pub fn rank(role: Role) -> u8 {
    match role {
        Role::Admin => 3,
        Role::Engineer => 2,
        Role::Operator => 1,
        Role::Viewer => 0,
    }
}
