//! Typed cluster metadata over the [`Coordinator`]'s key-value store.
//!
//! Keys (relative to the cluster root, as DESIGN.md lays them out):
//! - `brokers/<id>`: [`BrokerRecord`], bound to the broker's lease: present while it is alive
//! - `broker_ids/<id>`: the same record, permanent: every broker that ever joined
//! - election `controller`: the controller's id
//! - `topics/<name>`: [`TopicRecord`] (id, partition count, replication factor, config overrides)
//! - `partitions/<name>/<p>`: [`PartitionState`] (replicas, leader, leader epoch, ISR, the
//!   leader's incarnation)
//! - `incarnations/<id>`: the broker incarnation whose restart the controller has processed
//!   (taken out of every ISR, its leaderships moved or re-epoched), written by the controller
//! - `disks/<id>`: the data directory id the controller last saw broker `id` register with,
//!   written by the controller once it processed the broker's restart
//! - `groups/<group>/...`: consumer groups, written by their coordinator (see `groups`)
//! - `remote_deletions/<topic_id>`: remote data being deleted (`tier::deletions`), removed by
//!   the controller once none is left
//!
//! Invariant: every change is a compare-and-swap on the revision read (or create-if-absent).
//! A topic's partition states are written and deleted in chunks under etcd's transaction
//! limit (`topic_writes`), and only a topic whose record is neither being created nor deleted
//! ([`TopicPhase`]) and whose
//! states `0..partitions` are all present is part of the cluster ([`MetadataStore::snapshot`]).

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use strata_coordinator::{Coordinator, CoordinatorError, Expect, Versioned, Write};

use crate::error::{BrokerError, Result};

/// Prefixes whose changes are not cluster metadata: consumer groups' state and offsets change
/// at the rate of commits, and must not wake every broker's metadata sync; remote-deletion
/// tombstones concern only the controller, which reads them itself; users and ACLs are
/// followed by their own watch (`security::users::follow`).
pub const NOT_METADATA: &[&str] = &["groups/", "remote_deletions/", "security/"];

/// Longest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: i32,
    pub address: String,
    #[serde(default)]
    pub rack: Option<String>,
    /// Unique to one run of the broker process (KIP-380's broker epoch): a broker registering
    /// with a new incarnation restarted, and may have come back with less data than it had.
    #[serde(default)]
    pub incarnation: i64,
    /// The data directory's id (`disk_id`): a broker registering with another one than the
    /// controller last saw came back on a disk that holds none of its records.
    #[serde(default)]
    pub disk_id: String,
    /// How many partition replicas the broker can host (`capacity`); 0: not said.
    #[serde(default)]
    pub max_partitions: u32,
    /// The limit that sets `max_partitions`, for the refusal that names it.
    #[serde(default)]
    pub max_partitions_why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: String,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Topic-level overrides, validated before they were stored.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    pub created_ms: i64,
    /// Whether a change of the topic's structure is under way (`topic_writes`).
    #[serde(default, skip_serializing_if = "TopicPhase::is_ready")]
    pub phase: TopicPhase,
}

/// Where a topic is in a change that takes several commits (creation, deletion, new
/// partitions). Only the controller moves a topic out of `Ready`; one that finds a topic in
/// another phase with nobody working on it finishes the change or undoes it
/// (`topic_changes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TopicPhase {
    /// Complete: part of the cluster.
    #[default]
    Ready,
    /// The record is written, the partition states are being written; not yet part of the
    /// cluster. Undone (deleted) when interrupted.
    Creating,
    /// States `partitions..to` are being written; the topic serves its `partitions` meanwhile.
    /// Undone (the new states deleted) when interrupted.
    Growing { to: u32 },
    /// Gone for clients; the partition states, then the record, are being deleted. Finished
    /// when interrupted.
    Deleting,
}

impl TopicPhase {
    pub fn is_ready(&self) -> bool {
        matches!(self, TopicPhase::Ready)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// The incarnation the leader was elected in: a broker leads only in that incarnation, so a
    /// restarted broker never resumes a leadership at the same epoch.
    #[serde(default)]
    pub leader_incarnation: i64,
    /// Replicas that came back on a new disk while the partition had no other in-sync replica
    /// (it went offline): they hold none of its records, so an unclean election takes them
    /// only when no other replica is alive. Cleared when a leader is elected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emptied: Vec<i32>,
    /// A reassignment in progress (KIP-455): `replicas` is then the original replicas followed
    /// by the ones being added, until the controller shrinks it to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassigning: Option<Reassigning>,
}

impl PartitionState {
    /// The replicas it is meant to have: during a move the original ones (Kafka's rule: the
    /// replicas being added do not make a partition under-replicated while they catch up).
    pub fn replication_factor(&self) -> usize {
        let adding = self.reassigning.as_ref().map_or(0, |r| r.adding.len());
        self.replicas.len().saturating_sub(adding)
    }

