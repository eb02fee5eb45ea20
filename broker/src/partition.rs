//! One partition replica on this broker: its log, its role (leader or follower), its high
//! watermark and the long-poll wakeups.
//!
//! Invariants:
//! - appends are serialized by the log's write lock, so offsets are dense and in request order;
//!   the produce path reads batch headers only;
//! - consumers read only below the high watermark; on the leader the high watermark is the
//!   smallest log end offset over the in-sync replicas and never moves back;
//! - an `acks=all` append is answered only once the high watermark passed it;
//! - a retried idempotent batch is answered with its first offsets, never appended twice;
//! - log I/O runs on the blocking pool, never on an async worker.

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_log::batch::BatchIter;
use strata_log::{AppendInfo, Clock, Log, LogConfig};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{BrokerError, Result};
use crate::metadata::PartitionState;
use crate::producer_state::{Check, ProducerState};

/// What a fetch answers.
#[derive(Debug, Clone)]
pub struct FetchResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Offsets and size of a partition, for describe.
#[derive(Debug, Clone, Copy)]
pub struct PartitionStats {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
}

/// Where the remote tier of a partition starts and ends, from its latest manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSummary {
    pub start: i64,
    /// Offset after the last uploaded record.
    pub end: i64,
    pub segments: u32,
    pub bytes: u64,
}

impl RemoteSummary {
    pub fn of(m: &strata_tiering::Manifest) -> RemoteSummary {
        let start = m
            .remote_log_start_offset
            .max(m.segments.first().map_or(0, |s| s.base_offset));
        RemoteSummary {
            start,
            end: m.end_offset().unwrap_or(start),
            segments: m.segments.len() as u32,
            bytes: m.segments.iter().map(|s| s.object_bytes).sum(),
        }
    }

    fn holds(&self, offset: i64) -> bool {
        self.segments > 0 && offset >= self.start && offset < self.end
    }
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
pub struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset); -1 until it fetched.
    pub log_end_offset: i64,
    /// Last time the follower had everything the leader had at its previous fetch.
    pub last_caught_up_ms: i64,
    last_fetch_ms: i64,
    leader_end_at_last_fetch: i64,
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
    broker_id: i32,
    /// `None` once the partition was closed or deleted; operations then fail cleanly.
    log: RwLock<Option<Log>>,
    /// Consumers see offsets below it; receivers wake long-polling fetches and acks=all waits.
    high_watermark: watch::Sender<i64>,
    /// The log end offset; receivers wake long-polling follower fetches.
    log_end: watch::Sender<i64>,
    state: RwLock<PartitionState>,
    min_insync_replicas: AtomicU32,
    followers: Mutex<HashMap<i32, FollowerProgress>>,
    producers: Mutex<ProducerState>,
    clock: Arc<dyn Clock>,
    /// Local retention deletes only segments wholly below this offset: with tiered storage,
    /// where the remote tier ends; `i64::MAX` without tiered storage.
    retention_limit: AtomicI64,
    tiered: std::sync::atomic::AtomicBool,
    /// The partition's remote log when the topic is tiered.
    remote: RwLock<Option<Arc<strata_tiering::RemoteLog>>>,
    remote_summary: RwLock<Option<RemoteSummary>>,
    /// When this replica last became leader (followers not heard from since count from it).
    leading_since_ms: AtomicI64,
}

impl Partition {
    pub fn new(
        topic: Arc<str>,
        index: u32,
        broker_id: i32,
        log: Log,
        state: PartitionState,
        clock: Arc<dyn Clock>,
    ) -> Arc<Partition> {
        let end = log.log_end_offset();
        let mut producers = ProducerState::default();
        match log.headers_from(log.active_segment_base()) {
            Ok(headers) => headers.iter().for_each(|h| producers.record(h)),
            Err(e) => {
                tracing::warn!(%topic, partition = index, error = %e, "cannot rebuild producer state")
            }
        }
        // A replica alone in its ISR acknowledges alone: all it has is committed. Otherwise the
        // high watermark starts low and catches up with the followers' fetches.
        let hw = if state.isr == [broker_id] {
            end
        } else {
            log.log_start_offset()
        };
        let partition = Arc::new(Partition {
            topic,
            index,
            broker_id,
            log: RwLock::new(Some(log)),
            high_watermark: watch::Sender::new(hw),
            log_end: watch::Sender::new(end),
            state: RwLock::new(state.clone()),
            min_insync_replicas: AtomicU32::new(1),
            followers: Mutex::new(HashMap::new()),
            producers: Mutex::new(producers),
            leading_since_ms: AtomicI64::new(clock.now_ms()),
            retention_limit: AtomicI64::new(i64::MAX),
            tiered: std::sync::atomic::AtomicBool::new(false),
            remote: RwLock::new(None),
            remote_summary: RwLock::new(None),
            clock,
        });
        if state.leader == broker_id {
            partition.become_leader(state.leader_epoch);
        }
        partition
    }

