//! The group coordinator of one broker: which groups it coordinates, their in-memory state,
//! the periodic work (session expiry, completing rebalances, noticing partition-count
//! changes), and offset commits batched per group.
//!
//! Each group has one coordinator: the live broker that ranks first for the group's name
//! (rendezvous hashing), so every broker computes the same answer from its metadata snapshot
//! and a broker's death moves only its own groups. Two brokers that briefly both believe they
//! coordinate a group cannot both write: every write is conditional on the revision of the
//! group's state key (see [`super::store`]), and the loser gives the group up.
//!
//! Invariants: commits of one group that arrive together go to the store in one transaction;
//! the in-memory map holds only groups this broker coordinates (others are dropped on the
//! next tick), and empty groups leave memory once idle.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::assign::TopicPartition;
use super::group::{Group, JoinRequest, JoinWait, Joined, Phase};
use super::store::{GroupRecord, GroupStore, OffsetRecord};
use crate::error::{BrokerError, Result};
use crate::snapshot::ClusterSnapshot;

/// The broker's limits and defaults for groups.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// How long a new group waits for more members before forming its first generation
    /// (group.initial.rebalance.delay.ms).
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// Longest rebalance timeout (max.poll.interval) a member may ask for: the longest a
    /// rebalance waits for members that do not rejoin.
    pub max_rebalance_timeout: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(500),
            // Kafka's group.min.session.timeout.ms.
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(30 * 60),
            max_rebalance_timeout: Duration::from_secs(60 * 60),
        }
    }
}

/// Longest a JoinGroup is held open; the member then joins again with its id (below the
/// clients' request timeout, so a join never times out on the client side).
const MAX_JOIN_WAIT: Duration = Duration::from_secs(20);

/// How long a group waits before retrying a generation the store would not take.
const SAVE_RETRY: Duration = Duration::from_secs(1);

/// How often [`GroupCoordinator::tick`] should run.
pub const TICK: Duration = Duration::from_millis(100);

/// A live member, as `describe` shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub topics: Vec<String>,
    pub assignment: Vec<TopicPartition>,
}

/// A group, as `describe` and `list` show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub group: String,
    pub state: String,
    pub generation: i32,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

struct PendingCommit {
    revision: i64,
    offsets: Vec<(TopicPartition, OffsetRecord)>,
    reply: oneshot::Sender<Result<()>>,
}

#[derive(Default)]
struct CommitQueue {
    pending: Vec<PendingCommit>,
    flushing: bool,
}

struct Entry {
    state: Arc<tokio::sync::Mutex<Group>>,
    commits: Mutex<CommitQueue>,
    /// Set (under the state lock) when the entry leaves the map: a request that got it before
    /// must fetch the group again instead of changing a copy nobody looks after.
    retired: std::sync::atomic::AtomicBool,
}

type Locked = tokio::sync::OwnedMutexGuard<Group>;

pub struct GroupCoordinator {
    broker_id: i32,
    store: GroupStore,
    config: GroupConfig,
    groups: Mutex<HashMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("broker_id", &self.broker_id)
            .field("groups", &self.groups.lock().len())
            .finish()
    }
}

/// The broker that coordinates `group`: the live broker with the highest rendezvous score.
pub fn coordinator_of(group: &str, snapshot: &ClusterSnapshot) -> Option<(i32, String)> {
    snapshot
        .alive
        .values()
        .max_by_key(|b| (score(group, b.id), b.id))
        .map(|b| (b.id, b.address.clone()))
}

