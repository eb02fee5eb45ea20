//! The gRPC services: thin translations between `strata.v1` messages and [`BrokerState`].
//! Every error leaves through `From<BrokerError> for Status` (error.rs). Produce, fetch,
//! replica fetch, list offsets and metadata are counted and timed (`metrics.rs`); their bytes
//! are the lengths of the batch buffers they carry.
//!
//! Every client call is authorized first (`Security::authorize`, a no-op without
//! `--authorizer acl`) by the per-API table in docs/security.md; the Replica service is kept
//! to brokers by the authentication layer.

use std::sync::Arc;
use std::time::Duration;
use strata_proto as pb;
use strata_proto::v1::{admin_server::Admin, log_server::Log, replica_server::Replica};
use tonic::{Request, Response, Status};

use crate::error::BrokerError;
use crate::metrics;
use crate::security::{audit, Operation, Principal, ResourceType};
use crate::state::BrokerState;

/// The principal the authentication layer found for `request`, copied (for calls that keep it
/// past `into_inner`).
pub(crate) fn principal<T>(request: &Request<T>) -> Principal {
    crate::security::service::principal_of(request).clone()
}

#[path = "log_many.rs"]
mod many;

/// How long acks=all may wait for the ISR when the request does not say.
const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_PRODUCE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct LogService {
    pub state: Arc<BrokerState>,
}

#[derive(Debug, Clone)]
pub struct AdminService {
    pub state: Arc<BrokerState>,
}

/// Calls between brokers.
#[derive(Debug, Clone)]
pub struct ReplicaService {
    pub state: Arc<BrokerState>,
}

#[tonic::async_trait]
impl Log for LogService {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let timer = metrics::PRODUCE.begin(request.get_ref().records.len());
        self.state.security.authorize_request(
            &request,
            Operation::Write,
            ResourceType::Topic,
            &request.get_ref().topic,
        )?;
        let req = request.into_inner();
        let answer = self.produce_batches(req).await;
        timer.finish(answer.map(Response::new), |_| 0)
    }

    async fn produce_many(
        &self,
        request: Request<pb::ProduceManyRequest>,
    ) -> Result<Response<pb::ProduceManyResponse>, Status> {
        let bytes = request
            .get_ref()
            .partitions
            .iter()
            .map(|p| p.records.len())
            .sum();
        let timer = metrics::PRODUCE.begin(bytes);
        let who = principal(&request);
        let req = request.into_inner();
        let answer = self.produce_many_partitions(&who, req).await;
        timer.finish(answer.map(Response::new), |_| 0)
    }

    async fn fetch_many(
        &self,
        request: Request<pb::FetchManyRequest>,
    ) -> Result<Response<pb::FetchManyResponse>, Status> {
        let timer = metrics::FETCH.begin(0);
        let who = principal(&request);
        let answer = self.fetch_many_partitions(&who, request.into_inner()).await;
        timer.finish(answer.map(Response::new), |r| {
            r.get_ref().partitions.iter().map(|p| p.records.len()).sum()
        })
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let timer = metrics::FETCH.begin(0);
        self.state.security.authorize_request(
            &request,
            Operation::Read,
            ResourceType::Topic,
            &request.get_ref().topic,
        )?;
        let answer = self.fetch_batches(request.into_inner()).await;
        timer.finish(answer.map(Response::new), |r| r.get_ref().records.len())
    }

    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let timer = metrics::LIST_OFFSETS.begin(0);
        self.state.security.authorize_request(
            &request,
            Operation::Describe,
            ResourceType::Topic,
            &request.get_ref().topic,
        )?;
        let answer = self.find_offset(request.into_inner()).await;
        timer.finish(answer.map(Response::new), |_| 0)
    }

    async fn metadata(
        &self,
        request: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let timer = metrics::METADATA.begin(0);
        let who = principal(&request);
        let answer = self.describe_cluster(&who, request.into_inner());
        timer.finish(answer.map(Response::new), |_| 0)
    }

    async fn init_producer_id(
        &self,
        request: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        // KIP-679: an idempotent producer needs WRITE on some topic.
        self.state.security.authorize_some(
            crate::security::service::principal_of(&request),
            Operation::Write,
            ResourceType::Topic,
        )?;
        let producer_id = self.state.next_producer_id().await?;
        Ok(Response::new(pb::InitProducerIdResponse {
            producer_id,
            producer_epoch: 0,
        }))
    }
}

