//! The `Group` gRPC service: thin translations between `strata.v1` messages and the
//! [`GroupCoordinator`](super::GroupCoordinator). Errors leave through
//! `From<BrokerError> for Status`. Every call is authorized first by the per-API table in
//! docs/security.md (Kafka's: READ on the group to be a member or commit, DESCRIBE to look).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use strata_proto as pb;
use strata_proto::v1::group_server::Group;
use tonic::{Request, Response, Status};

use super::assign::TopicPartition;
use super::coordinator::{coordinator_of, validate_group_id, GroupView};
use super::group::JoinRequest;
use super::store::OffsetRecord;
use crate::error::BrokerError;
use crate::security::service::principal_of;
use crate::security::{audit, Operation, ResourceType};
use crate::service::principal;
use crate::state::BrokerState;

#[derive(Debug, Clone)]
pub struct GroupService {
    pub state: Arc<BrokerState>,
}

fn tp(p: &pb::TopicPartition) -> TopicPartition {
    (p.topic.clone(), p.partition)
}

fn pb_tp((topic, partition): &TopicPartition) -> pb::TopicPartition {
    pb::TopicPartition {
        topic: topic.clone(),
        partition: *partition,
    }
}

fn committed_pb(((topic, partition), r): (TopicPartition, OffsetRecord)) -> pb::CommittedOffset {
    pb::CommittedOffset {
        topic,
        partition,
        offset: r.offset,
        metadata: r.metadata,
        generation: r.generation,
    }
}

fn member_view(v: GroupView) -> Vec<pb::GroupMember> {
    v.members
        .into_iter()
        .map(|m| pb::GroupMember {
            member_id: m.member_id,
            client_id: m.client_id,
            host: m.host,
            topics: m.topics,
            assignment: m.assignment.iter().map(pb_tp).collect(),
        })
        .collect()
}

impl GroupService {
    fn authorize_group<T>(
        &self,
        request: &Request<T>,
        operation: Operation,
        group: &str,
    ) -> Result<(), BrokerError> {
        self.state
            .security
            .authorize_request(request, operation, ResourceType::Group, group)
    }

