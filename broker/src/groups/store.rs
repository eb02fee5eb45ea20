//! A consumer group's keys in the metadata store, and the writes that change them.
//!
//! Keys (relative to the cluster root):
//! - `groups/<group>/state`: [`GroupRecord`], written by the coordinator when a generation is
//!   formed and when the group empties;
//! - `groups/<group>/offsets/<topic>/<partition>`: [`OffsetRecord`].
//!
//! Invariant: every write carries a condition on the state key's revision, so a coordinator
//! whose view of the group is stale (another broker formed a newer generation) writes nothing:
//! its commit fails as a whole and it gives the group up.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use strata_coordinator::{Coordinator, CoordinatorError, Expect, Write, MAX_WRITES_PER_COMMIT};

use super::assign::TopicPartition;
use crate::error::{BrokerError, Result};
use crate::metadata::{decode, encode};

/// What the coordinator persists of a group: enough for a new coordinator to carry on with the
/// same generation and assignment, without a rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberRecord>,
    /// Partition counts of the subscribed topics the assignment was computed with.
    pub partition_counts: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub topics: BTreeSet<String>,
    pub protocols: Vec<String>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub assignment: Vec<TopicPartition>,
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    pub offset: i64,
    #[serde(default)]
    pub metadata: String,
    /// The generation of the member that committed it (-1: outside group management).
    pub generation: i32,
    pub committed_at_ms: i64,
}

pub fn state_key(group: &str) -> String {
    format!("groups/{group}/state")
}

fn offsets_prefix(group: &str) -> String {
    format!("groups/{group}/offsets/")
}

fn offset_key(group: &str, topic: &str, partition: u32) -> String {
    format!("groups/{group}/offsets/{topic}/{partition}")
}

/// The group keys of one cluster.
#[derive(Debug, Clone)]
pub struct GroupStore {
    store: Arc<dyn Coordinator>,
}

impl GroupStore {
    pub fn new(store: Arc<dyn Coordinator>) -> Self {
        GroupStore { store }
    }

    /// The group's record and its revision, if the group exists.
    pub async fn load(&self, group: &str) -> Result<Option<(GroupRecord, i64)>> {
        let key = state_key(group);
        match self.store.get(&key).await? {
            None => Ok(None),
            Some(v) => {
                let r = decode::<GroupRecord>(&key, v)?;
                Ok(Some((r.value, r.revision)))
            }
        }
    }

    /// Writes the record if the state key is still at `revision` (0: absent). Returns the new
    /// revision, or `None` when someone else changed the group first.
    pub async fn save(
        &self,
        group: &str,
        record: &GroupRecord,
        revision: i64,
    ) -> Result<Option<i64>> {
        let write = Write::put(state_key(group), encode(record)?, expect(revision));
        fenced(self.store.commit(vec![write]).await)
    }

    /// Writes offsets if the state key is still at `revision`, in transactions of at most
    /// [`MAX_WRITES_PER_COMMIT`] operations (one for the usual commit). `None`: the group changed.
    pub async fn commit_offsets(
        &self,
        group: &str,
        revision: i64,
        offsets: &[(TopicPartition, OffsetRecord)],
    ) -> Result<Option<()>> {
        for chunk in offsets.chunks(MAX_WRITES_PER_COMMIT) {
            let mut writes = vec![Write::check(state_key(group), expect(revision))];
            for ((topic, partition), record) in chunk {
                writes.push(Write::put(
                    offset_key(group, topic, *partition),
                    encode(record)?,
                    Expect::Any,
                ));
            }
            if fenced(self.store.commit(writes).await)?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    }

    /// Every committed offset of the group, by partition.
    pub async fn offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, OffsetRecord>> {
        let prefix = offsets_prefix(group);
        let mut out = BTreeMap::new();
        for (key, v) in self.store.list(&prefix).await? {
            let Some((topic, partition)) = key[prefix.len()..].rsplit_once('/') else {
                continue;
            };
            let Ok(partition) = partition.parse::<u32>() else {
                continue;
            };
            out.insert((topic.to_string(), partition), decode(&key, v)?.value);
        }
        Ok(out)
    }

    /// Every group with a state key: name, record.
    pub async fn groups(&self) -> Result<Vec<(String, GroupRecord)>> {
        let mut out = Vec::new();
        for (key, v) in self.store.list("groups/").await? {
            if let Some(name) = key
                .strip_prefix("groups/")
                .and_then(|k| k.strip_suffix("/state"))
                .filter(|n| !n.contains('/'))
            {
                out.push((name.to_string(), decode(&key, v)?.value));
            }
        }
        Ok(out)
    }

    /// Deletes the group's offsets, then its state key, each write conditional on the state
    /// key's `revision`. Returns the number of offsets deleted, or `None` if the group changed.
    pub async fn delete(&self, group: &str, revision: i64) -> Result<Option<usize>> {
        let keys: Vec<String> = self
            .store
            .list(&offsets_prefix(group))
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for chunk in keys.chunks(MAX_WRITES_PER_COMMIT) {
            let mut writes = vec![Write::check(state_key(group), expect(revision))];
            writes.extend(chunk.iter().map(|k| Write::delete(k.clone(), Expect::Any)));
            if fenced(self.store.commit(writes).await)?.is_none() {
                return Ok(None);
            }
        }
        let last = vec![Write::delete(state_key(group), expect(revision))];
        Ok(fenced(self.store.commit(last).await)?.map(|_| keys.len()))
    }
}

fn expect(revision: i64) -> Expect {
    if revision == 0 {
        Expect::Absent
    } else {
        Expect::Revision(revision)
    }
}

/// A conflict on the state key means another coordinator moved the group on: `None`.
fn fenced(result: strata_coordinator::Result<i64>) -> Result<Option<i64>> {
    match result {
        Ok(revision) => Ok(Some(revision)),
        Err(CoordinatorError::Conflict { .. }) => Ok(None),
        Err(e) => Err(BrokerError::Metadata(e)),
    }
}
