//! Follower side of replication: for every local replica this broker follows, one task that
//! truncates a divergent tail, then long-polls the leader and appends what it sends.
//!
//! Invariants: a follower appends only the leader's bytes, at the leader's offsets and epochs;
//! before fetching in a new leader epoch it truncates to the end of the last epoch it shares
//! with the leader, looping over epochs as KIP-279 does ([`crate::replica::truncation`]
//! decides; this module asks the leader and cuts), so logs never diverge; it never cuts below
//! its high watermark (unless unclean election is on). A follower whose log ends below the
//! leader's local log start restarts empty there. A fetcher runs only while its (leader,
//! epoch) is current; each metadata sync restarts those that are stale, and every write it
//! makes is checked against its (leader, epoch) under the log's lock, so an aborted or stale
//! fetcher cannot write.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_proto as pb;
use strata_proto::v1::replica_client::ReplicaClient;
use strata_proto::ErrorCode;
use tonic::transport::Channel;

use crate::error::{BrokerError, Result};
use crate::replica::truncation::{self, OutOfRange, OwnLog, Step};
use crate::replica::{blocking, Partition, RemoteSummary};
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

/// Most rounds of the epoch exchange before giving up for a backoff (each round asks about a
/// smaller epoch, so a log with fewer epochs never reaches it).
const MAX_TRUNCATION_ROUNDS: usize = 64;

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
            match truncate(&p, &mut client, leader, epoch).await {
                Ok(()) => truncated = true,
                Err(e) => {
                    tracing::debug!(topic = %p.topic, partition = p.index, leader, error = %e, "truncation to the leader's log not done yet");
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
                if let Some(remote) = &resp.remote {
                    // The leader's view of the remote tier: no follower reads the bucket for it.
                    p.set_remote_summary(Some(RemoteSummary::from_proto(remote)));
                }
                let target = p.clone();
                let own_end = p.log_end_offset();
                let appended = if resp.records.is_empty()
                    && truncation::out_of_range(own_end, resp.log_start_offset)
                        == OutOfRange::ResetTo(resp.log_start_offset)
                {
                    tracing::warn!(topic = %p.topic, partition = p.index, leader, log_end = own_end,
                        leader_log_start = resp.log_start_offset,
                        "this replica ends below the leader's log start; restarting it empty there");
                    let start = resp.log_start_offset;
                    blocking(move || target.reset_to(leader, epoch, start)).await
                } else {
                    blocking(move || {
                        target.append_replica(leader, epoch, &resp.records, resp.high_watermark)
                    })
                    .await
                };
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

/// Truncates to the end of what this log shares with the leader: the epoch exchange of
/// [`truncation`], one question to the leader per round.
async fn truncate(
    p: &Arc<Partition>,
    client: &mut ReplicaClient<Channel>,
    leader: i32,
    epoch: i32,
) -> Result<()> {
    let mut step = truncation::start(&own_log(p, &p.with_log(|log| Ok(log.epoch_entries()))?)?);
    for _ in 0..MAX_TRUNCATION_ROUNDS {
        match step {
            Step::Ask { epoch: asked } => {
                let req = pb::EpochEndOffsetRequest {
                    topic: p.topic.to_string(),
                    partition: p.index,
                    leader_epoch: epoch,
                    epoch: asked,
                };
                let resp = client
                    .epoch_end_offset(req)
                    .await
                    .map_err(|s| {
                        BrokerError::Internal(format!(
                            "epoch query to the leader failed: {}",
                            s.message()
                        ))
                    })?
                    .into_inner();
                let answer = (resp.epoch >= 0).then_some((resp.epoch, resp.end_offset));
                let epochs = p.with_log(|log| Ok(log.epoch_entries()))?;
                step = truncation::on_answer(&own_log(p, &epochs)?, answer);
            }
            Step::Truncate { offset, then_ask } => {
                let target = p.clone();
                blocking(move || target.truncate_to(leader, epoch, offset)).await?;
                match then_ask {
                    None => return Ok(()),
                    Some(asked) => step = Step::Ask { epoch: asked },
                }
            }
            Step::Refuse {
                offset,
                high_watermark,
            } => {
                tracing::error!(topic = %p.topic, partition = p.index, leader, epoch, offset, high_watermark,
                    "the leader's log would make this replica drop committed records; refusing to truncate");
                return Err(BrokerError::FencedEpoch(format!(
                    "{}/{}: leader {leader} at epoch {epoch} holds less than this replica's high watermark {high_watermark}",
                    p.topic, p.index
                )));
            }
        }
    }
    Err(BrokerError::Internal(format!(
        "{}/{}: the epoch exchange with leader {leader} did not end within {MAX_TRUNCATION_ROUNDS} rounds",
        p.topic, p.index
    )))
}

fn own_log<'a>(p: &Partition, epochs: &'a [strata_log::EpochEntry]) -> Result<OwnLog<'a>> {
    Ok(OwnLog {
        epochs,
        log_start: p.local_log_start_offset()?,
        log_end: p.log_end_offset(),
        high_watermark: p.high_watermark(),
        allow_below_high_watermark: p.unclean_leader_election(),
    })
}
