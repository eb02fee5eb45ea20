//! The handles a [`Coordinator`](crate::Coordinator) gives out for things that live on:
//! [`Watch`] (change notifications for a prefix) and [`Lease`] (a registration or leadership that
//! lasts while it is kept alive).
//!
//! Both are the same for every implementation: a `Watch` is fed by a task through a channel of
//! capacity one, so notifications coalesce, and the changes themselves wait in a bounded buffer
//! beside it (past [`MAX_PENDING_EVENTS`] they are dropped and the watch says so, and the
//! caller re-reads instead); a `Lease` holds an optional keepalive task, a lost
//! flag and a release action. The release action is a future that does nothing until polled
//! (etcd) or a guard that releases when dropped (embedded), so `abandon` can simply drop it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{CoordinatorError, Result};

/// Most changes a [`Watch`] holds for its reader (a controller failover of 10,000 partitions
/// writes 10,000 states); past it they are dropped and [`Watch::changes`] says so.
pub const MAX_PENDING_EVENTS: usize = 20_000;

/// One change of a key, as a watch saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Relative to the cluster's root, like the watched prefix.
    pub key: String,
    /// The store-wide revision of the change.
    pub revision: i64,
    /// The new value; `None` when the key was deleted.
    pub value: Option<Bytes>,
}

/// What changed since the last [`Watch::changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// These changes, in the order the store made them.
    Events(Vec<Event>),
    /// More than [`MAX_PENDING_EVENTS`] (or changes the store could not describe): re-read.
    Unknown,
}

#[derive(Debug, Default)]
struct Pending {
    events: Vec<Event>,
    overflowed: bool,
}

/// Change notifications for a prefix, with the changes.
///
/// Notifications may be coalesced: after one, take what changed with [`Watch::changes`], or
/// re-read with [`Coordinator::list`](crate::Coordinator::list).
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<()>,
    pending: Arc<Mutex<Pending>>,
    ended: Arc<OnceLock<String>>,
}

/// The feeding side of a [`Watch`], held by the task that observes the store.
#[derive(Debug, Clone)]
pub(crate) struct WatchSender {
    tx: mpsc::Sender<()>,
    pending: Arc<Mutex<Pending>>,
    ended: Arc<OnceLock<String>>,
}

impl Watch {
    pub(crate) fn channel() -> (WatchSender, Watch) {
        let (tx, rx) = mpsc::channel(1);
        let ended = Arc::new(OnceLock::new());
        let pending = Arc::new(Mutex::new(Pending::default()));
        (
            WatchSender {
                tx,
                pending: pending.clone(),
                ended: ended.clone(),
            },
            Watch { rx, pending, ended },
        )
    }

    /// Waits for the next change and returns every change since the last call (or
    /// [`Changes::Unknown`] when they were too many to keep). `Err(Unavailable)` when the watch
    /// ended, as [`Watch::changed`].
    pub async fn changes(&mut self) -> Result<Changes> {
        self.changed().await?;
        let mut pending = self.pending.lock();
        let taken = std::mem::take(&mut *pending);
        Ok(match taken.overflowed {
            true => Changes::Unknown,
            false => Changes::Events(taken.events),
        })
    }

    /// Waits for the next change. `Err(CoordinatorError::Unavailable)` when the watch ended
    /// (store unreachable, stream broken): the caller re-creates it after a backoff.
    pub async fn changed(&mut self) -> Result<()> {
        match self.rx.recv().await {
            Some(()) => Ok(()),
            None => Err(CoordinatorError::Unavailable(
                self.ended
                    .get()
                    .cloned()
                    .unwrap_or_else(|| "the watch ended".to_string()),
            )),
        }
    }
}

impl WatchSender {
    /// Records changes; the notification coalesces with one not yet consumed, the changes are
    /// kept up to [`MAX_PENDING_EVENTS`]. False once the watch is dropped.
    pub(crate) fn notify(&self, events: impl IntoIterator<Item = Event>) -> bool {
        {
            let mut pending = self.pending.lock();
            if !pending.overflowed {
                pending.events.extend(events);
                if pending.events.len() > MAX_PENDING_EVENTS {
                    pending.events = Vec::new();
                    pending.overflowed = true;
                }
            }
        }
        self.wake()
    }

