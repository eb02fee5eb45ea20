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
mod tests {
    use super::{assign, cooperative_step, MemberSubscription, Strategy, TopicPartition};
    use proptest::prelude::{any, prop, prop_assert, prop_assert_eq, proptest, ProptestConfig};
    use proptest::strategy::Strategy as _;
    use proptest::test_runner::TestCaseError;
    use std::collections::{BTreeMap, BTreeSet};

    type Assignment = BTreeMap<String, Vec<TopicPartition>>;

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        (topic.to_string(), partition)
    }

    fn member(id: &str, topics: &[&str], owned: &[(&str, u32)]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned.iter().map(|&(t, p)| tp(t, p)).collect(),
        }
    }

    fn topic_counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics.iter().map(|&(t, n)| (t.to_string(), n)).collect()
    }

    fn expected(entries: &[(&str, &[(&str, u32)])]) -> Assignment {
        entries
            .iter()
            .map(|&(id, parts)| {
                (
                    id.to_string(),
                    parts.iter().map(|&(t, p)| tp(t, p)).collect(),
                )
            })
            .collect()
    }

    /// The members again, each now owning what `given` hands it.
    fn owning(members: &[MemberSubscription], given: &Assignment) -> Vec<MemberSubscription> {
        members
            .iter()
            .map(|m| MemberSubscription {
                owned: given.get(&m.member_id).cloned().unwrap_or_default(),
                ..m.clone()
            })
            .collect()
    }

    #[test]
    fn strategy_names_round_trip() {
        for strategy in Strategy::ALL {
            assert_eq!(Strategy::parse(strategy.name()), Some(strategy));
        }
        assert_eq!(Strategy::parse("round-robin"), Some(Strategy::RoundRobin));
        assert_eq!(Strategy::parse("sticky"), None);
        assert_eq!(Strategy::parse("Range"), None);
        assert_eq!(
            Strategy::ALL.map(Strategy::name),
            ["cooperative-sticky", "range", "roundrobin"]
        );
        let cooperative: Vec<bool> = Strategy::ALL.iter().map(|s| s.is_cooperative()).collect();
        assert_eq!(cooperative, [true, false, false]);
    }

    fn two_topics_two_members() -> (Vec<MemberSubscription>, BTreeMap<String, u32>) {
        let members = vec![
            member("C1", &["t0", "t1"], &[]),
            member("C0", &["t0", "t1"], &[]),
        ];
        (members, topic_counts(&[("t0", 3), ("t1", 3)]))
    }

    #[test]
    fn range_matches_kafka_docs_example() {
        let (members, counts) = two_topics_two_members();
        let want = expected(&[
            ("C0", &[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]),
            ("C1", &[("t0", 2), ("t1", 2)]),
        ]);
        assert_eq!(assign(Strategy::Range, &members, &counts), want);
    }

    #[test]
    fn range_splits_per_topic_over_its_subscribers() {
        let members = vec![
            member("a", &["t0"], &[]),
            member("b", &["t0", "t1"], &[]),
            member("c", &["t0", "gone"], &[]),
        ];
        let counts = topic_counts(&[("t0", 7), ("t1", 2)]);
        let want = expected(&[
            ("a", &[("t0", 0), ("t0", 1), ("t0", 2)]),
            ("b", &[("t0", 3), ("t0", 4), ("t1", 0), ("t1", 1)]),
            ("c", &[("t0", 5), ("t0", 6)]),
        ]);
        assert_eq!(assign(Strategy::Range, &members, &counts), want);
    }

    #[test]
    fn round_robin_matches_kafka_docs_examples() {
        let (members, counts) = two_topics_two_members();
        let want = expected(&[
            ("C0", &[("t0", 0), ("t0", 2), ("t1", 1)]),
            ("C1", &[("t0", 1), ("t1", 0), ("t1", 2)]),
        ]);
        assert_eq!(assign(Strategy::RoundRobin, &members, &counts), want);

        // Mixed subscriptions: non-subscribers are skipped.
        let members = vec![
            member("C0", &["t0"], &[]),
            member("C1", &["t0", "t1"], &[]),
            member("C2", &["t0", "t1", "t2"], &[]),
        ];
        let counts = topic_counts(&[("t0", 1), ("t1", 2), ("t2", 3)]);
        let want = expected(&[
            ("C0", &[("t0", 0)]),
            ("C1", &[("t1", 0)]),
            ("C2", &[("t1", 1), ("t2", 0), ("t2", 1), ("t2", 2)]),
        ]);
        assert_eq!(assign(Strategy::RoundRobin, &members, &counts), want);
    }

    #[test]
    fn every_member_is_a_key_and_duplicate_ids_keep_the_first_entry() {
        let members = vec![
            member("a", &["t0"], &[]),
            member("idle", &[], &[]),
            member("a", &["t1"], &[]),
        ];
        let counts = topic_counts(&[("t0", 2), ("t1", 2)]);
        for strategy in Strategy::ALL {
            let want = expected(&[("a", &[("t0", 0), ("t0", 1)]), ("idle", &[])]);
            assert_eq!(assign(strategy, &members, &counts), want, "{strategy:?}");
            assert!(assign(strategy, &[], &counts).is_empty());
        }
    }

    #[test]
    fn sticky_fresh_group_is_balanced() {
        let (members, counts) = two_topics_two_members();
        let want = expected(&[
            ("C0", &[("t0", 0), ("t0", 2), ("t1", 1)]),
            ("C1", &[("t0", 1), ("t1", 0), ("t1", 2)]),
        ]);
        assert_eq!(assign(Strategy::CooperativeSticky, &members, &counts), want);
    }

    #[test]
    fn sticky_member_leaves_survivors_keep_theirs() {
        // c owned t0-4 and t0-5 and left: a and b keep theirs and share the orphans.
        let members = vec![
            member("a", &["t0"], &[("t0", 0), ("t0", 1)]),
            member("b", &["t0"], &[("t0", 2), ("t0", 3)]),
        ];
        let want = expected(&[
            ("a", &[("t0", 0), ("t0", 1), ("t0", 4)]),
            ("b", &[("t0", 2), ("t0", 3), ("t0", 5)]),
        ]);
        let got = assign(
            Strategy::CooperativeSticky,
            &members,
            &topic_counts(&[("t0", 6)]),
        );
        assert_eq!(got, want);
    }

    #[test]
    fn sticky_member_joins_moves_only_what_balance_requires() {
        // 2/2/2 of 6 and d joins: 2/2/1/1 is balanced, so exactly one partition moves.
        let members = vec![
            member("a", &["t0"], &[("t0", 0), ("t0", 1)]),
            member("b", &["t0"], &[("t0", 2), ("t0", 3)]),
            member("c", &["t0"], &[("t0", 4), ("t0", 5)]),
            member("d", &["t0"], &[]),
        ];
        let want = expected(&[
            ("a", &[("t0", 0)]),
            ("b", &[("t0", 2), ("t0", 3)]),
            ("c", &[("t0", 4), ("t0", 5)]),
            ("d", &[("t0", 1)]),
        ]);
        let got = assign(
            Strategy::CooperativeSticky,
            &members,
            &topic_counts(&[("t0", 6)]),
        );
        assert_eq!(got, want);

        // 3/3/3 of 9 and d joins: exactly two move, one from each of two members.
        let got = assign(
            Strategy::CooperativeSticky,
            &join_scenario(),
            &topic_counts(&[("t0", 9)]),
        );
        assert_eq!(got, join_target());
    }

    fn join_scenario() -> Vec<MemberSubscription> {
        vec![
            member("a", &["t0"], &[("t0", 0), ("t0", 1), ("t0", 2)]),
            member("b", &["t0"], &[("t0", 3), ("t0", 4), ("t0", 5)]),
            member("c", &["t0"], &[("t0", 6), ("t0", 7), ("t0", 8)]),
            member("d", &["t0"], &[]),
        ]
    }

    fn join_target() -> Assignment {
        expected(&[
            ("a", &[("t0", 0), ("t0", 1)]),
            ("b", &[("t0", 3), ("t0", 4)]),
            ("c", &[("t0", 6), ("t0", 7), ("t0", 8)]),
            ("d", &[("t0", 2), ("t0", 5)]),
        ])
    }

    #[test]
    fn sticky_ignores_stale_duplicated_and_unsubscribed_claims() {
        let members = vec![
            // Valid: t0-2, t0-3. Ignored: t0-0 (also claimed by b), a deleted topic, a
            // partition past the count, a topic a does not subscribe to.
            member(
                "a",
                &["t0"],
                &[
                    ("t0", 2),
                    ("t0", 3),
                    ("t0", 0),
                    ("gone", 0),
                    ("t0", 9),
                    ("t1", 0),
                ],
            ),
            member("b", &["t0"], &[("t0", 0), ("t0", 0)]),
        ];
        let want = expected(&[
            ("a", &[("t0", 2), ("t0", 3)]),
            ("b", &[("t0", 0), ("t0", 1)]),
        ]);
        let counts = topic_counts(&[("t0", 4), ("t1", 2)]);
        assert_eq!(assign(Strategy::CooperativeSticky, &members, &counts), want);
    }

    #[test]
    fn deleted_topic_is_not_assigned_and_the_rest_stays_put() {
        // t1 was deleted: absent from the counts, still subscribed and owned.
        let members = vec![
            member("a", &["t0", "t1"], &[("t0", 0), ("t1", 0), ("t1", 1)]),
            member("b", &["t0", "t1"], &[("t0", 1), ("t1", 2)]),
        ];
        let counts = topic_counts(&[("t0", 4)]);
        let want = expected(&[
            ("a", &[("t0", 0), ("t0", 2)]),
            ("b", &[("t0", 1), ("t0", 3)]),
        ]);
        assert_eq!(assign(Strategy::CooperativeSticky, &members, &counts), want);
        for strategy in [Strategy::Range, Strategy::RoundRobin] {
            let got = assign(strategy, &members, &counts);
            assert!(got.values().flatten().all(|(t, _)| t == "t0"));
        }
    }

    #[test]
    fn sticky_with_mixed_subscriptions_balances_through_chains() {
        // a can only take t0 and c only t1: for 2/2/2, b hands t0 to a and takes t1 from c.
        let members = vec![
            member("a", &["t0"], &[]),
            member("b", &["t0", "t1"], &[("t0", 0), ("t0", 1), ("t0", 2)]),
            member("c", &["t1"], &[]),
        ];
        let counts = topic_counts(&[("t0", 3), ("t1", 3)]);
        let want = expected(&[
            ("a", &[("t0", 1), ("t0", 2)]),
            ("b", &[("t0", 0), ("t1", 2)]),
            ("c", &[("t1", 0), ("t1", 1)]),
        ]);
        assert_eq!(assign(Strategy::CooperativeSticky, &members, &counts), want);
    }

    #[test]
    fn cooperative_join_withholds_moved_partitions_then_hands_them_over() {
        let counts = topic_counts(&[("t0", 9)]);
        let members = join_scenario();
        let target = assign(Strategy::CooperativeSticky, &members, &counts);
        let (now, withheld) = cooperative_step(&target, &members);
        assert_eq!(withheld, [tp("t0", 2), tp("t0", 5)]);
        assert_eq!(now["d"], []);
        assert_eq!(now["a"], target["a"]);
        assert_eq!(now["c"], target["c"]);

        // a and b revoked what was withheld; the follow-up rebalance hands it to d.
        let members = owning(&members, &now);
        let target = assign(Strategy::CooperativeSticky, &members, &counts);
        assert_eq!(target, join_target());
        let (now, withheld) = cooperative_step(&target, &members);
        assert!(withheld.is_empty());
        assert_eq!(now, target);
    }

    #[test]
    fn cooperative_step_gives_unowned_and_contested_partitions_at_once() {
        let members = vec![
            member("a", &["t0"], &[("t0", 0), ("t0", 1)]),
            member("b", &["t0"], &[("t0", 1)]),
            member("c", &["t1"], &[("t0", 2)]),
        ];
        // t0-1 is contested, t0-2's claimant does not subscribe to t0, t0-3 was nobody's.
        let target = expected(&[
            ("a", &[]),
            ("b", &[("t0", 0), ("t0", 1), ("t0", 2), ("t0", 3)]),
            ("c", &[]),
        ]);
        let (now, withheld) = cooperative_step(&target, &members);
        assert_eq!(withheld, [tp("t0", 0)]);
        let want = expected(&[
            ("a", &[]),
            ("b", &[("t0", 1), ("t0", 2), ("t0", 3)]),
            ("c", &[]),
        ]);
        assert_eq!(now, want);
    }

    // ---- properties ----

    /// Topic names; those at index >= the number of counts are absent (deleted topics).
    const TOPICS: [&str; 5] = ["t0", "t1", "t2", "t3", "t4"];

    #[derive(Debug, Clone)]
    struct Scenario {
        counts: BTreeMap<String, u32>,
        members: Vec<MemberSubscription>,
    }

    fn topics_of(mask: u8) -> BTreeSet<String> {
        (0..TOPICS.len())
            .filter(|bit| mask & (1 << bit) != 0)
            .map(|bit| TOPICS[bit].to_string())
            .collect()
    }

    /// Random counts (1..=4 topics of 1..=12 partitions), 1..=8 members with random or shared
    /// subscriptions and random, often invalid, owned lists.
    fn arb_scenario() -> impl proptest::strategy::Strategy<Value = Scenario> {
        let counts = prop::collection::vec(1u32..=12, 1..=4);
        let owned = prop::collection::vec((0..TOPICS.len(), 0u32..14), 0..10);
        let members = prop::collection::vec((any::<u8>(), owned), 1..=8);
        (counts, members, any::<bool>(), any::<u8>()).prop_map(
            |(counts, members, shared, shared_mask)| Scenario {
                counts: counts
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| (TOPICS[i].to_string(), n))
                    .collect(),
                members: members
                    .into_iter()
                    .enumerate()
                    .map(|(i, (mask, owned))| MemberSubscription {
                        member_id: format!("m{i}"),
                        topics: topics_of(if shared { shared_mask } else { mask }),
                        owned: owned.into_iter().map(|(t, p)| tp(TOPICS[t], p)).collect(),
                    })
                    .collect(),
            },
        )
    }

    /// A group of 1..=8 members with the same subscription, its sticky assignment, then some
    /// members leave and 0..=3 join, the survivors owning what they had.
    fn arb_churn() -> impl proptest::strategy::Strategy<Value = Scenario> {
        (
            prop::collection::vec(1u32..=12, 1..=4),
            1u8..32,
            1usize..=8,
            any::<u8>(),
            0usize..=3,
        )
            .prop_map(|(counts, mask, before, leavers, joiners)| {
                let counts: BTreeMap<String, u32> = counts
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| (TOPICS[i].to_string(), n))
                    .collect();
                let fresh = |i: usize| MemberSubscription {
                    member_id: format!("m{i}"),
                    topics: topics_of(mask),
                    owned: Vec::new(),
                };
                let first: Vec<_> = (0..before).map(fresh).collect();
                let previous = assign(Strategy::CooperativeSticky, &first, &counts);
                let mut members: Vec<_> = owning(&first, &previous)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| leavers & (1 << i) == 0)
                    .map(|(_, m)| m)
                    .collect();
                let joiners = joiners.max(usize::from(members.is_empty()));
                members.extend((before..before + joiners).map(fresh));
                Scenario { counts, members }
            })
    }

    /// Valid previously owned partitions per member, computed independently of the assignor.
    fn valid_owned(s: &Scenario) -> BTreeMap<&str, BTreeSet<&TopicPartition>> {
        let claimants =
            |tp: &TopicPartition| s.members.iter().filter(|m| m.owned.contains(tp)).count();
        s.members
            .iter()
            .map(|m| {
                let valid = m.owned.iter().filter(|tp| {
                    s.counts.get(&tp.0).is_some_and(|&n| tp.1 < n)
                        && m.topics.contains(&tp.0)
                        && claimants(tp) == 1
                });
                (m.member_id.as_str(), valid.collect())
            })
            .collect()
    }

    fn check_common(s: &Scenario, got: &Assignment) -> Result<(), TestCaseError> {
        let ids: BTreeSet<&str> = s.members.iter().map(|m| m.member_id.as_str()).collect();
        prop_assert_eq!(got.keys().map(String::as_str).collect::<BTreeSet<_>>(), ids);
        let mut seen = BTreeSet::new();
        for m in &s.members {
            let list = &got[&m.member_id];
            prop_assert!(list.windows(2).all(|w| w[0] < w[1]), "unsorted {list:?}");
            for tp in list {
                prop_assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
                prop_assert!(m.topics.contains(&tp.0), "{tp:?} not subscribed");
                prop_assert!(s.counts.get(&tp.0).is_some_and(|&n| tp.1 < n));
            }
        }
        for (topic, &n) in &s.counts {
            if s.members.iter().any(|m| m.topics.contains(topic)) {
                for p in 0..n {
                    prop_assert!(seen.contains(&tp(topic, p)), "{topic}-{p} unassigned");
                }
            }
        }
        Ok(())
    }

    fn check_deterministic(strategy: Strategy, s: &Scenario) -> Result<(), TestCaseError> {
        let got = assign(strategy, &s.members, &s.counts);
        prop_assert_eq!(&assign(strategy, &s.members, &s.counts), &got);
        let mut reversed = s.members.clone();
        reversed.reverse();
        prop_assert_eq!(&assign(strategy, &reversed, &s.counts), &got);
        Ok(())
    }

    /// No partition could move to a subscribed member holding at least two fewer, not even
    /// through a chain of moves that leaves the members in between with as many as before.
    fn check_balanced(s: &Scenario, got: &Assignment) -> Result<(), TestCaseError> {
        let held: Vec<&Vec<TopicPartition>> =
            s.members.iter().map(|m| &got[&m.member_id]).collect();
        // reach[x][y]: x can pass a partition to y, directly or along a chain.
        let mut reach: Vec<Vec<bool>> = held
            .iter()
            .map(|list| {
                let takes = |m: &MemberSubscription| list.iter().any(|tp| m.topics.contains(&tp.0));
                s.members.iter().map(takes).collect()
            })
            .collect();
        for via in 0..held.len() {
            let through = reach[via].clone();
            for row in reach.iter_mut().filter(|row| row[via]) {
                for (cell, &next) in row.iter_mut().zip(&through) {
                    *cell |= next;
                }
            }
        }
        for (x, row) in reach.iter().enumerate() {
            for (y, &reachable) in row.iter().enumerate() {
                let improving = reachable && held[y].len() + 2 <= held[x].len();
                prop_assert!(
                    !improving,
                    "{} could pass one to {}",
                    s.members[x].member_id,
                    s.members[y].member_id
                );
            }
        }
        Ok(())
    }

    /// With identical subscriptions: loads differ by at most one, each member keeps
    /// min(valid owned, final load) of its valid owned partitions, and no more owned partitions
    /// move than the best balanced assignment would move.
    fn check_uniform_sticky(s: &Scenario, got: &Assignment) -> Result<(), TestCaseError> {
        let loads: Vec<usize> = got.values().map(Vec::len).collect();
        let (min, max) = (loads.iter().min(), loads.iter().max());
        prop_assert!(max.zip(min).is_none_or(|(max, min)| max - min <= 1));
        let valid = valid_owned(s);
        let mut moved = 0;
        for (id, owned) in &valid {
            let list = &got[*id];
            let kept = list.iter().filter(|tp| owned.contains(tp)).count();
            prop_assert_eq!(kept, owned.len().min(list.len()), "member {}", id);
            moved += owned.len() - kept;
        }
        prop_assert_eq!(moved, fewest_moves(s, &valid));
        Ok(())
    }

    /// With identical subscriptions: the fewest valid owned partitions any balanced assignment
    /// moves (the `total % members` members owning most get the larger share).
    fn fewest_moves(s: &Scenario, valid: &BTreeMap<&str, BTreeSet<&TopicPartition>>) -> usize {
        let subscribed = &s.members[0].topics;
        let total: usize = s
            .counts
            .iter()
            .filter(|(t, _)| subscribed.contains(*t))
            .map(|(_, &n)| n as usize)
            .sum();
        let mut owned: Vec<usize> = valid.values().map(BTreeSet::len).collect();
        owned.sort_unstable_by(|a, b| b.cmp(a));
        let (share, extra) = (total / owned.len(), total % owned.len());
        owned
            .iter()
            .enumerate()
            .map(|(rank, &o)| o.saturating_sub(share + usize::from(rank < extra)))
            .sum()
    }

    fn uniform(s: &Scenario) -> bool {
        s.members.iter().all(|m| m.topics == s.members[0].topics)
    }

    /// The cooperative step hands out the target minus exactly the partitions whose valid owner
    /// is someone else; with identical subscriptions, a second round withholds nothing.
    fn check_cooperative(s: &Scenario, target: &Assignment) -> Result<(), TestCaseError> {
        let (now, withheld) = cooperative_step(target, &s.members);
        let valid = valid_owned(s);
        let owner = |tp: &TopicPartition| valid.iter().find(|(_, o)| o.contains(tp)).map(|e| *e.0);
        for (id, list) in target {
            for tp in list {
                let moves = owner(tp).is_some_and(|o| o != id);
                prop_assert_eq!(withheld.contains(tp), moves);
                prop_assert_eq!(now[id].contains(tp), !moves);
            }
        }
        prop_assert_eq!(
            now.values().map(Vec::len).sum::<usize>() + withheld.len(),
            target.values().map(Vec::len).sum::<usize>()
        );
        if uniform(s) {
            let next = Scenario {
                members: owning(&s.members, &now),
                ..s.clone()
            };
            let target = assign(Strategy::CooperativeSticky, &next.members, &next.counts);
            let (now, withheld) = cooperative_step(&target, &next.members);
            prop_assert!(withheld.is_empty(), "still withheld: {withheld:?}");
            prop_assert_eq!(now, target);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_strategy_keeps_the_invariants(s in arb_scenario()) {
            for strategy in Strategy::ALL {
                let got = assign(strategy, &s.members, &s.counts);
                check_common(&s, &got)?;
                check_deterministic(strategy, &s)?;
            }
        }

        #[test]
        fn sticky_is_balanced_and_sticky(s in arb_scenario()) {
            let got = assign(Strategy::CooperativeSticky, &s.members, &s.counts);
            check_balanced(&s, &got)?;
            if uniform(&s) {
                check_uniform_sticky(&s, &got)?;
            }
            check_cooperative(&s, &got)?;
        }

        #[test]
        fn sticky_after_members_leave_and_join(s in arb_churn()) {
            let got = assign(Strategy::CooperativeSticky, &s.members, &s.counts);
            check_common(&s, &got)?;
            check_balanced(&s, &got)?;
            check_uniform_sticky(&s, &got)?;
            check_cooperative(&s, &got)?;
        }
    }
}
