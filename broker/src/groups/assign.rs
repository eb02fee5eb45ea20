//! Consumer-group partition assignment, computed by the group coordinator: pure functions, no
//! I/O.
//!
//! Three strategies with Kafka's names and semantics: `range`, `roundrobin` and
//! `cooperative-sticky`. [`assign`] computes the target assignment of a generation;
//! [`cooperative_step`] turns a target into what the cooperative (incremental) protocol hands out
//! this generation, withholding partitions that must first be revoked by their previous owner.
//!
//! Invariants, for every strategy:
//! - deterministic: the output depends only on the input's content, not on the order of
//!   `members` (members are taken sorted by id; a repeated member id keeps its first entry);
//! - every member is a key of the result; each list is sorted;
//! - a partition is assigned at most once, only to a member subscribed to its topic, and only if
//!   its topic is in `partition_counts` (a topic missing from it is ignored);
//! - every partition of an existing topic that at least one member subscribes to is assigned.
//!
//! `cooperative-sticky` also keeps:
//! - balance: no partition could move to a member subscribed to its topic that holds at least
//!   two partitions fewer than its holder (with identical subscriptions: counts differ by at
//!   most one);
//! - stickiness: a member keeps its *valid* previously owned partitions as far as balance allows
//!   (with identical subscriptions each member keeps `min(valid owned, final count)` of them).
//!
//! A previously owned partition is *valid* when it exists, its claimant subscribes to its topic,
//! and no other member claims it; every other `owned` entry is ignored.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A topic name and a partition number.
pub type TopicPartition = (String, u32);

/// One member as the assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member's id in the group.
    pub member_id: String,
    /// Topics the member subscribes to.
    pub topics: BTreeSet<String>,
    /// Partitions the member owned in the previous generation, as it reported them (may be stale:
    /// partitions of topics that no longer exist or that it no longer subscribes to, or claimed by
    /// two members).
    pub owned: Vec<TopicPartition>,
}

/// A partition assignment strategy (Kafka's `partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Per topic, contiguous ranges of partitions over the members subscribed to it.
    Range,
    /// All partitions dealt one by one over the members, skipping non-subscribers.
    RoundRobin,
    /// Balanced and sticky; used with the incremental (cooperative) rebalance protocol.
    CooperativeSticky,
}

impl Strategy {
    /// All strategies, in the default preference order.
    pub const ALL: [Strategy; 3] = [
        Strategy::CooperativeSticky,
        Strategy::Range,
        Strategy::RoundRobin,
    ];

    /// Kafka's protocol name: "range", "roundrobin" or "cooperative-sticky".
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::RoundRobin => "roundrobin",
            Strategy::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Parses a protocol name as returned by [`Strategy::name`]; "round-robin" is accepted as an
    /// alias of "roundrobin". `None` for anything else.
    pub fn parse(name: &str) -> Option<Strategy> {
        match name {
            "range" => Some(Strategy::Range),
            "roundrobin" | "round-robin" => Some(Strategy::RoundRobin),
            "cooperative-sticky" => Some(Strategy::CooperativeSticky),
            _ => None,
        }
    }

    /// Whether the strategy is incremental: only cooperative-sticky is.
    pub fn is_cooperative(self) -> bool {
        self == Strategy::CooperativeSticky
    }
}

/// The target assignment: member id -> sorted partitions. Every member of `members` is a key
/// (possibly with an empty list). `partition_counts` maps topic -> partition count; topics a
/// member subscribes to that are absent from it are ignored (not assigned).
pub fn assign(
    strategy: Strategy,
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, u32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let members = unique_members(members);
    let lists = match strategy {
        Strategy::Range => range(&members, partition_counts),
        Strategy::RoundRobin => round_robin(&members, partition_counts),
        Strategy::CooperativeSticky => sticky(&members, partition_counts),
    };
    members
        .iter()
        .zip(lists)
        .map(|(member, mut list)| {
            list.sort();
            (member.member_id.clone(), list)
        })
        .collect()
}

/// The incremental (cooperative) step applied to a target assignment: a partition whose valid
/// previous owner (a member of `members` that reported owning it in `owned`, subscribes to its
/// topic, and is the only member claiming it) is a *different* member than the target's is
/// withheld this generation — given to nobody — so the previous owner revokes it first and a
/// follow-up rebalance hands it to its new owner. Returns (assignment for this generation,
/// withheld partitions sorted). Partitions kept by their owner and partitions nobody owned are
/// given at once. The returned assignment has the target's keys, each list sorted.
pub fn cooperative_step(
    target: &BTreeMap<String, Vec<TopicPartition>>,
    members: &[MemberSubscription],
) -> (BTreeMap<String, Vec<TopicPartition>>, Vec<TopicPartition>) {
    let members = unique_members(members);
    let owners = valid_owners(&members);
    let mut now = BTreeMap::new();
    let mut withheld = Vec::new();
    for (member_id, partitions) in target {
        let mut given = Vec::new();
        for tp in partitions {
            match owners.get(tp) {
                Some(&owner) if members[owner].member_id != *member_id => withheld.push(tp.clone()),
                _ => given.push(tp.clone()),
            }
        }
        given.sort();
        now.insert(member_id.clone(), given);
    }
    withheld.sort();
    withheld.dedup();
    (now, withheld)
}

