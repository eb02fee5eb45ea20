//! The controller's side of partition reassignments: the admin calls that start, cancel and
//! list moves. The rules are in [`super::reassign`]; the pass that finishes moves runs in the
//! controller loop ([`super::controller`]), with its leader elections.
//!
//! Invariants: a change is decided on the controller only (another broker forwards it) and
//! written as a compare-and-swap on the partition's revision that also checks the controller
//! election's fence, so a deposed controller writes nothing and a leader's ISR write in
//! between makes the change re-read and re-decide. A request is checked whole before anything
//! is written: one bad entry and no partition moves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use strata_proto as pb;

use super::placement::Liveness;
use super::reassign;
use crate::admin::{forwarded_request, forwarding_failed, kept_changing, ready_topic};
use crate::error::{BrokerError, Result};
use crate::metadata::PartitionState;
use crate::state::BrokerState;

/// How often a change is re-decided when a leader's ISR write came first.
const CAS_ATTEMPTS: usize = 10;

impl BrokerState {
    /// Starts (or, with `req.cancel`, cancels) the moves asked for; answers each partition's
    /// state after the change.
    pub async fn alter_partition_reassignments(
        &self,
        req: pb::AlterPartitionReassignmentsRequest,
        forwarded: bool,
    ) -> Result<pb::AlterPartitionReassignmentsResponse> {
        if req.partitions.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "a reassignment names at least one partition".to_string(),
            ));
        }
        if !self.is_controller.load(Ordering::SeqCst) {
            let answer = self
                .controller_admin(forwarded)
                .await?
                .alter_partition_reassignments(forwarded_request(req))
                .await
                .map(|r| r.into_inner())
                .map_err(forwarding_failed)?;
            self.sync().await?;
            return Ok(answer);
        }
        let known: BTreeSet<i32> = self
            .metadata
            .known_brokers()
            .await?
            .iter()
            .map(|b| b.id)
            .collect();
        let live = self.liveness().await?;
        let now = self.clock.now_ms();
        // Everything is checked before anything is written.
        let mut seen = BTreeSet::new();
        let mut added = Vec::new();
        for t in &req.partitions {
            let what = format!("{}/{}", t.topic, t.partition);
            if !seen.insert((t.topic.as_str(), t.partition)) {
                return Err(BrokerError::InvalidRequest(format!(
                    "{what} is named twice in the reassignment; name each partition once"
                )));
            }
            let topic = ready_topic(&self.metadata, &t.topic).await?;
            if t.partition >= topic.value.partitions {
                return Err(BrokerError::UnknownPartition {
                    topic: t.topic.clone(),
                    partition: t.partition,
                    count: topic.value.partitions,
                });
            }
            let current = self.partition_record(&t.topic, t.partition).await?;
            if req.cancel {
                reassign::cancel(&current.value, &live, &what)?;
                continue;
            }
            reassign::check_target(&t.replicas, &known, &what)?;
            let started = reassign::start(
                &current.value,
                &t.replicas,
                req.throttle_bytes_per_sec,
                now,
                &what,
            )?;
            // Only replicas new to the partition count against the brokers' capacity (a
            // throttle change or a new target keeps the ones already added).
            if let Some(next) = started {
                added.push(PartitionState {
                    replicas: next
                        .replicas
                        .iter()
                        .copied()
                        .filter(|b| !current.value.replicas.contains(b))
                        .collect(),
                    ..current.value.clone()
                });
            }
        }
        crate::capacity::check(
            &self.metadata.known_brokers().await?,
            &self.replicas.snapshot(),
            &added,
        )?;
        let mut partitions = Vec::with_capacity(req.partitions.len());
        for t in &req.partitions {
            let state = self
                .write_reassignment(t, req.cancel, req.throttle_bytes_per_sec, &live, now)
                .await?;
            partitions.push(describe(&t.topic, t.partition, &state, &BTreeMap::new()));
        }
        self.sync().await?;
        Ok(pb::AlterPartitionReassignmentsResponse { partitions })
    }

    /// Decides and writes one partition's change, re-reading after a conflicting write.
    async fn write_reassignment(
        &self,
        t: &pb::ReassignmentTarget,
        cancel: bool,
        throttle: u64,
        live: &Liveness,
        now: i64,
    ) -> Result<PartitionState> {
        let what = format!("{}/{}", t.topic, t.partition);
        for _ in 0..CAS_ATTEMPTS {
            let current = self.partition_record(&t.topic, t.partition).await?;
            let next = if cancel {
                Some(reassign::cancel(&current.value, live, &what)?)
            } else {
                reassign::start(&current.value, &t.replicas, throttle, now, &what)?
            };
            let Some(next) = next else {
                return Ok(current.value);
            };
            let fence = self.controller_fence.lock().clone().ok_or_else(|| {
                BrokerError::NotController(format!(
                    "this broker stopped being the controller before it could reassign {what}; \
                     retry"
                ))
            })?;
            let written = self
                .metadata
                .update_partition(&t.topic, t.partition, &next, current.revision, Some(fence))
                .await?;
            if written {
                if cancel {
                    tracing::info!(partition = %what, replicas = ?next.replicas, leader = next.leader, "reassignment cancelled: back to the original replicas");
                } else if let Some(r) = &next.reassigning {
                    tracing::info!(partition = %what, target = ?r.target, adding = ?r.adding, removing = ?r.removing, throttle = r.throttle_bytes_per_sec, "reassignment started");
                }
                return Ok(next);
            }
        }
        Err(kept_changing(&t.topic, "being reassigned"))
    }

    /// The partitions being reassigned (of `req.topics`, or all), with each added replica's
    /// catch-up as its leader reports it.
    pub async fn list_partition_reassignments(
        &self,
        req: pb::ListPartitionReassignmentsRequest,
    ) -> Result<pb::ListPartitionReassignmentsResponse> {
        self.sync().await?;
        let snapshot = self.replicas.snapshot();
        let names: Vec<String> = if req.topics.is_empty() {
            snapshot.topics.keys().cloned().collect()
        } else {
            for name in &req.topics {
                snapshot.topic(name)?;
            }
            req.topics.clone()
        };
        let mut partitions = Vec::new();
        for name in names {
            let topic = snapshot.topic(&name)?;
            let moving: Vec<(u32, &PartitionState)> = topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.reassigning.is_some())
                .map(|(i, p)| (i as u32, p))
                .collect();
            if moving.is_empty() {
                continue;
            }
            let status = self.gather_status(&name).await?;
            for (index, state) in moving {
                let ends = status.get(&index).map(catch_up_of).unwrap_or_default();
                partitions.push(describe(&name, index, state, &ends));
            }
        }
        Ok(pb::ListPartitionReassignmentsResponse { partitions })
    }

    async fn partition_record(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<crate::metadata::Revisioned<PartitionState>> {
        self.metadata
            .partition(topic, partition)
            .await?
            .ok_or_else(|| {
                BrokerError::Internal(format!(
                    "the state of {topic}/{partition} is missing from the metadata"
                ))
            })
    }

    /// The live brokers as the controller judges them (restarts and new disks it has not
    /// processed yet count as not eligible), read without writing anything.
    async fn liveness(&self) -> Result<Liveness> {
        let processed = self.metadata.processed_incarnations().await?;
        let disks = self.metadata.recorded_disks().await?;
        let brokers = self.metadata.brokers().await?;
        let shutting_down = self.metadata.shutting_down().await?;
        Ok(Liveness::judge(
            &brokers,
            &processed,
            &disks,
            &shutting_down,
        ))
    }
}

