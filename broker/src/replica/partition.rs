//! One partition replica on this broker: its log, its role (leader or follower), its high
//! watermark and the long-poll wakeups.
//!
//! The replication rules are not here: [`super::leader::LeaderState`] decides the high
//! watermark, ISR proposals and `acks=all` outcomes, [`super::producers`] decides retries; this
//! file holds the locks and the log and applies their decisions. Reads, the follower's writes
//! and the remote-tier view are `impl Partition` blocks in `reads.rs`, `follower.rs` and
//! `tier_view.rs`.
//!
//! Invariants:
//! - appends are serialized by the log's write lock, so offsets are dense and in request order;
//!   the produce path reads batch headers only;
//! - the role is checked inside the log's write lock: a leader appends only while it leads, a
//!   fetcher appends or truncates only while its (leader, epoch) is current, so a fetcher
//!   aborted by a leadership change cannot write afterwards;
//! - metadata is applied only forward: a partition state older (by revision) than the one
//!   applied is ignored, so a resync read before an ISR write cannot undo it;
//! - consumers read only below the high watermark, which never moves back on a leader;
//! - an `acks=all` append is answered only once the high watermark passed it with at least
//!   `min.insync.replicas` in the ISR (otherwise NOT_ENOUGH_REPLICAS_AFTER_APPEND), and so is
//!   a retry of it answered from producer state;
//! - a retried idempotent batch is answered with its first offsets, never appended twice;
//! - log I/O runs on the blocking pool, never on an async worker (tail reads excepted, see
//!   `reads.rs`).

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use strata_log::batch::BatchIter;
use strata_log::{AppendInfo, Clock, Log, LogConfig};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::leader::{AckState, LeaderState};
use super::producer_snapshots;
use super::producers::{Check, ProducerState};
use super::tier_view::RemoteSummary;
use crate::error::{BrokerError, Result};
use crate::metadata::PartitionState;

/// Offsets and size of a partition, for describe.
#[derive(Debug, Clone, Copy)]
pub struct PartitionStats {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
}

/// The partition state last applied, with the metadata revision it was read (or written) at.
#[derive(Debug, Clone)]
pub(super) struct Applied {
    pub(super) state: PartitionState,
    pub(super) revision: i64,
}

/// What an append did: offsets, and whether it was a retry answered from producer state.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub duplicate: bool,
}

#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub index: u32,
    pub(super) broker_id: i32,
    /// This broker's registration incarnation: it leads only where it was elected in it.
    pub(super) incarnation: i64,
    /// `None` once the partition was closed or deleted; operations then fail cleanly.
    pub(super) log: RwLock<Option<Log>>,
    /// Consumers see offsets below it; receivers wake long-polling fetches and acks=all waits.
    pub(super) high_watermark: watch::Sender<i64>,
    /// The log end offset; receivers wake long-polling follower fetches.
    pub(super) log_end: watch::Sender<i64>,
    pub(super) state: RwLock<Applied>,
    pub(super) min_insync_replicas: AtomicU32,
    /// The leader's replication state while this replica leads.
    pub(super) leader: Mutex<Option<LeaderState>>,
    pub(super) producers: Mutex<ProducerState>,
    /// The active segment's base offset when producer state was last snapshotted: a roll
    /// since then writes a new snapshot.
    pub(super) snapshot_base: AtomicI64,
    pub(super) clock: Arc<dyn Clock>,
    /// Local retention deletes only segments wholly below this offset: with tiered storage,
    /// where the remote tier ends; `i64::MAX` without tiered storage.
    pub(super) retention_limit: AtomicI64,
    pub(super) tiered: std::sync::atomic::AtomicBool,
    /// The topic allows unclean leader election: a follower may then cut committed records.
    pub(super) unclean_leader_election: std::sync::atomic::AtomicBool,
    /// The partition's remote log when the topic is tiered.
    pub(super) remote: RwLock<Option<Arc<strata_tiering::RemoteLog>>>,
    pub(super) remote_summary: RwLock<Option<RemoteSummary>>,
    /// The fetch sessions of followers that fetch this partition from here: woken by every
    /// append and role change (dead sessions are pruned as they are met).
    pub(super) session_wakers: Mutex<Vec<Weak<Notify>>>,
    /// This partition, for handing itself to the housekeeping inbox.
    me: Weak<Partition>,
    /// Changed since housekeeping last visited it (it is in the inbox).
    touched: std::sync::atomic::AtomicBool,
    chores: Arc<crate::housekeeping::Inbox>,
}

