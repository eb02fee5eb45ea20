//! A consumer in a group: [`Consumer::subscribe`] turns a consumer into a [`GroupConsumer`]
//! that joins the group, consumes the partitions the coordinator assigns it, heartbeats from a
//! background task, rebalances inside `poll` (the JoinGroup long poll runs in the background,
//! so `poll` keeps its timeout), and commits offsets (automatically or on demand).
//!
//! Delivery: `poll` returns records and moves positions past them; commits store positions.
//! - at-least-once (the default): process what `poll` returned, then commit (auto-commit does
//!   this: it commits at the next `poll`, after the application had the records, and before a
//!   partition is revoked). A crash between processing and commit replays those records.
//! - at-most-once: commit right after `poll` (`commit_sync`), then process. A crash after the
//!   commit loses what was not processed yet.
//!
//! Invariants: records of a partition are returned only while this member owns it; with an
//! eager strategy (range, roundrobin) every partition is revoked (and auto-committed) before
//! rejoining; with cooperative-sticky only the partitions that move are, and the member rejoins
//! at once so the coordinator can hand them on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_proto::{
    CommitOffsetsRequest, ErrorCode, FetchOffsetsRequest, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, OffsetCommit, SyncGroupRequest, TopicPartition,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{GroupSettings, OffsetReset};
use crate::consumer::{Consumer, ConsumerRecord, SeekTo};
use crate::coordinator::GroupCalls;
use crate::error::{Error, Result};

/// A partition, as groups name them.
pub type Partition = (String, u32);

/// Longest wait of one inner poll: how quickly `poll` notices a rebalance.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// What a rebalance did to this member's partitions, told to the rebalance callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// Taken away in an orderly rebalance (already committed when auto-commit is on).
    Revoked(Vec<Partition>),
    /// Given to this member; consumption starts at the committed offsets.
    Assigned(Vec<Partition>),
    /// Taken away because this member was removed from the group (session timeout, or
    /// `max_poll_interval` passed): other members may already consume them; nothing was
    /// committed.
    Lost(Vec<Partition>),
}

/// The rebalance callback.
pub type RebalanceListener = Box<dyn FnMut(&RebalanceEvent) + Send>;

/// Membership shared with the heartbeat task.
#[derive(Debug)]
struct Membership {
    member_id: String,
    generation: i32,
    protocol: String,
    rejoin: bool,
    last_poll: Instant,
}

/// A member of a consumer group.
pub struct GroupConsumer {
    inner: Consumer,
    calls: Arc<GroupCalls>,
    settings: GroupSettings,
    topics: Vec<String>,
    shared: Arc<Mutex<Membership>>,
    owned: Vec<Partition>,
    /// In a mutex only so that `GroupConsumer` is `Sync` and its `poll` future `Send` (it is
    /// reached through `&mut self`, never locked in contention).
    listener: Option<Mutex<RebalanceListener>>,
    last_auto_commit: Instant,
    joined: bool,
    /// The JoinGroup in flight, if any.
    pending_join: Option<JoinHandle<Result<JoinGroupResponse>>>,
    join_backoff_until: Instant,
    heartbeat: JoinHandle<()>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.settings.group)
            .field("topics", &self.topics)
            .field("owned", &self.owned)
            .finish()
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if let Some(join) = self.pending_join.take() {
            join.abort();
        }
    }
}

impl Consumer {
    /// Joins `group` (a name, or [`GroupSettings`]) subscribed to `topics`. The first `poll`
    /// joins; partitions come from the group's coordinator.
    pub fn subscribe(
        self,
        group: impl Into<GroupSettings>,
        topics: &[&str],
    ) -> Result<GroupConsumer> {
        let settings = group.into();
        if topics.is_empty() {
            return Err(Error::InvalidInput(
                "subscribe to at least one topic".to_string(),
            ));
        }
        if settings.heartbeat_interval >= settings.session_timeout {
            return Err(Error::InvalidInput(format!(
                "the heartbeat interval ({:?}) must be shorter than the session timeout ({:?})",
                settings.heartbeat_interval, settings.session_timeout
            )));
        }
        let calls = Arc::new(GroupCalls::new(self.cluster().clone(), &settings.group));
        let shared = Arc::new(Mutex::new(Membership {
            member_id: String::new(),
            generation: -1,
            protocol: String::new(),
            rejoin: true,
            last_poll: Instant::now(),
        }));
        let heartbeat = tokio::spawn(heartbeat_loop(
            calls.clone(),
            settings.clone(),
            shared.clone(),
        ));
        let mut inner = self;
        inner.clear_assignment();
        Ok(GroupConsumer {
            inner,
            calls,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            settings,
            shared,
            owned: Vec::new(),
            listener: None,
            last_auto_commit: Instant::now(),
            joined: false,
            pending_join: None,
            join_backoff_until: Instant::now(),
            heartbeat,
        })
    }
}