/// The members sorted by id, one entry per id (the first one given).
fn unique_members(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut by_id: BTreeMap<&str, &MemberSubscription> = BTreeMap::new();
    for member in members {
        by_id.entry(member.member_id.as_str()).or_insert(member);
    }
    by_id.into_values().collect()
}

/// Existing topics (sorted) that at least one member subscribes to, with their partition count.
fn assignable_topics<'a>(
    members: &[&MemberSubscription],
    partition_counts: &'a BTreeMap<String, u32>,
) -> Vec<(&'a str, u32)> {
    partition_counts
        .iter()
        .filter(|(topic, _)| members.iter().any(|m| m.topics.contains(*topic)))
        .map(|(topic, &count)| (topic.as_str(), count))
        .collect()
}

/// Every partition of the assignable topics, sorted.
fn assignable_partitions(
    members: &[&MemberSubscription],
    partition_counts: &BTreeMap<String, u32>,
) -> Vec<TopicPartition> {
    assignable_topics(members, partition_counts)
        .into_iter()
        .flat_map(|(topic, count)| (0..count).map(move |p| (topic.to_string(), p)))
        .collect()
}

/// Range: per topic, its subscribers (sorted by id) get contiguous ranges of partitions; the
/// first `count % subscribers` of them get one extra. Lists are parallel to `members`.
fn range(
    members: &[&MemberSubscription],
    partition_counts: &BTreeMap<String, u32>,
) -> Vec<Vec<TopicPartition>> {
    let mut lists = vec![Vec::new(); members.len()];
    for (topic, count) in assignable_topics(members, partition_counts) {
        let subscribers: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].topics.contains(topic))
            .collect();
        let share = count / subscribers.len() as u32;
        let extra = (count % subscribers.len() as u32) as usize;
        let mut next = 0;
        for (rank, &member) in subscribers.iter().enumerate() {
            let len = share + u32::from(rank < extra);
            lists[member].extend((next..next + len).map(|p| (topic.to_string(), p)));
            next += len;
        }
    }
    lists
}

/// Round robin: all partitions in order, each to the next member (circularly, sorted by id)
/// that subscribes to its topic. Lists are parallel to `members`.
fn round_robin(
    members: &[&MemberSubscription],
    partition_counts: &BTreeMap<String, u32>,
) -> Vec<Vec<TopicPartition>> {
    let mut lists = vec![Vec::new(); members.len()];
    let mut cursor = 0;
    for tp in assignable_partitions(members, partition_counts) {
        // Someone subscribes to every assignable topic: this stops within one turn.
        while !members[cursor].topics.contains(&tp.0) {
            cursor = (cursor + 1) % members.len();
        }
        lists[cursor].push(tp);
        cursor = (cursor + 1) % members.len();
    }
    lists
}

/// Valid previous owners: partition -> index in `members` of the only member claiming it, when
/// that member subscribes to its topic. Whether the partition still exists is not checked here.
fn valid_owners<'a>(members: &[&'a MemberSubscription]) -> BTreeMap<&'a TopicPartition, usize> {
    let mut claims: BTreeMap<&TopicPartition, BTreeSet<usize>> = BTreeMap::new();
    for (i, member) in members.iter().enumerate() {
        for tp in &member.owned {
            claims.entry(tp).or_default().insert(i);
        }
    }
    claims
        .into_iter()
        .filter_map(|(tp, claimants)| {
            let only = single(&claimants)?;
            members[only].topics.contains(&tp.0).then_some((tp, only))
        })
        .collect()
}

/// The one element of a set, `None` if it has zero or several.
fn single(set: &BTreeSet<usize>) -> Option<usize> {
    match set.len() {
        1 => set.first().copied(),
        _ => None,
    }
}

/// Cooperative sticky: valid owners keep their partitions, orphans go to the least loaded
/// eligible member, then improving moves (or chains of them) restore balance. Lists are
/// parallel to `members`.
fn sticky(
    members: &[&MemberSubscription],
    partition_counts: &BTreeMap<String, u32>,
) -> Vec<Vec<TopicPartition>> {
    let owners = valid_owners(members);
    let mut state = StickyState {
        members,
        held: vec![BTreeSet::new(); members.len()],
        owners: &owners,
    };
    let mut orphans = Vec::new();
    for tp in assignable_partitions(members, partition_counts) {
        match owners.get(&tp) {
            Some(&owner) => {
                state.held[owner].insert(tp);
            }
            None => orphans.push(tp),
        }
    }
    state.place_orphans(orphans);
    while let Some(moves) = state.improving_moves() {
        for step in moves {
            state.apply(step);
        }
    }
    state
        .held
        .into_iter()
        .map(|set| set.into_iter().collect())
        .collect()
}

