//! Replica placement and leader election rules: pure functions, no I/O.
//!
//! Invariants: a partition's replicas are on distinct brokers; when brokers declare racks, the
//! replicas of a partition spread over as many racks as there are; preferred leaders (the first
//! replica) rotate over the brokers so leadership starts evenly spread. A new leader is only
//! ever chosen from the in-sync replicas that are alive (unclean election is off).

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::{BrokerRecord, PartitionState};

/// Orders brokers so that consecutive ones sit in different racks when racks exist:
/// round-robin over racks (sorted), brokers within a rack by id.
fn rack_alternating(brokers: &[BrokerRecord]) -> Vec<i32> {
    let mut by_rack: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack
            .entry(b.rack.clone().unwrap_or_default())
            .or_default()
            .push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut out = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while out.len() < brokers.len() {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(round) {
                out.push(*id);
            }
        }
        round += 1;
    }
    out
}

/// Places `partitions` partitions of `replication_factor` replicas over `brokers` (alive
/// brokers only). `start` rotates the first leader, so successive topics do not all start on
/// the same broker. Returns `None` when there are fewer brokers than replicas.
pub fn place(
    brokers: &[BrokerRecord],
    partitions: u32,
    replication_factor: u32,
    start: usize,
) -> Option<Vec<PartitionState>> {
    let rf = replication_factor as usize;
    if rf == 0 || rf > brokers.len() {
        return None;
    }
    let order = rack_alternating(brokers);
    let rack_of: BTreeMap<i32, Option<&str>> =
        brokers.iter().map(|b| (b.id, b.rack.as_deref())).collect();
    let racks: BTreeSet<Option<&str>> = rack_of.values().copied().collect();
    let n = order.len();
    Some(
        (0..partitions as usize)
            .map(|p| {
                // Followers start one further along for each full lap, as Kafka does, so the
                // (leader, follower) pairs vary across partitions.
                let first = (start + p) % n;
                let shift = 1 + (p / n) % (n.max(2) - 1);
                let candidates: Vec<i32> = (0..n).map(|j| order[(first + shift + j) % n]).collect();
                let mut replicas = vec![order[first]];
                let mut used: BTreeSet<Option<&str>> = BTreeSet::from([rack_of[&order[first]]]);
                // First pass: brokers in racks not used yet; second: any broker not chosen.
                for spread_racks in [true, false] {
                    for &c in &candidates {
                        if replicas.len() == rf {
                            break;
                        }
                        let fresh_rack = !used.contains(&rack_of[&c]) || used.len() == racks.len();
                        if !replicas.contains(&c) && (fresh_rack || !spread_racks) {
                            used.insert(rack_of[&c]);
                            replicas.push(c);
                        }
                    }
                }
                // Every replica of a new partition is empty, so all are in sync.
                PartitionState {
                    leader: replicas[0],
                    leader_epoch: 0,
                    isr: replicas.clone(),
                    replicas,
                }
            })
            .collect(),
    )
}

/// What the controller should write for a partition given the live brokers, or `None` when
/// nothing needs to change:
/// - leader alive: dead followers leave the ISR (the epoch stays);
/// - leader dead: the first alive ISR member in replica order leads, the epoch is bumped, and
///   dead members leave the ISR; with none alive the partition goes offline (leader -1) and keeps
///   its last ISR, so that replica can lead again when it returns — unless `unclean` is set, in
///   which case any alive replica leads (and acknowledged records may be lost).
pub fn elect(
    state: &PartitionState,
    alive: &BTreeSet<i32>,
    unclean: bool,
) -> Option<PartitionState> {
    let alive_isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|r| alive.contains(r))
        .collect();
    if state.leader >= 0 && alive.contains(&state.leader) {
        if alive_isr.len() == state.isr.len() {
            return None;
        }
        return Some(PartitionState {
            isr: alive_isr,
            ..state.clone()
        });
    }
    let in_sync = state
        .replicas
        .iter()
        .copied()
        .find(|r| alive_isr.contains(r));
    let next_leader = in_sync.or_else(|| {
        unclean
            .then(|| state.replicas.iter().copied().find(|r| alive.contains(r)))
            .flatten()
    });
    match next_leader {
        Some(leader) => Some(PartitionState {
            replicas: state.replicas.clone(),
            leader,
            leader_epoch: state.leader_epoch + 1,
            isr: if in_sync.is_some() {
                alive_isr
            } else {
                vec![leader]
            },
        }),
        None if state.leader >= 0 => Some(PartitionState {
            replicas: state.replicas.clone(),
            leader: -1,
            leader_epoch: state.leader_epoch + 1,
            isr: state.isr.clone(),
        }),
        None => None,
    }
}