impl Partition {
    /// A replica of `topic`/`index` on this broker (`broker_id`, `incarnation`) over its opened
    /// `log`, in `state` as of metadata `revision`; it queues itself in `chores` whenever it
    /// changes (see [`crate::housekeeping`]).
    pub fn new(
        topic: Arc<str>,
        index: u32,
        (broker_id, incarnation): (i32, i64),
        log: Log,
        (state, revision): (PartitionState, i64),
        clock: Arc<dyn Clock>,
        chores: Arc<crate::housekeeping::Inbox>,
    ) -> Arc<Partition> {
        let end = log.log_end_offset();
        let producers = producer_snapshots::rebuild(&log, clock.now_ms());
        let snapshot_base = AtomicI64::new(log.active_segment_base());
        // A replica alone in its ISR acknowledges alone: all it has is committed. Otherwise the
        // high watermark starts low and catches up with the followers' fetches.
        let hw = if state.isr == [broker_id] {
            end
        } else {
            log.log_start_offset()
        };
        let partition = Arc::new_cyclic(|me| Partition {
            topic,
            index,
            broker_id,
            incarnation,
            log: RwLock::new(Some(log)),
            high_watermark: watch::Sender::new(hw),
            log_end: watch::Sender::new(end),
            state: RwLock::new(Applied {
                state: state.clone(),
                revision,
            }),
            min_insync_replicas: AtomicU32::new(1),
            leader: Mutex::new(None),
            producers: Mutex::new(producers),
            snapshot_base,
            retention_limit: AtomicI64::new(i64::MAX),
            tiered: std::sync::atomic::AtomicBool::new(false),
            unclean_leader_election: std::sync::atomic::AtomicBool::new(false),
            remote: RwLock::new(None),
            remote_summary: RwLock::new(None),
            session_wakers: Mutex::new(Vec::new()),
            me: me.clone(),
            touched: std::sync::atomic::AtomicBool::new(false),
            chores,
            clock,
        });
        if partition.leads(&state) {
            partition.become_leader(&state);
        }
        // Housekeeping learns what the opened log has due (an old segment to roll, retention).
        partition.touch();
        partition
    }

    pub fn state(&self) -> PartitionState {
        self.state.read().state.clone()
    }

    /// The metadata revision of the state last applied.
    pub fn state_revision(&self) -> i64 {
        self.state.read().revision
    }

    pub fn is_leader(&self) -> bool {
        self.leads(&self.state.read().state)
    }

    /// Whether `state` makes this replica the leader: it names this broker, elected in this
    /// incarnation (a restarted broker never resumes a leadership at the same epoch).
    pub(super) fn leads(&self, state: &PartitionState) -> bool {
        state.leader == self.broker_id && state.leader_incarnation == self.incarnation
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state.read().state.leader_epoch
    }

    /// The leader and leader epoch as last applied (read in place).
    pub fn leader_and_epoch(&self) -> (i32, i32) {
        let s = &self.state.read().state;
        (s.leader, s.leader_epoch)
    }

    /// The topic's min.insync.replicas, as last applied from the metadata.
    pub fn min_insync_replicas(&self) -> u32 {
        self.min_insync_replicas.load(Ordering::Relaxed)
    }

    pub fn set_min_insync_replicas(&self, n: u32) {
        self.min_insync_replicas.store(n, Ordering::Relaxed);
    }

    pub fn unclean_leader_election(&self) -> bool {
        self.unclean_leader_election.load(Ordering::Relaxed)
    }

    pub fn set_unclean_leader_election(&self, allowed: bool) {
        self.unclean_leader_election
            .store(allowed, Ordering::Relaxed);
    }