    /// Fewer in-sync replicas than it is meant to have.
    pub fn is_under_replicated(&self) -> bool {
        self.isr.len() < self.replication_factor()
    }
}

/// What a partition's reassignment is doing: see `control::reassign`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassigning {
    /// The replicas asked for, in order (the first is the preferred leader afterwards).
    pub target: Vec<i32>,
    /// Target replicas not among the original ones: they catch up outside the ISR first.
    pub adding: Vec<i32>,
    /// Original replicas not in the target: dropped (and their data deleted) at the end.
    pub removing: Vec<i32>,
    /// Catch-up traffic to the adding replicas, in bytes per second on the leader (0: none).
    #[serde(default)]
    pub throttle_bytes_per_sec: u64,
    /// When the reassignment was asked for (ms since the epoch, by the controller's clock).
    #[serde(default)]
    pub started_ms: i64,
}

/// A value read with the revision to compare against when writing it back.
#[derive(Debug, Clone)]
pub struct Revisioned<T> {
    pub value: T,
    pub revision: i64,
}

pub fn broker_key(id: i32) -> String {
    format!("brokers/{id}")
}

pub fn known_broker_key(id: i32) -> String {
    format!("broker_ids/{id}")
}

/// The election whose leader is the controller.
pub const CONTROLLER_ELECTION: &str = "controller";

pub fn incarnation_key(id: i32) -> String {
    format!("incarnations/{id}")
}

pub fn disk_key(id: i32) -> String {
    format!("disks/{id}")
}

pub fn topic_key(name: &str) -> String {
    format!("topics/{name}")
}

pub fn partition_key(topic: &str, partition: u32) -> String {
    format!("partitions/{topic}/{partition}")
}

/// Checks a topic name against `[A-Za-z0-9._-]{1,249}` (and refuses "." and "..").
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        Some(format!(
            "it is {} characters long; the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("\".\" and \"..\" are not allowed".to_string())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .map(|c| {
                format!("character {c:?} is not allowed; use letters, digits, '.', '_' and '-'")
            })
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(BrokerError::InvalidTopicName {
            name: name.to_string(),
            reason,
        }),
    }
}

/// Typed access to the metadata keys.
#[derive(Debug, Clone)]
pub struct MetadataStore {
    store: Arc<dyn Coordinator>,
}

impl MetadataStore {
    pub fn new(store: Arc<dyn Coordinator>) -> Self {
        MetadataStore { store }
    }

    pub fn cluster(&self) -> &str {
        self.store.cluster()
    }

    pub fn store(&self) -> &Arc<dyn Coordinator> {
        &self.store
    }

    /// Registers the broker as alive (a key bound to a lease of `ttl`) and records it as known.
    /// A conflict means another live process holds the id, or a crashed one's lease has not
    /// expired yet.
    pub async fn register_broker(
        &self,
        broker: &BrokerRecord,
        ttl: std::time::Duration,
    ) -> Result<strata_coordinator::Lease> {
        let lease = self
            .store
            .register(&broker_key(broker.id), encode(broker)?, ttl)
            .await?;
        // The permanent record changes only when the address or rack does; CAS like every write.
        let key = known_broker_key(broker.id);
        let value = encode(broker)?;
        let expect = match self.store.get(&key).await? {
            Some(v) if v.value == value => return Ok(lease),
            Some(v) => Expect::Revision(v.revision),
            None => Expect::Absent,
        };
        self.store.put(&key, value, expect).await?;
        Ok(lease)
    }

    /// Brokers alive now.
    pub async fn brokers(&self) -> Result<Vec<BrokerRecord>> {
        self.list("brokers/")
            .await
            .map(|v| v.into_iter().map(|r| r.value).collect())
    }

    /// Every broker that ever registered.
    pub async fn known_brokers(&self) -> Result<Vec<BrokerRecord>> {
        self.list("broker_ids/")
            .await
            .map(|v| v.into_iter().map(|r| r.value).collect())
    }