impl LogService {
    async fn produce_batches(
        &self,
        req: pb::ProduceRequest,
    ) -> Result<pb::ProduceResponse, Status> {
        let acks = pb::Acks::try_from(req.acks).map_err(|_| {
            BrokerError::InvalidRequest(format!("acks value {} is not one of 0, 1, all", req.acks))
        })?;
        let partition = self.state.replicas.leader(&req.topic, req.partition)?;
        let min_isr = match acks {
            pb::Acks::All | pb::Acks::Unspecified => Some(partition.min_insync_replicas()),
            pb::Acks::None | pb::Acks::Leader => None,
        };
        let timeout = match req.timeout_ms {
            0 => DEFAULT_PRODUCE_TIMEOUT,
            ms => Duration::from_millis(ms as u64).min(MAX_PRODUCE_TIMEOUT),
        };
        let info = partition.append(req.records, min_isr, timeout).await?;
        Ok(pb::ProduceResponse {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_start_offset: partition.log_start_offset()?,
        })
    }

    async fn fetch_batches(&self, req: pb::FetchRequest) -> Result<pb::FetchResponse, Status> {
        let partition = self.state.replicas.leader(&req.topic, req.partition)?;
        let cfg = &self.state.config;
        let max_wait = Duration::from_millis(req.max_wait_ms as u64).min(cfg.max_fetch_wait);
        let max_bytes = match req.max_bytes {
            0 => cfg.max_fetch_bytes,
            n => (n as usize).min(cfg.max_fetch_bytes),
        };
        // More than max_bytes can never be answered: waiting for it would hold the call for
        // its whole max_wait and re-read on every new batch.
        let min_bytes = (req.min_bytes as usize).min(max_bytes);
        let result = partition
            .fetch(req.offset, max_wait, min_bytes, max_bytes)
            .await?;
        Ok(pb::FetchResponse {
            high_watermark: result.high_watermark,
            log_start_offset: result.log_start_offset,
            log_end_offset: result.log_end_offset,
            records: result.records,
        })
    }

    async fn find_offset(
        &self,
        req: pb::ListOffsetsRequest,
    ) -> Result<pb::ListOffsetsResponse, Status> {
        use pb::list_offsets_request::Spec;
        let partition = self.state.replicas.leader(&req.topic, req.partition)?;
        let (offset, timestamp_ms) = match req.spec {
            Some(Spec::Earliest(_)) => (partition.log_start_offset()?, -1),
            Some(Spec::Latest(_)) => (partition.high_watermark(), -1),
            Some(Spec::TimestampMs(ts)) => partition
                .offset_for_timestamp(ts)
                .await?
                .unwrap_or((partition.high_watermark(), -1)),
            None => {
                return Err(BrokerError::InvalidRequest(
                    "list offsets needs one of earliest, latest or timestamp_ms".to_string(),
                )
                .into())
            }
        };
        Ok(pb::ListOffsetsResponse {
            offset,
            timestamp_ms,
        })
    }