/// Moves leadership back to the preferred replica (the first) when it is alive, in sync and
/// not leading; `None` otherwise.
pub fn prefer(state: &PartitionState, alive: &BTreeSet<i32>) -> Option<PartitionState> {
    let preferred = *state.replicas.first()?;
    let eligible = state.leader >= 0
        && state.leader != preferred
        && alive.contains(&preferred)
        && state.isr.contains(&preferred);
    eligible.then(|| PartitionState {
        leader: preferred,
        leader_epoch: state.leader_epoch + 1,
        ..state.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[(i32, Option<&str>)]) -> Vec<BrokerRecord> {
        racks
            .iter()
            .map(|(id, rack)| BrokerRecord {
                id: *id,
                address: format!("127.0.0.1:{}", 7000 + id),
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn replicas_are_distinct_and_leaders_spread() {
        let b = brokers(&[(1, None), (2, None), (3, None)]);
        let placed = place(&b, 6, 3, 0).unwrap();
        let mut leaders = BTreeMap::new();
        for p in &placed {
            let distinct: BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(distinct.len(), 3, "{p:?}");
            assert_eq!(p.leader, p.replicas[0]);
            *leaders.entry(p.leader).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        assert!(place(&b, 1, 4, 0).is_none(), "more replicas than brokers");
    }

    #[test]
    fn replicas_spread_over_racks() {
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        let rack = |id: i32| b.iter().find(|x| x.id == id).unwrap().rack.clone().unwrap();
        for p in place(&b, 12, 3, 5).unwrap() {
            let racks: BTreeSet<_> = p.replicas.iter().map(|r| rack(*r)).collect();
            assert_eq!(racks.len(), 3, "one replica per rack: {p:?}");
        }
    }

    #[test]
    fn election_picks_an_alive_isr_member_and_bumps_the_epoch() {
        let state = PartitionState {
            replicas: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 4,
            isr: vec![1, 3],
        };
        assert_eq!(
            elect(&state, &[1, 2, 3].into(), false),
            None,
            "leader alive: nothing to do"
        );
        let next = elect(&state, &[2, 3].into(), false).unwrap();
        assert_eq!(
            (next.leader, next.leader_epoch, next.isr.clone()),
            (3, 5, vec![3])
        );
        // Broker 2 is alive but not in sync: no unclean election.
        let offline = elect(&next, &[2].into(), false).unwrap();
        assert_eq!((offline.leader, offline.isr.clone()), (-1, vec![3]));
        assert_eq!(
            elect(&offline, &[2].into(), false),
            None,
            "still offline, nothing to write"
        );
        // Unless unclean election is on.
        let unclean = elect(&offline, &[2].into(), true).unwrap();
        assert_eq!((unclean.leader, unclean.isr.clone()), (2, vec![2]));
        // The last in-sync replica returns and leads again.
        let back = elect(&offline, &[2, 3].into(), false).unwrap();
        assert_eq!((back.leader, back.leader_epoch), (3, 7));
        // A dead follower leaves the ISR without an epoch change.
        let full = PartitionState {
            isr: vec![1, 2, 3],
            ..state.clone()
        };
        let shrunk = elect(&full, &[1, 2].into(), false).unwrap();
        assert_eq!(
            (shrunk.leader, shrunk.leader_epoch, shrunk.isr),
            (1, 4, vec![1, 2])
        );
    }

    #[test]
    fn preferred_leader_returns_once_in_sync() {
        let state = PartitionState {
            replicas: vec![1, 2, 3],
            leader: 2,
            leader_epoch: 3,
            isr: vec![2, 3],
        };
        assert_eq!(
            prefer(&state, &[1, 2, 3].into()),
            None,
            "1 is not in sync yet"
        );
        let synced = PartitionState {
            isr: vec![1, 2, 3],
            ..state
        };
        let back = prefer(&synced, &[1, 2, 3].into()).unwrap();
        assert_eq!((back.leader, back.leader_epoch), (1, 4));
        assert_eq!(prefer(&back, &[1, 2, 3].into()), None);
    }
}
