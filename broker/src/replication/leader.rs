//! Leader-side replication: answering followers' fetches and epoch queries, and keeping the ISR
//! in etcd in line with who is caught up.
//!
//! Invariants: an ISR shrink is written to the metadata (a CAS that also checks this broker
//! still leads at the same epoch) before the leader acts on it, so the ISR the controller elects
//! from always contains every replica that has all acknowledged records. A join counts for the
//! high watermark from the moment it is proposed (the leader state's maximal ISR), so it may be
//! written later. The rules are in [`crate::replica::leader`]; this module does the I/O. A
//! fetch offset is checked against the leader's log before it is recorded: a follower cannot
//! move the high watermark with an offset the leader never wrote.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use strata_proto as pb;
use tokio::sync::watch;

use crate::error::{BrokerError, Result};
use crate::replica::Partition;
use crate::state::BrokerState;

/// How often the ISR is checked.
const ISR_CHECK: Duration = Duration::from_millis(250);
/// Longest follower long poll the leader grants.
const MAX_REPLICA_WAIT: Duration = Duration::from_secs(5);

impl BrokerState {
    /// The partition if this broker leads it at `leader_epoch` (the epoch the follower knows).
    fn leading_at(&self, topic: &str, partition: u32, leader_epoch: i32) -> Result<Arc<Partition>> {
        let p = self.replicas.leader(topic, partition)?;
        let epoch = p.leader_epoch();
        if leader_epoch != epoch {
            return Err(BrokerError::FencedEpoch(format!(
                "{topic}/{partition} is at leader epoch {epoch}; the request carried {leader_epoch}"
            )));
        }
        Ok(p)
    }

    pub async fn replica_fetch(
        &self,
        req: pb::ReplicaFetchRequest,
    ) -> Result<pb::ReplicaFetchResponse> {
        let p = self.leading_at(&req.topic, req.partition, req.leader_epoch)?;
        if !p.has_replica(req.replica_id) {
            return Err(BrokerError::InvalidRequest(format!(
                "broker {} is not a replica of {}/{}",
                req.replica_id, req.topic, req.partition
            )));
        }
        self.note_follower_fetch(&p, req.replica_id, req.fetch_offset)?;
        let end = p.log_end_offset();
        let local_start = p.local_log_start_offset()?;
        if req.fetch_offset < local_start {
            // The follower lacks what the leader no longer holds locally (a long outage, a
            // replaced disk): it restarts at the leader's local log start. Remote history stays
            // in the bucket; followers never pull it through the leader.
            return Ok(pb::ReplicaFetchResponse {
                high_watermark: p.high_watermark(),
                log_start_offset: local_start,
                log_end_offset: end,
                records: Default::default(),
                remote: p.remote_summary().map(|s| s.to_proto()),
            });
        }
        let max_wait = Duration::from_millis(req.max_wait_ms as u64).min(MAX_REPLICA_WAIT);
        if req.fetch_offset == end {
            p.wait_for_data(req.fetch_offset, max_wait).await;
        }
        let max_bytes = (req.max_bytes as usize).clamp(1, self.config.max_fetch_bytes);
        // A replica a reassignment adds catches up throttled while outside the ISR.
        let read = match self
            .read_for(&p, req.replica_id, req.fetch_offset, max_bytes)
            .await?
        {
            super::sessions::Read::Records(read) => read,
            super::sessions::Read::Throttled(wait) => {
                tokio::time::sleep(wait.min(max_wait)).await;
                return Ok(pb::ReplicaFetchResponse {
                    high_watermark: p.high_watermark(),
                    // Not below the fetch offset: the follower keeps its log as it is.
                    log_start_offset: local_start,
                    log_end_offset: p.log_end_offset(),
                    records: Default::default(),
                    remote: p.remote_summary().map(|s| s.to_proto()),
                });
            }
        };
        Ok(pb::ReplicaFetchResponse {
            high_watermark: p.high_watermark(),
            log_start_offset: read.log_start_offset,
            log_end_offset: read.log_end_offset,
            records: read.records,
            remote: p.remote_summary().map(|s| s.to_proto()),
        })
    }

