//! Follower side of replication: one fetch stream per leader broker this broker follows,
//! carrying every partition that leader leads and this broker follows ([`super::stream`]).
//!
//! Invariants: each metadata sync hands every stream the partitions (and leader epochs) it
//! must follow now, and a stream whose leader died or moved address is stopped; a stream
//! writes a partition only while its (leader, epoch) is current, checked under the log's lock,
//! so a stale stream cannot write.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

use super::session::Key;
use super::stream::{self, Followed};
use crate::state::BrokerState;

#[derive(Debug)]
struct Running {
    address: String,
    assigned: watch::Sender<Arc<Followed>>,
    task: tokio::task::JoinHandle<()>,
}

/// The fetch streams of one broker, by leader broker.
#[derive(Debug, Default)]
pub struct Fetchers {
    running: Mutex<HashMap<i32, Running>>,
}

impl Fetchers {
    /// Stops every stream (shutdown).
    pub fn stop_all(&self) {
        for (_, r) in self.running.lock().drain() {
            r.task.abort();
        }
    }

    /// Streams running now (one per leader broker followed).
    pub fn streams(&self) -> usize {
        self.running.lock().len()
    }
}

/// Whether two assignments name the same partitions, epochs and replicas.
fn same(a: &Followed, b: &Followed) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, (epoch, p))| {
            b.get(k)
                .is_some_and(|(e, q)| e == epoch && Arc::ptr_eq(p, q))
        })
}

impl BrokerState {
    /// Makes the running streams match the local follower replicas and their current leaders.
    pub fn reconcile_fetchers(&self) {
        let me = self.config.broker_id;
        let snapshot = self.replicas.snapshot();
        let mut desired: HashMap<i32, Followed> = HashMap::new();
        for t in self.replicas.local_topics() {
            for p in t.partitions.values() {
                let (leader, epoch) = p.leader_and_epoch();
                if leader != me && leader >= 0 {
                    let key: Key = (t.record.name.clone(), p.index);
                    desired
                        .entry(leader)
                        .or_default()
                        .insert(key, (epoch, p.clone()));
                }
            }
        }
        let mut running = self.fetchers.running.lock();
        running.retain(|leader, r| {
            let keep = !r.task.is_finished()
                && desired.contains_key(leader)
                && snapshot.address(*leader) == Some(r.address.as_str());
            if !keep {
                r.task.abort();
            }
            keep
        });
        for (leader, followed) in desired {
            if let Some(r) = running.get(&leader) {
                r.assigned.send_if_modified(|current| {
                    if same(current, &followed) {
                        false
                    } else {
                        *current = Arc::new(followed);
                        true
                    }
                });
                continue;
            }
            let Some(address) = snapshot.address(leader) else {
                continue; // the leader is not alive; the controller will move leadership
            };
            let client = match self.peers.replica(address) {
                Ok(c) => c.max_decoding_message_size(self.config.max_fetch_bytes + (4 << 20)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach leader {leader}");
                    continue;
                }
            };
            let (assigned, rx) = watch::channel(Arc::new(followed));
            let task = tokio::spawn(stream::run(me, leader, rx, client));
            running.insert(
                leader,
                Running {
                    address: address.to_string(),
                    assigned,
                    task,
                },
            );
        }
    }
}