    /// READ on the group and on every topic whose offsets the call sets.
    fn authorize_offsets<'a, T>(
        &self,
        request: &Request<T>,
        group: &str,
        topics: impl Iterator<Item = &'a String>,
    ) -> Result<(), BrokerError> {
        let security = &self.state.security;
        if !security.config.acl_authorizer {
            return Ok(());
        }
        let who = principal_of(request);
        security.authorize(who, Operation::Read, ResourceType::Group, group)?;
        for topic in topics.collect::<BTreeSet<_>>() {
            security.authorize(who, Operation::Read, ResourceType::Topic, topic)?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Group for GroupService {
    async fn find_coordinator(
        &self,
        request: Request<pb::FindCoordinatorRequest>,
    ) -> Result<Response<pb::FindCoordinatorResponse>, Status> {
        self.authorize_group(&request, Operation::Describe, &request.get_ref().group)?;
        let group = request.into_inner().group;
        validate_group_id(&group)?;
        let snapshot = self.state.replicas.snapshot();
        let (broker_id, address) = coordinator_of(&group, &snapshot).ok_or_else(|| {
            BrokerError::CoordinatorUnavailable(format!(
                "no live broker can coordinate group {group} right now"
            ))
        })?;
        Ok(Response::new(pb::FindCoordinatorResponse {
            broker_id,
            address,
        }))
    }

    async fn join_group(
        &self,
        request: Request<pb::JoinGroupRequest>,
    ) -> Result<Response<pb::JoinGroupResponse>, Status> {
        let host = request
            .remote_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        self.authorize_group(&request, Operation::Read, &request.get_ref().group)?;
        // The coordinator assigns the subscribed topics' partitions: a member learns them only
        // for topics it may describe.
        for topic in &request.get_ref().topics {
            self.state.security.authorize_request(
                &request,
                Operation::Describe,
                ResourceType::Topic,
                topic,
            )?;
        }
        let req = request.into_inner();
        let join = JoinRequest {
            member_id: req.member_id,
            client_id: req.client_id,
            host,
            topics: req.topics.into_iter().collect::<BTreeSet<_>>(),
            protocols: req.protocols,
            session_timeout: Duration::from_millis(req.session_timeout_ms.into()),
            rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms.into()),
            owned: req.owned.iter().map(tp).collect(),
        };
        let snapshot = self.state.replicas.snapshot();
        let joined = self.state.groups.join(&req.group, join, &snapshot).await?;
        Ok(Response::new(pb::JoinGroupResponse {
            generation: joined.generation,
            member_id: joined.member_id,
            leader_id: joined.leader,
            protocol: joined.protocol,
        }))
    }

    async fn sync_group(
        &self,
        request: Request<pb::SyncGroupRequest>,
    ) -> Result<Response<pb::SyncGroupResponse>, Status> {
        self.authorize_group(&request, Operation::Read, &request.get_ref().group)?;
        let req = request.into_inner();
        let snapshot = self.state.replicas.snapshot();
        let (assignment, pending) = self
            .state
            .groups
            .sync(&req.group, &req.member_id, req.generation, &snapshot)
            .await?;
        Ok(Response::new(pb::SyncGroupResponse {
            assignment: assignment.iter().map(pb_tp).collect(),
            pending_revocations: pending,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.authorize_group(&request, Operation::Read, &request.get_ref().group)?;
        let req = request.into_inner();
        let snapshot = self.state.replicas.snapshot();
        let rejoin = self
            .state
            .groups
            .heartbeat(&req.group, &req.member_id, req.generation, &snapshot)
            .await?;
        Ok(Response::new(pb::HeartbeatResponse { rejoin }))
    }

    async fn leave_group(
        &self,
        request: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        self.authorize_group(&request, Operation::Read, &request.get_ref().group)?;
        let req = request.into_inner();
        let snapshot = self.state.replicas.snapshot();
        self.state
            .groups
            .leave(&req.group, &req.member_id, &snapshot)
            .await?;
        Ok(Response::new(pb::LeaveGroupResponse {}))
    }

    async fn commit_offsets(
        &self,
        request: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        let r = request.get_ref();
        self.authorize_offsets(&request, &r.group, r.offsets.iter().map(|o| &o.topic))?;
        let req = request.into_inner();
        let snapshot = self.state.replicas.snapshot();
        let offsets = req
            .offsets
            .into_iter()
            .map(|o| ((o.topic, o.partition), o.offset, o.metadata))
            .collect();
        self.state
            .groups
            .commit(
                &req.group,
                &req.member_id,
                req.generation,
                offsets,
                self.state.clock.now_ms(),
                &snapshot,
            )
            .await?;
        Ok(Response::new(pb::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        request: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        self.authorize_group(&request, Operation::Describe, &request.get_ref().group)?;
        let who = principal(&request);
        let req = request.into_inner();
        let committed = self.state.groups.fetch_offsets(&req.group).await?;
        let offsets: Vec<pb::CommittedOffset> = if req.partitions.is_empty() {
            committed.into_iter().map(committed_pb).collect()
        } else {
            req.partitions
                .iter()
                .map(|p| {
                    let r = committed.get(&tp(p));
                    pb::CommittedOffset {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        offset: r.map_or(-1, |r| r.offset),
                        metadata: r.map(|r| r.metadata.clone()).unwrap_or_default(),
                        generation: r.map_or(-1, |r| r.generation),
                    }
                })
                .collect()
        };
        // Offsets of topics the caller may not describe are left out (Kafka answers them with
        // TOPIC_AUTHORIZATION_FAILED).
        let security = &self.state.security;
        let offsets = offsets
            .into_iter()
            .filter(|o| security.allowed(&who, Operation::Describe, ResourceType::Topic, &o.topic))
            .collect();
        Ok(Response::new(pb::FetchOffsetsResponse { offsets }))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let who = principal(&request);
        let security = &self.state.security;
        let groups = self
            .state
            .groups
            .list()
            .await?
            .into_iter()
            .filter(|v| security.allowed(&who, Operation::Describe, ResourceType::Group, &v.group))
            .map(|v| pb::GroupSummary {
                group: v.group,
                state: v.state,
                protocol: v.protocol,
                members: v.members.len() as u32,
                generation: v.generation,
            })
            .collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        self.authorize_group(&request, Operation::Describe, &request.get_ref().group)?;
        let who = principal(&request);
        let group = request.into_inner().group;
        let snapshot = self.state.replicas.snapshot();
        let view = self.state.groups.describe(&group, &snapshot).await?;
        let security = &self.state.security;
        let offsets = self
            .state
            .groups
            .fetch_offsets(&group)
            .await?
            .into_iter()
            .filter(|((topic, _), _)| {
                security.allowed(&who, Operation::Describe, ResourceType::Topic, topic)
            })
            .map(committed_pb)
            .collect();
        Ok(Response::new(pb::DescribeGroupResponse {
            group: view.group.clone(),
            state: view.state.clone(),
            generation: view.generation,
            protocol: view.protocol.clone(),
            members: member_view(view),
            offsets,
            coordinator: self.state.config.broker_id,
        }))
    }

    async fn reset_offsets(
        &self,
        request: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        let r = request.get_ref();
        self.authorize_offsets(&request, &r.group, r.offsets.iter().map(|o| &o.topic))?;
        let who = principal(&request);
        let req = request.into_inner();
        let snapshot = self.state.replicas.snapshot();
        let mut offsets = Vec::with_capacity(req.offsets.len());
        for o in req.offsets {
            snapshot.partition(&o.topic, o.partition)?;
            if o.offset < 0 {
                return Err(BrokerError::InvalidRequest(format!(
                    "cannot set offset {} for {}/{}: offsets are 0 or more",
                    o.offset, o.topic, o.partition
                ))
                .into());
            }
            offsets.push(((o.topic, o.partition), o.offset));
        }
        let detail = format!("partitions={}", offsets.len());
        self.state
            .groups
            .reset_offsets(&req.group, offsets, self.state.clock.now_ms(), &snapshot)
            .await?;
        audit::changed(
            &who,
            "group offsets reset",
            &format!("group {}", req.group),
            &detail,
        );
        Ok(Response::new(pb::ResetOffsetsResponse {}))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        self.authorize_group(&request, Operation::Delete, &request.get_ref().group)?;
        let who = principal(&request);
        let group = request.into_inner().group;
        let snapshot = self.state.replicas.snapshot();
        let deleted = self.state.groups.delete(&group, &snapshot).await?;
        audit::changed(
            &who,
            "group deleted",
            &format!("group {group}"),
            &format!("offsets_deleted={deleted}"),
        );
        Ok(Response::new(pb::DeleteGroupResponse {
            offsets_deleted: deleted as u32,
        }))
    }
}