    pub fn state(&self) -> PartitionState {
        self.state.read().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.state.read().leader == self.broker_id
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state.read().leader_epoch
    }

    /// The topic's min.insync.replicas, as last applied from the metadata.
    pub fn min_insync_replicas(&self) -> u32 {
        self.min_insync_replicas.load(Ordering::Relaxed)
    }

    pub fn set_min_insync_replicas(&self, n: u32) {
        self.min_insync_replicas.store(n, Ordering::Relaxed);
    }

    /// Whether the topic is tiered (its config says so). A tiered partition's local retention
    /// deletes only what the remote tier holds, whether or not a remote log is attached yet.
    pub fn set_tiered(&self, tiered: bool) {
        self.tiered.store(tiered, Ordering::Relaxed);
        self.update_retention_limit();
    }

    fn update_retention_limit(&self) {
        let limit = match (
            self.tiered.load(Ordering::Relaxed),
            *self.remote_summary.read(),
        ) {
            (false, _) => i64::MAX,
            (true, Some(s)) => s.end,
            (true, None) => 0,
        };
        self.retention_limit.store(limit, Ordering::Relaxed);
    }

    /// Attaches the partition's remote log (reads below the local start go there).
    pub fn set_remote_log(&self, remote: Option<Arc<strata_tiering::RemoteLog>>) {
        *self.remote.write() = remote;
    }

    pub fn remote_log(&self) -> Option<Arc<strata_tiering::RemoteLog>> {
        self.remote.read().clone()
    }

    /// Records what the latest manifest says; local retention may then delete below its end.
    pub fn set_remote_summary(&self, summary: Option<RemoteSummary>) {
        *self.remote_summary.write() = summary;
        self.update_retention_limit();
    }

    pub fn remote_summary(&self) -> Option<RemoteSummary> {
        *self.remote_summary.read()
    }

    /// Bytes of local segments starting at or after `offset` (not yet in the remote tier).
    pub fn local_bytes_above(&self, offset: i64) -> Result<u64> {
        self.with_log(|log| {
            Ok(log
                .segments()
                .iter()
                .filter(|s| s.base_offset >= offset)
                .map(|s| s.size_bytes)
                .sum())
        })
    }

    /// Applies leadership and ISR from the metadata. Taking over leadership with a new epoch
    /// records where the epoch starts and forgets what the previous leader knew of followers.
    pub fn set_state(&self, next: PartitionState) {
        let previous = std::mem::replace(&mut *self.state.write(), next.clone());
        let newly_leading = next.leader == self.broker_id
            && (previous.leader != self.broker_id || previous.leader_epoch != next.leader_epoch);
        if newly_leading {
            self.become_leader(next.leader_epoch);
        }
        if next.leader == self.broker_id {
            self.advance_high_watermark();
        }
        // Wake waiters so that acks=all waits and fetches re-check their role.
        self.high_watermark.send_modify(|_| {});
        self.log_end.send_modify(|_| {});
    }