    /// Records changes it cannot describe (the reader re-reads).
    pub(crate) fn notify_unknown(&self) -> bool {
        {
            let mut pending = self.pending.lock();
            pending.events = Vec::new();
            pending.overflowed = true;
        }
        self.wake()
    }

    fn wake(&self) -> bool {
        !matches!(
            self.tx.try_send(()),
            Err(mpsc::error::TrySendError::Closed(()))
        )
    }

    /// Resolves when the [`Watch`] is dropped.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }

    /// Ends the watch: its `changed` returns `Unavailable(reason)` after pending notifications.
    pub(crate) fn end(self, reason: String) {
        let _ = self.ended.set(reason);
    }
}

/// What releasing a lease does; not run until awaited (and never by [`Lease::abandon`]).
pub(crate) type Release = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A lease-backed registration or leadership. Dropping it releases best-effort (spawned on the
/// current Tokio runtime, if any).
pub struct Lease {
    lost: watch::Receiver<bool>,
    /// For a leadership: the election key it owns and that key's revision. A write that checks
    /// it ([`crate::Write::check`] with [`crate::Expect::Revision`]) fails once the leadership
    /// is gone, even if this process has not noticed yet.
    fence: Option<(String, i64)>,
    /// In a mutex only so that `Lease` is `Sync`; it is only touched through `&mut self`.
    release: Mutex<Option<Release>>,
    keepalive: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// `lost` turns true (or its sender is dropped) when the lease is known to be gone.
    pub(crate) fn new(
        lost: watch::Receiver<bool>,
        release: Release,
        keepalive: Option<JoinHandle<()>>,
    ) -> Lease {
        Lease {
            lost,
            fence: None,
            release: Mutex::new(Some(release)),
            keepalive,
        }
    }

    /// Replaces the release action (a leadership learns its key only once it leads).
    pub(crate) fn set_release(&mut self, release: Release) {
        *self.release.get_mut() = Some(release);
    }

    /// Records the election key (relative to the cluster's root) and revision a leadership
    /// owns.
    pub(crate) fn set_fence(&mut self, key: String, revision: i64) {
        self.fence = Some((key, revision));
    }

    /// The fence of a leadership won by `campaign` on a store where other processes compete
    /// (etcd): a condition that holds only while this leadership does. `None` for
    /// registrations, and where no other process can lead (the embedded store).
    pub fn fence(&self) -> Option<crate::Write> {
        self.fence.as_ref().map(|(key, revision)| {
            crate::Write::check(key.clone(), crate::Expect::Revision(*revision))
        })
    }

    /// Resolves once the lease is known to be gone (expired, revoked, key deleted by someone
    /// else).
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        // A dropped sender means the keepalive ended without a verdict: nobody keeps the lease.
        let _ = rx.wait_for(|lost| *lost).await;
    }

    pub fn is_lost(&self) -> bool {
        *self.lost.borrow() || self.lost.has_changed().is_err()
    }

    /// Deletes the key (or resigns) and revokes the lease now.
    pub async fn release(mut self) -> Result<()> {
        self.stop_keepalive();
        match self.release.get_mut().take() {
            Some(release) => release.await,
            None => Ok(()),
        }
    }

    /// Stops the keepalive WITHOUT revoking: the key expires after the TTL. For tests that
    /// simulate a crash. (The embedded store has no expiry: there the key goes at once.)
    pub fn abandon(mut self) {
        self.stop_keepalive();
        drop(self.release.get_mut().take());
    }

    fn stop_keepalive(&mut self) {
        if let Some(task) = self.keepalive.take() {
            task.abort();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_keepalive();
        if let Some(release) = self.release.get_mut().take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = release.await {
                        tracing::warn!("releasing a dropped lease failed (it will expire): {e}");
                    }
                });
            }
        }
    }
}
