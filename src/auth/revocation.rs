//! Credentials that end while a connection holds them: a logout, a password change, a disabled
//! or deleted user, a revoked key, a deleted device. The routes that end them announce it here;
//! every open live-feed connection listens and closes itself (code 1008) before it sends anything
//! more. Announcing is in-process only: connections also re-check their credentials every
//! `live.recheck_secs`, for changes made elsewhere (the command line, another instance).

use tokio::sync::broadcast;
use uuid::Uuid;

/// Announcements kept for a listener that is busy; one that falls further behind re-checks its
/// credentials in the database instead.
const BACKLOG: usize = 1024;

/// What just stopped being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// One login session (refresh-token family): logout, a reused refresh token.
    Session(Uuid),
    /// Every session of a user but `except` (password change, disabled, deleted).
    User { user: Uuid, except: Option<Uuid> },
    /// One API key (revoked).
    Key(Uuid),
    /// Every key and certificate of a device (the device was deleted).
    DeviceKeys(Uuid),
    /// One device certificate (revoked).
    Certificate(Uuid),
}

/// The announcement channel.
pub struct Revocations(broadcast::Sender<Revoked>);

impl Default for Revocations {
    fn default() -> Self {
        Self(broadcast::channel(BACKLOG).0)
    }
}

impl Revocations {
    /// Tells every open connection (none listening is fine).
    pub fn announce(&self, revoked: Revoked) {
        let _ = self.0.send(revoked);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.0.subscribe()
    }
}