    fn become_leader(&self, epoch: i32) {
        if let Err(e) = self.with_log_mut(|log| log.assign_epoch_start(epoch)) {
            tracing::error!(topic = %self.topic, partition = self.index, error = %e, "cannot record the leader epoch");
        }
        self.followers.lock().clear();
        self.leading_since_ms
            .store(self.clock.now_ms(), Ordering::Relaxed);
        tracing::info!(topic = %self.topic, partition = self.index, epoch, "leading");
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

    fn closed(&self) -> BrokerError {
        BrokerError::UnknownTopic(self.topic.to_string())
    }

    fn not_leader(&self) -> BrokerError {
        let state = self.state.read();
        BrokerError::NotLeader {
            topic: self.topic.to_string(),
            partition: self.index,
            broker: self.broker_id,
            leader: state.leader,
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
            if let Some(first) = BatchIter::new(&buf).next() {
                let (header, _) = first.map_err(|e| me.log_error(e))?;
                match me.producers.lock().check(&header) {
                    Check::Append => {}
                    Check::Duplicate { base_offset, last_offset } => {
                        return Ok(Appended { base_offset, last_offset, duplicate: true });
                    }
                    Check::OutOfOrder { expected, got } => {
                        return Err(BrokerError::OutOfOrderSequence(format!(
                            "producer {} sent sequence {got} to {}/{} where {expected} was expected",
                            header.producer_id, me.topic, me.index
                        )));
                    }
                    Check::Fenced { current, got } => {
                        return Err(BrokerError::InvalidRequest(format!(
                            "producer {} epoch {got} is older than its current epoch {current}",
                            header.producer_id
                        )));
                    }
                }
            }
            let info: AppendInfo = log.append(&mut buf, epoch).map_err(|e| me.log_error(e))?;
            me.record_producers(&buf);
            me.log_end.send_replace(log.log_end_offset());
            Ok(Appended { base_offset: info.base_offset, last_offset: info.last_offset, duplicate: false })
        })
        .await?;
        self.advance_high_watermark();
        if min_isr.is_some() {
            self.wait_for_high_watermark(appended.last_offset + 1, timeout)
                .await?;
        }
        Ok(appended)
    }

    fn record_producers(&self, stamped: &[u8]) {
        let mut producers = self.producers.lock();
        for (header, _) in BatchIter::new(stamped).flatten() {
            producers.record(&header);
        }
    }

