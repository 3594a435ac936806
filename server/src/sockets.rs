//! Log sockets open per user in this process, so one user cannot hold the
//! server's Docker log streams and followers without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Log sockets one user may hold open in this process (each holds a Docker log
/// stream or a follower; a tab per log is far below it).
pub const SOCKETS_PER_USER: usize = 16;

/// Status event streams one user may hold open in this process: one per open
/// page. A page left is noticed at the stream's next keep-alive (up to 20 s), so
/// this leaves room for quick navigation.
pub const EVENT_STREAMS_PER_USER: usize = 64;

/// Open sockets (or streams) per user in this process, up to a limit.
#[derive(Clone)]
pub struct SocketSlots {
    open: Arc<Mutex<HashMap<uuid::Uuid, usize>>>,
    limit: usize,
}

impl Default for SocketSlots {
    /// For log sockets.
    fn default() -> Self {
        Self::with_limit(SOCKETS_PER_USER)
    }
}

/// One open socket's place, given back when the socket ends.
pub struct Slot {
    slots: SocketSlots,
    user: uuid::Uuid,
}

impl SocketSlots {
    pub fn with_limit(limit: usize) -> Self {
        Self {
            open: Default::default(),
            limit,
        }
    }

    /// How many are open, all users together.
    pub fn total(&self) -> usize {
        self.open.lock().expect("socket slots").values().sum()
    }

    pub fn take(&self, user: uuid::Uuid) -> Option<Slot> {
        let mut open = self.open.lock().expect("socket slots");
        let n = open.entry(user).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self.clone(),
            user,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("socket slots");
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}
