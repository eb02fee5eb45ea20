//! The `Group` gRPC service: thin translations between `strata.v1` messages and the
//! [`GroupCoordinator`](super::GroupCoordinator). Errors leave through
//! `From<BrokerError> for Status`.

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

#[tonic::async_trait]
impl Group for GroupService {
    async fn find_coordinator(
        &self,
        request: Request<pb::FindCoordinatorRequest>,
    ) -> Result<Response<pb::FindCoordinatorResponse>, Status> {
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
        let req = request.into_inner();
        let committed = self.state.groups.fetch_offsets(&req.group).await?;
        let offsets = if req.partitions.is_empty() {
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
        Ok(Response::new(pb::FetchOffsetsResponse { offsets }))
    }

    async fn list_groups(
        &self,
        _request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let groups = self
            .state
            .groups
            .list()
            .await?
            .into_iter()
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
        let group = request.into_inner().group;
        let snapshot = self.state.replicas.snapshot();
        let view = self.state.groups.describe(&group, &snapshot).await?;
        let offsets = self
            .state
            .groups
            .fetch_offsets(&group)
            .await?
            .into_iter()
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
        self.state
            .groups
            .reset_offsets(&req.group, offsets, self.state.clock.now_ms(), &snapshot)
            .await?;
        Ok(Response::new(pb::ResetOffsetsResponse {}))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let group = request.into_inner().group;
        let snapshot = self.state.replicas.snapshot();
        let deleted = self.state.groups.delete(&group, &snapshot).await?;
        Ok(Response::new(pb::DeleteGroupResponse {
            offsets_deleted: deleted as u32,
        }))
    }
}
