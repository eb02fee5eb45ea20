//! Unit tests of the sibling module `assign` (kept apart: the module itself stays short).
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
    let claimants = |tp: &TopicPartition| s.members.iter().filter(|m| m.owned.contains(tp)).count();
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
    let held: Vec<&Vec<TopicPartition>> = s.members.iter().map(|m| &got[&m.member_id]).collect();
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