    /// Applies leadership and ISR from the metadata, read or written at `revision`. A state
    /// older than the one applied is ignored (returns false): a resync that read the metadata
    /// before this leader's ISR write must not bring the old ISR back. Taking over leadership
    /// with a new epoch records where the epoch starts and starts a fresh leader state.
    pub fn set_state(&self, next: PartitionState, revision: i64) -> bool {
        let previous = {
            let mut applied = self.state.write();
            if revision < applied.revision {
                return false;
            }
            if revision == applied.revision && applied.state == next {
                // A resync that found nothing new: no waiter needs waking.
                return true;
            }
            let previous = applied.state.clone();
            *applied = Applied {
                state: next.clone(),
                revision,
            };
            previous
        };
        let leading = self.leads(&next);
        let newly_leading =
            leading && (!self.leads(&previous) || previous.leader_epoch != next.leader_epoch);
        if newly_leading {
            self.become_leader(&next);
        } else if leading {
            let end = self.log_end_offset();
            if let Some(l) = self.leader.lock().as_mut() {
                l.isr_written(next.isr.clone(), end);
            }
            self.advance_high_watermark();
        } else {
            *self.leader.lock() = None;
        }
        // Wake waiters so that acks=all waits and fetches re-check their role.
        self.high_watermark.send_modify(|_| {});
        self.log_end.send_modify(|_| {});
        self.wake_sessions();
        true
    }

    /// Whether `broker` holds a replica of this partition (read in place: asked on every
    /// replica fetch).
    pub fn has_replica(&self, broker: i32) -> bool {
        self.state.read().state.replicas.contains(&broker)
    }

    /// Leader: `waker` is notified on every append and role change from now on (once however
    /// often it is added), until it is dropped.
    pub fn wake_on_change(&self, waker: &Arc<Notify>) {
        let mut wakers = self.session_wakers.lock();
        wakers.retain(|w| w.strong_count() > 0);
        let known = Arc::downgrade(waker);
        if !wakers.iter().any(|w| w.ptr_eq(&known)) {
            wakers.push(known);
        }
    }

    /// Leader: `waker` is no longer notified (its session forgot this partition).
    pub fn stop_waking(&self, waker: &Arc<Notify>) {
        let known = Arc::downgrade(waker);
        self.session_wakers
            .lock()
            .retain(|w| w.strong_count() > 0 && !w.ptr_eq(&known));
    }

    /// Notifies the fetch sessions waiting for this partition.
    pub(super) fn wake_sessions(&self) {
        self.session_wakers.lock().retain(|w| match w.upgrade() {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        });
    }

