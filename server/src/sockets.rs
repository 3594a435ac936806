//! Log sockets open per user in this process, so one user cannot hold the
//! server's Docker log streams and followers without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Log sockets one user may hold open in this process (each holds a Docker log
/// stream or a follower; a tab per log is far below it).
pub const SOCKETS_PER_USER: usize = 16;

/// Open log sockets per user in this process.
#[derive(Clone, Default)]
pub struct SocketSlots(Arc<Mutex<HashMap<uuid::Uuid, usize>>>);

/// One open socket's place, given back when the socket ends.
pub struct Slot {
    slots: SocketSlots,
    user: uuid::Uuid,
}

impl SocketSlots {
    pub fn take(&self, user: uuid::Uuid) -> Option<Slot> {
        let mut open = self.0.lock().expect("socket slots");
        let n = open.entry(user).or_insert(0);
        if *n >= SOCKETS_PER_USER {
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
        let mut open = self.slots.0.lock().expect("socket slots");
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}
