//! An immutable view of the cluster's metadata, read from the coordinator in one pass and
//! swapped in whole, so every request sees one consistent picture.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{BrokerError, Result};
use crate::metadata::{BrokerRecord, PartitionState, TopicRecord};

#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    pub cluster: String,
    /// -1 while no controller is elected.
    pub controller: i32,
    /// Every broker that ever registered (last known address and rack).
    pub known_brokers: BTreeMap<i32, BrokerRecord>,
    /// Brokers whose registration lease is alive.
    pub alive: BTreeMap<i32, BrokerRecord>,
    pub topics: BTreeMap<String, TopicState>,
    /// Alive brokers in controlled shutdown (`shutting_down/<id>` in their current incarnation).
    pub shutting_down: BTreeSet<i32>,
}

#[derive(Debug, Clone)]
pub struct TopicState {
    pub record: TopicRecord,
    /// Index = partition number.
    pub partitions: Vec<PartitionState>,
    /// The metadata revision each partition state was read at (index = partition number; 0
    /// when unknown). A replica never applies a state older than the one it has.
    pub revisions: Vec<i64>,
}

impl TopicState {
    /// The revision partition `index`'s state was read at (0 when unknown).
    pub fn revision(&self, index: usize) -> i64 {
        self.revisions.get(index).copied().unwrap_or(0)
    }
}

impl ClusterSnapshot {
    pub fn alive_ids(&self) -> BTreeSet<i32> {
        self.alive.keys().copied().collect()
    }

    pub fn topic(&self, name: &str) -> Result<&TopicState> {
        self.topics
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    /// The state of one partition, or the precise not-found error.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<&PartitionState> {
        let t = self.topic(topic)?;
        t.partitions
            .get(partition as usize)
            .ok_or(BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count: t.record.partitions,
            })
    }

    /// The address of a broker that is alive.
    pub fn address(&self, broker: i32) -> Option<&str> {
        self.alive.get(&broker).map(|b| b.address.as_str())
    }

    pub fn partition_count(&self) -> u32 {
        self.topics
            .values()
            .map(|t| t.partitions.len() as u32)
            .sum()
    }

    /// Partitions whose leader is missing or not alive.
    pub fn offline_partitions(&self) -> u32 {
        self.partitions()
            .filter(|p| p.leader < 0 || !self.alive.contains_key(&p.leader))
            .count() as u32
    }

    /// Partitions with fewer in-sync replicas than they are meant to have (replicas being
    /// added by a move do not count).
    pub fn under_replicated_partitions(&self) -> u32 {
        self.partitions()
            .filter(|p| p.is_under_replicated())
            .count() as u32
    }

    fn partitions(&self) -> impl Iterator<Item = &PartitionState> {
        self.topics.values().flat_map(|t| t.partitions.iter())
    }
}
