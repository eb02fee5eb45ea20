//! Housekeeping: each partition's timed chores (the roll by `segment.ms`, the flush by
//! `flush.ms`, the fsync of sealed segments, retention, producer-id expiry), run when they are
//! due instead of by a scan of every partition on every tick.
//!
//! A partition is visited (its due chores run, and it says when its next one is due) when:
//! - the [`Agenda`], which orders partitions by the due time of their next chore, says so; or
//! - it changed since its last visit (an append, a truncation, a new config or retention
//!   limit): it put itself in the [`Inbox`], once until visited.
//!
//! The loop wakes every `housekeeping_interval` and visits only those partitions.
//!
//! Invariants: a chore runs at most one interval after it is due (as with the old scan), and
//! a partition with nothing due and no change costs nothing per tick. A partition clears its
//! "in the inbox" flag before a visit reads it, so a change during the visit queues it again
//! rather than being missed.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::BrokerError;
use crate::replica::{blocking, Partition};
use crate::state::BrokerState;

/// How often the agenda drops partitions that no longer exist (deleted topics, moved replicas).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Keys ordered by when they are next due (ms).
#[derive(Debug)]
pub struct Agenda<K> {
    order: BTreeSet<(i64, K)>,
    due: HashMap<K, i64>,
}

impl<K> Default for Agenda<K> {
    fn default() -> Self {
        Agenda {
            order: BTreeSet::new(),
            due: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> Agenda<K> {
    /// `key` is next due at `due` (replacing what was set before); `None` removes it.
    pub fn set(&mut self, key: K, due: Option<i64>) {
        if let Some(old) = self.due.remove(&key) {
            self.order.remove(&(old, key.clone()));
        }
        if let Some(at) = due {
            self.order.insert((at, key.clone()));
            self.due.insert(key, at);
        }
    }

    /// Removes and returns every key due at or before `now`, earliest first.
    pub fn take_due(&mut self, now: i64) -> Vec<K> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.order.first() {
            if *at > now {
                break;
            }
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            self.due.remove(&key);
            out.push(key);
        }
        out
    }

    /// When the earliest key is due.
    pub fn next_due(&self) -> Option<i64> {
        self.order.first().map(|(at, _)| *at)
    }

    /// When `key` is due, if it is on the agenda.
    pub fn due_of(&self, key: &K) -> Option<i64> {
        self.due.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// Partitions that changed since housekeeping last visited them.
#[derive(Debug, Default)]
pub struct Inbox {
    touched: Mutex<Vec<Weak<Partition>>>,
}

impl Inbox {
    pub(crate) fn push(&self, p: Weak<Partition>) {
        self.touched.lock().push(p);
    }

    fn take(&self) -> Vec<Weak<Partition>> {
        std::mem::take(&mut *self.touched.lock())
    }
}

/// A partition's key: the address of its allocation, which cannot be reused while the
/// housekeeper holds a `Weak` to it.
type Key = usize;

fn key_of(p: &Weak<Partition>) -> Key {
    p.as_ptr() as usize
}

/// The housekeeping loop's state: the agenda and the partitions it names.
#[derive(Debug, Default)]
pub struct Housekeeper {
    agenda: Agenda<Key>,
    parts: HashMap<Key, Weak<Partition>>,
}

impl Housekeeper {
    /// The partitions to visit at `now`: those in `inbox` and those due, each once.
    pub fn to_visit(&mut self, inbox: &Inbox, now: i64) -> Vec<Arc<Partition>> {
        let mut visit: HashMap<Key, Arc<Partition>> = HashMap::new();
        for weak in inbox.take() {
            if let Some(p) = weak.upgrade() {
                let key = key_of(&weak);
                self.parts.insert(key, weak);
                visit.insert(key, p);
            }
        }
        for key in self.agenda.take_due(now) {
            match self.parts.get(&key).and_then(Weak::upgrade) {
                Some(p) => {
                    visit.insert(key, p);
                }
                None => {
                    self.parts.remove(&key);
                }
            }
        }
        visit.into_values().collect()
    }

    /// Records when each visited partition is next due (`None`: not until it changes).
    pub fn visited(&mut self, outcomes: Vec<(Weak<Partition>, Option<i64>)>) {
        for (weak, due) in outcomes {
            let key = key_of(&weak);
            self.agenda.set(key, due);
            match due {
                Some(_) => {
                    self.parts.insert(key, weak);
                }
                None => {
                    self.parts.remove(&key);
                }
            }
        }
    }

    /// Forgets partitions that no longer exist.
    pub fn prune(&mut self) {
        let dead: Vec<Key> = self
            .parts
            .iter()
            .filter(|(_, w)| w.strong_count() == 0)
            .map(|(k, _)| *k)
            .collect();
        for key in dead {
            self.parts.remove(&key);
            self.agenda.set(key, None);
        }
    }

    /// When `p` is next due, if it is on the agenda.
    pub fn due_of(&self, p: &Arc<Partition>) -> Option<i64> {
        self.agenda.due_of(&key_of(&Arc::downgrade(p)))
    }

    /// Partitions on the agenda.
    pub fn scheduled(&self) -> usize {
        self.agenda.len()
    }
}

/// Visits `parts` (on the blocking pool): runs their due chores and returns when each is
/// next due. A partition whose chores failed is tried again after `retry`; one whose log was
/// closed (deleted, moved away) is dropped.
pub fn visit(
    parts: Vec<Arc<Partition>>,
    now_ms: i64,
    producer_expiry_ms: i64,
    recheck_ms: i64,
    retry_ms: i64,
) -> Vec<(Weak<Partition>, Option<i64>)> {
    parts
        .into_iter()
        .map(|p| {
            let due = match p.housekeeping(producer_expiry_ms, recheck_ms) {
                Ok(due) => due,
                // A partition removed meanwhile is not an error worth a warning.
                Err(BrokerError::UnknownTopic(_)) => None,
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "housekeeping failed");
                    Some(now_ms.saturating_add(retry_ms))
                }
            };
            (Arc::downgrade(&p), due)
        })
        .collect()
}

/// Visits the partitions that changed or are due every `housekeeping_interval`, until told
/// to stop.
pub async fn run(state: Arc<BrokerState>, mut stop: watch::Receiver<bool>) {
    let tick = state.config.housekeeping_interval;
    let recheck_ms = state.config.retention_check_interval.as_millis().max(1) as i64;
    let producer_expiry_ms = state.config.producer_id_expiration.as_millis() as i64;
    let retry_ms = tick.as_millis().max(1) as i64;
    let mut keeper = Housekeeper::default();
    let mut last_prune = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = tokio::time::Instant::now();
            keeper.prune();
        }
        let now_ms = state.clock.now_ms();
        let parts = keeper.to_visit(state.replicas.chores(), now_ms);
        if parts.is_empty() {
            continue; // the idle case: nothing changed, nothing due
        }
        crate::metrics::HOUSEKEEPING_VISITS.add(parts.len() as u64);
        let outcomes = blocking(move || {
            Ok(visit(
                parts,
                now_ms,
                producer_expiry_ms,
                recheck_ms,
                retry_ms,
            ))
        })
        .await;
        match outcomes {
            Ok(outcomes) => keeper.visited(outcomes),
            Err(e) => tracing::warn!(error = %e, "housekeeping task failed"),
        }
        crate::metrics::HOUSEKEEPING_SCHEDULED.set(keeper.scheduled() as i64);
    }
}

#[cfg(test)]
#[path = "housekeeping_tests.rs"]
mod partition_visits;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agenda_hands_out_keys_in_due_order_once() {
        let mut a = Agenda::default();
        a.set("b", Some(20));
        a.set("a", Some(10));
        a.set("c", Some(30));
        assert_eq!(a.next_due(), Some(10));
        assert_eq!(a.take_due(9), Vec::<&str>::new());
        assert_eq!(a.take_due(20), vec!["a", "b"]);
        assert_eq!(a.take_due(20), Vec::<&str>::new(), "taken keys are gone");
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn setting_a_key_again_replaces_its_due_time() {
        let mut a = Agenda::default();
        a.set(1, Some(100));
        a.set(1, Some(5));
        assert_eq!(a.take_due(5), vec![1]);
        a.set(2, Some(5));
        a.set(2, Some(100));
        assert!(a.take_due(50).is_empty(), "moved later");
        a.set(2, None);
        assert!(a.is_empty());
        assert_eq!(a.next_due(), None);
    }
}