    fn become_leader(&self, state: &PartitionState) {
        let epoch = state.leader_epoch;
        // The epoch starts at the log end, under the write lock: no append of the previous
        // role can land after it.
        let start = self.with_log_mut(|log| {
            log.assign_epoch_start(epoch)?;
            Ok(log.log_end_offset())
        });
        let start = match start {
            Ok(start) => start,
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "cannot record the leader epoch");
                self.log_end_offset()
            }
        };
        *self.leader.lock() = Some(LeaderState::new(
            self.broker_id,
            epoch,
            start,
            state.isr.clone(),
            self.high_watermark(),
            self.clock.now_ms(),
        ));
        self.advance_high_watermark();
        tracing::info!(topic = %self.topic, partition = self.index, epoch, epoch_start = start, "leading");
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    pub fn log_end_offset(&self) -> i64 {
        *self.log_end.borrow()
    }

    pub(crate) fn log_error(&self, e: strata_log::LogError) -> BrokerError {
        BrokerError::from_log(&self.topic, self.index, e)
    }

    pub(crate) fn tier_error(&self, source: strata_tiering::TieringError) -> BrokerError {
        BrokerError::Tier {
            topic: self.topic.to_string(),
            partition: self.index,
            source,
        }
    }

    pub(super) fn closed(&self) -> BrokerError {
        BrokerError::UnknownTopic(self.topic.to_string())
    }

    pub(crate) fn not_leader(&self) -> BrokerError {
        let state = self.state.read();
        BrokerError::NotLeader {
            topic: self.topic.to_string(),
            partition: self.index,
            broker: self.broker_id,
            leader: state.state.leader,
        }
    }

    /// Runs `f` on the open log, under the read lock.
    pub(crate) fn with_log<T>(&self, f: impl FnOnce(&Log) -> strata_log::Result<T>) -> Result<T> {
        let guard = self.log.read();
        let log = guard.as_ref().ok_or_else(|| self.closed())?;
        f(log).map_err(|e| self.log_error(e))
    }

    /// Runs `f` on the open log, under the write lock.
    pub(crate) fn with_log_mut<T>(
        &self,
        f: impl FnOnce(&mut Log) -> strata_log::Result<T>,
    ) -> Result<T> {
        let mut guard = self.log.write();
        let log = guard.as_mut().ok_or_else(|| self.closed())?;
        f(log).map_err(|e| self.log_error(e))
    }

    /// Appends a produce request's batches as the leader. `min_isr` is set for acks=all, which
    /// then waits (up to `timeout`) until the high watermark passes the batches. A rejected
    /// request leaves the log unchanged.
    pub async fn append(
        self: &Arc<Self>,
        records: Bytes,
        min_isr: Option<u32>,
        timeout: Duration,
    ) -> Result<Appended> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if let Some(min) = min_isr {
            self.check_isr(min)?;
        }
        // The stamps (base offset, leader epoch) are written into the batch headers, so the
        // bytes must be ours: reuse the buffer when nothing else holds it, else copy once.
        let mut buf = records
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let me = self.clone();
        let appended = blocking(move || {
            let epoch = me.leader_epoch();
            let mut guard = me.log.write();
            let log = guard.as_mut().ok_or_else(|| me.closed())?;
            if !me.is_leader() {
                return Err(me.not_leader());
            }
            let headers = BatchIter::new(&buf)
                .map(|b| b.map(|(h, _)| h))
                .collect::<strata_log::Result<Vec<_>>>()
                .map_err(|e| me.log_error(e))?;
            let producer = headers.first().map_or(-1, |h| h.producer_id);
            match me.producers.lock().check_request(&headers) {
                Check::Append => {}
                // Answered like the first attempt, which includes waiting for acks=all.
                Check::Duplicate { base_offset, last_offset } => {
                    return Ok(Appended { base_offset, last_offset, duplicate: true });
                }
                Check::OutOfOrder { expected, got } => {
                    return Err(BrokerError::OutOfOrderSequence(format!(
                        "producer {producer} sent sequence {got} to {}/{} where {expected} was expected",
                        me.topic, me.index
                    )));
                }
                Check::Fenced { current, got } => {
                    return Err(BrokerError::InvalidRequest(format!(
                        "producer {producer} epoch {got} is older than its current epoch {current}"
                    )));
                }
                Check::UnknownProducer { got } => {
                    return Err(BrokerError::UnknownProducerId(format!(
                        "producer {producer} sent sequence {got} to {}/{}, which has no state for it (it expired after producer.id.expiration.ms, or the producer never wrote here); a producer starts a partition at sequence 0",
                        me.topic, me.index
                    )));
                }
                Check::TooManyProducers { limit } => {
                    return Err(BrokerError::InvalidRequest(format!(
                        "{}/{} already remembers {limit} idempotent producers, the most it tracks; producer {producer} can write once others have been idle for producer.id.expiration.ms",
                        me.topic, me.index
                    )));
                }
                Check::MixedProducers { count } => {
                    return Err(BrokerError::InvalidRequest(format!(
                        "a request to {}/{} carries idempotent batches of {count} producers; each producer sends its own batches",
                        me.topic, me.index
                    )));
                }
                Check::MixedRetry => {
                    return Err(BrokerError::InvalidRequest(format!(
                        "a request to {}/{} mixes retried batches of producer {producer} with new ones; send retries alone",
                        me.topic, me.index
                    )));
                }
            }
            let info: AppendInfo = log.append(&mut buf, epoch).map_err(|e| me.log_error(e))?;
            me.record_producers(log, &buf);
            me.log_end.send_replace(log.log_end_offset());
            me.wake_sessions();
            me.touch();
            Ok(Appended { base_offset: info.base_offset, last_offset: info.last_offset, duplicate: false })
        })
        .await?;
        if !appended.duplicate {
            let detail = format!(
                "{}/{} offsets {}..={}",
                self.topic, self.index, appended.base_offset, appended.last_offset
            );
            strata_tiering::failpoint::reached(
                strata_tiering::failpoint::PRODUCE_AFTER_APPEND,
                &detail,
            )
            .await;
        }
        self.advance_high_watermark();
        if let Some(min) = min_isr {
            self.wait_until_durable(appended.last_offset + 1, min, timeout)
                .await?;
        }
        Ok(appended)
    }

    /// Records appended (stamped) batches in the producer state, under the log's write lock;
    /// snapshots the state when the log rolled since the last snapshot.
    pub(super) fn record_producers(&self, log: &Log, stamped: &[u8]) {
        let now = self.clock.now_ms();
        let mut producers = self.producers.lock();
        for (header, _) in BatchIter::new(stamped).flatten() {
            producers.record(&header, now);
        }
        drop(producers);
        self.snapshot_producers(log);
    }

    /// Snapshots the producer state when the log rolled since the last snapshot (under the
    /// log's write lock, so the state matches the log end).
    pub(super) fn snapshot_producers(&self, log: &Log) {
        let base = log.active_segment_base();
        if self.snapshot_base.swap(base, Ordering::Relaxed) == base {
            return;
        }
        let producers = self.producers.lock();
        if let Err(e) = producer_snapshots::write(log.dir(), log.log_end_offset(), &producers) {
            // A missing snapshot costs a longer replay at the next start, nothing else.
            tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "cannot write a producer-state snapshot");
        }
    }

    /// Rebuilds the producer state from the snapshots and the log (after a truncation).
    pub(super) fn rebuild_producers(&self, log: &Log) {
        *self.producers.lock() = producer_snapshots::rebuild(log, self.clock.now_ms());
        self.snapshot_base
            .store(log.active_segment_base(), Ordering::Relaxed);
    }

    /// Forgets idempotent producers not heard from for `max_age_ms`.
    pub fn expire_producers(&self, max_age_ms: i64) {
        let expired = self
            .producers
            .lock()
            .expire(self.clock.now_ms(), max_age_ms);
        if expired > 0 {
            tracing::info!(topic = %self.topic, partition = self.index, expired, "forgot idle producer ids");
        }
    }

    fn check_isr(&self, min: u32) -> Result<()> {
        let isr = self.state.read().state.isr.len();
        if isr < min as usize {
            return Err(BrokerError::NotEnoughReplicas {
                topic: self.topic.to_string(),
                partition: self.index,
                isr,
                min,
            });
        }
        Ok(())
    }

    /// Waits until the high watermark reaches `offset` with at least `min_isr` replicas in the
    /// ISR, the leadership moves, or `timeout`. The high watermark reaching it after the ISR
    /// shrank below `min_isr` is NOT_ENOUGH_REPLICAS_AFTER_APPEND: the records are in the log,
    /// on fewer replicas than asked.
    async fn wait_until_durable(&self, offset: i64, min_isr: u32, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.high_watermark.subscribe();
        loop {
            rx.borrow_and_update();
            let ack = self.leader.lock().as_ref().map(|l| l.ack(offset, min_isr));
            match ack {
                None => return Err(self.not_leader()),
                Some(AckState::Durable) => return Ok(()),
                Some(AckState::NotEnoughAfterAppend { isr }) => {
                    return Err(BrokerError::NotEnoughReplicasAfterAppend {
                        topic: self.topic.to_string(),
                        partition: self.index,
                        last_offset: offset - 1,
                        isr,
                        min: min_isr,
                    })
                }
                Some(AckState::Waiting) => {}
            }
            if !self.is_leader() {
                return Err(self.not_leader());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(self.closed()),
                Err(_) => {
                    return Err(BrokerError::Timeout(format!(
                        "the in-sync replicas of {}/{} did not all confirm offset {} within {} ms",
                        self.topic,
                        self.index,
                        offset - 1,
                        timeout.as_millis()
                    )))
                }
            }
        }
    }

    /// Leader: the high watermark becomes what the leader state computes over the maximal
    /// ISR. It never moves back.
    pub fn advance_high_watermark(&self) {
        let end = self.log_end_offset();
        let Some(hw) = self.leader.lock().as_mut().map(|l| l.advance(end)) else {
            return;
        };
        self.high_watermark.send_if_modified(|current| {
            if hw > *current {
                *current = hw;
                true
            } else {
                false
            }
        });
    }

    /// Leader: a follower fetched from `fetch_offset` (its log end offset, already checked to
    /// be within the leader's log). Updates what the leader knows of it and the high
    /// watermark. Returns true when the follower is now proposed for the ISR (it counts for
    /// the high watermark from now on); the caller writes the expansion.
    pub fn follower_fetched(&self, follower: i32, fetch_offset: i64, now_ms: i64) -> Result<bool> {
        let leader_end = self.log_end_offset();
        if fetch_offset > leader_end || fetch_offset < 0 {
            return Err(BrokerError::OffsetOutOfRange {
                topic: self.topic.to_string(),
                partition: self.index,
                offset: fetch_offset,
                start: self.log_start_offset()?,
                end: leader_end,
            });
        }
        let joins = match self.leader.lock().as_mut() {
            Some(l) => l.follower_fetched(follower, fetch_offset, leader_end, now_ms),
            None => return Err(self.not_leader()),
        };
        self.advance_high_watermark();
        Ok(joins)
    }

    /// Leader: the write proposing `follower` for the ISR did not happen.
    pub fn join_failed(&self, follower: i32) {
        if let Some(l) = self.leader.lock().as_mut() {
            l.join_failed(follower);
        }
    }

    /// Leader: ISR members (other than the leader) not caught up for longer than `max_lag_ms`.
    pub fn lagging_followers(&self, now_ms: i64, max_lag_ms: i64) -> Vec<i32> {
        self.leader
            .lock()
            .as_ref()
            .map_or_else(Vec::new, |l| l.lagging(now_ms, max_lag_ms))
    }

    /// Leader: the catch-up throttle (bytes per second) for `follower`'s fetches: set when a
    /// reassignment with a throttle is adding it and it is not in the ISR yet. Read in place
    /// (no copy of the state): it is asked on every replica fetch.
    pub fn catch_up_throttle(&self, follower: i32) -> Option<u64> {
        let applied = self.state.read();
        let s = &applied.state;
        s.reassigning
            .as_ref()
            .filter(|r| r.throttle_bytes_per_sec > 0 && r.adding.contains(&follower))
            .filter(|_| !s.isr.contains(&follower))
            .map(|r| r.throttle_bytes_per_sec)
    }

    /// Leader: each follower's log end offset at its last fetch in this leadership (-1: it
    /// has not fetched yet).
    pub fn follower_ends(&self) -> Vec<(i32, i64)> {
        let replicas = self.state().replicas;
        let leader = self.leader.lock();
        let Some(l) = leader.as_ref() else {
            return Vec::new();
        };
        replicas
            .into_iter()
            .filter(|r| *r != self.broker_id)
            .map(|r| (r, l.progress(r).map_or(-1, |p| p.log_end_offset)))
            .collect()
    }

    /// Leader: where its current epoch started (a follower must reach it to join the ISR).
    pub fn epoch_start(&self) -> Option<i64> {
        self.leader.lock().as_ref().map(|l| l.epoch_start())
    }

    /// Leader: waits until the log grows past `offset` or `max_wait` passes (follower long poll).
    pub async fn wait_for_data(&self, offset: i64, max_wait: Duration) {
        let mut rx = self.log_end.subscribe();
        let _ = tokio::time::timeout(max_wait, async {
            while *rx.borrow_and_update() <= offset && self.is_leader() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    pub fn stats(&self) -> Result<PartitionStats> {
        let start = self.log_start_offset()?;
        self.with_log(|log| {
            Ok(PartitionStats {
                log_start_offset: start,
                high_watermark: self.high_watermark(),
                log_end_offset: log.log_end_offset(),
                size_bytes: log.size_bytes(),
            })
        })
    }

    /// The first offset of the whole log: the remote tier's start when it holds data below
    /// the local start.
    pub fn log_start_offset(&self) -> Result<i64> {
        let local = self.local_log_start_offset()?;
        let tiered = self.remote.read().is_some();
        Ok(
            match self.remote_summary().filter(|s| s.segments > 0 && tiered) {
                Some(s) => s.start.min(local),
                None => local,
            },
        )
    }

    /// The first offset on local disk.
    pub fn local_log_start_offset(&self) -> Result<i64> {
        self.with_log(|log| Ok(log.log_start_offset()))
    }

    pub fn update_config(&self, config: LogConfig) -> Result<()> {
        self.with_log_mut(|log| log.update_config(config))?;
        self.touch(); // segment.ms, flush.ms or retention may be due sooner
        Ok(())
    }

    /// Housekeeping will visit this partition soon: it changed in a way that may bring a
    /// chore due earlier than housekeeping last learnt (an append, a truncation, a new config
    /// or retention limit). Cheap when repeated: the partition is queued once per visit.
    pub(crate) fn touch(&self) {
        if !self.touched.swap(true, Ordering::AcqRel) {
            self.chores.push(self.me.clone());
        }
    }

    /// Runs the chores due now (the roll by segment.ms, the flush by flush.ms, producer-id
    /// expiry after `producer_expiry_ms`, retention, the fsync of sealed segments) and returns
    /// when the next is due; `None` when none is until the partition changes. A retention
    /// held back by the high watermark or the remote tier is looked at again after
    /// `recheck_ms`. Runs on the blocking pool.
    pub fn housekeeping(&self, producer_expiry_ms: i64, recheck_ms: i64) -> Result<Option<i64>> {
        // Cleared before reading anything: a change from now on queues the partition again.
        self.touched.store(false, Ordering::Release);
        self.expire_producers(producer_expiry_ms);
        // Never past the high watermark (as Kafka's log start never passes it): a lagging
        // follower must still find what it lacks.
        let limit = self
            .retention_limit
            .load(Ordering::Relaxed)
            .min(self.high_watermark());
        let report = self.with_log_mut(|log| {
            if log.roll_if_due()? {
                self.snapshot_producers(log);
            }
            log.flush_if_due()?;
            log.enforce_retention_below(Some(limit))
        })?;
        // Sealed segments are fsynced without the log's lock (appends go on meanwhile), then
        // the recovery point moves past them; a failed fsync stops the log.
        let unsynced = self.with_log_mut(|log| Ok(log.take_unsynced_sealed()))?;
        if let Some(&(end, _)) = unsynced.last() {
            let synced = unsynced.iter().try_for_each(|(_, file)| file.sync_data());
            self.with_log_mut(|log| log.sealed_synced(end, synced))?;
        }
        if report.deleted_segments > 0 {
            tracing::info!(
                topic = %self.topic, partition = self.index,
                segments = report.deleted_segments, bytes = report.deleted_bytes,
                log_start_offset = report.log_start_offset,
                "retention deleted segments"
            );
        }
        let chores = self.with_log(|log| Ok(log.chores(Some(limit))))?;
        let now = self.clock.now_ms();
        let due = [
            chores.due_ms,
            chores.held_back.then(|| now.saturating_add(recheck_ms)),
            self.producers.lock().next_expiry_ms(producer_expiry_ms),
        ];
        Ok(due.into_iter().flatten().min())
    }

    /// Takes the log out of the partition (for a clean close or a delete) and wakes every
    /// long-polling fetch, which then fails with unknown topic. Later calls return `None`.
    pub fn take_log(&self) -> Option<Log> {
        let log = self.log.write().take();
        self.high_watermark.send_modify(|_| {});
        self.log_end.send_modify(|_| {});
        log
    }
}

/// Runs blocking log work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Internal(format!("log task failed: {e}")))?
}