    /// The broker incarnations whose restart the controller has processed, by broker id.
    pub async fn processed_incarnations(&self) -> Result<BTreeMap<i32, i64>> {
        self.per_broker("incarnations/", "a number", |s| s.parse().ok())
            .await
    }

    /// Records that broker `id`'s restart into `incarnation` was processed (a CAS on the key).
    pub async fn set_processed_incarnation(&self, id: i32, incarnation: i64) -> Result<()> {
        self.set_per_broker(&incarnation_key(id), incarnation.to_string())
            .await
    }

    /// The data directory id the controller last saw each broker register with, by broker id.
    pub async fn recorded_disks(&self) -> Result<BTreeMap<i32, String>> {
        self.per_broker("disks/", "a disk id", |s| Some(s.to_string()))
            .await
    }

    /// Records the data directory id broker `id` registered with (a CAS on the key).
    pub async fn set_recorded_disk(&self, id: i32, disk_id: &str) -> Result<()> {
        self.set_per_broker(&disk_key(id), disk_id.to_string())
            .await
    }

    /// Brokers in controlled shutdown: the incarnation each asked in (a broker that started
    /// again since is not shutting down).
    pub async fn shutting_down(&self) -> Result<BTreeMap<i32, i64>> {
        self.per_broker("shutting_down/", "a number", |s| s.parse().ok())
            .await
    }

    /// Asks the controller to move broker `id`'s leaderships and ISR places away: it is
    /// stopping (controlled shutdown) in `incarnation`.
    pub async fn set_shutting_down(&self, id: i32, incarnation: i64) -> Result<()> {
        self.set_per_broker(&format!("shutting_down/{id}"), incarnation.to_string())
            .await
    }

    /// Brokers drained by `cluster drain`, with the incarnation they were drained in: balance
    /// puts nothing on them while they run in it.
    pub async fn drained(&self) -> Result<BTreeMap<i32, i64>> {
        self.per_broker("drained/", "a number", |s| s.parse().ok())
            .await
    }

    pub async fn set_drained(&self, id: i32, incarnation: i64) -> Result<()> {
        self.set_per_broker(&format!("drained/{id}"), incarnation.to_string())
            .await
    }

    /// Every `<prefix><broker id>` key holding one line of text, parsed by `parse`.
    async fn per_broker<T>(
        &self,
        prefix: &str,
        holding: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<BTreeMap<i32, T>> {
        let mut out = BTreeMap::new();
        for (key, v) in self.store.list(prefix).await? {
            let id = key.rsplit('/').next().and_then(|s| s.parse::<i32>().ok());
            let value = std::str::from_utf8(&v.value)
                .ok()
                .and_then(|s| parse(s.trim()));
            match (id, value) {
                (Some(id), Some(value)) => out.insert(id, value),
                _ => {
                    return Err(corrupt(
                        &key,
                        &format!("expected {prefix}<id> holding {holding}"),
                    ))
                }
            };
        }
        Ok(out)
    }

    /// Writes one per-broker text value, a CAS on the revision read.
    async fn set_per_broker(&self, key: &str, value: String) -> Result<()> {
        let expect = match self.store.get(key).await? {
            Some(v) => Expect::Revision(v.revision),
            None => Expect::Absent,
        };
        self.store.put(key, Bytes::from(value), expect).await?;
        Ok(())
    }

    /// The controller's id, if one is elected.
    pub async fn controller(&self) -> Result<Option<i32>> {
        Ok(self
            .store
            .leader(CONTROLLER_ELECTION)
            .await?
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok()))
    }

