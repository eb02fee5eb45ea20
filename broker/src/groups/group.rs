//! One consumer group as its coordinator holds it: members, generation, the rebalance in
//! progress, and each member's assignment. Pure state: the caller supplies the time, persists
//! the proposed generation, and only then applies it.
//!
//! Invariants:
//! - a generation is formed only from members that (re)joined it; a member that has not
//!   rejoined when the rebalance timeout passes is removed;
//! - a partition is assigned to at most one member per generation; with a cooperative protocol
//!   a partition changing owner is given to nobody until its previous owner has let it go;
//! - a member's session expires only while it is not waiting in a join;
//! - nothing changes in memory for a new generation until it is persisted ([`Group::propose`]
//!   then [`Group::apply`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::assign::{self, MemberSubscription, Strategy, TopicPartition};
use super::store::{GroupRecord, MemberRecord};
use crate::error::{BrokerError, Result};

/// What a member sends to join.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty on the first join.
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub topics: BTreeSet<String>,
    pub protocols: Vec<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub owned: Vec<TopicPartition>,
}

/// A join's answer, once the generation is formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub generation: i32,
    pub member_id: String,
    pub leader: String,
    pub protocol: String,
}

pub type JoinReply = oneshot::Sender<Result<Joined>>;

/// What a join gets at once.
#[derive(Debug)]
pub enum JoinWait {
    /// Wait here for the generation.
    Wait(oneshot::Receiver<Result<Joined>>),
    /// A first join (no member id): the member is registered and must join again with this
    /// answer's member id (generation -1), as in Kafka's KIP-394, so a first join that times
    /// out on the client never leaves a member nobody will ever use.
    NewMember(Joined),
}

#[derive(Debug)]
pub struct Member {
    pub record: MemberRecord,
    /// Partitions the member reported owning at its last join (it may still commit those its
    /// new assignment withheld from everyone: it is revoking them).
    pub owned: Vec<TopicPartition>,
    pub last_seen: Instant,
    /// Set while the member waits in a join for the next generation.
    pub waiting: Option<JoinReply>,
    /// Join order, for choosing a leader.
    pub joined_seq: u64,
}

impl Member {
    /// Waiting in a join whose caller is still there.
    fn is_waiting(&self) -> bool {
        self.waiting.as_ref().is_some_and(|w| !w.is_closed())
    }

    fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.record.session_timeout_ms.into())
    }

    fn rebalance_timeout(&self) -> Duration {
        Duration::from_millis(self.record.rebalance_timeout_ms.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Empty,
    /// Waiting for members to (re)join: complete once all have (not before `not_before`), or at
    /// `deadline` without the missing ones.
    Preparing {
        not_before: Instant,
        deadline: Instant,
    },
    Stable,
}

/// A generation ready to be persisted, then applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub record: GroupRecord,
    /// Partitions withheld for a follow-up cooperative rebalance.
    pub withheld: Vec<TopicPartition>,
}

#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    pub phase: Phase,
    /// Partition counts the current assignment was computed with.
    pub partition_counts: BTreeMap<String, u32>,
    /// Revision of the group's state key (0: not persisted yet).
    pub revision: i64,
    /// The current generation withheld partitions (cooperative): a follow-up is due.
    pub pending_revocations: bool,
    /// Not before this may the coordinator try again to store a generation it could not.
    pub retry_at: Option<Instant>,
    next_seq: u64,
}

impl Group {
    pub fn new(name: &str) -> Group {
        Group {
            name: name.to_string(),
            generation: 0,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            phase: Phase::Empty,
            partition_counts: BTreeMap::new(),
            revision: 0,
            pending_revocations: false,
            retry_at: None,
            next_seq: 0,
        }
    }

    /// The group as persisted; its members' sessions start now.
    pub fn from_record(name: &str, record: GroupRecord, revision: i64, now: Instant) -> Group {
        let mut g = Group::new(name);
        g.generation = record.generation;
        g.protocol = record.protocol;
        g.leader = record.leader;
        g.partition_counts = record.partition_counts;
        g.revision = revision;
        for m in record.members {
            let seq = g.next_seq;
            g.next_seq += 1;
            g.members.insert(
                m.member_id.clone(),
                Member {
                    owned: m.assignment.clone(),
                    record: m,
                    last_seen: now,
                    waiting: None,
                    joined_seq: seq,
                },
            );
        }
        g.phase = if g.members.is_empty() {
            Phase::Empty
        } else {
            Phase::Stable
        };
        g
    }

