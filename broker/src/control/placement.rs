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
    let incarnation: BTreeMap<i32, i64> = brokers.iter().map(|b| (b.id, b.incarnation)).collect();
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
                    leader_incarnation: incarnation[&replicas[0]],
                    replicas,
                    emptied: Vec::new(),
                    reassigning: None,
                }
            })
            .collect(),
    )
}

/// The brokers as the controller sees them: those alive, with the incarnation each registered
/// with (KIP-380's broker epoch), which of them restarted since the controller last took them
/// out of every ISR, and which came back on another data directory than the one it last saw
/// (KIP-858's directory id). A restarted broker may have come back with less than it had (a
/// lost page cache, a torn tail): it is not in sync, and it leads only as the last copy. A
/// broker on a new disk holds nothing of what it had: it is not even a last copy.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    pub alive: BTreeMap<i32, i64>,
    pub restarted: BTreeSet<i32>,
    pub new_disk: BTreeSet<i32>,
    /// Alive brokers in controlled shutdown: their leaderships and ISR places move to others
    /// ([`shed`]), and they take a new leadership only when no other broker can.
    pub shutting_down: BTreeSet<i32>,
}

impl Liveness {
    /// Every broker alive, none restarted (for tests and first placements).
    pub fn of(alive: &[(i32, i64)]) -> Liveness {
        Liveness {
            alive: alive.iter().copied().collect(),
            restarted: BTreeSet::new(),
            new_disk: BTreeSet::new(),
            shutting_down: BTreeSet::new(),
        }
    }

    /// The registered `brokers` as the controller judges them: a broker whose incarnation
    /// differs from the one `processed` records restarted; one whose data directory id
    /// differs from the one `disks` records is on a new disk.
    pub fn judge(
        brokers: &[BrokerRecord],
        processed: &BTreeMap<i32, i64>,
        disks: &BTreeMap<i32, String>,
        shutting_down: &BTreeMap<i32, i64>,
    ) -> Liveness {
        Liveness {
            alive: brokers.iter().map(|b| (b.id, b.incarnation)).collect(),
            restarted: brokers
                .iter()
                .filter(|b| processed.get(&b.id).is_some_and(|p| *p != b.incarnation))
                .map(|b| b.id)
                .collect(),
            new_disk: brokers
                .iter()
                .filter(|b| {
                    disks
                        .get(&b.id)
                        .is_some_and(|d| !d.is_empty() && !b.disk_id.is_empty() && *d != b.disk_id)
                })
                .map(|b| b.id)
                .collect(),
            shutting_down: brokers
                .iter()
                .filter(|b| shutting_down.get(&b.id) == Some(&b.incarnation))
                .map(|b| b.id)
                .collect(),
        }
    }

    /// Eligible and not in controlled shutdown: a broker to hand a leadership to.
    pub fn may_lead(&self, id: i32) -> bool {
        self.is_eligible(id) && !self.shutting_down.contains(&id)
    }

    pub fn is_alive(&self, id: i32) -> bool {
        self.alive.contains_key(&id)
    }

    /// Alive, not restarted since it was last taken out of the ISRs, and on the disk it had.
    pub fn is_eligible(&self, id: i32) -> bool {
        self.is_alive(id) && !self.restarted.contains(&id) && !self.new_disk.contains(&id)
    }

    /// Alive and on the data directory the controller last saw it with: it holds what it had
    /// (possibly less, after a crash), so it may lead as the last copy.
    pub fn has_its_disk(&self, id: i32) -> bool {
        self.is_alive(id) && !self.new_disk.contains(&id)
    }

    pub fn incarnation(&self, id: i32) -> i64 {
        self.alive.get(&id).copied().unwrap_or(0)
    }
}

