//! Topic administration: thin wrappers over the `Admin` service.
//!
//! Each call goes to the first bootstrap (then known) broker that can be reached; the broker
//! forwards to the controller. Broker errors come back as [`Error::Broker`] with the broker's
//! own sentence. Nothing here retries a call that reached a broker: the caller decides.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::connection::Channel;
use strata_proto::admin_client::AdminClient;
use strata_proto::{
    AlterTopicConfigRequest, ClusterInfoRequest, ClusterInfoResponse, CreateTopicRequest,
    DeleteTopicRequest, DescribeTopicRequest, ListTopicsRequest, MetadataResponse,
    TopicDescription, TopicSummary,
};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::metadata::Cluster;

/// A handle for administrative calls.
#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) cluster: Arc<Cluster>,
}

impl Admin {
    /// Connects to the cluster (loading its metadata, which proves a broker answers).
    pub async fn connect(config: ClientConfig) -> Result<Admin> {
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: HashMap<String, String>,
    ) -> Result<TopicDescription> {
        let request = CreateTopicRequest {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs,
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.create_topic(r).await }
        })
        .await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let request = DeleteTopicRequest {
            name: name.to_string(),
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.delete_topic(r).await }
        })
        .await?;
        Ok(())
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        let response = self
            .call(|mut c| async move { c.list_topics(ListTopicsRequest {}).await })
            .await?;
        Ok(response.topics)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let request = DescribeTopicRequest {
            name: name.to_string(),
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.describe_topic(r).await }
        })
        .await
    }

    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: HashMap<String, String>,
        delete: Vec<String>,
    ) -> Result<TopicDescription> {
        let request = AlterTopicConfigRequest {
            name: name.to_string(),
            set,
            delete,
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.alter_topic_config(r).await }
        })
        .await
    }

    /// Raises a topic's partition count to `total`.
    pub async fn create_partitions(&self, name: &str, total: u32) -> Result<TopicDescription> {
        let request = strata_proto::CreatePartitionsRequest {
            name: name.to_string(),
            total,
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.create_partitions(r).await }
        })
        .await
    }

    /// What retention would delete from each tier if `set` were applied (changes nothing).
    pub async fn retention_preview(
        &self,
        topic: &str,
        set: HashMap<String, String>,
    ) -> Result<strata_proto::RetentionPreviewResponse> {
        let request = strata_proto::RetentionPreviewRequest {
            topic: topic.to_string(),
            set,
            partitions: vec![],
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.retention_preview(r).await }
        })
        .await
    }

    /// How a topic's partitions split between local disk and the object store.
    pub async fn tier_status(&self, topic: &str) -> Result<strata_proto::TierStatusResponse> {
        let request = strata_proto::TierStatusRequest {
            topic: topic.to_string(),
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.tier_status(r).await }
        })
        .await
    }

    /// Moves partitions to new replica lists (`(topic, partition, replicas)`, the first replica
    /// the preferred leader), throttling catch-up to `throttle_bytes_per_sec` per leader broker
    /// (0: none). The controller checks the whole request before it moves anything.
    pub async fn reassign_partitions(
        &self,
        moves: &[(String, u32, Vec<i32>)],
        throttle_bytes_per_sec: u64,
    ) -> Result<strata_proto::AlterPartitionReassignmentsResponse> {
        self.alter_reassignments(moves, throttle_bytes_per_sec, false)
            .await
    }

    /// Cancels the moves of these partitions: they go back to their original replicas.
    pub async fn cancel_reassignments(
        &self,
        partitions: &[(String, u32)],
    ) -> Result<strata_proto::AlterPartitionReassignmentsResponse> {
        let moves: Vec<(String, u32, Vec<i32>)> = partitions
            .iter()
            .map(|(t, p)| (t.clone(), *p, Vec::new()))
            .collect();
        self.alter_reassignments(&moves, 0, true).await
    }

    async fn alter_reassignments(
        &self,
        moves: &[(String, u32, Vec<i32>)],
        throttle_bytes_per_sec: u64,
        cancel: bool,
    ) -> Result<strata_proto::AlterPartitionReassignmentsResponse> {
        let request = strata_proto::AlterPartitionReassignmentsRequest {
            partitions: moves
                .iter()
                .map(
                    |(topic, partition, replicas)| strata_proto::ReassignmentTarget {
                        topic: topic.clone(),
                        partition: *partition,
                        replicas: replicas.clone(),
                    },
                )
                .collect(),
            throttle_bytes_per_sec,
            cancel,
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.alter_partition_reassignments(r).await }
        })
        .await
    }

    /// Partitions being reassigned (of `topics`, or all when empty), with each added replica's
    /// catch-up.
    pub async fn list_reassignments(
        &self,
        topics: Vec<String>,
    ) -> Result<strata_proto::ListPartitionReassignmentsResponse> {
        let request = strata_proto::ListPartitionReassignmentsRequest { topics };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.list_partition_reassignments(r).await }
        })
        .await
    }

    /// Plans (and unless `dry_run`, starts) moving every replica off `broker`.
    pub async fn drain_broker(
        &self,
        broker: i32,
        dry_run: bool,
        throttle_bytes_per_sec: u64,
    ) -> Result<strata_proto::ReassignmentPlan> {
        let request = strata_proto::DrainBrokerRequest {
            broker,
            dry_run,
            throttle_bytes_per_sec,
        };
        self.call(|mut c| async move { c.drain_broker(request).await })
            .await
    }

    /// Plans (and unless `dry_run`, starts) evening out replicas and leaders across brokers.
    pub async fn balance_cluster(
        &self,
        dry_run: bool,
        throttle_bytes_per_sec: u64,
    ) -> Result<strata_proto::ReassignmentPlan> {
        let request = strata_proto::BalanceClusterRequest {
            dry_run,
            throttle_bytes_per_sec,
        };
        self.call(|mut c| async move { c.balance_cluster(request).await })
            .await
    }

    /// The controller, every broker (alive or not) and partition health.
    pub async fn cluster_info(&self) -> Result<ClusterInfoResponse> {
        self.call(|mut c| async move { c.cluster_info(ClusterInfoRequest {}).await })
            .await
    }

    /// Brokers, topics (all of them when `topics` is empty) and partition leaders.
    pub async fn metadata(&self, topics: Vec<String>) -> Result<MetadataResponse> {
        self.cluster.fetch_metadata(topics).await
    }

    /// Runs `call` on the Admin service of the first reachable broker.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_on(
            |channel| {
                AdminClient::new(channel)
                    .max_decoding_message_size(crate::connection::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(crate::connection::MAX_MESSAGE_BYTES)
            },
            call,
        )
        .await
    }

    /// Runs `call` on the service `client` makes of the channel to the first reachable broker.
    pub(crate) async fn call_on<C, T, F, Fut>(
        &self,
        client: impl Fn(Channel) -> C,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut(C) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = None;
        for address in self.cluster.any_broker_addresses() {
            let client = match self.cluster.conns().channel(&address).await.map(&client) {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            return call(client)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| self.cluster.conns().error(s, &address));
        }
        Err(last.unwrap_or_else(|| Error::InvalidInput("no broker address given".to_string())))
    }
}
