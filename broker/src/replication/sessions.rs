//! Leader side of fetch sessions: one session per follower broker carries every partition
//! that follower fetches from here, and one round answers all of them at once
//! (`Replica.ReplicaFetchSession`).
//!
//! A round applies what the follower listed (the rules of [`super::session`]), records every
//! session partition's fetch as a single-partition fetch would (follower progress, ISR
//! proposals, the high watermark), and answers at once when some partition has news (records,
//! changed bounds, an error); otherwise it waits, woken by the first append or role change of
//! any session partition, up to the follower's `max_wait_ms`.
//!
//! Invariants: a round is checked against the partition's current leadership and epoch for
//! every partition, as a single-partition fetch is; a partition answered with an error leaves
//! the session; at most one session per follower broker (a new one replaces the old), so the
//! table is bounded by the cluster's size; no lock is held across a read or a wait.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_proto as pb;
use tokio::sync::Notify;

use super::session::{Bounds, Key, LeaderSession};
use crate::error::{BrokerError, Result};
use crate::replica::Partition;
use crate::state::BrokerState;

/// Longest wait the leader grants a round with no news.
const MAX_SESSION_WAIT: Duration = Duration::from_secs(5);

/// A session between rounds: its partitions, its waker (registered with each partition) and
/// where the next answer starts reading (so a byte budget is shared fairly across rounds).
#[derive(Debug)]
struct Live {
    session: LeaderSession<Arc<Partition>>,
    waker: Arc<Notify>,
    cursor: Option<Key>,
    /// The catch-up throttle is spent until then: throttled partitions' records are no news.
    throttled_until: Option<tokio::time::Instant>,
}

impl Live {
    /// Takes partitions out of the session (answered with an error, or forgotten).
    fn drop_partitions(&mut self, keys: &[Key]) {
        for key in keys {
            if let Some(e) = self.session.partitions.remove(key) {
                e.handle.stop_waking(&self.waker);
            }
        }
    }
}

/// What a read for a follower found.
pub(super) enum Read {
    Records(crate::replica::FetchResult),
    /// The catch-up throttle is spent for this long.
    Throttled(Duration),
}

/// The sessions this broker leads, by follower broker: the session's id, and the session
/// itself between rounds (`None` while a round holds it).
#[derive(Debug)]
pub struct FetchSessions {
    by_replica: Mutex<HashMap<i32, (u64, Option<Live>)>>,
    next_id: AtomicU64,
}

