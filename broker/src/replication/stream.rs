//! One follower's fetch stream to one leader broker: every partition they share travels in one
//! fetch session (`Replica.ReplicaFetchSession`), one round at a time, with one wake-up per
//! round and the round's appends in one hop to the blocking pool.
//!
//! Each partition is in one phase: truncating (the epoch exchange of [`super::truncate`], run
//! in a task of its own, a bounded number at once), fetching (in the session), or waiting out a
//! backoff after an error before truncating again. A partition enters the session only once its
//! truncation for the current epoch is done, so it never appends above a divergent tail.
//!
//! Invariants: appends, truncations and resets are checked against the (leader, epoch) under
//! the log's write lock (a partition that changed leadership mid-round refuses the write); a
//! round that fails or is refused ends the session and the next lists every partition
//! ([`super::session::FollowerSession`]); a follower whose log ends below the leader's local log
//! start restarts empty there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_proto as pb;
use strata_proto::v1::replica_client::ReplicaClient;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::session::{FollowerSession, Key, Round};
use super::truncate::truncate;
use crate::error::Result;
use crate::replica::truncation::{self, OutOfRange};
use crate::replica::{blocking, Partition, RemoteSummary};

/// What a stream follows: partition -> (leader epoch, replica).
pub type Followed = HashMap<Key, (i32, Arc<Partition>)>;

/// How long the leader may hold a round with no news (Kafka's replica.fetch.wait.max.ms).
const ROUND_WAIT_MS: u32 = 500;
/// The same while some partition's epoch exchange runs.
const SHORT_ROUND_WAIT_MS: u32 = 50;
/// Bytes of records per round, and per partition in a round.
const ROUND_MAX_BYTES: u32 = 8 * 1024 * 1024;
/// A round that takes longer than its wait by this much is given up (the leader hangs).
const ROUND_GRACE: Duration = Duration::from_secs(10);
const BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Epoch exchanges in flight at once per stream (after a failover, every partition has one).
const TRUNCATIONS_AT_ONCE: usize = 16;

/// A truncation's outcome on its way to the stream; one that ends without one (aborted, or
/// panicked) reports a failure when dropped, so its partition is never left truncating.
struct Report(Option<(mpsc::UnboundedSender<Done>, Key, u64)>);