/// What a leader's status says of each follower: (log end offset, offsets behind, bytes behind).
fn catch_up_of(status: &pb::PartitionStatus) -> BTreeMap<i32, (i64, i64, u64)> {
    status
        .followers
        .iter()
        .map(|f| {
            let from = if f.log_end_offset < 0 {
                status.local_log_start_offset
            } else {
                f.log_end_offset
            };
            let behind = (status.log_end_offset - from).max(0);
            (f.broker, (f.log_end_offset, behind, f.bytes_behind))
        })
        .collect()
}

fn describe(
    topic: &str,
    partition: u32,
    state: &PartitionState,
    ends: &BTreeMap<i32, (i64, i64, u64)>,
) -> pb::PartitionReassignment {
    let r = state.reassigning.as_ref();
    let adding = r.map(|r| r.adding.clone()).unwrap_or_default();
    pb::PartitionReassignment {
        topic: topic.to_string(),
        partition,
        in_progress: r.is_some(),
        replicas: state.replicas.clone(),
        target: r.map_or_else(|| state.replicas.clone(), |r| r.target.clone()),
        adding: adding.clone(),
        removing: r.map(|r| r.removing.clone()).unwrap_or_default(),
        leader: state.leader,
        isr: state.isr.clone(),
        throttle_bytes_per_sec: r.map_or(0, |r| r.throttle_bytes_per_sec),
        started_ms: r.map_or(0, |r| r.started_ms),
        catching_up: adding
            .iter()
            .filter_map(|b| {
                ends.get(b).map(|(end, behind, bytes)| pb::ReplicaCatchUp {
                    broker: *b,
                    log_end_offset: *end,
                    offsets_behind: *behind,
                    bytes_behind: *bytes,
                    in_sync: state.isr.contains(b),
                })
            })
            .collect(),
    }
}
