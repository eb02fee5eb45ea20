//! Topic administration: create, delete, list, describe, alter config, cluster info.
//!
//! Invariants: metadata is written first (CAS commits), replicas follow it through
//! [`BrokerState::sync`]; a request that fails validation writes nothing. Creation, deletion
//! and new partitions happen on the controller only (another broker forwards them to it), as
//! claimed tasks that a crash leaves for the next controller to end (`topic_changes`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use strata_proto as pb;

use crate::control::placement;
use crate::error::{BrokerError, Result};
use crate::metadata::{
    validate_topic_name, MetadataStore, PartitionState, Revisioned, TopicPhase, TopicRecord,
};
use crate::snapshot::TopicState;
use crate::state::BrokerState;
use crate::topic_changes;
use crate::topic_config::{self, DELETE_ON_DISABLE};
use strata_proto::v1::admin_client::AdminClient;
use tonic::transport::Channel;

/// How often a config change is retried when another writer changed the topic first.
const CAS_ATTEMPTS: usize = 5;

/// Request metadata marking a creation forwarded by another broker (never forwarded twice).
pub const FORWARDED_KEY: &str = "strata-forwarded";

impl BrokerState {
    pub async fn create_topic(
        &self,
        req: pb::CreateTopicRequest,
        forwarded: bool,
    ) -> Result<pb::TopicDescription> {
        validate_topic_name(&req.name)?;
        let max = self.config.max_partitions_per_topic;
        if req.partitions == 0 || req.partitions > max {
            return Err(BrokerError::InvalidPartitions(format!(
                "a topic needs between 1 and {max} partitions; {} were asked for",
                req.partitions
            )));
        }
        let overrides: BTreeMap<String, String> = req.configs.clone().into_iter().collect();
        topic_config::check_floors(self.replicas.defaults(), &overrides)?;
        self.check_config(&overrides)?;
        if !self.is_controller.load(Ordering::SeqCst) {
            let mut admin = self.controller_admin(forwarded).await?;
            let answer = admin
                .create_topic(forwarded_request(req))
                .await
                .map(|r| r.into_inner())
                .map_err(forwarding_failed)?;
            // Read-your-writes for the client that asked this broker: its next call here must
            // see the topic, not wait for this broker's watch to catch up.
            self.sync().await?;
            return Ok(answer);
        }
        let brokers = self.metadata.brokers().await?;
        let rf = req.replication_factor.max(1);
        let topic_id = uuid::Uuid::new_v4();
        let start = (topic_id.as_u128() % brokers.len().max(1) as u128) as usize;
        let states = placement::place(&brokers, req.partitions, rf, start).ok_or_else(|| {
            BrokerError::InvalidReplicationFactor(format!(
                "replication factor {rf} is larger than the number of live brokers ({})",
                brokers.len()
            ))
        })?;
        crate::capacity::check(&brokers, &self.replicas.snapshot(), &states)?;
        let record = TopicRecord {
            name: req.name.clone(),
            topic_id: topic_id.simple().to_string(),
            partitions: req.partitions,
            replication_factor: rf,
            config: overrides,
            created_ms: self.clock.now_ms(),
            phase: Default::default(),
        };
        let metadata = self.metadata.clone();
        let (written, placed) = (record.clone(), states.clone());
        topic_changes::run(&self.topic_changes, &req.name, async move {
            metadata.create_topic(&written, &placed).await
        })
        .await?;
        tracing::info!(topic = %req.name, partitions = req.partitions, replication_factor = rf, "topic created");
        self.sync().await?;
        let topic = TopicState {
            record,
            partitions: states,
            revisions: Vec::new(),
        };
        Ok(self.describe(&topic, |_| None))
    }