impl Report {
    fn send(&mut self, outcome: Result<()>) {
        if let Some((done, key, generation)) = self.0.take() {
            let _ = done.send((key, generation, outcome));
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.send(Err(crate::error::BrokerError::Internal(
            "the epoch exchange ended without an outcome".to_string(),
        )));
    }
}

/// Aborts its task when dropped: a truncation outlives neither its phase nor its stream.
#[derive(Debug)]
struct Task(AbortHandle);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
enum Phase {
    Truncating(#[allow(dead_code)] Task),
    Fetching,
    Waiting(Instant),
}

#[derive(Debug)]
struct Tracked {
    partition: Arc<Partition>,
    epoch: i32,
    phase: Phase,
    backoff: Duration,
    /// Tells a truncation's result from that of an earlier phase.
    generation: u64,
}

/// A finished truncation: (partition, generation, outcome).
type Done = (Key, u64, Result<()>);

struct Stream {
    me: i32,
    leader: i32,
    client: ReplicaClient<Channel>,
    parts: HashMap<Key, Tracked>,
    session: FollowerSession,
    done_tx: mpsc::UnboundedSender<Done>,
    limit: Arc<Semaphore>,
    generations: u64,
}

/// Follows every partition of `assigned` from `leader` until aborted.
pub async fn run(
    me: i32,
    leader: i32,
    mut assigned: watch::Receiver<Arc<Followed>>,
    client: ReplicaClient<Channel>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut s = Stream {
        me,
        leader,
        client,
        parts: HashMap::new(),
        session: FollowerSession::default(),
        done_tx,
        limit: Arc::new(Semaphore::new(TRUNCATIONS_AT_ONCE)),
        generations: 0,
    };
    let mut backoff = BACKOFF;
    // Set when a select below saw the assignment change (which marks it seen).
    let mut changed = true;
    loop {
        if std::mem::take(&mut changed) || assigned.has_changed().unwrap_or(false) {
            // Only when the metadata changed what this stream follows: an idle round does no
            // work per partition here.
            let followed = assigned.borrow_and_update().clone();
            s.follow(&followed);
        }
        while let Ok(done) = done_rx.try_recv() {
            s.truncated(done);
        }
        s.restart_due();
        let fetching = Stream::fetching(&s.parts, s.leader);
        if fetching.is_empty() {
            drop(fetching);
            let due = s.next_due();
            tokio::select! {
                seen = assigned.changed() => match seen {
                    Ok(()) => changed = true,
                    Err(_) => return,
                },
                Some(done) = done_rx.recv() => s.truncated(done),
                _ = sleep_until(due) => {}
            }
            continue;
        }
        let round = s.session.round(&fetching);
        drop(fetching);
        // While epoch exchanges are under way, short rounds: their partitions join the
        // session soon after they finish, not a whole wait later.
        let wait_ms = if s.truncating() {
            SHORT_ROUND_WAIT_MS
        } else {
            ROUND_WAIT_MS
        };
        let fetch = fetch(s.client.clone(), s.request(&round, wait_ms), wait_ms);
        tokio::pin!(fetch);
        let answered = loop {
            tokio::select! {
                answered = &mut fetch => break Some(answered),
                seen = assigned.changed() => {
                    match seen {
                        Ok(()) => changed = true,
                        Err(_) => return,
                    }
                    // A partition of this round moved away: the round is given up so the new
                    // assignment starts now. Partitions only added wait for the round's end.
                    if s.moved_away(&assigned.borrow()) {
                        break None;
                    }
                }
            }
        };
        let Some(answered) = answered else {
            // The leader may have taken the round: the next one opens a new session.
            s.session.reset();
            continue;
        };
        match answered {
            Ok(resp) => {
                backoff = BACKOFF;
                s.apply(&round, resp).await;
            }
            Err(message) => {
                tracing::debug!(leader = s.leader, error = %message, "fetch session round failed; opening a new session");
                s.session.reset();
                tokio::select! {
                    seen = assigned.changed() => match seen {
                    Ok(()) => changed = true,
                    Err(_) => return,
                },
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Stream {
    /// Takes in the partitions to follow now: new ones and those at a new epoch start with
    /// the epoch exchange; the others keep their phase.
    fn follow(&mut self, followed: &Followed) {
        self.parts.retain(|k, t| {
            followed
                .get(k)
                .is_some_and(|(epoch, p)| *epoch == t.epoch && Arc::ptr_eq(p, &t.partition))
        });
        for (key, (epoch, p)) in followed {
            if !self.parts.contains_key(key) {
                self.generations += 1;
                let mut t = Tracked {
                    partition: p.clone(),
                    epoch: *epoch,
                    phase: Phase::Fetching,
                    backoff: BACKOFF,
                    generation: self.generations,
                };
                t.phase = self.start_truncation(key, &t);
                self.parts.insert(key.clone(), t);
            }
        }
    }

    fn start_truncation(&self, key: &Key, t: &Tracked) -> Phase {
        let (p, leader, epoch) = (t.partition.clone(), self.leader, t.epoch);
        let (mut client, limit, done) = (
            self.client.clone(),
            self.limit.clone(),
            self.done_tx.clone(),
        );
        let (key, generation) = (key.clone(), t.generation);
        let task = tokio::spawn(async move {
            let mut report = Report(Some((done, key, generation)));
            let _permit = limit.acquire_owned().await;
            let outcome = truncate(&p, &mut client, leader, epoch).await;
            report.send(outcome);
        });
        Phase::Truncating(Task(task.abort_handle()))
    }

    /// A truncation ended: the partition fetches, or waits out a backoff and tries again.
    fn truncated(&mut self, (key, generation, outcome): Done) {
        let Some(t) = self.parts.get_mut(&key) else {
            return;
        };
        if t.generation != generation || !matches!(t.phase, Phase::Truncating(_)) {
            return;
        }
        match outcome {
            // The backoff is reset by the first append that works: a partition the leader
            // keeps refusing backs off more each time.
            Ok(()) => t.phase = Phase::Fetching,
            Err(e) => {
                tracing::debug!(topic = %key.0, partition = key.1, leader = self.leader, error = %e, "truncation to the leader's log not done yet");
                t.phase = Phase::Waiting(Instant::now() + t.backoff);
                t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Partitions whose backoff is over start their epoch exchange again.
    fn restart_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Key> = self
            .parts
            .iter()
            .filter(|(_, t)| matches!(t.phase, Phase::Waiting(at) if at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.generations += 1;
            let generation = self.generations;
            if let Some(t) = self.parts.get_mut(&key) {
                t.generation = generation;
            }
            let phase = self.start_truncation(&key, &self.parts[&key]);
            if let Some(t) = self.parts.get_mut(&key) {
                t.phase = phase;
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.parts
            .values()
            .filter_map(|t| match t.phase {
                Phase::Waiting(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// The partitions in the session now, with their fetch offsets: only those that still
    /// follow this leader at the stream's epoch (between a leadership change and the sync
    /// that tells the stream, a replica may already append in its new role, and the old
    /// leader must not count those records as replicated).
    fn fetching(parts: &HashMap<Key, Tracked>, leader: i32) -> Vec<(&Key, i64, i32)> {
        parts
            .iter()
            .filter(|(_, t)| matches!(t.phase, Phase::Fetching))
            .filter_map(|(k, t)| {
                let offset = t.partition.follower_fetch_offset(leader, t.epoch)?;
                Some((k, offset, t.epoch))
            })
            .collect()
    }

    /// Whether some partition is in its epoch exchange.
    fn truncating(&self) -> bool {
        self.parts
            .values()
            .any(|t| matches!(t.phase, Phase::Truncating(_)))
    }

    /// The protobuf request of `round`.
    fn request(&self, round: &Round, wait_ms: u32) -> pb::ReplicaSessionRequest {
        pb::ReplicaSessionRequest {
            replica_id: self.me,
            session_id: round.session_id,
            session_epoch: round.session_epoch,
            partitions: round
                .listed
                .iter()
                .map(|((topic, partition), offset, epoch)| pb::SessionPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    fetch_offset: *offset,
                    leader_epoch: *epoch,
                })
                .collect(),
            forgotten: round
                .forgotten
                .iter()
                .map(|(topic, partition)| pb::SessionPartitionRef {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .collect(),
            max_wait_ms: wait_ms,
            max_bytes: ROUND_MAX_BYTES,
            partition_max_bytes: ROUND_MAX_BYTES,
        }
    }

    /// Whether `followed` moves a partition of the session now (gone, or at a new epoch).
    fn moved_away(&self, followed: &Followed) -> bool {
        self.parts
            .iter()
            .filter(|(_, t)| matches!(t.phase, Phase::Fetching))
            .any(|(k, t)| {
                followed
                    .get(k)
                    .is_none_or(|(epoch, p)| *epoch != t.epoch || !Arc::ptr_eq(p, &t.partition))
            })
    }

    /// Applies an answer: errors move their partitions out of the session; records, resets and
    /// high watermarks are written in one blocking task.
    async fn apply(&mut self, round: &Round, resp: pb::ReplicaSessionResponse) {
        let mut dropped = Vec::new();
        let mut writes = Vec::new();
        for d in resp.partitions {
            let key = (d.topic.clone(), d.partition);
            let Some(t) = self.parts.get_mut(&key) else {
                continue; // no longer followed here
            };
            if !matches!(t.phase, Phase::Fetching) {
                continue;
            }
            if !d.error_code.is_empty() {
                tracing::debug!(topic = %key.0, partition = key.1, leader = self.leader, error = %d.error_message, "replica fetch refused");
                // A new epoch, a moved leadership, an offset the leader does not hold: after
                // a backoff the epochs are exchanged again (a no-op when the logs agree).
                t.phase = Phase::Waiting(Instant::now() + t.backoff);
                t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
                dropped.push(key);
                continue;
            }
            if let Some(remote) = &d.remote {
                // The leader's view of the remote tier: no follower reads the bucket for it.
                t.partition
                    .set_remote_summary(Some(RemoteSummary::from_proto(remote)));
            }
            writes.push((key, t.partition.clone(), t.epoch, d));
        }
        self.session.answered(round, resp.session_id, &dropped);
        if writes.is_empty() {
            return;
        }
        let leader = self.leader;
        let outcomes = blocking(move || {
            Ok(writes
                .into_iter()
                .map(|(key, p, epoch, d)| {
                    let outcome = write(&p, leader, epoch, &d);
                    (key, outcome)
                })
                .collect::<Vec<_>>())
        })
        .await;
        let outcomes = match outcomes {
            Ok(o) => o,
            Err(e) => {
                // The leader marked all of it as told: a new session makes it answer again.
                tracing::warn!(leader, error = %e, "cannot write what the leader sent");
                self.session.reset();
                return;
            }
        };
        for (key, outcome) in outcomes {
            if let (Err(e), Some(t)) = (outcome, self.parts.get_mut(&key)) {
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "cannot append what the leader sent; re-checking epochs");
                t.phase = Phase::Waiting(Instant::now() + t.backoff);
                t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
            } else if let Some(t) = self.parts.get_mut(&key) {
                t.backoff = BACKOFF;
            }
        }
    }
}

/// One partition's part of an answer, written to its log (on the blocking pool).
fn write(p: &Partition, leader: i32, epoch: i32, d: &pb::SessionPartitionData) -> Result<()> {
    let own_end = p.log_end_offset();
    if d.records.is_empty()
        && truncation::out_of_range(own_end, d.log_start_offset)
            == OutOfRange::ResetTo(d.log_start_offset)
    {
        tracing::warn!(topic = %p.topic, partition = p.index, leader, log_end = own_end,
            leader_log_start = d.log_start_offset,
            "this replica ends below the leader's log start; restarting it empty there");
        return p.reset_to(leader, epoch, d.log_start_offset);
    }
    p.append_replica(leader, epoch, &d.records, d.high_watermark)
}

/// One round: the leader's answer, or why there is none (refused, unreachable, or no answer
/// within the wait and a grace).
async fn fetch(
    mut client: ReplicaClient<Channel>,
    req: pb::ReplicaSessionRequest,
    wait_ms: u32,
) -> std::result::Result<pb::ReplicaSessionResponse, String> {
    let limit = Duration::from_millis(wait_ms as u64) + ROUND_GRACE;
    match tokio::time::timeout(limit, client.replica_fetch_session(req)).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(status.message().to_string()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}