    /// Reads everything into one snapshot.
    pub async fn snapshot(&self) -> Result<crate::snapshot::ClusterSnapshot> {
        use crate::snapshot::{ClusterSnapshot, TopicState};
        let alive = self.brokers().await?;
        let known = self.known_brokers().await?;
        let controller = self.controller().await?.unwrap_or(-1);
        let topics = self.topics().await?;
        let asked = self.shutting_down().await?;
        let shutting_down = alive
            .iter()
            .filter(|b| asked.get(&b.id) == Some(&b.incarnation))
            .map(|b| b.id)
            .collect();
        let mut all_partitions: BTreeMap<String, Vec<(u32, Revisioned<PartitionState>)>> =
            BTreeMap::new();
        for (key, v) in self.store.list("partitions/").await? {
            let mut parts = key.trim_start_matches("partitions/").rsplitn(2, '/');
            let (Some(index), Some(topic)) = (parts.next(), parts.next()) else {
                return Err(corrupt(&key, "expected partitions/<topic>/<partition>"));
            };
            let index: u32 = index
                .parse()
                .map_err(|_| corrupt(&key, "the key does not end in a partition number"))?;
            let state: Revisioned<PartitionState> = decode(&key, v)?;
            all_partitions
                .entry(topic.to_string())
                .or_default()
                .push((index, state));
        }
        let mut snapshot = ClusterSnapshot {
            cluster: self.cluster().to_string(),
            controller,
            known_brokers: known.into_iter().map(|b| (b.id, b)).collect(),
            alive: alive.into_iter().map(|b| (b.id, b)).collect(),
            topics: BTreeMap::new(),
            shutting_down,
        };
        for t in topics {
            let mut parts = all_partitions.remove(&t.value.name).unwrap_or_default();
            if matches!(t.value.phase, TopicPhase::Creating | TopicPhase::Deleting) {
                // Not (or no longer) part of the cluster. A growing topic serves its
                // `partitions` meanwhile.
                continue;
            }
            parts.sort_by_key(|(i, _)| *i);
            // States past the count belong to partitions being added (or to an interrupted
            // addition the controller removes).
            parts.retain(|(i, _)| *i < t.value.partitions);
            let complete = parts.len() == t.value.partitions as usize
                && parts.iter().enumerate().all(|(i, (p, _))| i as u32 == *p);
            if !complete {
                tracing::warn!(topic = %t.value.name, "topic metadata incomplete; ignoring it for now");
                continue;
            }
            let revisions = parts.iter().map(|(_, s)| s.revision).collect();
            let partitions = parts.into_iter().map(|(_, s)| s.value).collect();
            snapshot.topics.insert(
                t.value.name.clone(),
                TopicState {
                    record: t.value,
                    partitions,
                    revisions,
                },
            );
        }
        Ok(snapshot)
    }

    /// One partition's state with its revision.
    pub async fn partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Revisioned<PartitionState>>> {
        let key = partition_key(topic, partition);
        match self.store.get(&key).await? {
            None => Ok(None),
            Some(v) => decode(&key, v).map(Some),
        }
    }

