//! Drain and balance plans, as pure functions over the live brokers and the partitions'
//! replica lists: which replicas to move so that one broker hosts nothing (drain), or so that
//! every live broker hosts about as many replicas and preferred leaderships as the others
//! (balance). The plans are reassignments ([`super::reassign`]) the controller then runs.
//!
//! Invariants:
//! - a moved replica keeps its position in the list (a drained preferred leader's place goes
//!   to its replacement, which then leads); a preferred leadership moves by swapping two
//!   replicas of one partition, which copies no data;
//! - a replacement never makes a partition span fewer racks than before, when another
//!   candidate avoids it (racks the partition's other replicas use are avoided first);
//! - fewest moves: balance moves one replica at a time from the most loaded broker to the
//!   least loaded one until no two live brokers differ by more than one, so every move it
//!   plans is needed; ties go to the lowest broker id and the first partition, so a plan is
//!   the same for the same input;
//! - partitions already being reassigned are counted where they are going and never moved.

use std::collections::BTreeMap;

/// A live broker a plan may place replicas on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub rack: Option<String>,
}

/// A partition's replicas now; `movable` is false for one already being reassigned; `down`
/// lists its replicas on brokers that are not alive (a move waits for every target replica
/// to be in sync, so one keeping such a replica could not finish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<i32>,
    pub movable: bool,
    pub down: Vec<i32>,
}

/// One planned reassignment: the partition's replicas now and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: u32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
}

/// The replicas and preferred leaderships each live broker hosts.
#[derive(Debug, Default)]
struct Load {
    replicas: BTreeMap<i32, usize>,
    leaders: BTreeMap<i32, usize>,
}

impl Load {
    fn of(brokers: &[Broker], partitions: &[Assigned]) -> Load {
        let mut load = Load::default();
        for b in brokers {
            load.replicas.insert(b.id, 0);
            load.leaders.insert(b.id, 0);
        }
        for p in partitions {
            for r in &p.replicas {
                if let Some(n) = load.replicas.get_mut(r) {
                    *n += 1;
                }
            }
            if let Some(n) = p.replicas.first().and_then(|l| load.leaders.get_mut(l)) {
                *n += 1;
            }
        }
        load
    }
}

fn rack_of(brokers: &[Broker], id: i32) -> Option<&str> {
    brokers
        .iter()
        .find(|b| b.id == id)
        .and_then(|b| b.rack.as_deref())
}

/// True when `candidate` would share a rack with one of `others` (brokers without a rack
/// share none).
fn shares_rack(brokers: &[Broker], others: &[i32], candidate: i32) -> bool {
    let Some(rack) = rack_of(brokers, candidate) else {
        return false;
    };
    others.iter().any(|o| rack_of(brokers, *o) == Some(rack))
}

/// Moves every replica off broker `leaving` onto the other live `brokers`: rack-aware, each
/// to the least loaded candidate. An error names a partition that has nowhere to go.
pub fn drain(
    leaving: i32,
    brokers: &[Broker],
    partitions: &[Assigned],
) -> Result<Vec<Move>, String> {
    let brokers: Vec<Broker> = brokers
        .iter()
        .filter(|b| b.id != leaving)
        .cloned()
        .collect();
    let mut load = Load::of(&brokers, partitions);
    let mut moves = Vec::new();
    for p in partitions.iter().filter(|p| p.replicas.contains(&leaving)) {
        if !p.movable {
            return Err(format!(
                "{}/{} is being reassigned; wait for that move to finish (strata cluster \
                 reassignments) or cancel it, then drain broker {leaving}",
                p.topic, p.partition
            ));
        }
        if let Some(down) = p.down.iter().find(|b| **b != leaving) {
            return Err(format!(
                "{}/{} also has a replica on broker {down}, which is down: the move could not \
                 finish until it is back; start it again, or move that replica first (strata \
                 partition reassign)",
                p.topic, p.partition
            ));
        }
        let at = p.replicas.iter().position(|r| *r == leaving).unwrap_or(0);
        let others: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|r| *r != leaving)
            .collect();
        let pick = brokers
            .iter()
            .map(|b| b.id)
            .filter(|b| !p.replicas.contains(b))
            .min_by_key(|b| {
                let leads = if at == 0 { load.leaders[b] } else { 0 };
                (
                    shares_rack(&brokers, &others, *b),
                    load.replicas[b] + leads,
                    *b,
                )
            })
            .ok_or_else(|| {
                format!(
                    "cannot drain broker {leaving}: {}/{} has {} replicas and there are only \
                     {} other live brokers; add a broker, or lower the topic's replicas with \
                     strata partition reassign",
                    p.topic,
                    p.partition,
                    p.replicas.len(),
                    brokers.len()
                )
            })?;
        let mut to = p.replicas.clone();
        to[at] = pick;
        *load.replicas.entry(pick).or_default() += 1;
        if at == 0 {
            *load.leaders.entry(pick).or_default() += 1;
        }
        moves.push(Move {
            topic: p.topic.clone(),
            partition: p.partition,
            from: p.replicas.clone(),
            to,
        });
    }
    Ok(moves)
}

