//! Topic administration: create, delete, list, describe, alter config.
//!
//! Invariant: metadata is written first (one CAS commit), the local replicas follow it; a
//! request that fails validation writes nothing.

use std::collections::{BTreeMap, HashMap};
use strata_proto as pb;

use crate::error::{BrokerError, Result};
use crate::metadata::{validate_topic_name, PartitionState, TopicRecord};
use crate::state::BrokerState;
use crate::topic_config;

/// How often a config change is retried when another writer changed the topic first.
const CAS_ATTEMPTS: usize = 5;

impl BrokerState {
    pub async fn create_topic(&self, req: pb::CreateTopicRequest) -> Result<pb::TopicDescription> {
        validate_topic_name(&req.name)?;
        let max = self.config.max_partitions_per_topic;
        if req.partitions == 0 || req.partitions > max {
            return Err(BrokerError::InvalidPartitions(format!(
                "a topic needs between 1 and {max} partitions; {} were asked for",
                req.partitions
            )));
        }
        let brokers = self.metadata.brokers().await?;
        let rf = if req.replication_factor == 0 {
            1
        } else {
            req.replication_factor
        };
        if rf as usize > brokers.len() {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {rf} is larger than the number of live brokers ({})",
                brokers.len()
            )));
        }
        let overrides: BTreeMap<String, String> = req.configs.into_iter().collect();
        topic_config::resolve(self.replicas.defaults(), &overrides)?;
        let record = TopicRecord {
            name: req.name.clone(),
            topic_id: uuid::Uuid::new_v4().simple().to_string(),
            partitions: req.partitions,
            replication_factor: rf,
            config: overrides,
            created_ms: self.clock.now_ms(),
        };
        let me = self.config.broker_id;
        let states: Vec<PartitionState> = (0..req.partitions)
            .map(|_| PartitionState {
                replicas: vec![me],
                leader: me,
                leader_epoch: 0,
                isr: vec![me],
            })
            .collect();
        self.metadata.create_topic(&record, &states).await?;
        self.replicas.open_topic(record, states).await?;
        tracing::info!(topic = %req.name, partitions = req.partitions, "topic created");
        self.describe_topic(&req.name)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let topic = self
            .metadata
            .topic(name)
            .await?
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        self.metadata.delete_topic(&topic).await?;
        self.replicas.delete_topic(name).await?;
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }

    pub fn list_topics(&self) -> pb::ListTopicsResponse {
        pb::ListTopicsResponse {
            topics: self
                .replicas
                .topics()
                .iter()
                .map(|t| pb::TopicSummary {
                    name: t.record.name.clone(),
                    topic_id: t.record.topic_id.clone(),
                    partitions: t.record.partitions,
                    replication_factor: t.record.replication_factor,
                })
                .collect(),
        }
    }

    pub fn describe_topic(&self, name: &str) -> Result<pb::TopicDescription> {
        let topic = self.replicas.topic(name)?;
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let state = p.state();
            let stats = p.stats()?;
            partitions.push(pb::PartitionDescription {
                partition: p.index,
                leader: state.leader,
                replicas: state.replicas,
                isr: state.isr,
                log_start_offset: stats.log_start_offset,
                high_watermark: stats.high_watermark,
                log_end_offset: stats.log_end_offset,
                size_bytes: stats.size_bytes,
            });
        }
        Ok(pb::TopicDescription {
            name: topic.record.name.clone(),
            topic_id: topic.record.topic_id.clone(),
            replication_factor: topic.record.replication_factor,
            partitions,
            config: topic_config::effective(&topic.config)
                .into_iter()
                .collect::<HashMap<_, _>>(),
            overrides: topic.record.config.keys().cloned().collect(),
        })
    }

    pub async fn alter_topic_config(
        &self,
        req: pb::AlterTopicConfigRequest,
    ) -> Result<pb::TopicDescription> {
        if let Some(key) = req.delete.iter().find(|k| req.set.contains_key(*k)) {
            return Err(BrokerError::InvalidConfig(format!(
                "config key {key:?} is both set and deleted in one request"
            )));
        }
        for _ in 0..CAS_ATTEMPTS {
            let current = self
                .metadata
                .topic(&req.name)
                .await?
                .ok_or_else(|| BrokerError::UnknownTopic(req.name.clone()))?;
            let mut record = current.value.clone();
            for key in &req.delete {
                if !topic_config::KEYS.iter().any(|(k, _)| k == key) {
                    return Err(BrokerError::InvalidConfig(format!(
                        "unknown topic config key {key:?}"
                    )));
                }
                record.config.remove(key);
            }
            for (k, v) in &req.set {
                record.config.insert(k.clone(), v.clone());
            }
            topic_config::resolve(self.replicas.defaults(), &record.config)?;
            if self
                .metadata
                .update_topic(&record, current.revision)
                .await?
            {
                self.replicas.update_topic(record)?;
                tracing::info!(topic = %req.name, "topic config changed");
                return self.describe_topic(&req.name);
            }
        }
        Err(BrokerError::Internal(format!(
            "topic {:?} kept changing while its config was being altered; try again",
            req.name
        )))
    }
}
