//! WebSocket tickets: a browser cannot set headers on a WebSocket, and a bearer token in the URL
//! ends up in proxy and browser histories. `POST /ws/ticket` (with the bearer token) hands out a
//! random ticket instead: valid `live.ticket_ttl_secs`, for one connection, bound to the user and
//! the session that asked (so logging out makes an unused ticket worthless too).
//!
//! Tickets live in memory only, stored by their SHA-256.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use uuid::Uuid;

use super::api_keys::{generate_key, hash_key};

/// Outstanding tickets past which expired ones are swept on the next issue.
const SWEEP_ABOVE: usize = 1024;

/// Who a ticket was issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketHolder {
    pub user: Uuid,
    pub session: Uuid,
}

#[derive(Default)]
pub struct Tickets(DashMap<String, (TicketHolder, Instant)>);

impl Tickets {
    /// A new ticket for `holder`, valid for `ttl`.
    pub fn issue(&self, holder: TicketHolder, ttl: Duration) -> String {
        if self.0.len() > SWEEP_ABOVE {
            let now = Instant::now();
            self.0.retain(|_, (_, until)| *until > now);
        }
        let ticket = generate_key();
        self.0
            .insert(hash_key(&ticket), (holder, Instant::now() + ttl));
        ticket
    }

    /// Uses a ticket up: its holder if it exists and has not expired; never twice.
    pub fn redeem(&self, ticket: &str) -> Option<TicketHolder> {
        let (_, (holder, until)) = self.0.remove(&hash_key(ticket))?;
        (Instant::now() < until).then_some(holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_redeemed_once_and_not_after_it_expires() {
        let tickets = Tickets::default();
        let holder = TicketHolder {
            user: Uuid::new_v4(),
            session: Uuid::new_v4(),
        };
        let ticket = tickets.issue(holder, Duration::from_secs(30));
        assert_eq!(tickets.redeem(&ticket), Some(holder));
        assert_eq!(tickets.redeem(&ticket), None);
        let expired = tickets.issue(holder, Duration::ZERO);
        assert_eq!(tickets.redeem(&expired), None);
        assert_eq!(tickets.redeem("made-up"), None);
    }
}