    /// The controller's id; while none is elected (a cluster starting, a failover) it waits for
    /// one up to a session, so a topic created right after the brokers start is not refused.
    async fn elected_controller(&self) -> Result<Option<i32>> {
        let deadline = tokio::time::Instant::now() + self.config.session_ttl;
        loop {
            let controller = self.metadata.controller().await?;
            if controller.is_some() || tokio::time::Instant::now() >= deadline {
                return Ok(controller);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// A client of the controller's Admin service, for a request this broker must forward
    /// (never one that was forwarded here already).
    pub(crate) async fn controller_admin(&self, forwarded: bool) -> Result<AdminClient<Channel>> {
        let controller = self.elected_controller().await?;
        let address = match controller {
            Some(id) if !forwarded => self
                .metadata
                .brokers()
                .await?
                .into_iter()
                .find(|b| b.id == id)
                .map(|b| b.address),
            _ => None,
        };
        let Some(address) = address else {
            return Err(BrokerError::NotController(
                "no controller is available to change the topic; retry in a few seconds"
                    .to_string(),
            ));
        };
        self.peers.controller_admin(&address)
    }

    /// Validates overrides against what this cluster can do.
    fn check_config(&self, overrides: &BTreeMap<String, String>) -> Result<()> {
        let config = topic_config::resolve(self.replicas.defaults(), overrides)?;
        if config.remote_storage && self.tier.is_none() {
            return Err(BrokerError::InvalidConfig(
                "remote.storage.enable=true needs brokers started with an object store (--object-store)"
                    .to_string(),
            ));
        }
        Ok(())
    }

    pub async fn delete_topic(&self, name: &str, forwarded: bool) -> Result<()> {
        if !self.is_controller.load(Ordering::SeqCst) {
            let request = pb::DeleteTopicRequest {
                name: name.to_string(),
            };
            self.controller_admin(forwarded)
                .await?
                .delete_topic(forwarded_request(request))
                .await
                .map_err(forwarding_failed)?;
            return self.sync().await;
        }
        let metadata = self.metadata.clone();
        let topic_name = name.to_string();
        // The record's removal also records the tombstone of the topic's remote data.
        let remote_at = self.tier.is_some().then(|| self.clock.now_ms());
        topic_changes::run(&self.topic_changes, name, async move {
            for _ in 0..CAS_ATTEMPTS {
                let topic = ready_topic(&metadata, &topic_name).await?;
                if metadata.delete_topic(&topic, remote_at).await? {
                    return Ok(topic.value);
                }
            }
            Err(kept_changing(&topic_name, "being deleted"))
        })
        .await?;
        tracing::info!(topic = %name, "topic deleted");
        self.sync().await
    }

    pub fn list_topics(&self) -> pb::ListTopicsResponse {
        pb::ListTopicsResponse {
            topics: self
                .replicas
                .snapshot()
                .topics
                .values()
                .map(|t| pb::TopicSummary {
                    name: t.record.name.clone(),
                    topic_id: t.record.topic_id.clone(),
                    partitions: t.record.partitions,
                    replication_factor: t.record.replication_factor,
                })
                .collect(),
        }
    }

    /// The topic with every partition's offsets, asked of each partition's leader.
    pub async fn describe_topic(&self, name: &str) -> Result<pb::TopicDescription> {
        let snapshot = self.replicas.snapshot();
        let topic = snapshot.topic(name)?;
        let status = self.gather_status(name).await?;
        Ok(self.describe(topic, |p| status.get(&p).cloned()))
    }

    /// Where each partition of a tiered topic lives, asked of each partition's leader.
    pub async fn tier_status(&self, name: &str) -> Result<pb::TierStatusResponse> {
        let snapshot = self.replicas.snapshot();
        let topic = snapshot.topic(name)?;
        let config = topic_config::resolve(self.replicas.defaults(), &topic.record.config)?;
        let mut partitions: Vec<_> = self.gather_status(name).await?.into_values().collect();
        partitions.sort_by_key(|p| p.partition);
        Ok(pb::TierStatusResponse {
            topic: name.to_string(),
            remote_storage_enabled: config.remote_storage && self.tier.is_some(),
            partitions,
        })
    }

    /// What retention would delete under changed config, asked of each partition's leader.
    pub async fn retention_preview_all(
        &self,
        req: pb::RetentionPreviewRequest,
    ) -> Result<pb::RetentionPreviewResponse> {
        let snapshot = self.replicas.snapshot();
        let topic = snapshot.topic(&req.topic)?;
        let mut overrides = topic.record.config.clone();
        overrides.extend(req.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.check_config(&overrides)?;
        let mut by_leader: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
        for (i, p) in topic.partitions.iter().enumerate() {
            by_leader.entry(p.leader).or_default().push(i as u32);
        }
        let mut partitions = Vec::new();
        for (leader, ids) in by_leader {
            let ask = pb::RetentionPreviewRequest {
                partitions: ids,
                ..req.clone()
            };
            if leader == self.config.broker_id {
                partitions.extend(self.retention_preview(&ask).await?.partitions);
            } else if let Some(address) = snapshot.address(leader) {
                match self.peers.replica(address)?.retention_preview(ask).await {
                    Ok(r) => partitions.extend(r.into_inner().partitions),
                    Err(e) => {
                        tracing::warn!(leader, error = %e.message(), "leader did not answer the retention preview")
                    }
                }
            }
        }
        partitions.sort_by_key(|p| p.partition);
        Ok(pb::RetentionPreviewResponse { partitions })
    }

    /// Every partition's status, from its leader (here or on another broker).
    pub(crate) async fn gather_status(
        &self,
        name: &str,
    ) -> Result<HashMap<u32, pb::PartitionStatus>> {
        let snapshot = self.replicas.snapshot();
        let topic = snapshot.topic(name)?;
        let mut by_leader: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
        for (i, p) in topic.partitions.iter().enumerate() {
            by_leader.entry(p.leader).or_default().push(i as u32);
        }
        let mut status: HashMap<u32, pb::PartitionStatus> = HashMap::new();
        for (leader, partitions) in by_leader {
            if leader == self.config.broker_id {
                status.extend(
                    self.partition_status(name, &partitions)
                        .into_iter()
                        .map(|s| (s.partition, s)),
                );
            } else if let Some(address) = snapshot.address(leader) {
                let req = pb::PartitionStatusRequest {
                    topic: name.to_string(),
                    partitions,
                };
                match self.peers.replica(address)?.partition_status(req).await {
                    Ok(r) => status.extend(
                        r.into_inner()
                            .partitions
                            .into_iter()
                            .map(|s| (s.partition, s)),
                    ),
                    Err(e) => {
                        tracing::warn!(leader, error = %e.message(), "leader did not answer partition status")
                    }
                }
            }
        }
        Ok(status)
    }

    /// Offsets of the partitions of `topic` this broker leads.
    pub fn partition_status(&self, topic: &str, partitions: &[u32]) -> Vec<pb::PartitionStatus> {
        partitions
            .iter()
            .filter_map(|p| self.replicas.leader(topic, *p).ok())
            .filter_map(|p| {
                let s = p.stats().ok()?;
                let local_start = p.local_log_start_offset().ok()?;
                let segments = p.with_log(|log| Ok(log.segments().len() as u32)).ok()?;
                let remote = p
                    .remote_summary()
                    .filter(|r| r.segments > 0 && p.remote_log().is_some());
                let lag = match (p.remote_log(), remote) {
                    (None, _) => 0,
                    (Some(_), Some(r)) => p.local_bytes_above(r.end).ok()?,
                    (Some(_), None) => s.size_bytes,
                };
                // The oldest record waiting for upload is at most as old as the last uploaded
                // one (or, with nothing uploaded, the first local segment's records).
                let since = remote.map(|r| r.last_timestamp).or_else(|| {
                    p.with_log(|log| Ok(log.segments().first().map_or(-1, |s| s.max_timestamp)))
                        .ok()
                });
                let lag_seconds = match since {
                    Some(ts) if lag > 0 && ts >= 0 => {
                        (self.clock.now_ms().saturating_sub(ts).max(0) / 1000) as u64
                    }
                    _ => 0,
                };
                Some(pb::PartitionStatus {
                    partition: p.index,
                    log_start_offset: s.log_start_offset,
                    high_watermark: s.high_watermark,
                    log_end_offset: s.log_end_offset,
                    size_bytes: s.size_bytes,
                    local_log_start_offset: local_start,
                    remote_log_start_offset: remote.map_or(-1, |r| r.start),
                    remote_log_end_offset: remote.map_or(-1, |r| r.end),
                    local_segments: segments,
                    remote_segments: remote.map_or(0, |r| r.segments),
                    remote_bytes: remote.map_or(0, |r| r.bytes),
                    upload_lag_bytes: lag,
                    manifest_version: p.remote_summary().map_or(0, |r| r.version),
                    upload_lag_seconds: lag_seconds,
                    followers: p
                        .follower_ends()
                        .into_iter()
                        .map(|(broker, end)| pb::FollowerEnd {
                            broker,
                            log_end_offset: end,
                            bytes_behind: p.local_bytes_from(end.max(0)).unwrap_or(0),
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// A description from metadata plus whatever status is known (-1 where none is).
    fn describe(
        &self,
        topic: &TopicState,
        status: impl Fn(u32) -> Option<pb::PartitionStatus>,
    ) -> pb::TopicDescription {
        let config = topic_config::resolve(self.replicas.defaults(), &topic.record.config)
            .map(|c| topic_config::effective(&c))
            .unwrap_or_default();
        let partitions = topic
            .partitions
            .iter()
            .enumerate()
            .map(|(i, state): (usize, &PartitionState)| {
                // Unknown offsets (leader down or not answering) show as -1.
                let (start, hw, end, size) = status(i as u32).map_or((-1, -1, -1, 0), |s| {
                    (
                        s.log_start_offset,
                        s.high_watermark,
                        s.log_end_offset,
                        s.size_bytes,
                    )
                });
                pb::PartitionDescription {
                    partition: i as u32,
                    leader: state.leader,
                    replicas: state.replicas.clone(),
                    isr: state.isr.clone(),
                    log_start_offset: start,
                    high_watermark: hw,
                    log_end_offset: end,
                    size_bytes: size,
                }
            })
            .collect();
        pb::TopicDescription {
            name: topic.record.name.clone(),
            topic_id: topic.record.topic_id.clone(),
            replication_factor: topic.record.replication_factor,
            partitions,
            config: config.into_iter().collect(),
            overrides: topic.record.config.keys().cloned().collect(),
        }
    }

    /// Raises the partition count of a topic to `req.total`. Existing partitions keep their
    /// replicas; new ones are placed over the live brokers like a new topic's.
    pub async fn create_partitions(
        &self,
        req: pb::CreatePartitionsRequest,
        forwarded: bool,
    ) -> Result<pb::TopicDescription> {
        if !self.is_controller.load(Ordering::SeqCst) {
            let name = req.name.clone();
            self.controller_admin(forwarded)
                .await?
                .create_partitions(forwarded_request(req))
                .await
                .map_err(forwarding_failed)?;
            self.sync().await?;
            return self.describe_topic(&name).await;
        }
        let max = self.config.max_partitions_per_topic;
        let metadata = self.metadata.clone();
        let name = req.name.clone();
        let snapshot = self.replicas.snapshot();
        let (old, total) = topic_changes::run(&self.topic_changes, &name, async move {
            for _ in 0..CAS_ATTEMPTS {
                let current = ready_topic(&metadata, &req.name).await?;
                let old = current.value.partitions;
                if req.total <= old || req.total > max {
                    return Err(BrokerError::InvalidPartitions(format!(
                        "topic {:?} has {old} partitions; the new count must be more than that \
                         and at most {max} (partitions can be added, never removed); {} was \
                         asked for",
                        req.name, req.total
                    )));
                }
                let brokers = metadata.brokers().await?;
                let rf = current.value.replication_factor;
                let start = old as usize % brokers.len().max(1);
                let placed = placement::place(&brokers, req.total, rf, start).ok_or_else(|| {
                    BrokerError::InvalidReplicationFactor(format!(
                        "the topic's replication factor {rf} is larger than the number of live \
                         brokers ({})",
                        brokers.len()
                    ))
                })?;
                let added = &placed[old as usize..];
                crate::capacity::check(&brokers, &snapshot, added)?;
                if metadata.add_partitions(&current, added).await? {
                    return Ok((old, req.total));
                }
            }
            Err(kept_changing(&req.name, "getting partitions"))
        })
        .await?;
        tracing::info!(topic = %name, from = old, to = total, "partitions added");
        self.sync().await?;
        self.describe_topic(&name).await
    }

    pub async fn alter_topic_config(
        &self,
        mut req: pb::AlterTopicConfigRequest,
    ) -> Result<pb::TopicDescription> {
        if let Some(key) = req.delete.iter().find(|k| req.set.contains_key(*k)) {
            return Err(BrokerError::InvalidConfig(format!(
                "config key {key:?} is both set and deleted in one request"
            )));
        }
        // Not a stored key: it says what turning the remote tier off does (KIP-950).
        let delete_on_disable = match req.set.remove(DELETE_ON_DISABLE) {
            None => false,
            Some(v) => match v.trim() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(BrokerError::InvalidConfig(format!(
                        "{DELETE_ON_DISABLE}={v:?} is not valid: expected true or false"
                    )))
                }
            },
        };
        for _ in 0..CAS_ATTEMPTS {
            let current = ready_topic(&self.metadata, &req.name).await?;
            let mut record = current.value.clone();
            for key in &req.delete {
                if !topic_config::KEYS.iter().any(|(k, _)| k == key) {
                    return Err(BrokerError::InvalidConfig(format!(
                        "unknown topic config key {key:?}"
                    )));
                }
                record.config.remove(key);
            }
            topic_config::check_floors(self.replicas.defaults(), &req.set)?;
            for (k, v) in &req.set {
                record.config.insert(k.clone(), v.clone());
            }
            self.check_config(&record.config)?;
            let also = self
                .remote_storage_change(&current.value, &record, delete_on_disable)
                .await?;
            let deleting = !also.is_empty();
            if self
                .metadata
                .update_topic(&record, current.revision, also)
                .await?
            {
                if deleting {
                    tracing::info!(topic = %req.name, "remote storage turned off; deleting the topic's remote data");
                }
                tracing::info!(topic = %req.name, "topic config changed");
                self.sync().await?;
                return self.describe_topic(&req.name).await;
            }
        }
        Err(kept_changing(&req.name, "getting its config altered"))
    }

    /// KIP-950's rules for `remote.storage.enable` between the topic's record as read and as
    /// it would be written: turning it off is refused unless `remote.log.delete.on.disable=true`
    /// comes with it, and then returns the tombstone that has the remote data deleted;
    /// turning it on is refused while an earlier deletion is still under way.
    async fn remote_storage_change(
        &self,
        before: &TopicRecord,
        after: &TopicRecord,
        delete_on_disable: bool,
    ) -> Result<Vec<strata_coordinator::Write>> {
        let defaults = self.replicas.defaults();
        let was = topic_config::resolve(defaults, &before.config)?.remote_storage;
        let will = topic_config::resolve(defaults, &after.config)?.remote_storage;
        let name = &before.name;
        match (was, will) {
            (true, false) if !delete_on_disable => Err(BrokerError::InvalidConfig(format!(
                "turning remote.storage.enable off for topic {name:?} would leave its remote \
                 history unreadable; set {DELETE_ON_DISABLE}=true in the same change to delete \
                 the topic's remote data (offsets below the local log start are then gone)"
            ))),
            (true, false) => Ok(vec![crate::tier::deletions::RemoteDeletion {
                topic: name.clone(),
                topic_id: before.topic_id.clone(),
                partitions: before.partitions,
                reason: crate::tier::deletions::Reason::Disabled,
                created_ms: self.clock.now_ms(),
            }
            .write()?]),
            (_, true) if delete_on_disable => Err(BrokerError::InvalidConfig(format!(
                "{DELETE_ON_DISABLE}=true goes only with remote.storage.enable=false in the \
                 same change; topic {name:?} keeps its remote storage on"
            ))),
            (false, true)
                if self
                    .metadata
                    .remote_deletion_pending(&before.topic_id)
                    .await? =>
            {
                Err(BrokerError::InvalidConfig(format!(
                    "the remote data of topic {name:?} is still being deleted (remote storage \
                     was turned off); turn it on again once the deletion is done, in a few \
                     seconds"
                )))
            }
            _ => Ok(Vec::new()),
        }
    }

    pub async fn cluster_info(&self) -> Result<pb::ClusterInfoResponse> {
        let alive: Vec<i32> = self
            .metadata
            .brokers()
            .await?
            .iter()
            .map(|b| b.id)
            .collect();
        let controller = self.metadata.controller().await?.unwrap_or(-1);
        let brokers = self
            .metadata
            .known_brokers()
            .await?
            .into_iter()
            .map(|b| pb::BrokerInfo {
                id: b.id,
                alive: alive.contains(&b.id),
                address: b.address,
                rack: b.rack.unwrap_or_default(),
            })
            .collect();
        let snapshot = self.metadata.snapshot().await?;
        Ok(pb::ClusterInfoResponse {
            cluster: self.metadata.cluster().to_string(),
            controller,
            brokers,
            partitions: snapshot.partition_count(),
            offline_partitions: snapshot.offline_partitions(),
            under_replicated_partitions: snapshot.under_replicated_partitions(),
        })
    }
}

/// The topic's record, if it is part of the cluster with no change of its structure under way.
pub(crate) async fn ready_topic(
    metadata: &MetadataStore,
    name: &str,
) -> Result<Revisioned<TopicRecord>> {
    let topic = metadata
        .topic(name)
        .await?
        .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
    match topic.value.phase {
        TopicPhase::Ready => Ok(topic),
        // Not part of the cluster, as clients see it.
        TopicPhase::Creating | TopicPhase::Deleting => {
            Err(BrokerError::UnknownTopic(name.to_string()))
        }
        TopicPhase::Growing { to } => Err(BrokerError::TopicChanging(format!(
            "partitions are being added to topic {name:?} (to {to}, or an interrupted addition \
             is being undone); retry once that has finished"
        ))),
    }
}

pub(crate) fn kept_changing(name: &str, what: &str) -> BrokerError {
    BrokerError::Internal(format!(
        "topic {name:?} kept changing while it was {what}; try again"
    ))
}

/// The controller's answer to a forwarded request as it is; a call that never reached it (no
/// Strata error code: a connection refused by a controller that just died) as NOT_CONTROLLER
/// with a sentence, so the client retries once the next controller is elected.
pub(crate) fn forwarding_failed(status: tonic::Status) -> BrokerError {
    let answered = status
        .metadata()
        .get(strata_proto::errors::ERROR_CODE_KEY)
        .is_some();
    if answered || status.code() != tonic::Code::Unavailable {
        return BrokerError::Forwarded(status);
    }
    BrokerError::NotController(format!(
        "the controller could not be reached ({}); a new one is elected within a session \
         timeout: retry in a few seconds",
        status.message()
    ))
}

/// `request` marked as forwarded by a broker to the controller (never forwarded again).
pub(crate) fn forwarded_request<T>(request: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert(
        FORWARDED_KEY,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}
