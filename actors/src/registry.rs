//! The device registry: device id -> partition -> the device's actor.
//!
//! Every device belongs to exactly one partition, `hash(device_id) % partitions`. A single node owns
//! all partitions today; a multi-node mode only changes [`DeviceRegistry::owns`], never how a
//! reading is routed. Actors are spread over one arbiter (thread) per core by partition, so one
//! device's messages are always handled in order on one thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use dashmap::DashMap;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

use crate::device::DeviceActor;

/// The partition of a device. Stable across processes, versions and machines (xxh3 of the id's 16
/// bytes), unlike `std`'s hasher whose output may change between Rust releases.
pub fn partition_of(device_id: Uuid, partitions: u32) -> u32 {
    debug_assert!(partitions > 0, "partition count is validated at start-up");
    (xxh3_64(device_id.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// Where devices live: partitions, and the live device actors.
pub struct DeviceRegistry {
    /// Fixed at install: changing it would move devices between partitions.
    partitions: u32,
    /// Partitions this node serves; all of them on a single node.
    owned: Vec<bool>,
    pub(crate) actors: Arc<DashMap<Uuid, Addr<DeviceActor>>>,
    /// One per core; a device's actor runs on `arbiters[partition % len]`.
    arbiters: Vec<ArbiterHandle>,
    /// Device actors that died and were recreated (panics).
    pub(crate) restarts: Arc<AtomicU64>,
}

impl DeviceRegistry {
    /// A registry for a single node that owns every partition, with actors on `arbiters`.
    pub fn single_node(partitions: u32, arbiters: Vec<ArbiterHandle>) -> Self {
        let partitions = partitions.max(1);
        Self {
            partitions,
            owned: vec![true; partitions as usize],
            actors: Arc::new(DashMap::new()),
            arbiters,
            restarts: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many partitions the installation has.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition of a device.
    pub fn partition(&self, device_id: Uuid) -> u32 {
        partition_of(device_id, self.partitions)
    }

    /// Whether this node serves the device.
    pub fn owns(&self, device_id: Uuid) -> bool {
        self.owned
            .get(self.partition(device_id) as usize)
            .copied()
            .unwrap_or(false)
    }

    /// Device actors alive now.
    pub fn active(&self) -> usize {
        self.actors.len()
    }

    /// Device actors that died and were recreated since start.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The live actor of a device, if it has one.
    pub fn live(&self, device_id: Uuid) -> Option<Addr<DeviceActor>> {
        self.actors
            .get(&device_id)
            .map(|addr| addr.clone())
            .filter(Addr::connected)
    }

    /// The device's live actor, or a new one built by `make` on the device's arbiter. A dead actor
    /// (it panicked) is replaced and counted.
    pub(crate) fn get_or_start<F>(&self, device_id: Uuid, make: F) -> Addr<DeviceActor>
    where
        F: FnOnce() -> DeviceActor + Send + 'static,
    {
        use dashmap::mapref::entry::Entry;
        let arbiter = &self.arbiters[self.partition(device_id) as usize % self.arbiters.len()];
        let start = |make: F| DeviceActor::start_in_arbiter(arbiter, move |_| make());
        match self.actors.entry(device_id) {
            Entry::Occupied(entry) if entry.get().connected() => entry.get().clone(),
            Entry::Occupied(mut entry) => {
                self.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%device_id, "device actor was dead; recreated from the database");
                let addr = start(make);
                entry.insert(addr.clone());
                addr
            }
            Entry::Vacant(entry) => entry.insert(start(make)).clone(),
        }
    }

    /// Forgets a device (deleted); its actor is stopped by the caller.
    pub(crate) fn remove(&self, device_id: Uuid) -> Option<Addr<DeviceActor>> {
        self.actors.remove(&device_id).map(|(_, addr)| addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_stable_for_a_known_id() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        // Pinned: if these change, devices would move partitions after an upgrade.
        assert_eq!(partition_of(id, 64), 15);
        assert_eq!(partition_of(Uuid::nil(), 64), 40);
        assert_eq!(partition_of(id, 1), 0);
    }

    #[test]
    fn partitions_spread_devices_evenly() {
        let mut counts = [0u32; 64];
        for i in 0..64_000u128 {
            let id = Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834));
            counts[partition_of(id, 64) as usize] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(
            min >= Some(&800) && max <= Some(&1200),
            "uneven: {min:?}..{max:?}"
        );
    }

    #[test]
    fn a_single_node_owns_every_device() {
        let registry = DeviceRegistry::single_node(64, Vec::new());
        for _ in 0..100 {
            let id = Uuid::new_v4();
            assert!(registry.partition(id) < 64);
            assert!(registry.owns(id));
        }
    }
}