    /// Every topic the caller may describe, or the ones it names (each must be describable).
    fn describe_cluster(
        &self,
        who: &Principal,
        req: pb::MetadataRequest,
    ) -> Result<pb::MetadataResponse, Status> {
        let security = &self.state.security;
        let snapshot = self.state.replicas.snapshot();
        let topics = if req.topics.is_empty() {
            snapshot
                .topics
                .values()
                .filter(|t| {
                    security.allowed(
                        who,
                        Operation::Describe,
                        ResourceType::Topic,
                        &t.record.name,
                    )
                })
                .collect()
        } else {
            req.topics
                .iter()
                .map(|t| {
                    security.authorize(who, Operation::Describe, ResourceType::Topic, t)?;
                    snapshot.topic(t)
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let topics = topics
            .into_iter()
            .map(|t| pb::TopicMetadata {
                name: t.record.name.clone(),
                topic_id: t.record.topic_id.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, s)| pb::PartitionInfo {
                        partition: i as u32,
                        leader: s.leader,
                        replicas: s.replicas.clone(),
                        isr: s.isr.clone(),
                        leader_epoch: s.leader_epoch,
                    })
                    .collect(),
            })
            .collect();
        let brokers = snapshot
            .alive
            .values()
            .map(|b| pb::BrokerInfo {
                id: b.id,
                address: b.address.clone(),
                rack: b.rack.clone().unwrap_or_default(),
                alive: true,
            })
            .collect();
        Ok(pb::MetadataResponse {
            cluster: self.state.metadata.cluster().to_string(),
            controller: snapshot.controller,
            brokers,
            topics,
        })
    }
}

const CLUSTER: &str = crate::security::acl::CLUSTER_NAME;

impl AdminService {
    /// Whether another broker forwarded `request` here. The header counts only from a broker
    /// (from anyone when authentication is off, where brokers are anonymous too), so a client
    /// cannot pass its change off as forwarded and skip its audit event.
    fn forwarded<T>(&self, request: &Request<T>) -> bool {
        request.metadata().contains_key(crate::admin::FORWARDED_KEY)
            && (crate::security::service::principal_of(request).is_broker()
                || !self.state.security.config.auth.any())
    }