/// FNV-1a over the group name and the broker id: stable across builds and platforms.
fn score(group: &str, broker: i32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in group.bytes().chain(broker.to_be_bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV mixes its last bytes weakly: finish with a murmur3-style avalanche.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Group ids follow topic-name rules: `[A-Za-z0-9._-]{1,249}`.
pub fn validate_group_id(group: &str) -> Result<()> {
    crate::metadata::validate_topic_name(group).map_err(|e| match e {
        BrokerError::InvalidTopicName { reason, .. } => {
            BrokerError::InvalidGroup(format!("invalid group id {group:?}: {reason}"))
        }
        other => other,
    })
}

fn partition_counts(snapshot: &ClusterSnapshot) -> BTreeMap<String, u32> {
    snapshot
        .topics
        .iter()
        .map(|(name, t)| (name.clone(), t.record.partitions))
        .collect()
}

impl GroupCoordinator {
    /// The group settings (timeouts and their bounds).
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn new(
        broker_id: i32,
        store: Arc<dyn strata_coordinator::Coordinator>,
        config: GroupConfig,
    ) -> Self {
        GroupCoordinator {
            broker_id,
            store: GroupStore::new(store),
            config,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Groups this broker coordinates now.
    pub fn group_count(&self) -> usize {
        self.groups.lock().len()
    }

    pub fn store(&self) -> &GroupStore {
        &self.store
    }

    /// This broker's entry for `group`, loaded from the store on first use; refused with
    /// NOT_COORDINATOR when another broker coordinates it.
    async fn entry(&self, group: &str, snapshot: &ClusterSnapshot) -> Result<Arc<Entry>> {
        validate_group_id(group)?;
        match coordinator_of(group, snapshot) {
            Some((id, _)) if id == self.broker_id => {}
            Some((id, address)) => {
                return Err(BrokerError::NotCoordinator(format!(
                    "broker {} is not the coordinator of group {group}; broker {id} ({address}) is",
                    self.broker_id
                )))
            }
            None => {
                return Err(BrokerError::CoordinatorUnavailable(format!(
                    "no live broker can coordinate group {group} right now"
                )))
            }
        }
        if let Some(e) = self.groups.lock().get(group) {
            return Ok(e.clone());
        }
        let group_state = match self.store.load(group).await? {
            Some((record, revision)) => Group::from_record(group, record, revision, Instant::now()),
            None => Group::new(group),
        };
        let entry = Arc::new(Entry {
            state: Arc::new(tokio::sync::Mutex::new(group_state)),
            commits: Mutex::new(CommitQueue::default()),
            retired: Default::default(),
        });
        Ok(self
            .groups
            .lock()
            .entry(group.to_string())
            .or_insert(entry)
            .clone())
    }

    /// The group's entry and its state, locked; never a retired entry.
    async fn locked(
        &self,
        group: &str,
        snapshot: &ClusterSnapshot,
    ) -> Result<(Arc<Entry>, Locked)> {
        loop {
            let entry = self.entry(group, snapshot).await?;
            let guard = entry.state.clone().lock_owned().await;
            if !entry.retired.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok((entry, guard));
            }
        }
    }

    /// Joins `req` to `group` and waits for the generation it becomes part of.
    pub async fn join(
        &self,
        group: &str,
        req: JoinRequest,
        snapshot: &ClusterSnapshot,
    ) -> Result<Joined> {
        super::limits::check_join(group, &req, &self.config)?;
        let (_entry, mut g) = self.locked(group, snapshot).await?;
        // The generation is formed by `tick` (its own task: a cancelled request cannot leave a
        // half-done store write behind).
        let rx = g.join(req, Instant::now(), self.config.initial_rebalance_delay)?;
        drop(g);
        let rx = match rx {
            JoinWait::Wait(rx) => rx,
            JoinWait::NewMember(joined) => return Ok(joined),
        };
        match tokio::time::timeout(MAX_JOIN_WAIT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(BrokerError::RebalanceInProgress(format!(
                "this join to group {group} ended without a generation (a newer join from the \
                 same member, or the member left or was removed); join again"
            ))),
            Err(_) => Err(BrokerError::RebalanceInProgress(format!(
                "group {group} is still forming a generation after {MAX_JOIN_WAIT:?} (members \
                 have until their max.poll.interval to rejoin); join again"
            ))),
        }
    }

    pub async fn sync(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        snapshot: &ClusterSnapshot,
    ) -> Result<(Vec<TopicPartition>, bool)> {
        let (_entry, g) = self.locked(group, snapshot).await?;
        g.sync(member, generation)
    }

    /// `Ok(true)`: rejoin.
    pub async fn heartbeat(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        snapshot: &ClusterSnapshot,
    ) -> Result<bool> {
        let (_entry, mut g) = self.locked(group, snapshot).await?;
        g.heartbeat(member, generation, Instant::now())
    }

    pub async fn leave(&self, group: &str, member: &str, snapshot: &ClusterSnapshot) -> Result<()> {
        let (_entry, mut g) = self.locked(group, snapshot).await?;
        g.leave(member, Instant::now())
    }

    /// Commits offsets for a member of the current generation (or, with an empty member id,
    /// into a group without members). Commits that meet in the queue share one transaction.
    pub async fn commit(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        offsets: Vec<(TopicPartition, i64, String)>,
        now_ms: i64,
        snapshot: &ClusterSnapshot,
    ) -> Result<()> {
        if let Some(((t, p), o, _)) = offsets.iter().find(|(_, o, _)| *o < 0) {
            return Err(BrokerError::InvalidRequest(format!(
                "cannot commit offset {o} for {t}/{p}: offsets are 0 or more"
            )));
        }
        for ((t, p), _, metadata) in &offsets {
            super::limits::check_offset_metadata(t, *p, metadata)?;
            snapshot.partition(t, *p)?;
        }
        let (entry, mut g) = self.locked(group, snapshot).await?;
        let revision = {
            let parts: Vec<TopicPartition> = offsets.iter().map(|(tp, _, _)| tp.clone()).collect();
            g.check_commit(member, generation, &parts)?;
            if g.revision == 0 {
                // A group's first commit outside group management creates it.
                let record = g.record();
                match self.store.save(group, &record, 0).await? {
                    Some(revision) => g.revision = revision,
                    None => return Err(self.lost(group, &entry)),
                }
            }
            g.revision
        };
        drop(g);
        let generation = if member.is_empty() { -1 } else { generation };
        let records = offsets
            .into_iter()
            .map(|(tp, offset, metadata)| {
                (
                    tp,
                    OffsetRecord {
                        offset,
                        metadata,
                        generation,
                        committed_at_ms: now_ms,
                    },
                )
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        let flush = {
            let mut q = entry.commits.lock();
            q.pending.push(PendingCommit {
                revision,
                offsets: records,
                reply: tx,
            });
            !std::mem::replace(&mut q.flushing, true)
        };
        if flush {
            // Its own task: a cancelled request must not leave the queue without a flusher.
            tokio::spawn(flush_commits(
                self.store.clone(),
                group.to_string(),
                entry.clone(),
            ));
        }
        rx.await.unwrap_or_else(|_| {
            Err(BrokerError::Internal(format!(
                "the commit of group {group} was lost: the broker's commit task ended"
            )))
        })
    }

    /// Committed offsets of `group` (any broker may answer: they are read from the store).
    pub async fn fetch_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, OffsetRecord>> {
        validate_group_id(group)?;
        self.store.offsets(group).await
    }

    /// The group's state and members (on its coordinator).
    pub async fn describe(&self, group: &str, snapshot: &ClusterSnapshot) -> Result<GroupView> {
        let (_entry, g) = self.locked(group, snapshot).await?;
        if g.revision == 0 && g.members.is_empty() {
            return Err(unknown_group(group));
        }
        Ok(view(&g))
    }

    /// Every group in the store; the state of those this broker coordinates is live.
    pub async fn list(&self) -> Result<Vec<GroupView>> {
        let mut out = Vec::new();
        for (name, record) in self.store.groups().await? {
            let live = self.groups.lock().get(&name).cloned();
            let v = match live {
                Some(entry) => view(&*entry.state.lock().await),
                None => view_of_record(&name, &record),
            };
            out.push(v);
        }
        Ok(out)
    }

    /// Sets committed offsets of a group without members.
    pub async fn reset_offsets(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, i64)>,
        now_ms: i64,
        snapshot: &ClusterSnapshot,
    ) -> Result<()> {
        let (entry, g) = self.locked(group, snapshot).await?;
        require_empty(&g, "seek")?;
        let records: Vec<_> = offsets
            .into_iter()
            .map(|(tp, offset)| {
                (
                    tp,
                    OffsetRecord {
                        offset,
                        metadata: String::new(),
                        generation: -1,
                        committed_at_ms: now_ms,
                    },
                )
            })
            .collect();
        match self
            .store
            .commit_offsets(group, g.revision, &records)
            .await?
        {
            Some(()) => Ok(()),
            None => Err(self.lost(group, &entry)),
        }
    }

    /// Deletes a group without members, and its offsets. Returns how many offsets went.
    pub async fn delete(&self, group: &str, snapshot: &ClusterSnapshot) -> Result<usize> {
        let (entry, g) = self.locked(group, snapshot).await?;
        require_empty(&g, "delete")?;
        let deleted = self.store.delete(group, g.revision).await?;
        self.retire(group, &entry);
        deleted.ok_or_else(|| self.lost(group, &entry))
    }

    /// Periodic work: drop groups another broker now coordinates, expire sessions, rebalance
    /// on partition-count changes, complete rebalances that are due, forget idle empty groups.
    pub async fn tick(&self, snapshot: &ClusterSnapshot) {
        let entries: Vec<(String, Arc<Entry>)> = self
            .groups
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let counts = partition_counts(snapshot);
        for (name, entry) in entries {
            let mut g = entry.state.lock().await;
            if entry.retired.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let mine = coordinator_of(&name, snapshot).is_some_and(|(id, _)| id == self.broker_id);
            if !mine {
                let me = self.broker_id;
                g.fail_waiting(|| {
                    BrokerError::NotCoordinator(format!(
                        "broker {me} no longer coordinates group {name}; find its coordinator again"
                    ))
                });
                self.retire(&name, &entry);
                continue;
            }
            let now = Instant::now();
            let expired = g.expire(now);
            if !expired.is_empty() {
                tracing::info!(group = %name, members = ?expired, "session timeout: members removed, rebalancing");
            }
            if g.partitions_changed(&counts) {
                tracing::info!(group = %name, "partition count of a subscribed topic changed; rebalancing");
                g.start_rebalance(now, Duration::ZERO);
            }
            if g.ready(now) && g.retry_at.is_none_or(|t| now >= t) {
                self.complete(&mut g, &entry, snapshot).await;
            }
            let idle =
                g.phase == Phase::Empty && g.members.is_empty() && !entry.commits.lock().flushing;
            if idle {
                self.retire(&name, &entry);
            }
        }
    }

    /// Retires `entry` (call with its state locked) and removes it from the map if it is still
    /// the one there.
    fn retire(&self, name: &str, entry: &Arc<Entry>) {
        entry
            .retired
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut groups = self.groups.lock();
        if groups.get(name).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            groups.remove(name);
        }
    }

    /// Forms the next generation: persist, then apply and answer the joins. A conflict means
    /// another broker took the group over: this one gives it up.
    async fn complete(&self, g: &mut Group, entry: &Arc<Entry>, snapshot: &ClusterSnapshot) {
        let proposal = match g.propose(&partition_counts(snapshot)) {
            Ok(p) => p,
            Err(e) => {
                let message = e.to_string();
                g.fail_waiting(|| BrokerError::InvalidRequest(message.clone()));
                return;
            }
        };
        match self.store.save(&g.name, &proposal.record, g.revision).await {
            Ok(Some(revision)) => {
                g.retry_at = None;
                crate::metrics::GROUP_REBALANCES.inc();
                tracing::info!(group = %g.name, generation = proposal.record.generation,
                    members = proposal.record.members.len(), withheld = proposal.withheld.len(),
                    "generation formed");
                g.apply(proposal, revision, Instant::now());
            }
            Ok(None) => {
                let err = self.lost(&g.name, entry);
                let message = err.to_string();
                g.fail_waiting(|| BrokerError::NotCoordinator(message.clone()));
            }
            Err(e) => {
                tracing::warn!(group = %g.name, error = %e, "cannot store the new generation; retrying in {SAVE_RETRY:?}");
                g.retry_at = Some(Instant::now() + SAVE_RETRY);
            }
        }
    }

    fn lost(&self, group: &str, entry: &Arc<Entry>) -> BrokerError {
        self.retire(group, entry);
        BrokerError::NotCoordinator(format!(
            "group {group} was changed by another coordinator; find its coordinator again"
        ))
    }
}

/// Writes queued commits until the queue is empty: each round, one transaction per state
/// revision the commits were checked against (normally one).
async fn flush_commits(store: GroupStore, group: String, entry: Arc<Entry>) {
    loop {
        let batch = {
            let mut q = entry.commits.lock();
            if q.pending.is_empty() {
                q.flushing = false;
                return;
            }
            std::mem::take(&mut q.pending)
        };
        let mut by_revision: BTreeMap<i64, Vec<PendingCommit>> = BTreeMap::new();
        for c in batch {
            by_revision.entry(c.revision).or_default().push(c);
        }
        for (revision, commits) in by_revision {
            let mut merged: BTreeMap<TopicPartition, OffsetRecord> = BTreeMap::new();
            for c in &commits {
                merged.extend(c.offsets.iter().cloned());
            }
            let merged: Vec<_> = merged.into_iter().collect();
            let outcome = store.commit_offsets(&group, revision, &merged).await;
            for c in commits {
                let answer = match &outcome {
                    Ok(Some(())) => Ok(()),
                    Ok(None) => Err(BrokerError::IllegalGeneration(format!(
                        "group {group} changed (a new generation, or it was deleted) while \
                         this commit was in flight; nothing was committed; join again"
                    ))),
                    Err(e) => Err(BrokerError::CoordinatorUnavailable(format!(
                        "the commit of group {group} could not be stored: {e}"
                    ))),
                };
                let _ = c.reply.send(answer);
            }
        }
    }
}

fn require_empty(g: &Group, what: &str) -> Result<()> {
    if g.revision == 0 && g.members.is_empty() {
        return Err(unknown_group(&g.name));
    }
    if g.members.is_empty() {
        return Ok(());
    }
    let members: Vec<String> = g
        .members
        .values()
        .map(|m| format!("{} on {}", m.record.member_id, m.record.host))
        .collect();
    Err(BrokerError::GroupNotEmpty(format!(
        "cannot {what} group {}: it has {} live member(s) ({}); stop its consumers first (a \
         consumer that died leaves after its session timeout)",
        g.name,
        members.len(),
        members.join(", ")
    )))
}

fn unknown_group(group: &str) -> BrokerError {
    BrokerError::UnknownGroup(format!("group {group} does not exist"))
}

/// The live view: the persisted form with the in-memory state (a rebalance in progress).
fn view(g: &Group) -> GroupView {
    let mut v = view_of_record(&g.name, &g.record());
    v.state = g.state_name().to_string();
    v
}

fn view_of_record(name: &str, record: &GroupRecord) -> GroupView {
    GroupView {
        group: name.to_string(),
        state: if record.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
        .to_string(),
        generation: record.generation,
        protocol: record.protocol.clone().unwrap_or_default(),
        members: record
            .members
            .iter()
            .map(|m| MemberView {
                member_id: m.member_id.clone(),
                client_id: m.client_id.clone(),
                host: m.host.clone(),
                topics: m.topics.iter().cloned().collect(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::BrokerRecord;

    fn snapshot(ids: &[i32]) -> ClusterSnapshot {
        let mut s = ClusterSnapshot::default();
        for &id in ids {
            s.alive.insert(
                id,
                BrokerRecord {
                    id,
                    address: format!("127.0.0.1:{}", 9000 + id),
                    rack: None,
                    incarnation: 0,
                    disk_id: String::new(),
                    max_partitions: 0,
                    max_partitions_why: String::new(),
                },
            );
        }
        s
    }

    #[test]
    fn coordinators_spread_and_only_a_dead_brokers_groups_move() {
        let three = snapshot(&[1, 2, 3]);
        let two = snapshot(&[1, 2]);
        let mut per_broker = BTreeMap::new();
        for i in 0..300 {
            let g = format!("group-{i}");
            let (before, _) = coordinator_of(&g, &three).unwrap();
            *per_broker.entry(before).or_insert(0) += 1;
            let (after, _) = coordinator_of(&g, &two).unwrap();
            if before != 3 {
                assert_eq!(before, after, "{g} moved though its coordinator lives");
            }
        }
        assert!(per_broker.values().all(|n| *n > 60), "{per_broker:?}");
        assert_eq!(coordinator_of("g", &snapshot(&[])), None);
    }

    #[test]
    fn group_ids_follow_topic_name_rules() {
        validate_group_id("payments.v2_readers-1").unwrap();
        let err = validate_group_id("a b").unwrap_err();
        assert!(matches!(err, BrokerError::InvalidGroup(_)), "{err}");
        assert!(err.to_string().contains("invalid group id"), "{err}");
    }
}
