//! A cache whose value is replaced only by a read of the store that started later than the
//! one it holds: the users and the ACLs are reloaded both by the watch and by the call that
//! changed them, and a slow read finishing last must not put back what a newer one replaced.
//!
//! Invariant: a value read after a write completed is never replaced by a read that started
//! before it (etcd reads are linearizable, so a later-started read sees at least as much).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

#[derive(Debug, Default)]
pub struct Latest<T> {
    /// The value in use, with the ticket of the read that produced it.
    current: RwLock<(u64, Arc<T>)>,
    tickets: AtomicU64,
}

impl<T> Latest<T> {
    /// A ticket for a read about to start; later reads get larger ones.
    pub fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Installs `value`, read under `ticket`, unless a later-started read already did.
    pub fn install(&self, ticket: u64, value: T) {
        let mut current = self.current.write();
        if ticket > current.0 {
            *current = (ticket, Arc::new(value));
        }
    }

    pub fn get(&self) -> Arc<T> {
        self.current.read().1.clone()
    }

    /// Looks at the value without taking a handle on it.
    pub fn with<R>(&self, look: impl FnOnce(&T) -> R) -> R {
        look(&self.current.read().1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_started_earlier_never_replaces_a_later_one() {
        let cache: Latest<&str> = Latest::default();
        // Read 1 starts (sees the old state), read 2 starts after a change and finishes
        // first; 1 finishes last.
        let first = cache.ticket();
        let second = cache.ticket();
        cache.install(second, "new");
        cache.install(first, "old");
        assert_eq!(*cache.get(), "new");
    }
}