    fn authorize_topic<T>(
        &self,
        request: &Request<T>,
        operation: Operation,
        topic: &str,
    ) -> Result<(), BrokerError> {
        self.state
            .security
            .authorize_request(request, operation, ResourceType::Topic, topic)
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::TopicDescription>, Status> {
        let forwarded = self.forwarded(&request);
        let who = principal(&request);
        let security = &self.state.security;
        if !security.allowed(&who, Operation::Create, ResourceType::Cluster, CLUSTER) {
            security.authorize(
                &who,
                Operation::Create,
                ResourceType::Topic,
                &request.get_ref().name,
            )?;
        }
        let req = request.into_inner();
        let (name, detail) = (
            req.name.clone(),
            format!(
                "partitions={} replication_factor={} configs={:?}",
                req.partitions, req.replication_factor, req.configs
            ),
        );
        let created = self.state.create_topic(req, forwarded).await?;
        if !forwarded {
            audit::changed(&who, "topic created", &format!("topic {name}"), &detail);
        }
        Ok(Response::new(created))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let forwarded = self.forwarded(&request);
        self.authorize_topic(&request, Operation::Delete, &request.get_ref().name)?;
        let who = principal(&request);
        let name = request.into_inner().name;
        self.state.delete_topic(&name, forwarded).await?;
        if !forwarded {
            audit::changed(&who, "topic deleted", &format!("topic {name}"), "");
        }
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let who = principal(&request);
        let mut answer = self.state.list_topics();
        answer.topics.retain(|t| {
            self.state
                .security
                .allowed(&who, Operation::Describe, ResourceType::Topic, &t.name)
        });
        Ok(Response::new(answer))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::TopicDescription>, Status> {
        self.authorize_topic(&request, Operation::Describe, &request.get_ref().name)?;
        Ok(Response::new(
            self.state
                .describe_topic(&request.into_inner().name)
                .await?,
        ))
    }

    async fn alter_topic_config(
        &self,
        request: Request<pb::AlterTopicConfigRequest>,
    ) -> Result<Response<pb::TopicDescription>, Status> {
        self.authorize_topic(&request, Operation::AlterConfigs, &request.get_ref().name)?;
        let who = principal(&request);
        let req = request.into_inner();
        let (name, detail) = (
            req.name.clone(),
            format!("set={:?} delete={:?}", req.set, req.delete),
        );
        let altered = self.state.alter_topic_config(req).await?;
        audit::changed(
            &who,
            "topic config altered",
            &format!("topic {name}"),
            &detail,
        );
        Ok(Response::new(altered))
    }

    async fn create_partitions(
        &self,
        request: Request<pb::CreatePartitionsRequest>,
    ) -> Result<Response<pb::TopicDescription>, Status> {
        let forwarded = self.forwarded(&request);
        self.authorize_topic(&request, Operation::Alter, &request.get_ref().name)?;
        let who = principal(&request);
        let req = request.into_inner();
        let (name, detail) = (req.name.clone(), format!("total={}", req.total));
        let grown = self.state.create_partitions(req, forwarded).await?;
        if !forwarded {
            audit::changed(&who, "partitions added", &format!("topic {name}"), &detail);
        }
        Ok(Response::new(grown))
    }

    async fn tier_status(
        &self,
        request: Request<pb::TierStatusRequest>,
    ) -> Result<Response<pb::TierStatusResponse>, Status> {
        self.authorize_topic(&request, Operation::Describe, &request.get_ref().topic)?;
        Ok(Response::new(
            self.state.tier_status(&request.into_inner().topic).await?,
        ))
    }

    async fn retention_preview(
        &self,
        request: Request<pb::RetentionPreviewRequest>,
    ) -> Result<Response<pb::RetentionPreviewResponse>, Status> {
        self.authorize_topic(
            &request,
            Operation::DescribeConfigs,
            &request.get_ref().topic,
        )?;
        Ok(Response::new(
            self.state
                .retention_preview_all(request.into_inner())
                .await?,
        ))
    }

    async fn cluster_info(
        &self,
        request: Request<pb::ClusterInfoRequest>,
    ) -> Result<Response<pb::ClusterInfoResponse>, Status> {
        self.authorize_cluster(&request, Operation::Describe)?;
        Ok(Response::new(self.state.cluster_info().await?))
    }

    async fn alter_partition_reassignments(
        &self,
        request: Request<pb::AlterPartitionReassignmentsRequest>,
    ) -> Result<Response<pb::AlterPartitionReassignmentsResponse>, Status> {
        let forwarded = self.forwarded(&request);
        self.authorize_cluster(&request, Operation::Alter)?;
        let who = principal(&request);
        let req = request.into_inner();
        let (what, throttle) = (
            if req.cancel {
                "reassignment cancelled"
            } else {
                "reassignment started"
            },
            req.throttle_bytes_per_sec,
        );
        let answer = self
            .state
            .alter_partition_reassignments(req, forwarded)
            .await?;
        if !forwarded {
            for p in &answer.partitions {
                audit::changed(
                    &who,
                    what,
                    &format!("partition {}/{}", p.topic, p.partition),
                    &format!("replicas={:?} throttle={throttle}", p.target),
                );
            }
        }
        Ok(Response::new(answer))
    }

    async fn drain_broker(
        &self,
        request: Request<pb::DrainBrokerRequest>,
    ) -> Result<Response<pb::ReassignmentPlan>, Status> {
        let who = self.authorize_plan(&request, request.get_ref().dry_run)?;
        let broker = request.get_ref().broker;
        let plan = self.state.drain_broker(request.into_inner()).await?;
        audit_plan(&who, &plan, "broker drained", &format!("broker {broker}"));
        Ok(Response::new(plan))
    }

    async fn balance_cluster(
        &self,
        request: Request<pb::BalanceClusterRequest>,
    ) -> Result<Response<pb::ReassignmentPlan>, Status> {
        let who = self.authorize_plan(&request, request.get_ref().dry_run)?;
        let plan = self.state.balance_cluster(request.into_inner()).await?;
        audit_plan(&who, &plan, "cluster balanced", "cluster");
        Ok(Response::new(plan))
    }

    async fn list_partition_reassignments(
        &self,
        request: Request<pb::ListPartitionReassignmentsRequest>,
    ) -> Result<Response<pb::ListPartitionReassignmentsResponse>, Status> {
        self.authorize_cluster(&request, Operation::Describe)?;
        Ok(Response::new(
            self.state
                .list_partition_reassignments(request.into_inner())
                .await?,
        ))
    }
}

#[tonic::async_trait]
impl Replica for ReplicaService {
    async fn partition_status(
        &self,
        request: Request<pb::PartitionStatusRequest>,
    ) -> Result<Response<pb::PartitionStatusResponse>, Status> {
        let req = request.into_inner();
        // Each partition once, however often it was asked for: the answer is bounded by the
        // topic's partitions, not by the request.
        let partitions: Vec<u32> = req
            .partitions
            .into_iter()
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .collect();
        Ok(Response::new(pb::PartitionStatusResponse {
            partitions: self.state.partition_status(&req.topic, &partitions),
        }))
    }

    async fn replica_fetch(
        &self,
        request: Request<pb::ReplicaFetchRequest>,
    ) -> Result<Response<pb::ReplicaFetchResponse>, Status> {
        check_replica_id(&request, request.get_ref().replica_id)?;
        let timer = metrics::REPLICA_FETCH.begin(0);
        let answer = self.state.replica_fetch(request.into_inner()).await;
        timer.finish(answer.map(Response::new).map_err(Status::from), |r| {
            r.get_ref().records.len()
        })
    }

    async fn replica_fetch_session(
        &self,
        request: Request<pb::ReplicaSessionRequest>,
    ) -> Result<Response<pb::ReplicaSessionResponse>, Status> {
        check_replica_id(&request, request.get_ref().replica_id)?;
        let timer = metrics::REPLICA_FETCH.begin(0);
        let answer = self.state.replica_fetch_session(request.into_inner()).await;
        timer.finish(answer.map(Response::new).map_err(Status::from), |r| {
            r.get_ref().partitions.iter().map(|p| p.records.len()).sum()
        })
    }

    async fn epoch_end_offset(
        &self,
        request: Request<pb::EpochEndOffsetRequest>,
    ) -> Result<Response<pb::EpochEndOffsetResponse>, Status> {
        Ok(Response::new(
            self.state.epoch_end_offset(request.into_inner())?,
        ))
    }

    async fn retention_preview(
        &self,
        request: Request<pb::RetentionPreviewRequest>,
    ) -> Result<Response<pb::RetentionPreviewResponse>, Status> {
        Ok(Response::new(
            self.state.retention_preview(&request.into_inner()).await?,
        ))
    }
}

/// A replica fetch names the calling broker's own id (with broker certificates).
fn check_replica_id<T>(request: &Request<T>, replica_id: i32) -> Result<(), Status> {
    let caller = crate::security::service::caller(request);
    if let crate::security::Principal::Broker(id) = caller.principal {
        if id != replica_id {
            tracing::warn!(target: "strata::audit", principal = %caller.principal, replica_id, "refused: a replica fetch for another broker");
            return Err(
                crate::error::BrokerError::ClusterAuthorizationFailed(format!(
                    "Broker:{id} may fetch only as replica {id}, not as replica {replica_id}"
                ))
                .into(),
            );
        }
    }
    Ok(())
}

impl AdminService {
    /// Drain and balance: ALTER on the cluster, DESCRIBE for a dry run. Returns the caller.
    fn authorize_plan<T>(&self, request: &Request<T>, dry_run: bool) -> Result<Principal, Status> {
        let operation = if dry_run {
            Operation::Describe
        } else {
            Operation::Alter
        };
        self.authorize_cluster(request, operation)?;
        Ok(principal(request))
    }

    /// `operation` on the cluster resource.
    fn authorize_cluster<T>(
        &self,
        request: &Request<T>,
        operation: Operation,
    ) -> Result<(), Status> {
        self.state.security.authorize_request(
            request,
            operation,
            ResourceType::Cluster,
            CLUSTER,
        )?;
        Ok(())
    }
}

/// An audit event for a drain or balance that started moves.
fn audit_plan(who: &Principal, plan: &pb::ReassignmentPlan, action: &str, resource: &str) {
    if plan.started {
        let detail = format!("{} partitions", plan.moves.len());
        audit::changed(who, action, resource, &detail);
    }
}