/// The sticky assignor's working state.
struct StickyState<'a> {
    /// Members sorted by id.
    members: &'a [&'a MemberSubscription],
    /// Partitions currently given to each member (parallel to `members`).
    held: Vec<BTreeSet<TopicPartition>>,
    /// Valid previous owners (index in `members`).
    owners: &'a BTreeMap<&'a TopicPartition, usize>,
}

impl StickyState<'_> {
    /// Members that subscribe to the partition's topic.
    fn eligible<'s>(&'s self, tp: &'s TopicPartition) -> impl Iterator<Item = usize> + 's {
        (0..self.members.len()).filter(move |&i| self.members[i].topics.contains(&tp.0))
    }

    /// Gives each orphan to its least loaded eligible member (ties: lowest id), the most
    /// constrained orphans (fewest eligible members) first.
    fn place_orphans(&mut self, mut orphans: Vec<TopicPartition>) {
        orphans.sort_by_cached_key(|tp| (self.eligible(tp).count(), tp.clone()));
        for tp in orphans {
            let least = self.eligible(&tp).min_by_key(|&i| (self.held[i].len(), i));
            if let Some(member) = least {
                self.held[member].insert(tp);
            }
        }
    }

    /// Hands one partition over.
    fn apply(&mut self, step: Move) {
        self.held[step.from].remove(&step.partition);
        self.held[step.to].insert(step.partition);
    }

    /// Members ordered by load, the most loaded first (ties: lowest id).
    fn by_load_desc(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        order.sort_by_key(|&i| (Reverse(self.held[i].len()), i));
        order
    }

    /// Members ordered by load, the least loaded first (ties: lowest id).
    fn by_load_asc(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        order.sort_by_key(|&i| (self.held[i].len(), i));
        order
    }

    /// Whether moving one partition from `donor` to `receiver` lowers the imbalance.
    fn improves(&self, donor: usize, receiver: usize) -> bool {
        self.held[receiver].len() + 2 <= self.held[donor].len()
    }

    /// Moves that take one partition off an overloaded member and give one to a member holding
    /// at least two fewer, every other member's load unchanged: a direct move when one exists,
    /// else the shortest chain. `None` once balanced. Each application lowers the sum of the
    /// squared loads, so repeating it terminates.
    fn improving_moves(&self) -> Option<Vec<Move>> {
        let donors = self.by_load_desc();
        let receivers = self.by_load_asc();
        if let Some(direct) = self.direct_move(&donors, &receivers) {
            return Some(vec![direct]);
        }
        donors
            .iter()
            .find_map(|&donor| self.chain_from(donor, &receivers))
    }

    /// The first direct improving move, trying the most loaded donors and the least loaded
    /// receivers first.
    fn direct_move(&self, donors: &[usize], receivers: &[usize]) -> Option<Move> {
        for &from in donors {
            for &to in receivers {
                if !self.improves(from, to) {
                    break;
                }
                if let Some(partition) = self.movable_partition(from, to) {
                    return Some(Move {
                        from,
                        to,
                        partition: partition.clone(),
                    });
                }
            }
        }
        None
    }

    /// A shortest chain of moves from `donor` to a member holding at least two fewer (breadth
    /// first over "can take a partition of" edges), in path order.
    fn chain_from(&self, donor: usize, receivers: &[usize]) -> Option<Vec<Move>> {
        let mut came_from: Vec<Option<Move>> = vec![None; self.members.len()];
        let mut queue = VecDeque::from([donor]);
        while let Some(from) = queue.pop_front() {
            for &to in receivers {
                if to == donor || came_from[to].is_some() {
                    continue;
                }
                let Some(partition) = self.movable_partition(from, to) else {
                    continue;
                };
                let partition = partition.clone();
                came_from[to] = Some(Move {
                    from,
                    to,
                    partition,
                });
                if self.improves(donor, to) {
                    return Some(unwind(came_from, to));
                }
                queue.push_back(to);
            }
        }
        None
    }

    /// The donor's partition to hand to the receiver: one the receiver subscribes to, preferably
    /// one the donor did not own before (it keeps its own), then the highest.
    fn movable_partition(&self, donor: usize, receiver: usize) -> Option<&TopicPartition> {
        let topics = &self.members[receiver].topics;
        self.held[donor]
            .iter()
            .filter(|tp| topics.contains(&tp.0))
            .max_by_key(|&tp| (self.owners.get(tp) != Some(&donor), tp))
    }
}

/// One partition handed from one member to another (indices in the sorted members).
#[derive(Debug, Clone)]
struct Move {
    from: usize,
    to: usize,
    partition: TopicPartition,
}

/// The moves leading to `last` in a breadth-first search tree, first move first.
fn unwind(mut came_from: Vec<Option<Move>>, last: usize) -> Vec<Move> {
    let mut path = Vec::new();
    let mut at = last;
    while let Some(step) = came_from[at].take() {
        at = step.from;
        path.push(step);
    }
    path.reverse();
    path
}

#[cfg(test)]
#[path = "assign_tests.rs"]
mod tests;
