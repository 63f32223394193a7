//! The live feed's open connections per user or key: each holds at most
//! `live.max_connections_per_user`, and `/metrics` shows how many there are in all. The feed
//! itself (`GET /api/v1/ws`) is `routes/live.rs`.

use std::sync::Arc;

use dashmap::DashMap;
use uuid::Uuid;

/// Open connections per user or key.
#[derive(Default)]
pub struct LiveConnections(DashMap<Uuid, usize>);

impl LiveConnections {
    /// Open connections in all.
    pub fn clients(&self) -> usize {
        self.0.iter().map(|c| *c.value()).sum()
    }

    /// A connection slot for `owner`, unless it holds `limit` already; the slot is given back
    /// when it is dropped (the connection ends).
    pub fn open(self: &Arc<Self>, owner: Uuid, limit: usize) -> Option<Slot> {
        let mut count = self.0.entry(owner).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            connections: self.clone(),
            owner,
        })
    }
}

/// One open connection's place in [`LiveConnections`]; released when dropped.
pub struct Slot {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_owner_and_given_back_when_dropped() {
        let connections = Arc::new(LiveConnections::default());
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let first = connections.open(alice, 2).expect("a first slot");
        let second = connections.open(alice, 2).expect("a second slot");
        assert!(connections.open(alice, 2).is_none(), "a third is refused");
        let other = connections.open(bob, 2).expect("another owner's slot");
        assert_eq!(connections.clients(), 3);
        drop(first);
        assert_eq!(connections.clients(), 2);
        assert!(connections.open(alice, 2).is_some(), "the slot came back");
        drop((second, other));
        assert_eq!(connections.clients(), 0);
    }
}
