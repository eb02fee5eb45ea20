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
                PartitionState {
                    leader: replicas[0],
                    leader_epoch: 0,
                    // Only the leader holds data until followers replicate.
                    isr: vec![replicas[0]],
                    replicas,
                }
            })
            .collect(),
    )
}

/// What the controller should write for a partition given the live brokers, or `None` when
/// its current leader is fine. Leaders are chosen among alive ISR members, in replica order;
/// with none alive the partition goes offline (leader -1) and keeps its last ISR, so the last
/// in-sync replica can lead again when it returns.
pub fn elect(state: &PartitionState, alive: &BTreeSet<i32>) -> Option<PartitionState> {
    if state.leader >= 0 && alive.contains(&state.leader) {
        return None;
    }
    let candidates: Vec<i32> = state
        .replicas
        .iter()
        .copied()
        .filter(|r| state.isr.contains(r) && alive.contains(r))
        .collect();
    match candidates.first() {
        Some(&leader) => {
            let isr: Vec<i32> = state
                .isr
                .iter()
                .copied()
                .filter(|r| alive.contains(r))
                .collect();
            Some(PartitionState {
                replicas: state.replicas.clone(),
                leader,
                leader_epoch: state.leader_epoch + 1,
                isr,
            })
        }
        None if state.leader >= 0 => Some(PartitionState {
            replicas: state.replicas.clone(),
            leader: -1,
            leader_epoch: state.leader_epoch + 1,
            isr: state.isr.clone(),
        }),
        None => None,
    }
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
            elect(&state, &[1, 2, 3].into()),
            None,
            "leader alive: nothing to do"
        );
        let next = elect(&state, &[2, 3].into()).unwrap();
        assert_eq!(
            (next.leader, next.leader_epoch, next.isr.clone()),
            (3, 5, vec![3])
        );
        // Broker 2 is alive but not in sync: no unclean election.
        let offline = elect(&next, &[2].into()).unwrap();
        assert_eq!((offline.leader, offline.isr.clone()), (-1, vec![3]));
        assert_eq!(
            elect(&offline, &[2].into()),
            None,
            "still offline, nothing to write"
        );
        // The last in-sync replica returns and leads again.
        let back = elect(&offline, &[2, 3].into()).unwrap();
        assert_eq!((back.leader, back.leader_epoch), (3, 7));
    }
}
