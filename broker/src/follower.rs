//! Follower side of replication: for every local replica this broker follows, one task that
//! truncates a divergent tail, then long-polls the leader and appends what it sends.
//!
//! Invariants: a follower appends only the leader's bytes, at the leader's offsets and epochs;
//! before fetching in a new leader epoch it truncates to the end of the last epoch it shares
//! with the leader (the smaller of the two logs' ends for that epoch), so logs never diverge.
//! A fetcher runs only while its (leader, epoch) is current; each metadata sync restarts those
//! that are stale.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_proto as pb;
use strata_proto::v1::replica_client::ReplicaClient;
use strata_proto::ErrorCode;
use tonic::transport::Channel;

use crate::error::{BrokerError, Result};
use crate::partition::{blocking, Partition};
use crate::state::BrokerState;

const FETCH_WAIT_MS: u32 = 500;
const FETCH_MAX_BYTES: u32 = 8 * 1024 * 1024;
const BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Running {
    leader: i32,
    epoch: i32,
    task: tokio::task::JoinHandle<()>,
}

/// The fetcher tasks of one broker, by (topic, partition).
#[derive(Debug, Default)]
pub struct Fetchers {
    running: Mutex<HashMap<(String, u32), Running>>,
}

impl Fetchers {
    /// Stops every fetcher (shutdown).
    pub fn stop_all(&self) {
        for (_, r) in self.running.lock().drain() {
            r.task.abort();
        }
    }
}

impl BrokerState {
    /// Makes the running fetchers match the local follower replicas and their current leaders.
    pub fn reconcile_fetchers(&self) {
        let me = self.config.broker_id;
        let snapshot = self.replicas.snapshot();
        let mut desired = HashMap::new();
        for t in self.replicas.local_topics() {
            for p in t.partitions.values() {
                let s = p.state();
                if s.leader != me && s.leader >= 0 {
                    desired.insert(
                        (t.record.name.clone(), p.index),
                        (s.leader, s.leader_epoch, p.clone()),
                    );
                }
            }
        }
        let mut running = self.fetchers.running.lock();
        running.retain(|key, r| {
            let keep = desired.get(key).is_some_and(|(leader, epoch, _)| {
                *leader == r.leader && *epoch == r.epoch && !r.task.is_finished()
            });
            if !keep {
                r.task.abort();
            }
            keep
        });
        for (key, (leader, epoch, partition)) in desired {
            if running.contains_key(&key) {
                continue;
            }
            let Some(address) = snapshot.address(leader) else {
                continue; // the leader is not alive; the controller will move leadership
            };
            let client = match self.peers.replica(address) {
                Ok(c) => c.max_decoding_message_size(self.config.max_fetch_bytes + (1 << 20)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach leader {leader}");
                    continue;
                }
            };
            let task = tokio::spawn(follow(partition, me, leader, epoch, client));
            running.insert(
                key,
                Running {
                    leader,
                    epoch,
                    task,
                },
            );
        }
    }
}

/// Follows `leader` at `epoch` until the partition's leadership changes (or the task is aborted).
async fn follow(
    p: Arc<Partition>,
    me: i32,
    leader: i32,
    epoch: i32,
    mut client: ReplicaClient<Channel>,
) {
    let current = |p: &Partition| {
        let s = p.state();
        s.leader == leader && s.leader_epoch == epoch
    };
    let mut backoff = BACKOFF;
    let mut truncated = false;
    while current(&p) {
        if !truncated {
            match truncate(&p, &mut client, epoch).await {
                Ok(()) => truncated = true,
                Err(e) => {
                    tracing::debug!(topic = %p.topic, partition = p.index, leader, error = %e, "epoch query failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let req = pb::ReplicaFetchRequest {
            topic: p.topic.to_string(),
            partition: p.index,
            replica_id: me,
            fetch_offset: p.log_end_offset(),
            leader_epoch: epoch,
            max_wait_ms: FETCH_WAIT_MS,
            max_bytes: FETCH_MAX_BYTES,
        };
        match client.replica_fetch(req).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                let target = p.clone();
                let appended =
                    blocking(move || target.append_replica(&resp.records, resp.high_watermark))
                        .await;
                match appended {
                    Ok(()) => backoff = BACKOFF,
                    Err(e) => {
                        tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "cannot append what the leader sent; re-checking epochs");
                        truncated = false;
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
            Err(status) => {
                if ErrorCode::of(&status) == ErrorCode::OffsetOutOfRange {
                    truncated = false;
                }
                tracing::debug!(topic = %p.topic, partition = p.index, leader, error = %status.message(), "replica fetch failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Truncates to the end of the last epoch this log shares with the leader.
async fn truncate(
    p: &Arc<Partition>,
    client: &mut ReplicaClient<Channel>,
    epoch: i32,
) -> Result<()> {
    let Some(latest) = p.with_log(|log| Ok(log.latest_epoch()))? else {
        return Ok(()); // an empty log has nothing to lose
    };
    let req = pb::EpochEndOffsetRequest {
        topic: p.topic.to_string(),
        partition: p.index,
        leader_epoch: epoch,
        epoch: latest,
    };
    let resp = client
        .epoch_end_offset(req)
        .await
        .map_err(|s| {
            BrokerError::Internal(format!("epoch query to the leader failed: {}", s.message()))
        })?
        .into_inner();
    let target = if resp.epoch < 0 {
        // The leader holds no epoch as old as ours: nothing here is shared with it.
        p.log_start_offset()?
    } else {
        // Our own end of the leader's epoch bounds the shared prefix too.
        let own_end = p
            .with_log(|log| Ok(log.end_offset_for_epoch(resp.epoch)))?
            .map_or(resp.end_offset, |(_, end)| end);
        resp.end_offset.min(own_end)
    };
    let target_p = p.clone();
    blocking(move || target_p.truncate_to(target)).await
}