    /// Reserves `count` producer ids for this broker: returns the first; a CAS on one counter.
    pub async fn reserve_producer_ids(&self, count: i64) -> Result<i64> {
        const KEY: &str = "producer_ids/next";
        loop {
            let (next, expect) = match self.store.get(KEY).await? {
                None => (0, Expect::Absent),
                Some(v) => {
                    let n: i64 = std::str::from_utf8(&v.value)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .ok_or_else(|| corrupt(KEY, "not a number"))?;
                    (n, Expect::Revision(v.revision))
                }
            };
            let value = Bytes::from((next + count).to_string());
            match self.store.put(KEY, value, expect).await {
                Ok(_) => return Ok(next),
                Err(CoordinatorError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Many partition updates as [`MetadataStore::update_partition`] writes one: a chunk of
    /// them per etcd transaction (with the fence), one by one for a chunk whose transaction met
    /// a changed partition. Returns whether each was written.
    pub async fn update_partitions(
        &self,
        updates: &[(&str, u32, &PartitionState, i64)],
        fence: Option<Write>,
    ) -> Result<Vec<bool>> {
        let mut written = Vec::with_capacity(updates.len());
        for chunk in updates.chunks(strata_coordinator::MAX_WRITES_PER_COMMIT - 1) {
            let mut writes: Vec<Write> = fence.iter().cloned().collect();
            for (topic, partition, state, revision) in chunk {
                writes.push(Write::put(
                    partition_key(topic, *partition),
                    encode(state)?,
                    Expect::Revision(*revision),
                ));
            }
            match self.store.commit(writes).await {
                Ok(_) => written.extend(std::iter::repeat_n(true, chunk.len())),
                Err(CoordinatorError::Conflict { key, .. })
                    if fence.as_ref().is_none_or(|f| f.key != key) =>
                {
                    for (topic, partition, state, revision) in chunk {
                        written.push(
                            self.update_partition(
                                topic,
                                *partition,
                                state,
                                *revision,
                                fence.clone(),
                            )
                            .await?,
                        );
                    }
                }
                Err(CoordinatorError::Conflict { key, .. }) => {
                    return Err(BrokerError::NotController(format!(
                        "this broker no longer holds the controller election (its key {key} \
                         changed); partition states were not written"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// Replaces a partition's state if it is still at `revision`, as the controller: the write
    /// also checks `fence` (the controller election's, see `Lease::fence`), so a controller
    /// that was deposed without noticing writes nothing. `Ok(false)` on a conflict with the
    /// partition's revision; `NotController` when the fence no longer holds.
    pub async fn update_partition(
        &self,
        topic: &str,
        partition: u32,
        state: &PartitionState,
        revision: i64,
        fence: Option<Write>,
    ) -> Result<bool> {
        let Some(fence) = fence else {
            return Ok(self
                .write_partition(topic, partition, state, revision)
                .await?
                .is_some());
        };
        let fence_key = fence.key.clone();
        let write = Write::put(
            partition_key(topic, partition),
            encode(state)?,
            Expect::Revision(revision),
        );
        match self.store.commit(vec![fence, write]).await {
            Ok(_) => Ok(true),
            Err(CoordinatorError::Conflict { key, .. }) if key == fence_key => {
                Err(BrokerError::NotController(format!(
                    "this broker no longer holds the controller election (its key {fence_key} \
                     changed); the partition state of {topic}/{partition} was not written"
                )))
            }
            Err(CoordinatorError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Like [`MetadataStore::update_partition`], returning the revision written at (`None`
    /// on a conflict), for the writer to apply the state it wrote at that revision.
    pub async fn write_partition(
        &self,
        topic: &str,
        partition: u32,
        state: &PartitionState,
        revision: i64,
    ) -> Result<Option<i64>> {
        let key = partition_key(topic, partition);
        match self
            .store
            .put(&key, encode(state)?, Expect::Revision(revision))
            .await
        {
            Ok(written) => Ok(Some(written)),
            Err(CoordinatorError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn topic(&self, name: &str) -> Result<Option<Revisioned<TopicRecord>>> {
        match self.store.get(&topic_key(name)).await? {
            None => Ok(None),
            Some(v) => decode(&topic_key(name), v).map(Some),
        }
    }

    pub async fn topics(&self) -> Result<Vec<Revisioned<TopicRecord>>> {
        self.list("topics/").await
    }

    pub async fn partitions(&self, topic: &str) -> Result<Vec<Revisioned<PartitionState>>> {
        let mut states: Vec<(u32, Revisioned<PartitionState>)> = Vec::new();
        for (key, v) in self.store.list(&format!("partitions/{topic}/")).await? {
            let index = key.rsplit('/').next().and_then(|p| p.parse::<u32>().ok());
            let Some(index) = index else {
                return Err(corrupt(&key, "the key does not end in a partition number"));
            };
            states.push((index, decode(&key, v)?));
        }
        states.sort_by_key(|(i, _)| *i);
        Ok(states.into_iter().map(|(_, s)| s).collect())
    }

    /// Replaces a topic record if it is still at the revision read, in one commit with `also`.
    /// `Ok(false)` on a conflict.
    pub async fn update_topic(
        &self,
        topic: &TopicRecord,
        revision: i64,
        also: Vec<Write>,
    ) -> Result<bool> {
        let mut writes = vec![Write::put(
            topic_key(&topic.name),
            encode(topic)?,
            Expect::Revision(revision),
        )];
        writes.extend(also);
        match self.store.commit(writes).await {
            Ok(_) => Ok(true),
            Err(CoordinatorError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<Revisioned<T>>> {
        self.store
            .list(prefix)
            .await?
            .into_iter()
            .map(|(k, v)| decode(&k, v))
            .collect()
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| BrokerError::Internal(format!("encoding metadata: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, v: Versioned) -> Result<Revisioned<T>> {
    let value = serde_json::from_slice(&v.value).map_err(|e| corrupt(key, &e.to_string()))?;
    Ok(Revisioned {
        value,
        revision: v.revision,
    })
}

fn corrupt(key: &str, reason: &str) -> BrokerError {
    BrokerError::Metadata(CoordinatorError::Corrupt {
        path: key.to_string(),
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["orders", "a.b_c-D9", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("..", "not allowed"),
            ("a/b", "'/'"),
            ("sp ace", "' '"),
            (&"x".repeat(250), "limit is 249"),
        ] {
            let err = validate_topic_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