impl FetchSessions {
    /// Session ids start from `seed` (the incarnation), so a restarted leader never accepts a
    /// round of a session it did not open.
    pub fn new(seed: i64) -> Self {
        FetchSessions {
            by_replica: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new((seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        }
    }

    /// Sessions open now (one per follower broker at most).
    pub fn len(&self) -> usize {
        self.by_replica.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One partition's part of an answer.
fn answer(key: &Key, p: &Partition, bounds: &Bounds) -> pb::SessionPartitionData {
    pb::SessionPartitionData {
        topic: key.0.clone(),
        partition: key.1,
        error_code: String::new(),
        error_message: String::new(),
        high_watermark: bounds.high_watermark,
        log_start_offset: bounds.log_start_offset,
        log_end_offset: p.log_end_offset(),
        records: Default::default(),
        remote: p.remote_summary().map(|s| s.to_proto()),
    }
}

fn refusal(key: &Key, e: &BrokerError) -> pb::SessionPartitionData {
    pb::SessionPartitionData {
        topic: key.0.clone(),
        partition: key.1,
        error_code: e.code().as_str().to_string(),
        error_message: e.to_string(),
        ..Default::default()
    }
}

fn bounds_of(p: &Partition) -> Result<Bounds> {
    let remote = p.remote_summary();
    Ok(Bounds {
        high_watermark: p.high_watermark(),
        log_start_offset: p.local_log_start_offset()?,
        remote_version: remote.map_or(0, |r| r.version),
        remote_end: remote.map_or(-1, |r| r.end),
    })
}

/// Whether a session partition has a reason to answer: records past its fetch offset (not
/// while `throttled` and the partition is a throttled catch-up), a restart below the log
/// start, bounds never sent, a lost leadership or an error (a closed log); with `last` (the
/// round's wait is over) also bounds changed since they were sent. A new high watermark alone
/// does not end a wait: it would double the rounds under load (each answer with records moves
/// the high watermark once the follower reports it), and it travels with the next answer.
fn has_news(
    p: &Partition,
    e: &super::session::Entry<Arc<Partition>>,
    replica: i32,
    throttled: bool,
    last: bool,
) -> bool {
    if p.leader_and_epoch().1 != e.leader_epoch || !p.is_leader() {
        return true;
    }
    match bounds_of(p) {
        Ok(bounds) => {
            let records = e.fetch_offset < p.log_end_offset()
                && !(throttled && p.catch_up_throttle(replica).is_some());
            e.fetch_offset < bounds.log_start_offset
                || records
                || e.never_sent()
                || (last && e.is_news(&bounds))
        }
        Err(_) => true,
    }
}

impl BrokerState {
    /// A follower fetched `p` from `fetch_offset` (checked against the log): records its
    /// progress and proposes it for the ISR when it caught up, unless it is in controlled
    /// shutdown (the controller took it out, and acks=all must not wait for it).
    pub(super) fn note_follower_fetch(
        &self,
        p: &Partition,
        replica: i32,
        fetch_offset: i64,
    ) -> Result<()> {
        if p.follower_fetched(replica, fetch_offset, self.clock.now_ms())? {
            if self.replicas.snapshot().shutting_down.contains(&replica) {
                p.join_failed(replica);
            } else {
                self.isr_joiners
                    .lock()
                    .insert((p.topic.to_string(), p.index, replica));
            }
        }
        Ok(())
    }

    /// Whether `p` may be fetched by `replica` at `epoch` here now.
    fn check_session_partition(&self, p: &Partition, replica: i32, epoch: i32) -> Result<()> {
        if !p.is_leader() {
            return Err(BrokerError::NotLeader {
                topic: p.topic.to_string(),
                partition: p.index,
                broker: self.config.broker_id,
                leader: p.state().leader,
            });
        }
        let current = p.leader_epoch();
        if current != epoch {
            return Err(BrokerError::FencedEpoch(format!(
                "{}/{} is at leader epoch {current}; the follower fetched at {epoch}",
                p.topic, p.index
            )));
        }
        if !p.has_replica(replica) {
            return Err(BrokerError::InvalidRequest(format!(
                "broker {replica} is not a replica of {}/{}",
                p.topic, p.index
            )));
        }
        Ok(())
    }

    /// One round of a follower's fetch session.
    pub async fn replica_fetch_session(
        &self,
        req: pb::ReplicaSessionRequest,
    ) -> Result<pb::ReplicaSessionResponse> {
        let replica = req.replica_id;
        let mut answers = Vec::new();
        // The listed partitions this broker has; the others are answered as unknown.
        let mut listed = Vec::with_capacity(req.partitions.len());
        for sp in req.partitions {
            let key = (sp.topic, sp.partition);
            match self.replicas.local(&key.0, key.1) {
                Some(p) => listed.push((key, sp.fetch_offset, sp.leader_epoch, p)),
                None => answers.push(refusal(
                    &key,
                    &BrokerError::NotLeader {
                        topic: key.0.clone(),
                        partition: key.1,
                        broker: self.config.broker_id,
                        leader: -1,
                    },
                )),
            }
        }
        let forgotten = req.forgotten.into_iter().map(|r| (r.topic, r.partition));
        let mut live = if req.session_id == 0 {
            // A new session replaces the follower's old one (it reset after a failed round).
            let id = self.fetch_sessions.next_id.fetch_add(2, Ordering::Relaxed);
            self.fetch_sessions
                .by_replica
                .lock()
                .insert(replica, (id, None));
            Live {
                session: LeaderSession::open(id, std::iter::empty()),
                waker: Arc::new(Notify::new()),
                cursor: None,
                throttled_until: None,
            }
        } else {
            let taken = {
                let mut table = self.fetch_sessions.by_replica.lock();
                match table
                    .get_mut(&replica)
                    .filter(|(id, _)| *id == req.session_id)
                    .and_then(|(_, live)| live.take())
                {
                    Some(live) => Some(live),
                    None => {
                        // A round of this session is running (a duplicate): the session ends.
                        // Another id is left alone (a newer session, or none).
                        if table
                            .get(&replica)
                            .is_some_and(|(id, _)| *id == req.session_id)
                        {
                            table.remove(&replica);
                        }
                        None
                    }
                }
            };
            let mut live = taken.ok_or_else(|| {
                BrokerError::InvalidRequest(
                    super::session::Refused::Unknown { id: req.session_id }.to_string(),
                )
            })?;
            if let Err(refused) = live.session.next_round(req.session_id, req.session_epoch) {
                self.fetch_sessions.by_replica.lock().remove(&replica);
                return Err(BrokerError::InvalidRequest(refused.to_string()));
            }
            live
        };
        for (_, _, _, p) in &listed {
            p.wake_on_change(&live.waker);
        }
        for p in live.session.update(listed, forgotten) {
            p.stop_waking(&live.waker);
        }
        let result = self
            .round(
                replica,
                &mut live,
                answers,
                req.max_wait_ms,
                req.max_bytes,
                req.partition_max_bytes,
            )
            .await;
        let id = live.session.id;
        {
            let mut table = self.fetch_sessions.by_replica.lock();
            // Back in its slot, unless a newer session of the same follower took it meanwhile
            // (or a refused round ended the session).
            if let Some((owner, slot @ None)) = table.get_mut(&replica) {
                if *owner == id {
                    *slot = Some(live);
                }
            }
        }
        Ok(pb::ReplicaSessionResponse {
            session_id: id,
            partitions: result?,
        })
    }

    /// Records every partition's fetch, then answers what has news, waiting for some if none
    /// has any.
    async fn round(
        &self,
        replica: i32,
        live: &mut Live,
        mut answers: Vec<pb::SessionPartitionData>,
        max_wait_ms: u32,
        max_bytes: u32,
        partition_max_bytes: u32,
    ) -> Result<Vec<pb::SessionPartitionData>> {
        let mut dropped = Vec::new();
        for (key, e) in &live.session.partitions {
            let noted = self
                .check_session_partition(&e.handle, replica, e.leader_epoch)
                .and_then(|()| self.note_follower_fetch(&e.handle, replica, e.fetch_offset));
            if let Err(err) = noted {
                answers.push(refusal(key, &err));
                dropped.push(key.clone());
            }
        }
        live.drop_partitions(&dropped);
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(max_wait_ms as u64).min(MAX_SESSION_WAIT);
        let total = (max_bytes as usize).clamp(1, self.config.max_fetch_bytes);
        let per_partition = (partition_max_bytes as usize).clamp(1, total);
        let waker = live.waker.clone();
        loop {
            // Armed before looking, so an append after the look still ends the wait.
            let notified = waker.notified();
            let now = tokio::time::Instant::now();
            if live.throttled_until.is_some_and(|t| t <= now) {
                live.throttled_until = None;
            }
            let last = now >= deadline;
            self.gather(replica, live, &mut answers, (total, per_partition), last)
                .await;
            if !answers.is_empty() || last {
                return Ok(answers);
            }
            // Woken by an append or a role change, when the throttle refills, or at the end.
            let wake_at = live.throttled_until.map_or(deadline, |t| t.min(deadline));
            let _ = tokio::time::timeout_at(wake_at, notified).await;
        }
    }

    /// When a session partition has a reason to answer (or this is the `last` look of the
    /// round), adds to `answers` every session partition with news, reading records within the
    /// byte budgets (`total`, `per_partition`), starting after the partition the last answer
    /// ended at.
    async fn gather(
        &self,
        replica: i32,
        live: &mut Live,
        answers: &mut Vec<pb::SessionPartitionData>,
        (total, per_partition): (usize, usize),
        last: bool,
    ) {
        let throttled = live.throttled_until.is_some();
        if !live
            .session
            .partitions
            .values()
            .any(|e| has_news(&e.handle, e, replica, throttled, last))
        {
            return; // the idle case: nothing copied, nothing allocated
        }
        let mut budget = total;
        let mut dropped = Vec::new();
        let keys: Vec<Key> = match &live.cursor {
            Some(c) => live
                .session
                .partitions
                .range((Bound::Excluded(c.clone()), Bound::Unbounded))
                .chain(live.session.partitions.range(..=c.clone()))
                .map(|(k, _)| k.clone())
                .collect(),
            None => live.session.partitions.keys().cloned().collect(),
        };
        for key in keys {
            let Some(e) = live.session.partitions.get_mut(&key) else {
                continue;
            };
            let p = e.handle.clone();
            let led = self.check_session_partition(&p, replica, e.leader_epoch);
            let bounds = match led.and_then(|()| bounds_of(&p)) {
                Ok(b) => b,
                Err(err) => {
                    answers.push(refusal(&key, &err));
                    dropped.push(key);
                    continue;
                }
            };
            let mut data = answer(&key, &p, &bounds);
            if e.fetch_offset < bounds.log_start_offset {
                // Below the leader's local log start: the follower restarts there (it never
                // pulls remote history through the leader).
                e.sent(bounds);
                answers.push(data);
                continue;
            }
            let has_records = e.fetch_offset < p.log_end_offset();
            let throttled =
                live.throttled_until.is_some() && p.catch_up_throttle(replica).is_some();
            if has_records && budget > 0 && !throttled {
                match self
                    .read_for(&p, replica, e.fetch_offset, per_partition.min(budget))
                    .await
                {
                    Ok(Read::Records(read)) => {
                        let records = read.records;
                        budget -= records.len().min(budget);
                        data.records = records;
                        if budget == 0 {
                            live.cursor = Some(key.clone());
                        }
                    }
                    Ok(Read::Throttled(wait)) => {
                        live.throttled_until = Some(tokio::time::Instant::now() + wait);
                    }
                    Err(err) => {
                        answers.push(refusal(&key, &err));
                        dropped.push(key);
                        continue;
                    }
                }
            }
            if !data.records.is_empty() || e.is_news(&bounds) {
                e.sent(bounds);
                answers.push(data);
            }
        }
        live.drop_partitions(&dropped);
    }

    /// Records of `p` from `offset` for `replica`, within `max_bytes` and the catch-up
    /// throttle of a replica a reassignment is adding.
    pub(super) async fn read_for(
        &self,
        p: &Arc<Partition>,
        replica: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Read> {
        let mut max_bytes = max_bytes;
        let throttle = p.catch_up_throttle(replica);
        if let Some(rate) = throttle {
            let granted = self
                .replication_throttle
                .lock()
                .grant(rate, self.clock.now_ms());
            match granted {
                Ok(allowed) => max_bytes = max_bytes.min(allowed.max(1)),
                Err(wait) => return Ok(Read::Throttled(wait)),
            }
        }
        let read = p.read(offset, max_bytes, i64::MAX).await?;
        if throttle.is_some() {
            self.replication_throttle.lock().spent(read.records.len());
        }
        Ok(Read::Records(read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::PartitionState;
    use strata_log::{BatchBuilder, Compression, Log, LogConfig, ManualClock};

    const ME: i32 = 1;
    const FOLLOWER: i32 = 2;

    fn leader(dir: &std::path::Path) -> Arc<Partition> {
        let clock = ManualClock::new(0);
        let log = Log::open(dir, LogConfig::default(), clock.clone()).unwrap();
        let state = PartitionState {
            replicas: vec![ME, FOLLOWER],
            leader: ME,
            leader_epoch: 1,
            isr: vec![ME, FOLLOWER],
            leader_incarnation: 7,
            emptied: Vec::new(),
            reassigning: None,
        };
        Partition::new(
            Arc::from("t"),
            0,
            (ME, 7),
            log,
            (state, 1),
            clock,
            Arc::default(),
        )
    }

    /// The window: the follower reports records it appended, which moves the high watermark.
    /// A round that answered at once for that alone made two rounds per batch under load (one
    /// with the records, one with the new high watermark); the high watermark waits for a
    /// reason to answer, or for the end of the round's wait.
    #[tokio::test]
    async fn a_new_high_watermark_alone_waits_for_the_next_answer() {
        let dir = tempfile::tempdir().unwrap();
        let p = leader(dir.path());
        let key: Key = ("t".to_string(), 0);
        let mut session = LeaderSession::open(1, [(key.clone(), 0, 1, p.clone())]);
        let e = session.partitions.get_mut(&key).unwrap();
        assert!(has_news(&p, e, FOLLOWER, false, false), "bounds never sent");
        e.sent(bounds_of(&p).unwrap());
        assert!(!has_news(&p, e, FOLLOWER, false, false), "nothing new");
        let mut b = BatchBuilder::new(Compression::None);
        b.append(0, None, Some(b"v"), &[]);
        p.append(b.build().unwrap(), None, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(has_news(&p, e, FOLLOWER, false, false), "records to send");
        // Sent, then fetched: the follower's report moves the high watermark to 1.
        e.sent(bounds_of(&p).unwrap());
        e.fetch_offset = 1;
        p.follower_fetched(FOLLOWER, 1, 0).unwrap();
        assert_eq!(p.high_watermark(), 1);
        assert!(
            !has_news(&p, e, FOLLOWER, false, false),
            "a new high watermark alone ended the wait"
        );
        assert!(
            has_news(&p, e, FOLLOWER, false, true),
            "the last look of a round carries the new high watermark"
        );
    }
}