/// What the controller should write for a partition given the live brokers, or `None` when
/// nothing needs to change:
/// - leader alive in the incarnation it was elected in: dead or restarted followers leave the
///   ISR (the epoch stays);
/// - otherwise (leader dead, or restarted: a new incarnation never resumes leadership at the
///   same epoch) the first eligible ISR member in replica order leads, the epoch is bumped, and
///   dead or restarted members leave the ISR;
/// - with no eligible ISR member, an alive but restarted ISR member still on its disk leads as
///   the last copy (the old leader itself, back after a crash), alone in the ISR;
/// - with none the partition goes offline (leader -1) and keeps its last ISR (without members
///   back on a new disk: they hold nothing), so that replica can lead again when it returns,
///   unless `unclean` is set, in which case an alive replica leads (one still on its disk
///   first) and acknowledged records may be lost.
pub fn elect(state: &PartitionState, live: &Liveness, unclean: bool) -> Option<PartitionState> {
    let eligible_isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|r| live.is_eligible(*r))
        .collect();
    let leader_current = state.leader >= 0
        && live.is_eligible(state.leader)
        && live.incarnation(state.leader) == state.leader_incarnation;
    if leader_current {
        if eligible_isr.len() == state.isr.len() {
            return None;
        }
        return Some(PartitionState {
            isr: eligible_isr,
            ..state.clone()
        });
    }
    let first = |f: &dyn Fn(i32) -> bool| state.replicas.iter().copied().find(|r| f(*r));
    let next = first(&|r| eligible_isr.contains(&r) && live.may_lead(r))
        .or_else(|| first(&|r| eligible_isr.contains(&r)))
        .map(|l| (l, eligible_isr.clone()))
        .or_else(|| {
            first(&|r| state.isr.contains(&r) && live.has_its_disk(r)).map(|l| (l, vec![l]))
        })
        .or_else(|| {
            unclean
                .then(|| {
                    first(&|r| live.has_its_disk(r) && !state.emptied.contains(&r))
                        .or_else(|| first(&|r| live.is_alive(r)))
                        .map(|l| (l, vec![l]))
                })
                .flatten()
        });
    let (gone, kept_isr): (Vec<i32>, Vec<i32>) =
        state.isr.iter().partition(|r| live.new_disk.contains(r));
    let mut emptied = state.emptied.clone();
    emptied.extend(gone.into_iter().filter(|r| !state.emptied.contains(r)));
    match next {
        Some((leader, isr)) => Some(PartitionState {
            replicas: state.replicas.clone(),
            leader,
            leader_epoch: state.leader_epoch + 1,
            isr,
            leader_incarnation: live.incarnation(leader),
            emptied: Vec::new(),
            reassigning: state.reassigning.clone(),
        }),
        None if state.leader >= 0 || kept_isr != state.isr => Some(PartitionState {
            replicas: state.replicas.clone(),
            leader: -1,
            leader_epoch: state.leader_epoch + 1,
            isr: kept_isr,
            leader_incarnation: 0,
            emptied,
            reassigning: state.reassigning.clone(),
        }),
        None => None,
    }
}

/// Moves leadership back to the preferred replica (the first) when it is eligible, in sync and
/// not leading; `None` otherwise.
pub fn prefer(state: &PartitionState, live: &Liveness) -> Option<PartitionState> {
    if state.reassigning.is_some() {
        return None; // the move's end hands the lead to its target's first replica
    }
    let preferred = *state.replicas.first()?;
    let eligible = state.leader >= 0
        && state.leader != preferred
        && live.may_lead(preferred)
        && state.isr.contains(&preferred);
    eligible.then(|| PartitionState {
        leader: preferred,
        leader_epoch: state.leader_epoch + 1,
        leader_incarnation: live.incarnation(preferred),
        ..state.clone()
    })
}

