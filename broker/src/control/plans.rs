//! Drain and balance, the broker's side: a plan made from the metadata this broker follows
//! (the rules are in [`super::balance`]) and started as one reassignment request, which the
//! controller checks whole before it moves anything. With `--auto-balance` the controller
//! runs the same balance on its own, at the preferred-leader rebalance interval, whenever no
//! reassignment is under way. A drained broker is left out of balancing while it runs in the
//! incarnation it was drained in (so auto-balance does not fill it again); a restart brings
//! it back.

use strata_proto as pb;

use super::balance::{self, Assigned, Broker, Move};
use crate::error::{BrokerError, Result};
use crate::state::BrokerState;

impl BrokerState {
    /// Plans (and unless a dry run, starts) moving every replica off `req.broker`.
    pub async fn drain_broker(&self, req: pb::DrainBrokerRequest) -> Result<pb::ReassignmentPlan> {
        self.sync().await?;
        let snapshot = self.replicas.snapshot();
        if !snapshot.known_brokers.contains_key(&req.broker) {
            return Err(BrokerError::InvalidRequest(format!(
                "no broker with id {} ever registered in this cluster (known brokers: {:?})",
                req.broker,
                snapshot.known_brokers.keys().collect::<Vec<_>>()
            )));
        }
        let (brokers, partitions) = self.plan_input().await?;
        let moves = balance::drain(req.broker, &brokers, &partitions)
            .map_err(BrokerError::InvalidRequest)?;
        let plan = self
            .start_plan(moves, req.dry_run, req.throttle_bytes_per_sec)
            .await?;
        if !req.dry_run {
            if let Some(b) = snapshot.alive.get(&req.broker) {
                self.metadata.set_drained(b.id, b.incarnation).await?;
            }
        }
        Ok(plan)
    }

    /// Plans (and unless a dry run, starts) the moves that even out the live brokers.
    pub async fn balance_cluster(
        &self,
        req: pb::BalanceClusterRequest,
    ) -> Result<pb::ReassignmentPlan> {
        self.sync().await?;
        let (brokers, partitions) = self.plan_input().await?;
        let moves = balance::balance(&brokers, &partitions);
        self.start_plan(moves, req.dry_run, req.throttle_bytes_per_sec)
            .await
    }

    /// The controller's auto-balance step: starts a balance when nothing is being moved and
    /// the live brokers are uneven. Returns how many partitions it started moving.
    pub async fn auto_balance(&self) -> Result<usize> {
        self.sync().await?;
        let (brokers, partitions) = self.plan_input().await?;
        if partitions.iter().any(|p| !p.movable) {
            return Ok(0);
        }
        let moves = balance::balance(&brokers, &partitions);
        let n = moves.len();
        if n > 0 {
            tracing::info!(
                partitions = n,
                "auto-balance: evening out replicas and leaders"
            );
            self.start_plan(moves, false, 0).await?;
        }
        Ok(n)
    }

    /// The live brokers not drained, and every partition's replicas (where a move under way
    /// is going).
    async fn plan_input(&self) -> Result<(Vec<Broker>, Vec<Assigned>)> {
        let drained = self.metadata.drained().await?;
        let snapshot = self.replicas.snapshot();
        let brokers = snapshot
            .alive
            .values()
            .filter(|b| drained.get(&b.id) != Some(&b.incarnation))
            .map(|b| Broker {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect();
        let partitions = snapshot
            .topics
            .values()
            .flat_map(|t| {
                t.partitions.iter().enumerate().map(|(i, p)| Assigned {
                    topic: t.record.name.clone(),
                    partition: i as u32,
                    replicas: p
                        .reassigning
                        .as_ref()
                        .map_or_else(|| p.replicas.clone(), |r| r.target.clone()),
                    movable: p.reassigning.is_none(),
                    down: p
                        .replicas
                        .iter()
                        .copied()
                        .filter(|r| !snapshot.alive.contains_key(r))
                        .collect(),
                })
            })
            .collect();
        Ok((brokers, partitions))
    }

    async fn start_plan(
        &self,
        moves: Vec<Move>,
        dry_run: bool,
        throttle: u64,
    ) -> Result<pb::ReassignmentPlan> {
        let planned = moves
            .iter()
            .map(|m| pb::PlannedMove {
                topic: m.topic.clone(),
                partition: m.partition,
                from: m.from.clone(),
                to: m.to.clone(),
            })
            .collect();
        if dry_run || moves.is_empty() {
            return Ok(pb::ReassignmentPlan {
                moves: planned,
                started: false,
            });
        }
        let req = pb::AlterPartitionReassignmentsRequest {
            partitions: moves
                .into_iter()
                .map(|m| pb::ReassignmentTarget {
                    topic: m.topic,
                    partition: m.partition,
                    replicas: m.to,
                })
                .collect(),
            throttle_bytes_per_sec: throttle,
            cancel: false,
        };
        self.alter_partition_reassignments(req, false).await?;
        Ok(pb::ReassignmentPlan {
            moves: planned,
            started: true,
        })
    }
}