    /// Kafka's group state names.
    pub fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Empty => "Empty",
            Phase::Preparing { .. } => "PreparingRebalance",
            Phase::Stable => "Stable",
        }
    }

    /// Adds or updates a member and starts (or joins) a rebalance. The receiver answers when
    /// the next generation is formed.
    pub fn join(
        &mut self,
        req: JoinRequest,
        now: Instant,
        initial_delay: Duration,
    ) -> Result<JoinWait> {
        if req.protocols.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "a join must name at least one assignment strategy".into(),
            ));
        }
        if let Some(p) = req.protocols.iter().find(|p| Strategy::parse(p).is_none()) {
            return Err(BrokerError::InvalidRequest(format!(
                "unknown assignment strategy {p:?}; use cooperative-sticky, range or roundrobin"
            )));
        }
        let new = req.member_id.is_empty();
        let member_id = if new {
            format!("{}-{}", req.client_id, uuid::Uuid::new_v4().simple())
        } else if self.members.contains_key(&req.member_id) {
            req.member_id.clone()
        } else {
            return Err(BrokerError::UnknownMember(format!(
                "member {} is not in group {} (its session expired or it left); join again \
                 without a member id",
                req.member_id, self.name
            )));
        };
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.record.member_id != member_id)
            .collect();
        if !others.is_empty() {
            let common = common_protocols(others.iter().map(|m| &m.record.protocols));
            if !req.protocols.iter().any(|p| common.contains(p)) {
                return Err(BrokerError::InvalidRequest(format!(
                    "group {} uses {}; this member offers only {}",
                    self.name,
                    common.join(", "),
                    req.protocols.join(", ")
                )));
            }
        }
        let (tx, rx) = oneshot::channel();
        let tx = (!new).then_some(tx);
        let seq = self.next_seq;
        self.next_seq += 1;
        let record = MemberRecord {
            member_id: member_id.clone(),
            client_id: req.client_id,
            host: req.host,
            topics: req.topics,
            protocols: req.protocols,
            session_timeout_ms: millis(req.session_timeout),
            rebalance_timeout_ms: millis(req.rebalance_timeout),
            assignment: Vec::new(),
        };
        match self.members.get_mut(&member_id) {
            Some(m) => {
                record_into(&mut m.record, record);
                m.owned = req.owned;
                m.last_seen = now;
                m.waiting = tx;
            }
            None => {
                self.members.insert(
                    member_id.clone(),
                    Member {
                        record,
                        owned: req.owned,
                        last_seen: now,
                        waiting: tx,
                        joined_seq: seq,
                    },
                );
            }
        }
        let delay = if self.phase == Phase::Empty {
            initial_delay
        } else {
            Duration::ZERO
        };
        self.start_rebalance(now, delay);
        if new {
            return Ok(JoinWait::NewMember(Joined {
                generation: -1,
                member_id,
                leader: String::new(),
                protocol: String::new(),
            }));
        }
        Ok(JoinWait::Wait(rx))
    }

    /// Starts a rebalance unless one is in progress.
    pub fn start_rebalance(&mut self, now: Instant, delay: Duration) {
        if matches!(self.phase, Phase::Preparing { .. }) {
            return;
        }
        let longest = self
            .members
            .values()
            .map(Member::rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.phase = Phase::Preparing {
            not_before: now + delay,
            deadline: now + longest.max(delay),
        };
    }

    /// A member's heartbeat: `Ok(true)` when it must rejoin (a rebalance is in progress).
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now: Instant) -> Result<bool> {
        let group = self.name.clone();
        let current = self.generation;
        let rebalancing = matches!(self.phase, Phase::Preparing { .. });
        let m = self.member_mut(member_id)?;
        m.last_seen = now;
        if rebalancing {
            return Ok(true);
        }
        if generation != current {
            return Err(stale(&group, generation, current));
        }
        Ok(false)
    }

    /// The member's assignment in `generation`, and whether partitions were withheld.
    pub fn sync(&self, member_id: &str, generation: i32) -> Result<(Vec<TopicPartition>, bool)> {
        let m = self.member(member_id)?;
        if matches!(self.phase, Phase::Preparing { .. }) {
            return Err(BrokerError::RebalanceInProgress(format!(
                "group {} is rebalancing; join again",
                self.name
            )));
        }
        if generation != self.generation {
            return Err(stale(&self.name, generation, self.generation));
        }
        Ok((m.record.assignment.clone(), self.pending_revocations))
    }

    /// Removes a member and rebalances the rest.
    pub fn leave(&mut self, member_id: &str, now: Instant) -> Result<()> {
        self.member(member_id)?;
        self.members.remove(member_id);
        self.start_rebalance(now, Duration::ZERO);
        Ok(())
    }

    /// Removes members whose session expired (those waiting in a join are alive). Returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.is_waiting() && now.duration_since(m.last_seen) > m.session_timeout())
            .map(|m| m.record.member_id.clone())
            .collect();
        for id in &expired {
            self.members.remove(id);
        }
        if !expired.is_empty() {
            self.start_rebalance(now, Duration::ZERO);
        }
        expired
    }

    /// Whether the rebalance in progress can complete now.
    pub fn ready(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Preparing {
                not_before,
                deadline,
            } => {
                now >= deadline
                    || (now >= not_before && self.members.values().all(Member::is_waiting))
            }
            _ => false,
        }
    }

    /// Topics any member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.record.topics.iter().cloned())
            .collect()
    }

    /// The next generation from the members waiting in a join (the others are dropped), with
    /// partitions counted by `counts` (subscribed topics that do not exist are absent).
    pub fn propose(&self, counts: &BTreeMap<String, u32>) -> Result<Proposal> {
        let joined: Vec<&Member> = self.members.values().filter(|m| m.is_waiting()).collect();
        let generation = self.generation + 1;
        if joined.is_empty() {
            return Ok(Proposal {
                record: GroupRecord {
                    generation,
                    protocol: None,
                    leader: None,
                    members: Vec::new(),
                    partition_counts: BTreeMap::new(),
                },
                withheld: Vec::new(),
            });
        }
        let leader = self
            .leader
            .as_ref()
            .and_then(|l| joined.iter().find(|m| &m.record.member_id == l))
            .or_else(|| joined.iter().min_by_key(|m| m.joined_seq))
            .map(|m| m.record.member_id.clone())
            .unwrap_or_default();
        let leader_prefs = &joined
            .iter()
            .find(|m| m.record.member_id == leader)
            .map(|m| m.record.protocols.clone())
            .unwrap_or_default();
        let common = common_protocols(joined.iter().map(|m| &m.record.protocols));
        let protocol = leader_prefs
            .iter()
            .find(|p| common.contains(p))
            .cloned()
            .ok_or_else(|| {
                BrokerError::InvalidRequest(format!(
                    "the members of group {} share no assignment strategy",
                    self.name
                ))
            })?;
        let strategy = Strategy::parse(&protocol).unwrap_or(Strategy::Range);
        let topics: BTreeSet<&String> = joined.iter().flat_map(|m| &m.record.topics).collect();
        let counts: BTreeMap<String, u32> = counts
            .iter()
            .filter(|(t, _)| topics.contains(t))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        let subs: Vec<MemberSubscription> = joined
            .iter()
            .map(|m| MemberSubscription {
                member_id: m.record.member_id.clone(),
                topics: m.record.topics.clone(),
                owned: if strategy.is_cooperative() {
                    m.owned.clone()
                } else {
                    Vec::new()
                },
            })
            .collect();
        let target = assign::assign(strategy, &subs, &counts);
        let (assignment, withheld) = if strategy.is_cooperative() {
            assign::cooperative_step(&target, &subs)
        } else {
            (target, Vec::new())
        };
        let members = joined
            .iter()
            .map(|m| {
                let mut r = m.record.clone();
                r.assignment = assignment.get(&r.member_id).cloned().unwrap_or_default();
                r
            })
            .collect();
        Ok(Proposal {
            record: GroupRecord {
                generation,
                protocol: Some(protocol),
                leader: Some(leader),
                members,
                partition_counts: counts,
            },
            withheld,
        })
    }

    /// Makes a persisted proposal current (`revision`: the state key's new revision) and
    /// answers the members waiting in a join.
    pub fn apply(&mut self, proposal: Proposal, revision: i64, now: Instant) {
        let record = proposal.record;
        let mut waiting: BTreeMap<String, JoinReply> = self
            .members
            .iter_mut()
            .filter_map(|(id, m)| m.waiting.take().map(|w| (id.clone(), w)))
            .collect();
        let mut members = BTreeMap::new();
        for r in &record.members {
            let Some(mut m) = self.members.remove(&r.member_id) else {
                continue;
            };
            m.record = r.clone();
            m.last_seen = now;
            members.insert(r.member_id.clone(), m);
        }
        self.members = members;
        self.generation = record.generation;
        self.protocol = record.protocol.clone();
        self.leader = record.leader.clone();
        self.partition_counts = record.partition_counts;
        self.revision = revision;
        self.pending_revocations = !proposal.withheld.is_empty();
        self.phase = if self.members.is_empty() {
            Phase::Empty
        } else {
            Phase::Stable
        };
        for (id, reply) in std::mem::take(&mut waiting) {
            let answer = if self.members.contains_key(&id) {
                Ok(Joined {
                    generation: self.generation,
                    member_id: id,
                    leader: self.leader.clone().unwrap_or_default(),
                    protocol: self.protocol.clone().unwrap_or_default(),
                })
            } else {
                Err(BrokerError::UnknownMember(format!(
                    "member {id} was removed from group {}",
                    self.name
                )))
            };
            let _ = reply.send(answer);
        }
    }

    /// Answers every waiting join with `err()` (the coordinator is giving the group up).
    pub fn fail_waiting(&mut self, err: impl Fn() -> BrokerError) {
        for m in self.members.values_mut() {
            if let Some(w) = m.waiting.take() {
                let _ = w.send(Err(err()));
            }
        }
    }

    /// Whether the partition counts of subscribed topics differ from those assigned.
    pub fn partitions_changed(&self, counts: &BTreeMap<String, u32>) -> bool {
        if self.phase != Phase::Stable {
            return false;
        }
        self.subscribed_topics()
            .iter()
            .any(|t| counts.get(t) != self.partition_counts.get(t))
    }

    /// Checks a commit: from a member of the current generation for partitions it owns, or,
    /// outside group management (`member_id` empty), into a group without members.
    pub fn check_commit(
        &self,
        member_id: &str,
        generation: i32,
        partitions: &[TopicPartition],
    ) -> Result<()> {
        if member_id.is_empty() {
            if self.members.is_empty() {
                return Ok(());
            }
            return Err(BrokerError::GroupNotEmpty(format!(
                "group {} has {} live members; commit as a member, with its generation",
                self.name,
                self.members.len()
            )));
        }
        let m = self.member(member_id)?;
        if generation != self.generation {
            return Err(stale(&self.name, generation, self.generation));
        }
        let held = |tp: &TopicPartition| {
            m.record.assignment.contains(tp)
                || (m.owned.contains(tp)
                    && !self
                        .members
                        .values()
                        .any(|o| o.record.assignment.contains(tp)))
        };
        if let Some((t, p)) = partitions.iter().find(|tp| !held(tp)) {
            return Err(BrokerError::InvalidRequest(format!(
                "member {member_id} does not own {t}/{p} in generation {} of group {}; it \
                 may commit only its assigned partitions",
                self.generation, self.name
            )));
        }
        Ok(())
    }

    fn member(&self, member_id: &str) -> Result<&Member> {
        self.members
            .get(member_id)
            .ok_or_else(|| unknown_member(&self.name, member_id))
    }

    fn member_mut(&mut self, member_id: &str) -> Result<&mut Member> {
        let name = self.name.clone();
        self.members
            .get_mut(member_id)
            .ok_or_else(|| unknown_member(&name, member_id))
    }

    /// The persisted form of the current state.
    pub fn record(&self) -> GroupRecord {
        GroupRecord {
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self.members.values().map(|m| m.record.clone()).collect(),
            partition_counts: self.partition_counts.clone(),
        }
    }
}

/// Keeps the fields a join may change; the assignment stays until the next generation.
fn record_into(current: &mut MemberRecord, new: MemberRecord) {
    let assignment = std::mem::take(&mut current.assignment);
    *current = MemberRecord { assignment, ..new };
}

fn common_protocols<'a>(lists: impl Iterator<Item = &'a Vec<String>>) -> Vec<String> {
    let mut common: Option<Vec<String>> = None;
    for list in lists {
        common = Some(match common {
            None => list.clone(),
            Some(c) => c.into_iter().filter(|p| list.contains(p)).collect(),
        });
    }
    common.unwrap_or_default()
}

fn millis(d: Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

fn unknown_member(group: &str, member_id: &str) -> BrokerError {
    BrokerError::UnknownMember(format!(
        "member {member_id} is not in group {group} (its session expired or it left); join again"
    ))
}

fn stale(group: &str, generation: i32, current: i32) -> BrokerError {
    BrokerError::IllegalGeneration(format!(
        "generation {generation} of group {group} is stale: the group is at generation \
         {current}; join again"
    ))
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