    pub fn epoch_end_offset(
        &self,
        req: pb::EpochEndOffsetRequest,
    ) -> Result<pb::EpochEndOffsetResponse> {
        let p = self.leading_at(&req.topic, req.partition, req.leader_epoch)?;
        let found = p.with_log(|log| Ok(log.end_offset_for_epoch(req.epoch)))?;
        let (epoch, end_offset) = found.unwrap_or((-1, -1));
        Ok(pb::EpochEndOffsetResponse { epoch, end_offset })
    }

    /// A producer id unique in the cluster: from a block of ids reserved in the metadata.
    pub async fn next_producer_id(&self) -> Result<i64> {
        const BLOCK: i64 = 1000;
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let first = self.metadata.reserve_producer_ids(BLOCK).await?;
            *ids = (first, first + BLOCK);
        }
        ids.0 += 1;
        Ok(ids.0 - 1)
    }

    /// Writes a new ISR for a partition this broker leads, then applies it locally.
    async fn change_isr(&self, p: &Partition, change: impl Fn(&mut Vec<i32>)) -> Result<bool> {
        let Some(current) = self.metadata.partition(&p.topic, p.index).await? else {
            return Ok(false);
        };
        let mine = p.state();
        if current.value.leader != self.config.broker_id
            || current.value.leader_incarnation != self.incarnation
            || current.value.leader_epoch != mine.leader_epoch
        {
            return Ok(false);
        }
        let mut next = current.value.clone();
        change(&mut next.isr);
        // Only replicas are members: a join proposed before a reassignment dropped the
        // follower (a cancel) must not put a non-replica in the ISR.
        next.isr.retain(|r| next.replicas.contains(r));
        next.isr
            .sort_by_key(|r| next.replicas.iter().position(|x| x == r));
        if next.isr == current.value.isr {
            return Ok(false);
        }
        if let Some(revision) = self
            .metadata
            .write_partition(&p.topic, p.index, &next, current.revision)
            .await?
        {
            tracing::info!(topic = %p.topic, partition = p.index, from = ?current.value.isr, to = ?next.isr, "ISR changed");
            if next.isr.len() < current.value.isr.len() {
                crate::metrics::ISR_SHRINKS.inc();
            } else {
                crate::metrics::ISR_EXPANDS.inc();
            }
            p.set_state(next, revision);
            return Ok(true);
        }
        Ok(false)
    }
}

/// Shrinks the ISR of lagging followers and expands it with caught-up ones, until `stop`.
pub async fn manage_isr(state: Arc<BrokerState>, mut stop: watch::Receiver<bool>) {
    let max_lag = state.config.replica_lag_time_max.as_millis() as i64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ISR_CHECK) => {}
            _ = stop.changed() => return,
        }
        let joiners: HashSet<(String, u32, i32)> = std::mem::take(&mut *state.isr_joiners.lock());
        // A follower that began a controlled shutdown since it was proposed stays out.
        let leaving = state.replicas.snapshot().shutting_down.clone();
        for (topic, partition, follower) in joiners {
            if leaving.contains(&follower) {
                if let Some(p) = state.replicas.local(&topic, partition) {
                    p.join_failed(follower);
                }
                continue;
            }
            let Some(p) = state.replicas.local(&topic, partition) else {
                continue;
            };
            if !p.is_leader() {
                continue;
            }
            strata_tiering::failpoint::reached(
                strata_tiering::failpoint::ISR_BEFORE_EXPAND,
                &format!("{topic}/{partition} follower {follower}"),
            )
            .await;
            if let Err(e) = state
                .change_isr(&p, |isr| {
                    if !isr.contains(&follower) {
                        isr.push(follower)
                    }
                })
                .await
            {
                tracing::warn!(%topic, partition, error = %e, "cannot add a follower to the ISR");
            }
            if !p.state().isr.contains(&follower) {
                // Not written (a conflict, or leadership moved): it stops counting; its next
                // fetch proposes it again.
                p.join_failed(follower);
            }
        }
        let now = state.clock.now_ms();
        for t in state.replicas.local_topics() {
            for p in t.partitions.values().filter(|p| p.is_leader()) {
                let lagging = p.lagging_followers(now, max_lag);
                if lagging.is_empty() {
                    continue;
                }
                tracing::warn!(topic = %p.topic, partition = p.index, ?lagging, "followers fell behind; removing them from the ISR");
                if let Err(e) = state
                    .change_isr(p, |isr| isr.retain(|r| !lagging.contains(r)))
                    .await
                {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "cannot shrink the ISR");
                }
                p.advance_high_watermark();
            }
        }
    }
}
