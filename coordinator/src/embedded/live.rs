//! The embedded store's in-memory side: registered keys, elections and watches.
//!
//! Nothing here is persisted: one process holds every registration and leadership, so they end
//! with it. A registration or leadership is a guard inside its [`Lease`]'s release action and
//! undoes itself when dropped, so release, drop and abandon all free it at once (there is no
//! expiry to wait for). Elections are fair: campaigners lead in the order they asked.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use super::Inner;
use crate::{CoordinatorError, Lease, Result, Versioned, Watch};

/// Registered keys. Invariant: no key here is also a persisted key.
#[derive(Debug, Default)]
pub(super) struct Registered {
    keys: BTreeMap<String, Registration>,
}

#[derive(Debug)]
struct Registration {
    value: Bytes,
    revision: i64,
    id: u64,
    /// Set when a commit takes the key over.
    lost: watch::Sender<bool>,
}

impl Registered {
    pub(super) fn get(&self, key: &str) -> Option<Versioned> {
        self.keys.get(key).map(|r| Versioned {
            value: r.value.clone(),
            revision: r.revision,
        })
    }

    pub(super) fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (String, Versioned)> + 'a {
        self.keys
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, r)| {
                (
                    k.clone(),
                    Versioned {
                        value: r.value.clone(),
                        revision: r.revision,
                    },
                )
            })
    }

    /// A commit wrote `key`: it is no longer a registration.
    pub(super) fn take_over(&mut self, key: &str) {
        if let Some(r) = self.keys.remove(key) {
            let _ = r.lost.send(true);
        }
    }
}

/// Notifies `watch` of every change whose key starts with `prefix` and with none of `except`.
pub(super) fn watch(
    changes: &broadcast::Sender<crate::Event>,
    prefix: &str,
    except: &[&str],
) -> Watch {
    // Subscribe before returning, so every later change is seen.
    let mut rx = changes.subscribe();
    let (tx, watch) = Watch::channel();
    let prefix = prefix.to_string();
    let except: Vec<String> = except.iter().map(|e| e.to_string()).collect();
    let ignored = move |key: &str| {
        !key.starts_with(prefix.as_str()) || except.iter().any(|e| key.starts_with(e.as_str()))
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                change = rx.recv() => match change {
                    Ok(event) if ignored(&event.key) => {}
                    Ok(event) => {
                        if !tx.notify([event]) {
                            return;
                        }
                    }
                    // Changes were missed: the reader re-reads.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !tx.notify_unknown() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        tx.end("the embedded metadata store was closed".to_string());
                        return;
                    }
                },
            }
        }
    });
    watch
}

pub(super) fn register(inner: &Arc<Inner>, key: &str, value: Bytes) -> Result<Lease> {
    let mut store = inner.store.lock();
    if store.get(key).is_some() {
        return Err(CoordinatorError::Conflict {
            key: key.to_string(),
            reason: "it is registered or exists already".to_string(),
        });
    }
    store.state.revision += 1;
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let (lost, lost_rx) = watch::channel(false);
    let revision = store.state.revision;
    store.live.keys.insert(
        key.to_string(),
        Registration {
            value: value.clone(),
            revision,
            id,
            lost,
        },
    );
    let _ = inner.changes.send(crate::Event {
        key: key.to_string(),
        revision,
        value: Some(value),
    });
    let guard = RegistrationGuard {
        inner: Arc::downgrade(inner),
        key: key.to_string(),
        id,
    };
    Ok(Lease::new(
        lost_rx,
        Box::pin(async move {
            drop(guard);
            Ok(())
        }),
        None,
    ))
}

/// Removes the registered key when dropped, unless a commit took it over.
struct RegistrationGuard {
    inner: Weak<Inner>,
    key: String,
    id: u64,
}

impl Drop for RegistrationGuard {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut store = inner.store.lock();
        if store
            .live
            .keys
            .get(&self.key)
            .is_some_and(|r| r.id == self.id)
        {
            store.live.keys.remove(&self.key);
            store.state.revision += 1;
            let _ = inner.changes.send(crate::Event {
                key: self.key.clone(),
                revision: store.state.revision,
                value: None,
            });
        }
    }
}

/// Elections by name: whose turn it is, and the leader's value.
pub(super) type Elections = HashMap<String, Election>;

#[derive(Debug)]
pub(super) struct Election {
    /// One permit: the leadership. Tokio's semaphore is fair, so campaigners queue in order.
    turn: Arc<Semaphore>,
    leader: Option<(u64, Bytes)>,
}

impl Default for Election {
    fn default() -> Self {
        Election {
            turn: Arc::new(Semaphore::new(1)),
            leader: None,
        }
    }
}

pub(super) async fn campaign(inner: &Arc<Inner>, election: &str, value: Bytes) -> Result<Lease> {
    let turn = inner
        .elections
        .lock()
        .entry(election.to_string())
        .or_default()
        .turn
        .clone();
    let permit = turn
        .acquire_owned()
        .await
        .map_err(|_| CoordinatorError::Unavailable(format!("election {election:?} was closed")))?;
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    inner
        .elections
        .lock()
        .entry(election.to_string())
        .or_default()
        .leader = Some((id, value));
    let (lost, lost_rx) = watch::channel(false);
    let guard = LeadershipGuard {
        inner: Arc::downgrade(inner),
        election: election.to_string(),
        id,
        _lost: lost,
        _permit: permit,
    };
    Ok(Lease::new(
        lost_rx,
        Box::pin(async move {
            drop(guard);
            Ok(())
        }),
        None,
    ))
}

pub(super) fn leader(inner: &Inner, election: &str) -> Option<Bytes> {
    let elections = inner.elections.lock();
    let (_, value) = elections.get(election)?.leader.as_ref()?;
    Some(value.clone())
}

/// Resigns when dropped: clears the leader's value, then hands the turn to the next campaigner.
struct LeadershipGuard {
    inner: Weak<Inner>,
    election: String,
    id: u64,
    _lost: watch::Sender<bool>,
    // Dropped after `drop` ran, so the next leader never sees this one's value.
    _permit: OwnedSemaphorePermit,
}

impl Drop for LeadershipGuard {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut elections = inner.elections.lock();
        if let Some(e) = elections.get_mut(&self.election) {
            if e.leader.as_ref().is_some_and(|(id, _)| *id == self.id) {
                e.leader = None;
            }
        }
    }
}