/// Controlled shutdown: moves a leadership held by a broker in controlled shutdown to the
/// first other in-sync replica that may lead (a new epoch), and takes brokers in controlled
/// shutdown out of the ISR while another member leads, so acks=all stops waiting for them
/// before they stop. `None` when nothing changes, and for a leader no other in-sync replica
/// can replace (it keeps leading until it stops; the partition is then offline or elected as
/// usual).
pub fn shed(state: &PartitionState, live: &Liveness) -> Option<PartitionState> {
    if live.shutting_down.is_empty() || state.leader < 0 {
        return None;
    }
    let leaving = |r: &i32| live.shutting_down.contains(r);
    let mut next = state.clone();
    if leaving(&state.leader) {
        let successor = state
            .replicas
            .iter()
            .copied()
            .find(|r| *r != state.leader && state.isr.contains(r) && live.may_lead(*r));
        if let Some(successor) = successor {
            next.leader = successor;
            next.leader_epoch = state.leader_epoch + 1;
            next.leader_incarnation = live.incarnation(successor);
        }
    }
    // Stopping followers leave the ISR; a stopping leader nobody can replace stays in it.
    next.isr.retain(|r| *r == next.leader || !leaving(r));
    (next != *state).then_some(next)
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
                incarnation: 100 + *id as i64,
                disk_id: String::new(),
                max_partitions: 0,
                max_partitions_why: String::new(),
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

    /// Every broker in `ids` alive in incarnation 100 + id, none restarted.
    fn live(ids: &[i32]) -> Liveness {
        Liveness::of(
            &ids.iter()
                .map(|id| (*id, 100 + *id as i64))
                .collect::<Vec<_>>(),
        )
    }

    /// Broker `id` registered again in incarnation `inc`, not processed yet.
    fn restart(live: &mut Liveness, id: i32, inc: i64) {
        live.alive.insert(id, inc);
        live.restarted.insert(id);
    }

    /// (leader, epoch, isr, leader incarnation): what an election decides.
    fn decided(s: &PartitionState) -> (i32, i32, Vec<i32>, i64) {
        (
            s.leader,
            s.leader_epoch,
            s.isr.clone(),
            s.leader_incarnation,
        )
    }

    fn state(replicas: &[i32], leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
            leader_incarnation: 100 + leader as i64,
            emptied: Vec::new(),
            reassigning: None,
        }
    }

    #[test]
    fn election_picks_an_alive_isr_member_and_bumps_the_epoch() {
        let state = state(&[1, 2, 3], 1, 4, &[1, 3]);
        assert_eq!(
            elect(&state, &live(&[1, 2, 3]), false),
            None,
            "leader alive: nothing to do"
        );
        let next = elect(&state, &live(&[2, 3]), false).unwrap();
        assert_eq!(
            (next.leader, next.leader_epoch, next.isr.clone()),
            (3, 5, vec![3])
        );
        assert_eq!(next.leader_incarnation, 103);
        // Broker 2 is alive but not in sync: no unclean election.
        let offline = elect(&next, &live(&[2]), false).unwrap();
        assert_eq!((offline.leader, offline.isr.clone()), (-1, vec![3]));
        assert_eq!(
            elect(&offline, &live(&[2]), false),
            None,
            "still offline, nothing to write"
        );
        // Unless unclean election is on.
        let unclean = elect(&offline, &live(&[2]), true).unwrap();
        assert_eq!((unclean.leader, unclean.isr.clone()), (2, vec![2]));
        // The last in-sync replica returns and leads again.
        let back = elect(&offline, &live(&[2, 3]), false).unwrap();
        assert_eq!((back.leader, back.leader_epoch), (3, 7));
        // A dead follower leaves the ISR without an epoch change.
        let full = PartitionState {
            isr: vec![1, 2, 3],
            ..state.clone()
        };
        let shrunk = elect(&full, &live(&[1, 2]), false).unwrap();
        assert_eq!(
            (shrunk.leader, shrunk.leader_epoch, shrunk.isr),
            (1, 4, vec![1, 2])
        );
    }

    /// The window: the leader is SIGKILLed, its disk emptied, and it registers again before
    /// the controller noticed it was gone. Same id, alive: without incarnations it would keep
    /// leading at the same epoch with an empty log. A new incarnation is a restart: another
    /// in-sync replica leads at a new epoch and the restarted broker leaves the ISR.
    #[test]
    fn a_restarted_leader_never_resumes_at_the_same_epoch() {
        let before = state(&[1, 2, 3], 1, 4, &[1, 2, 3]);
        let mut now = live(&[1, 2, 3]);
        restart(&mut now, 1, 999);
        let next = elect(&before, &now, false).unwrap();
        assert_eq!(decided(&next), (2, 5, vec![2, 3], 102));
        // Once the restart is processed, the broker is eligible again (it rejoins the ISR by
        // catching up, through the leader), and nothing changes.
        now.restarted.clear();
        assert_eq!(elect(&next, &now, false), None);
        // A leader whose registration is newer than the one it was elected in, even when the
        // restart was already processed, is re-elected at a new epoch.
        let stale = PartitionState {
            leader_incarnation: 101,
            ..state(&[1, 2, 3], 1, 4, &[1, 2, 3])
        };
        let re = elect(&stale, &now, false).unwrap();
        assert_eq!(
            (re.leader, re.leader_epoch, re.leader_incarnation),
            (1, 5, 999)
        );
    }

    #[test]
    fn a_restarted_follower_leaves_the_isr_and_is_not_elected() {
        let before = state(&[1, 2, 3], 1, 4, &[1, 2, 3]);
        let mut now = live(&[1, 2, 3]);
        now.restarted.insert(3);
        let next = elect(&before, &now, false).unwrap();
        assert_eq!(
            (next.leader, next.leader_epoch, next.isr.clone()),
            (1, 4, vec![1, 2])
        );
        // Leader and the other follower die: the restarted one is not in the ISR any more.
        let offline = elect(&next, &live(&[3]), false).unwrap();
        assert_eq!(offline.leader, -1);
    }

    #[test]
    fn a_restarted_last_copy_leads_again_at_a_new_epoch() {
        let before = state(&[1, 2, 3], 1, 4, &[1]);
        let mut now = live(&[1, 2, 3]);
        restart(&mut now, 1, 555);
        let next = elect(&before, &now, false).unwrap();
        assert_eq!(decided(&next), (1, 5, vec![1], 555));
    }

    /// The 30-minute nemesis's loss: broker 2 was the only ISR member, lost its disk and came
    /// back empty. As "the last copy" it led at a new epoch with an empty log, and the other
    /// replicas (which held every record) truncated to it. A broker back on a new disk is
    /// no copy at all: the partition goes offline with an empty ISR, stays offline once the
    /// restart is processed, and only an unclean election brings it back, from a replica
    /// that kept its disk.
    #[test]
    fn a_last_copy_back_on_a_new_disk_never_leads() {
        let before = state(&[2, 1, 3], 2, 8, &[2]);
        let mut now = live(&[1, 2, 3]);
        restart(&mut now, 2, 777);
        now.new_disk.insert(2);
        let offline = elect(&before, &now, false).unwrap();
        assert_eq!(decided(&offline), (-1, 9, vec![], 0));
        assert_eq!(offline.emptied, vec![2]);
        assert_eq!(elect(&offline, &now, false), None);
        // Processed: 2 is eligible again, but it is in no ISR, so nothing changes.
        now.restarted.clear();
        now.new_disk.clear();
        assert_eq!(elect(&offline, &now, false), None);
        // An unclean election picks the first replica that kept its disk, not the empty one
        // (first in replica order), and forgets what was emptied.
        let unclean = elect(&offline, &now, true).unwrap();
        assert_eq!((unclean.leader, unclean.isr.clone()), (1, vec![1]));
        assert!(unclean.emptied.is_empty());
        // With nothing else alive, even the empty one (acknowledged records are gone anyway).
        let alone = elect(&offline, &live(&[2]), true).unwrap();
        assert_eq!(alone.leader, 2);
        // Already offline (2 dead), then back on a new disk: it leaves the kept ISR.
        let dead = elect(&before, &live(&[1, 3]), false).unwrap();
        assert_eq!(decided(&dead), (-1, 9, vec![2], 0));
        let mut back = live(&[1, 2, 3]);
        restart(&mut back, 2, 778);
        back.new_disk.insert(2);
        let emptied = elect(&dead, &back, false).unwrap();
        assert_eq!(decided(&emptied), (-1, 10, vec![], 0));
    }

    #[test]
    fn a_follower_back_on_a_new_disk_leaves_the_isr() {
        let before = state(&[1, 2, 3], 1, 4, &[1, 2, 3]);
        let mut now = live(&[1, 2, 3]);
        now.new_disk.insert(3);
        let next = elect(&before, &now, false).unwrap();
        assert_eq!(decided(&next), (1, 4, vec![1, 2], 101));
    }

    #[test]
    fn preferred_leader_returns_once_in_sync() {
        let state = state(&[1, 2, 3], 2, 3, &[2, 3]);
        assert_eq!(
            prefer(&state, &live(&[1, 2, 3])),
            None,
            "1 is not in sync yet"
        );
        let synced = PartitionState {
            isr: vec![1, 2, 3],
            ..state
        };
        let back = prefer(&synced, &live(&[1, 2, 3])).unwrap();
        assert_eq!(
            (back.leader, back.leader_epoch, back.leader_incarnation),
            (1, 4, 101)
        );
        assert_eq!(prefer(&back, &live(&[1, 2, 3])), None);
        let mut restarted = live(&[1, 2, 3]);
        restarted.restarted.insert(1);
        assert_eq!(
            prefer(&synced, &restarted),
            None,
            "not until its restart is processed"
        );
    }

    fn stopping(ids: &[i32], leaving: &[i32]) -> Liveness {
        let mut l = live(ids);
        l.shutting_down = leaving.iter().copied().collect();
        l
    }

    #[test]
    fn a_controlled_shutdown_moves_the_lead_and_leaves_the_isr() {
        let s = state(&[1, 2, 3], 1, 4, &[1, 2, 3]);
        let l = stopping(&[1, 2, 3], &[1]);
        let shed = shed(&s, &l).unwrap();
        assert_eq!(decided(&shed), (2, 5, vec![2, 3], 102));
        assert_eq!(super::shed(&shed, &l), None, "nothing more to move");
        // A follower stopping leaves the ISR; the leader and epoch stay.
        let l = stopping(&[1, 2, 3], &[3]);
        assert_eq!(
            decided(&super::shed(&s, &l).unwrap()),
            (1, 4, vec![1, 2], 101)
        );
        // Alone in the ISR: it keeps leading until it stops.
        let alone = state(&[1, 2, 3], 1, 4, &[1]);
        assert_eq!(super::shed(&alone, &stopping(&[1, 2, 3], &[1])), None);
        // Two stopping together with nobody else in sync: the leader stays, the other leaves.
        let pair = state(&[1, 2, 3], 1, 4, &[1, 2]);
        let both = stopping(&[1, 2, 3], &[1, 2]);
        assert_eq!(
            decided(&super::shed(&pair, &both).unwrap()),
            (1, 4, vec![1], 101)
        );
        // A restarted replica is not a successor; the stopping one is not a new leader
        // while another can lead, nor preferred back.
        let mut l = stopping(&[1, 2, 3], &[1]);
        l.restarted.insert(2);
        assert_eq!(super::shed(&s, &l).unwrap().leader, 3);
        let dead_leader = state(&[1, 2, 3], 3, 4, &[1, 2, 3]);
        let l = stopping(&[1, 2], &[1]);
        assert_eq!(elect(&dead_leader, &l, false).unwrap().leader, 2);
        assert_eq!(prefer(&state(&[1, 2, 3], 2, 4, &[1, 2, 3]), &l), None);
    }
}
