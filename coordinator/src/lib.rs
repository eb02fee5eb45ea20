//! Strata's metadata store.
//!
//! The [`Coordinator`] trait is a small revisioned key-value store: every key carries the
//! revision of its last change, and every write is a compare-and-swap on it ([`Expect`]), so no
//! read-modify-write can lose a concurrent update. Typed metadata (topics, partitions, groups)
//! lives above it, in the broker, and is written once for every implementation.
//!
//! Beside keys, a store offers what a cluster needs to stay coordinated: [`Coordinator::watch`]
//! (change notifications), [`Coordinator::register`] (a key that lives while its owner does, e.g.
//! `brokers/<id>`) and [`Coordinator::campaign`] (leader election), the last two as a [`Lease`].
//!
//! Implementations: [`EmbeddedCoordinator`] (one node, persisted in the data directory, used by
//! `strata dev`) and [`EtcdCoordinator`]. [`conformance`] holds the scenarios every
//! implementation must pass.

pub mod conformance;
mod embedded;
mod error;
mod etcd;
mod etcd_channel;
mod etcd_lease;
pub mod metrics;
mod session;

pub use embedded::EmbeddedCoordinator;
pub use error::{CoordinatorError, Result};
pub use etcd::{EtcdCoordinator, EtcdOptions};
pub use etcd_channel::MakeChannel;
pub use session::{Changes, Event, Lease, Watch, MAX_PENDING_EVENTS};

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// The most keys a caller writes in one [`Coordinator::commit`]: etcd refuses a transaction
/// of more than 128 operations by default (`--max-txn-ops`), and a commit adds a check or two
/// to its writes. Callers that write more (a topic's partition states, a group's offsets)
/// split them into commits of this many.
pub const MAX_WRITES_PER_COMMIT: usize = 100;

/// A value and the revision of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    /// The store-wide revision at which the key was last written (etcd's `mod_revision`).
    pub revision: i64,
}

/// The condition a write requires of the key's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist (create-if-absent).
    Absent,
    /// The key must exist with exactly this revision.
    Revision(i64),
    /// No condition (only for keys nobody else writes).
    Any,
}

/// What one entry of an atomic [`Coordinator::commit`] does to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Bytes),
    Delete,
    /// Nothing: the entry only adds its condition to the commit.
    Check,
}

/// One entry of an atomic [`Coordinator::commit`]: a condition on a key and what to do to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: String,
    pub op: Op,
    pub expect: Expect,
}

impl Write {
    pub fn put(key: impl Into<String>, value: impl Into<Bytes>, expect: Expect) -> Write {
        Write {
            key: key.into(),
            op: Op::Put(value.into()),
            expect,
        }
    }

    pub fn delete(key: impl Into<String>, expect: Expect) -> Write {
        Write {
            key: key.into(),
            op: Op::Delete,
            expect,
        }
    }

    /// Only a condition: the commit fails unless `key` is as `expect` says; the key is not
    /// written.
    pub fn check(key: impl Into<String>, expect: Expect) -> Write {
        Write {
            key: key.into(),
            op: Op::Check,
            expect,
        }
    }
}

/// The metadata store. Keys are relative to the cluster's root (`/strata/<cluster>/` in etcd).
#[async_trait]
pub trait Coordinator: Send + Sync + std::fmt::Debug + 'static {
    /// The cluster this store serves.
    fn cluster(&self) -> &str;

    /// The key's value and revision, if it exists.
    async fn get(&self, key: &str) -> Result<Option<Versioned>>;

    /// Every key under `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>>;

    /// Applies every write or none: all conditions are checked first; any failed condition
    /// fails the whole commit with [`CoordinatorError::Conflict`]. Returns the new revision.
    async fn commit(&self, writes: Vec<Write>) -> Result<i64>;

    /// One conditional put. Returns the key's new revision.
    async fn put(&self, key: &str, value: Bytes, expect: Expect) -> Result<i64> {
        self.commit(vec![Write::put(key, value, expect)]).await
    }

    /// One conditional delete.
    async fn delete(&self, key: &str, expect: Expect) -> Result<()> {
        self.commit(vec![Write::delete(key, expect)])
            .await
            .map(|_| ())
    }

    /// Notifies after changes under `prefix`, except those under any of the `except` prefixes
    /// (relative to the root, like `prefix`). Notifications may be coalesced; after one, re-read
    /// with `list`. Every change committed after `watch` returned produces a notification.
    async fn watch(&self, prefix: &str, except: &[&str]) -> Result<Watch>;

    /// Creates `key` = `value` bound to a fresh lease of `ttl`, kept alive in the background.
    /// Fails with [`CoordinatorError::Conflict`] if the key exists (held by a live owner or by a
    /// lease not yet expired). The key disappears when the lease expires or is released.
    async fn register(&self, key: &str, value: Bytes, ttl: Duration) -> Result<Lease>;

    /// Waits until this caller leads `election` (value = what `leader` will return), then
    /// returns the leadership as a [`Lease`] (lost when its lease expires; released by resigning).
    async fn campaign(&self, election: &str, value: Bytes, ttl: Duration) -> Result<Lease>;

    /// The current leader's value of `election`, if any.
    async fn leader(&self, election: &str) -> Result<Option<Bytes>>;

    /// The store's revision now: every commit raises it.
    async fn revision(&self) -> Result<i64>;

    /// Forgets the history of every revision before `revision` (etcd's compaction), so that a
    /// steady stream of writes (offset commits, ISR changes) does not grow the store until it
    /// hits its quota. The current value of every key stays. A store that keeps no history
    /// does nothing.
    async fn compact(&self, revision: i64) -> Result<()> {
        let _ = revision;
        Ok(())
    }
}