/// One step of evening out `counts`: from the most loaded broker to the least loaded one
/// (by more than one) for which `fits(partition, from, to)` finds a partition; `None` once
/// even or stuck.
fn next_step(
    counts: &BTreeMap<i32, usize>,
    now: &[Assigned],
    fits: impl Fn(&Assigned, i32, i32) -> bool,
) -> Option<(usize, i32, i32)> {
    let (&most, &high) = counts.iter().max_by_key(|(id, n)| (**n, -**id))?;
    let mut receivers: Vec<(usize, i32)> = counts.iter().map(|(id, n)| (*n, *id)).collect();
    receivers.sort();
    receivers
        .iter()
        .take_while(|(n, _)| high > n + 1)
        .find_map(|(_, to)| {
            now.iter()
                .position(|p| p.movable && p.down.is_empty() && fits(p, most, *to))
                .map(|i| (i, most, *to))
        })
}

/// Evens out replica counts, then preferred-leader counts, across the live `brokers`.
pub fn balance(brokers: &[Broker], partitions: &[Assigned]) -> Vec<Move> {
    let mut now: Vec<Assigned> = partitions.to_vec();
    // Replicas: one at a time to a broker that does not hold the partition, never onto a rack
    // the partition's other replicas use unless the leaving one shared it already.
    let takes_replica = |p: &Assigned, from: i32, to: i32| {
        let others: Vec<i32> = p.replicas.iter().copied().filter(|r| *r != from).collect();
        p.replicas.contains(&from)
            && !p.replicas.contains(&to)
            && (!shares_rack(brokers, &others, to) || shares_rack(brokers, &others, from))
    };
    while let Some((i, from, to)) =
        next_step(&Load::of(brokers, &now).replicas, &now, takes_replica)
    {
        let at = now[i].replicas.iter().position(|r| *r == from).unwrap_or(0);
        now[i].replicas[at] = to;
    }
    // Preferred leaders: swap the first replica with another replica of the same partition.
    let takes_lead = |p: &Assigned, from: i32, to: i32| {
        p.replicas.first() == Some(&from) && p.replicas.contains(&to)
    };
    while let Some((i, _, to)) = next_step(&Load::of(brokers, &now).leaders, &now, takes_lead) {
        let at = now[i].replicas.iter().position(|r| *r == to).unwrap_or(0);
        now[i].replicas.swap(0, at);
    }
    partitions
        .iter()
        .zip(&now)
        .filter(|(before, after)| before.replicas != after.replicas)
        .map(|(before, after)| Move {
            topic: before.topic.clone(),
            partition: before.partition,
            from: before.replicas.clone(),
            to: after.replicas.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[(i32, Option<&str>)]) -> Vec<Broker> {
        racks
            .iter()
            .map(|(id, rack)| Broker {
                id: *id,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    fn parts(lists: &[&[i32]]) -> Vec<Assigned> {
        lists
            .iter()
            .enumerate()
            .map(|(i, r)| Assigned {
                topic: "t".into(),
                partition: i as u32,
                replicas: r.to_vec(),
                movable: true,
                down: vec![],
            })
            .collect()
    }

    fn counts(brokers: &[Broker], partitions: &[Assigned], moves: &[Move]) -> Load {
        let mut after = partitions.to_vec();
        for m in moves {
            after[m.partition as usize].replicas = m.to.clone();
        }
        Load::of(brokers, &after)
    }

    #[test]
    fn a_new_broker_gets_an_even_share_with_the_fewest_moves() {
        let b = brokers(&[(1, None), (2, None), (3, None), (4, None)]);
        // Six RF 2 partitions on brokers 1..3: 12 replicas, 3 each once balanced over four.
        let p = parts(&[&[1, 2], &[2, 3], &[3, 1], &[1, 2], &[2, 3], &[3, 1]]);
        let moves = balance(&b, &p);
        let load = counts(&b, &p, &moves);
        assert_eq!(
            load.replicas.values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3]
        );
        let moved_replicas: usize = moves
            .iter()
            .map(|m| m.to.iter().filter(|r| !m.from.contains(r)).count())
            .sum();
        assert_eq!(
            moved_replicas, 3,
            "exactly the new broker's share moves: {moves:?}"
        );
        let leaders: Vec<usize> = load.leaders.values().copied().collect();
        assert!(
            leaders.iter().max().unwrap() - leaders.iter().min().unwrap() <= 1,
            "{leaders:?}"
        );
        // Balanced already: nothing to do.
        let after: Vec<Assigned> = p
            .iter()
            .map(|a| Assigned {
                replicas: moves
                    .iter()
                    .find(|m| m.partition == a.partition)
                    .map_or(a.replicas.clone(), |m| m.to.clone()),
                ..a.clone()
            })
            .collect();
        assert!(balance(&b, &after).is_empty());
    }

    #[test]
    fn preferred_leaders_spread_by_swapping_without_copying() {
        let b = brokers(&[(1, None), (2, None), (3, None)]);
        let p = parts(&[&[1, 2, 3], &[1, 3, 2], &[1, 2, 3]]);
        let moves = balance(&b, &p);
        assert!(
            moves.iter().all(|m| {
                let (mut a, mut c) = (m.from.clone(), m.to.clone());
                a.sort();
                c.sort();
                a == c
            }),
            "only reorders: {moves:?}"
        );
        let load = counts(&b, &p, &moves);
        assert_eq!(
            load.leaders.values().copied().collect::<Vec<_>>(),
            vec![1, 1, 1]
        );
    }

    #[test]
    fn a_drain_moves_everything_off_rack_aware_and_says_when_it_cannot() {
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("b")),
            (3, Some("a")),
            (4, Some("b")),
        ]);
        let p = parts(&[&[1, 2], &[2, 3], &[4, 1]]);
        let moves = drain(2, &b, &p).unwrap();
        assert_eq!(moves.len(), 2);
        for m in &moves {
            assert!(!m.to.contains(&2), "{m:?}");
            // Broker 2 was rack b: its replacement is broker 4 (rack b), keeping two racks.
            assert!(m.to.contains(&4), "{m:?}");
        }
        assert_eq!(
            moves[0].to,
            vec![1, 4],
            "the replacement takes the drained position"
        );
        let p = parts(&[&[1, 2, 3]]);
        let three = brokers(&[(1, None), (2, None), (3, None)]);
        let e = drain(2, &three, &p).unwrap_err();
        assert!(e.contains("only 2 other live brokers"), "{e}");
        let mut moving = parts(&[&[1, 2]]);
        moving[0].movable = false;
        assert!(drain(2, &b, &moving)
            .unwrap_err()
            .contains("is being reassigned"));
    }

    #[test]
    fn balance_keeps_partitions_across_racks() {
        // Rack a: 1, 3; rack b: 2, 4 (new, empty). Moving a replica of [1, 2] from 1 to 4
        // would put both on rack b: broker 3 (rack a) is not a receiver, so 4 takes from 2.
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("b")),
            (3, Some("a")),
            (4, Some("b")),
        ]);
        let p = parts(&[&[1, 2], &[3, 2], &[1, 2], &[3, 2]]);
        let moves = balance(&b, &p);
        for m in &moves {
            let racks: Vec<_> = m.to.iter().map(|r| rack_of(&b, *r)).collect();
            assert_ne!(racks[0], racks[1], "{m:?} puts both replicas on one rack");
        }
        let load = counts(&b, &p, &moves);
        assert_eq!(
            load.replicas.values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2, 2]
        );
    }
}