    fn check_isr(&self, min: u32) -> Result<()> {
        let isr = self.state.read().isr.len();
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

    /// Waits until the high watermark reaches `offset`, the leadership moves, or `timeout`.
    async fn wait_for_high_watermark(&self, offset: i64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.high_watermark.subscribe();
        loop {
            if *rx.borrow_and_update() >= offset {
                return Ok(());
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

    /// Leader: the high watermark becomes the smallest log end offset over the ISR (followers
    /// not heard from yet count as not caught up). It never moves back.
    pub fn advance_high_watermark(&self) {
        let state = self.state.read().clone();
        if state.leader != self.broker_id {
            return;
        }
        let mut hw = self.log_end_offset();
        {
            let followers = self.followers.lock();
            for r in state.isr.iter().filter(|r| **r != self.broker_id) {
                hw = hw.min(followers.get(r).map_or(-1, |f| f.log_end_offset));
            }
        }
        self.high_watermark.send_if_modified(|current| {
            if hw > *current {
                *current = hw;
                true
            } else {
                false
            }
        });
    }

    /// Reads whole batches from `offset` for a consumer (below the high watermark), waiting up
    /// to `max_wait` for `min_bytes` to be there.
    pub async fn fetch(
        self: &Arc<Self>,
        offset: i64,
        max_wait: Duration,
        min_bytes: usize,
        max_bytes: usize,
    ) -> Result<FetchResult> {
        let deadline = Instant::now() + max_wait;
        let mut hw_rx = self.high_watermark.subscribe();
        loop {
            if !self.is_leader() {
                return Err(self.not_leader());
            }
            let hw = *hw_rx.borrow_and_update();
            let result = self.read(offset, max_bytes, hw).await?;
            if result.records.len() >= min_bytes.max(1) || Instant::now() >= deadline {
                return Ok(result);
            }
            match tokio::time::timeout_at(deadline, hw_rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(self.closed()),
                Err(_) => return Ok(result),
            }
        }
    }

    /// A read of the log's last few records, done on the calling (tokio) thread: followers and
    /// consumers that keep up ask for bytes appended moments ago, which the page cache holds,
    /// so the copy costs microseconds while a hop to the blocking pool and back costs two
    /// thread wake-ups on every replication and fetch round trip (most of end-to-end latency
    /// on a busy machine). `None` sends the read to the blocking pool instead: when the log
    /// lock is taken (an append may be in a write), or the offset is further back than
    /// [`INLINE_READ_RECORDS`], where the bytes may have left the page cache.
    fn read_tail_inline(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Option<Result<FetchResult>> {
        let guard = self.log.try_read()?;
        let log = guard.as_ref()?;
        let end = log.log_end_offset();
        if offset < log.log_start_offset() || end - offset > INLINE_READ_RECORDS {
            return None;
        }
        let read = log
            .read(offset, max_bytes.min(INLINE_READ_BYTES), max_offset)
            .map_err(|e| self.log_error(e));
        drop(guard);
        Some(read.map(|read| self.fetch_result(read)))
    }

    fn fetch_result(&self, read: strata_log::ReadResult) -> FetchResult {
        FetchResult {
            records: read.bytes,
            high_watermark: self.high_watermark(),
            log_start_offset: read.log_start_offset,
            log_end_offset: read.log_end_offset,
        }
    }

    /// One read, up to `max_offset` (exclusive): from the local log, or from the remote tier
    /// when the offset lies below the local log's start and the remote tier holds it.
    pub(crate) async fn read(
        self: &Arc<Self>,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<FetchResult> {
        let local_start = self.local_log_start_offset()?;
        if offset < local_start {
            if let Some(result) = self.read_remote(offset, max_bytes).await? {
                return Ok(result);
            }
        }
        let local = match self.read_tail_inline(offset, max_bytes, max_offset) {
            Some(read) => read,
            None => {
                let me = self.clone();
                blocking(move || {
                    let read = me.with_log(|log| log.read(offset, max_bytes, max_offset))?;
                    Ok(me.fetch_result(read))
                })
                .await
            }
        };
        match local {
            // Local retention moved the start past `offset` since it was read above: the
            // segment is in the remote tier now (retention never passes the manifest's end).
            Err(BrokerError::OffsetOutOfRange { start, .. }) if offset < start => {
                match self.read_remote(offset, max_bytes).await? {
                    Some(result) => Ok(result),
                    None => local,
                }
            }
            other => other,
        }
    }

    async fn read_remote(&self, offset: i64, max_bytes: usize) -> Result<Option<FetchResult>> {
        let (Some(remote), Some(summary)) = (self.remote_log(), self.remote_summary()) else {
            return Ok(None);
        };
        if !summary.holds(offset) {
            return Ok(None);
        }
        let bytes = remote
            .read(offset, max_bytes)
            .await
            .map_err(|e| self.tier_error(e))?;
        let Some(records) = bytes else {
            return Ok(None);
        };
        Ok(Some(FetchResult {
            records,
            high_watermark: self.high_watermark(),
            log_start_offset: summary.start,
            log_end_offset: self.log_end_offset(),
        }))
    }

    /// Leader: a follower fetched from `fetch_offset` (its log end offset). Updates what the
    /// leader knows of it and the high watermark. Returns whether the follower is now caught up
    /// enough to join the ISR (its log end offset reached the high watermark).
    pub fn follower_fetched(&self, follower: i32, fetch_offset: i64, now_ms: i64) -> bool {
        let leader_end = self.log_end_offset();
        {
            let mut followers = self.followers.lock();
            let p = followers.entry(follower).or_insert(FollowerProgress {
                log_end_offset: -1,
                last_caught_up_ms: now_ms,
                last_fetch_ms: now_ms,
                leader_end_at_last_fetch: leader_end,
            });
            p.log_end_offset = fetch_offset;
            if fetch_offset >= leader_end {
                p.last_caught_up_ms = now_ms;
            } else if fetch_offset >= p.leader_end_at_last_fetch {
                p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
            }
            p.last_fetch_ms = now_ms;
            p.leader_end_at_last_fetch = leader_end;
        }
        self.advance_high_watermark();
        let in_isr = self.state.read().isr.contains(&follower);
        !in_isr && fetch_offset >= self.high_watermark()
    }

    /// Leader: ISR members (other than the leader) not caught up for longer than `max_lag_ms`.
    pub fn lagging_followers(&self, now_ms: i64, max_lag_ms: i64) -> Vec<i32> {
        let leading_since_ms = self.leading_since_ms.load(Ordering::Relaxed);
        let state = self.state.read().clone();
        let followers = self.followers.lock();
        state
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.broker_id)
            .filter(|r| {
                let caught_up = followers
                    .get(r)
                    .map_or(leading_since_ms, |p| p.last_caught_up_ms);
                now_ms - caught_up > max_lag_ms
            })
            .collect()
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

    /// Follower: appends batches exactly as the leader stored them, then takes the leader's
    /// high watermark (capped by its own log end offset).
    pub fn append_replica(&self, records: &[u8], leader_high_watermark: i64) -> Result<()> {
        if !records.is_empty() {
            self.with_log_mut(|log| {
                log.append_replica(records)?;
                self.log_end.send_replace(log.log_end_offset());
                Ok(())
            })?;
            self.record_producers(records);
        }
        let hw = leader_high_watermark.min(self.log_end_offset());
        self.high_watermark.send_if_modified(|current| {
            if hw != *current {
                *current = hw;
                true
            } else {
                false
            }
        });
        Ok(())
    }

    /// Follower: drops everything at and after `offset` (a divergent tail).
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        self.with_log_mut(|log| {
            if offset < log.log_end_offset() {
                tracing::warn!(topic = %self.topic, partition = self.index, from = offset, to = log.log_end_offset(), "truncating a divergent tail");
                log.truncate_to(offset)?;
            }
            self.log_end.send_replace(log.log_end_offset());
            Ok(())
        })?;
        self.producers.lock().truncate(offset);
        let end = self.log_end_offset();
        self.high_watermark.send_if_modified(|hw| {
            let changed = *hw > end;
            *hw = (*hw).min(end);
            changed
        });
        Ok(())
    }

    /// The first offset whose timestamp is at or after `timestamp_ms`, with that timestamp.
    pub async fn offset_for_timestamp(
        self: &Arc<Self>,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>> {
        // The remote tier holds the oldest records: look there first when it holds any below
        // the local start (timestamps need not grow with offsets, so a local hit is not enough).
        let local_start = self.local_log_start_offset()?;
        if let (Some(remote), Some(summary)) = (self.remote_log(), self.remote_summary()) {
            if summary.segments > 0 && summary.start < local_start {
                let found = remote
                    .offset_for_timestamp(timestamp_ms)
                    .await
                    .map_err(|e| self.tier_error(e))?;
                if let Some(found) = found.filter(|(offset, _)| *offset < local_start) {
                    return Ok(Some(found));
                }
            }
        }
        let me = self.clone();
        blocking(move || {
            let hw = me.high_watermark();
            let found = me.with_log(|log| log.offset_for_timestamp(timestamp_ms))?;
            Ok(found.filter(|(offset, _)| *offset < hw))
        })
        .await
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
        self.with_log_mut(|log| log.update_config(config))
    }

    /// Time-based roll, flush.ms and (when `retention` is set) retention. Runs on the blocking pool.
    pub fn housekeeping(&self, retention: bool) -> Result<()> {
        let report = self.with_log_mut(|log| {
            log.roll_if_due()?;
            log.flush_if_due()?;
            if retention {
                let limit = self.retention_limit.load(Ordering::Relaxed);
                log.enforce_retention_below((limit != i64::MAX).then_some(limit))
                    .map(Some)
            } else {
                Ok(None)
            }
        })?;
        if let Some(report) = report {
            if report.deleted_segments > 0 {
                tracing::info!(
                    topic = %self.topic, partition = self.index,
                    segments = report.deleted_segments, bytes = report.deleted_bytes,
                    log_start_offset = report.log_start_offset,
                    "retention deleted segments"
                );
            }
        }
        Ok(())
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
/// How far behind the log end a read may start and still be done inline (records).
const INLINE_READ_RECORDS: i64 = 4096;
/// The most an inline read copies (beyond the first batch, which it always returns whole).
const INLINE_READ_BYTES: usize = 256 * 1024;

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Internal(format!("log task failed: {e}")))?
}