impl GroupConsumer {
    /// Calls `listener` on every revocation, assignment and loss, inside `poll`.
    pub fn on_rebalance(&mut self, listener: RebalanceListener) {
        self.listener = Some(Mutex::new(listener));
    }

    /// Changes the subscription; the next `poll` rejoins, and the group rebalances.
    pub fn set_topics(&mut self, topics: &[&str]) -> Result<()> {
        if topics.is_empty() {
            return Err(Error::InvalidInput(
                "subscribe to at least one topic".to_string(),
            ));
        }
        self.topics = topics.iter().map(|t| t.to_string()).collect();
        self.shared.lock().rejoin = true;
        Ok(())
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> &[Partition] {
        &self.owned
    }

    /// The member id and generation (empty and -1 before the first join).
    pub fn membership(&self) -> (String, i32) {
        let m = self.shared.lock();
        (m.member_id.clone(), m.generation)
    }

    /// The next offset `poll` returns for an owned partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.inner.position(topic, partition)
    }

    pub fn pause(&mut self, partitions: &[Partition]) -> Result<()> {
        self.inner.pause(partitions)
    }

    pub fn resume(&mut self, partitions: &[Partition]) -> Result<()> {
        self.inner.resume(partitions)
    }

    /// Records of the owned partitions, waiting up to `timeout` for the first. Starts a join
    /// when one is due and completes it when the coordinator answers (a rebalance never keeps
    /// `poll` past its timeout: with nothing owned it waits for the join, otherwise it goes on
    /// returning records of what this member still owns); auto-commits when it is due.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.shared.lock().last_poll = Instant::now();
            let due = !self.joined || self.shared.lock().rejoin;
            if due && self.pending_join.is_none() && Instant::now() >= self.join_backoff_until {
                self.start_join().await;
            }
            if self.pending_join.is_some() {
                let wait_until = if self.owned.is_empty() {
                    deadline
                } else {
                    Instant::now()
                };
                if let Some(answer) = self.join_answer(wait_until).await {
                    self.finish_join(answer).await?;
                    continue;
                }
            }
            if self.settings.enable_auto_commit
                && self.joined
                && self.last_auto_commit.elapsed() >= self.settings.auto_commit_interval
            {
                self.last_auto_commit = Instant::now();
                if let Err(e) = self.commit_sync().await {
                    tracing::warn!(group = %self.settings.group, error = %e, "auto-commit failed");
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let records = self.inner.poll(left.min(POLL_SLICE)).await?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Commits the positions of every owned partition and waits for the answer.
    pub async fn commit_sync(&self) -> Result<()> {
        let offsets = self.positions(&self.owned);
        self.commit_offsets_sync(&offsets).await
    }

    /// Commits the positions of every owned partition in the background; the handle gives
    /// the outcome (dropping it does not cancel the commit).
    pub fn commit_async(&self) -> JoinHandle<Result<()>> {
        let request = self.commit_request(&self.positions(&self.owned));
        let calls = self.calls.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move { send_commit(&calls, &shared, request).await })
    }

    /// Commits these offsets (the next offset to read, per partition).
    pub async fn commit_offsets_sync(&self, offsets: &[(Partition, i64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let request = self.commit_request(offsets);
        send_commit(&self.calls, &self.shared, request).await
    }

    /// The group's committed offset of a partition, if any.
    pub async fn committed(&self, topic: &str, partition: u32) -> Result<Option<i64>> {
        let found = self
            .fetch_committed(&[(topic.to_string(), partition)])
            .await?;
        Ok(found.into_iter().next().and_then(|(_, o)| o))
    }

    /// Commits (when auto-commit is on), leaves the group and stops heartbeating.
    pub async fn close(mut self) -> Result<()> {
        let mut result = Ok(());
        if self.settings.enable_auto_commit && self.joined {
            result = self.commit_sync().await;
        }
        self.heartbeat.abort();
        let member_id = self.shared.lock().member_id.clone();
        if !member_id.is_empty() {
            let request = LeaveGroupRequest {
                group: self.settings.group.clone(),
                member_id,
            };
            let left = self
                .calls
                .call(|mut c| {
                    let r = request.clone();
                    async move { c.leave_group(r).await }
                })
                .await;
            if let Err(e) = left {
                tracing::debug!(error = %e, "leaving the group failed; the session timeout removes this member");
            }
        }
        self.owned.clear();
        result
    }

    fn positions(&self, parts: &[Partition]) -> Vec<(Partition, i64)> {
        parts
            .iter()
            .filter_map(|(t, p)| self.inner.position(t, *p).map(|o| ((t.clone(), *p), o)))
            .collect()
    }

    fn commit_request(&self, offsets: &[(Partition, i64)]) -> CommitOffsetsRequest {
        let m = self.shared.lock();
        CommitOffsetsRequest {
            group: self.settings.group.clone(),
            member_id: m.member_id.clone(),
            generation: m.generation,
            offsets: offsets
                .iter()
                .map(|((topic, partition), offset)| OffsetCommit {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    metadata: String::new(),
                })
                .collect(),
        }
    }

    fn notify(&mut self, event: RebalanceEvent) {
        if let Some(listener) = self.listener.as_mut() {
            (listener.get_mut())(&event);
        }
    }

    /// Sends JoinGroup in the background. Eager strategies give every partition up first; a
    /// member the group forgot starts over as new (its partitions are lost).
    async fn start_join(&mut self) {
        let member_id = self.shared.lock().member_id.clone();
        if member_id.is_empty() && !self.owned.is_empty() {
            // Removed from the group: others may own these already; nothing to commit.
            let lost = std::mem::take(&mut self.owned);
            self.inner.clear_assignment();
            self.notify(RebalanceEvent::Lost(lost));
        }
        let cooperative = self.shared.lock().protocol == "cooperative-sticky";
        if !cooperative && !self.owned.is_empty() {
            self.revoke(self.owned.clone()).await;
        }
        let request = JoinGroupRequest {
            group: self.settings.group.clone(),
            member_id,
            client_id: self.settings.client_id.clone(),
            topics: self.topics.clone(),
            protocols: self.settings.strategies.clone(),
            session_timeout_ms: millis(self.settings.session_timeout),
            rebalance_timeout_ms: millis(self.settings.max_poll_interval),
            owned: if cooperative {
                self.owned
                    .iter()
                    .map(|(topic, partition)| TopicPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                    .collect()
            } else {
                Vec::new()
            },
        };
        let calls = self.calls.clone();
        self.pending_join = Some(tokio::spawn(async move {
            calls
                .call(|mut c| {
                    let r = request.clone();
                    async move { c.join_group(r).await }
                })
                .await
        }));
    }

    /// The pending join's answer, if it comes by `until`.
    async fn join_answer(&mut self, until: Instant) -> Option<Result<JoinGroupResponse>> {
        let handle = self.pending_join.as_mut()?;
        let answer = tokio::time::timeout_at(until, handle).await.ok()?;
        self.pending_join = None;
        Some(
            answer
                .unwrap_or_else(|e| Err(Error::InvalidInput(format!("the join task failed: {e}")))),
        )
    }

    /// Completes a join: sync, then revoke and add partitions as the new assignment says.
    /// Errors that mean "join again" schedule another join instead of failing `poll`.
    async fn finish_join(&mut self, answer: Result<JoinGroupResponse>) -> Result<()> {
        let joined = match answer {
            Ok(j) => j,
            Err(e) if e.code() == Some(ErrorCode::UnknownMemberId) => {
                self.shared.lock().member_id.clear();
                return Ok(());
            }
            Err(e) if rejoin_after(&e) || e.is_retriable() => {
                tracing::debug!(error = %e, "joining again");
                self.join_backoff_until = Instant::now() + Duration::from_millis(100);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // Kept before anything else can fail: a member that lost its id would rejoin as a new
        // one and leave its old self for the group to wait on.
        self.shared.lock().member_id = joined.member_id.clone();
        if joined.generation < 0 {
            // A first join: the coordinator gave the member its id; join again with it.
            return Ok(());
        }
        let sync = SyncGroupRequest {
            group: self.settings.group.clone(),
            member_id: joined.member_id.clone(),
            generation: joined.generation,
        };
        let synced = self
            .calls
            .call(|mut c| {
                let r = sync.clone();
                async move { c.sync_group(r).await }
            })
            .await;
        let synced = match synced {
            Ok(s) => s,
            Err(e) if rejoin_after(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        {
            let mut m = self.shared.lock();
            m.member_id = joined.member_id.clone();
            m.generation = joined.generation;
            m.protocol = joined.protocol.clone();
            m.rejoin = false;
        }
        let new: BTreeSet<Partition> = synced
            .assignment
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        let old: BTreeSet<Partition> = self.owned.iter().cloned().collect();
        let revoked: Vec<Partition> = old.difference(&new).cloned().collect();
        let added: Vec<Partition> = new.difference(&old).cloned().collect();
        if !revoked.is_empty() {
            self.revoke(revoked).await;
            // Cooperative: rejoin now, so the coordinator can give them to their new owner.
            self.shared.lock().rejoin = true;
        }
        if !added.is_empty() {
            self.add(added).await?;
        }
        self.joined = true;
        tracing::info!(group = %self.settings.group, generation = joined.generation,
            member = %joined.member_id, partitions = self.owned.len(), "joined");
        Ok(())
    }

    /// Gives partitions up: commit their positions (auto-commit), tell the listener, stop
    /// fetching them.
    async fn revoke(&mut self, parts: Vec<Partition>) {
        if self.settings.enable_auto_commit {
            let offsets = self.positions(&parts);
            if let Err(e) = self.commit_offsets_sync(&offsets).await {
                tracing::warn!(group = %self.settings.group, error = %e, "committing revoked partitions failed");
            }
        }
        self.notify(RebalanceEvent::Revoked(parts.clone()));
        self.owned.retain(|p| !parts.contains(p));
        let keep = self.owned.clone();
        if let Err(e) = self.inner.assign(keep).await {
            tracing::warn!(error = %e, "dropping revoked partitions failed");
        }
    }

    /// Takes partitions on: start each at the committed offset, or where
    /// `auto_offset_reset` says when there is none (or it is outside the log).
    async fn add(&mut self, parts: Vec<Partition>) -> Result<()> {
        let result = self.try_add(&parts).await;
        if result.is_err() {
            // Fetch only what is owned: nothing half-added.
            let owned = self.owned.clone();
            if let Err(e) = self.inner.assign(owned).await {
                tracing::warn!(error = %e, "dropping partitions that could not be added failed");
            }
            self.shared.lock().rejoin = true;
        }
        result
    }

    async fn try_add(&mut self, parts: &[Partition]) -> Result<()> {
        let committed = self.fetch_committed(parts).await?;
        let mut all = self.owned.clone();
        all.extend(parts.iter().cloned());
        self.inner.assign(all.clone()).await?;
        for ((topic, partition), offset) in committed {
            let to = match offset {
                Some(o) if self.within_log(&topic, partition, o).await? => SeekTo::Offset(o),
                _ => match self.settings.auto_offset_reset {
                    OffsetReset::Earliest => SeekTo::Earliest,
                    OffsetReset::Latest => SeekTo::Latest,
                    OffsetReset::None => {
                        return Err(Error::InvalidInput(format!(
                            "group {} has no valid committed offset for {topic}/{partition} and \
                             auto.offset.reset is none",
                            self.settings.group
                        )))
                    }
                },
            };
            self.inner.seek(&topic, partition, to).await?;
        }
        self.owned = all;
        self.notify(RebalanceEvent::Assigned(parts.to_vec()));
        Ok(())
    }

    async fn within_log(&self, topic: &str, partition: u32, offset: i64) -> Result<bool> {
        let start = self.inner.start_offset(topic, partition).await?;
        let end = self.inner.end_offsets(topic, partition).await?;
        Ok(offset >= start && offset <= end)
    }

    async fn fetch_committed(&self, parts: &[Partition]) -> Result<Vec<(Partition, Option<i64>)>> {
        let request = FetchOffsetsRequest {
            group: self.settings.group.clone(),
            partitions: parts
                .iter()
                .map(|(topic, partition)| TopicPartition {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .collect(),
        };
        let answer = self
            .calls
            .call(|mut c| {
                let r = request.clone();
                async move { c.fetch_offsets(r).await }
            })
            .await?;
        Ok(answer
            .offsets
            .into_iter()
            .map(|o| ((o.topic, o.partition), (o.offset >= 0).then_some(o.offset)))
            .collect())
    }
}

/// Sends a commit; an answer saying the group moved on marks the member for a rejoin.
async fn send_commit(
    calls: &GroupCalls,
    shared: &Mutex<Membership>,
    request: CommitOffsetsRequest,
) -> Result<()> {
    let result = calls
        .call(|mut c| {
            let r = request.clone();
            async move { c.commit_offsets(r).await }
        })
        .await
        .map(|_| ());
    if let Err(e) = &result {
        let mut m = shared.lock();
        // Only an answer about the membership this member still has changes anything.
        let current = m.member_id == request.member_id && m.generation == request.generation;
        if current && rejoin_after(e) {
            m.rejoin = true;
        }
        if current && e.code() == Some(ErrorCode::UnknownMemberId) {
            m.member_id.clear();
        }
    }
    result
}

/// Errors that mean "join again".
fn rejoin_after(e: &Error) -> bool {
    matches!(
        e.code(),
        Some(
            ErrorCode::RebalanceInProgress
                | ErrorCode::IllegalGeneration
                | ErrorCode::UnknownMemberId
        )
    )
}

fn millis(d: Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

/// Heartbeats while the member has a generation; flags a rejoin when the coordinator asks,
/// and leaves the group when the application stopped polling for `max_poll_interval`.
async fn heartbeat_loop(
    calls: Arc<GroupCalls>,
    settings: GroupSettings,
    shared: Arc<Mutex<Membership>>,
) {
    loop {
        tokio::time::sleep(settings.heartbeat_interval).await;
        let (member_id, generation, idle) = {
            let m = shared.lock();
            // Keeps heartbeating while a rejoin is pending: the session stays alive until the
            // member rejoins (or max_poll_interval passes).
            if m.member_id.is_empty() || m.generation < 0 {
                continue;
            }
            (m.member_id.clone(), m.generation, m.last_poll.elapsed())
        };
        if idle > settings.max_poll_interval {
            tracing::warn!(group = %settings.group, ?idle, "poll was not called within max_poll_interval; leaving the group");
            let request = LeaveGroupRequest {
                group: settings.group.clone(),
                member_id,
            };
            let _ = calls
                .call(|mut c| {
                    let r = request.clone();
                    async move { c.leave_group(r).await }
                })
                .await;
            let mut m = shared.lock();
            m.member_id.clear();
            m.generation = -1;
            m.rejoin = true;
            continue;
        }
        let request = HeartbeatRequest {
            group: settings.group.clone(),
            member_id,
            generation,
        };
        let answer = calls
            .call(|mut c| {
                let r = request.clone();
                async move { c.heartbeat(r).await }
            })
            .await;
        let mut m = shared.lock();
        // An answer about a generation this member has already left behind means nothing.
        if m.generation != generation || m.member_id != request.member_id {
            continue;
        }
        match answer {
            Ok(r) if r.rejoin => m.rejoin = true,
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::UnknownMemberId) => {
                m.member_id.clear();
                m.rejoin = true;
            }
            Err(e) if rejoin_after(&e) => m.rejoin = true,
            Err(e) => tracing::debug!(group = %settings.group, error = %e, "heartbeat failed"),
        }
    }
}
