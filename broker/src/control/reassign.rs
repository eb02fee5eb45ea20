//! Partition reassignment (KIP-455) as pure rules over one partition's state: what to write to
//! start a move, to finish it, and to cancel it. The controller makes each write one
//! compare-and-swap fenced by its election, so a controller that dies between two steps
//! leaves a state the next one continues from: everything a move needs is in the partition's
//! own record (`PartitionState::reassigning`).
//!
//! Invariants:
//! - during a move `replicas` is the original replicas followed by the ones being added; the
//!   added ones catch up outside the ISR and join it by the leader's usual rule (they reached
//!   the high watermark and the epoch start), so they hold every acknowledged record when
//!   they join;
//! - a move finishes only when every target replica is in the ISR (Kafka's rule), and in that
//!   one write the replicas shrink to the target, the ISR to its target members, and the
//!   target's first replica takes the lead when it may (else a leader that leaves hands over
//!   to the first target replica that may lead) at a new epoch: every record the high
//!   watermark passed is on every target replica, so nothing acknowledged is lost;
//! - a cancel restores the original replicas; a leader among the added ones hands back to an
//!   eligible in-sync original replica, and a cancel that would leave no such replica to lead
//!   is refused with a sentence (the partition would go offline);
//! - a new target for a partition already moving is refused unless it is the same target (then
//!   only the throttle changes): cancel first. Kafka lets a new target replace the old one;
//!   refusing keeps every step above decidable from the record alone.

use std::collections::BTreeSet;

use crate::control::placement::Liveness;
use crate::error::{BrokerError, Result};
use crate::metadata::{PartitionState, Reassigning};

/// The replicas before the move (all of them when none is under way), in their order.
pub fn original(state: &PartitionState) -> Vec<i32> {
    match &state.reassigning {
        Some(r) => state
            .replicas
            .iter()
            .copied()
            .filter(|b| !r.adding.contains(b))
            .collect(),
        None => state.replicas.clone(),
    }
}

/// Checks a target replica list: not empty, no broker twice, every broker known (registered
/// once). `what` names the partition in the sentence.
pub fn check_target(target: &[i32], known: &BTreeSet<i32>, what: &str) -> Result<()> {
    if target.is_empty() {
        return Err(BrokerError::InvalidReplicaAssignment(format!(
            "{what}: a reassignment needs at least one replica"
        )));
    }
    let mut seen = BTreeSet::new();
    if let Some(twice) = target.iter().find(|b| !seen.insert(**b)) {
        return Err(BrokerError::InvalidReplicaAssignment(format!(
            "{what}: broker {twice} appears twice in the replicas {target:?}; each replica \
             needs a broker of its own"
        )));
    }
    let unknown: Vec<i32> = target
        .iter()
        .copied()
        .filter(|b| !known.contains(b))
        .collect();
    if !unknown.is_empty() {
        return Err(BrokerError::InvalidReplicaAssignment(format!(
            "{what}: no broker with id {} ever registered in this cluster (known brokers: \
             {known:?})",
            join(&unknown)
        )));
    }
    Ok(())
}

/// The state that starts moving the partition to `target` (already checked), or `None` when
/// nothing changes (the replicas are already `target`, or the same move is under way and no
/// new throttle is given). A new target for a partition already moving replaces the old one
/// (KIP-455), planned again from the original replicas: replicas added for the old target and
/// not in the new one leave, and so leave the ISR; refused when the leader would leave that
/// way or no in-sync replica would remain.
pub fn start(
    state: &PartitionState,
    target: &[i32],
    throttle_bytes_per_sec: u64,
    now_ms: i64,
    what: &str,
) -> Result<Option<PartitionState>> {
    let mut throttle = throttle_bytes_per_sec;
    if let Some(r) = &state.reassigning {
        if throttle == 0 {
            throttle = r.throttle_bytes_per_sec; // a repeated ask without --throttle keeps it
        }
        if r.target == target {
            if r.throttle_bytes_per_sec == throttle {
                return Ok(None);
            }
            let mut next = state.clone();
            if let Some(r) = next.reassigning.as_mut() {
                r.throttle_bytes_per_sec = throttle;
            }
            return Ok(Some(next));
        }
    } else if state.replicas == target {
        return Ok(None);
    }
    let original = original(state);
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|b| !original.contains(b))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|b| !target.contains(b))
        .collect();
    let mut replicas = original;
    replicas.extend(&adding);
    let isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|b| replicas.contains(b))
        .collect();
    if state.leader >= 0 && !replicas.contains(&state.leader) {
        return Err(BrokerError::InvalidReplicaAssignment(format!(
            "{what}: broker {} leads it, and is neither an original replica nor in the new              target {target:?}; keep it in the target (it can be moved away afterwards)",
            state.leader
        )));
    }
    if isr.is_empty() && !state.isr.is_empty() {
        return Err(BrokerError::InvalidReplicaAssignment(format!(
            "{what}: the new target {target:?} would drop every in-sync replica ({}); keep one              of them in the target",
            join(&state.isr)
        )));
    }
    Ok(Some(PartitionState {
        replicas,
        isr,
        reassigning: Some(Reassigning {
            target: target.to_vec(),
            adding,
            removing,
            throttle_bytes_per_sec: throttle,
            started_ms: now_ms,
        }),
        ..state.clone()
    }))
}

/// The write that finishes the move once every target replica is in the ISR, or `None` while
/// it must wait (a target replica still catching up, no leader, or a leader that leaves with
/// no eligible target replica to take over).
pub fn finish(state: &PartitionState, live: &Liveness) -> Option<PartitionState> {
    let r = state.reassigning.as_ref()?;
    if state.leader < 0 || !r.target.iter().all(|t| state.isr.contains(t)) {
        return None;
    }
    // The target's first replica leads when it can (a plan that reorders replicas moves the
    // leadership with it); else the leader stays if it is in the target; else the first
    // target replica that may lead takes over.
    let preferred = *r.target.first()?;
    let next = if preferred != state.leader && live.may_lead(preferred) {
        Some(preferred)
    } else if r.target.contains(&state.leader) {
        None
    } else {
        Some(r.target.iter().copied().find(|t| live.may_lead(*t))?)
    };
    let (leader, leader_epoch, leader_incarnation) = match next {
        Some(next) => (next, state.leader_epoch + 1, live.incarnation(next)),
        None => (state.leader, state.leader_epoch, state.leader_incarnation),
    };
    Some(PartitionState {
        replicas: r.target.clone(),
        leader,
        leader_epoch,
        isr: state
            .isr
            .iter()
            .copied()
            .filter(|b| r.target.contains(b))
            .collect(),
        leader_incarnation,
        emptied: state
            .emptied
            .iter()
            .copied()
            .filter(|b| r.target.contains(b))
            .collect(),
        reassigning: None,
    })
}

/// The write that cancels the move, back to the original replicas.
pub fn cancel(state: &PartitionState, live: &Liveness, what: &str) -> Result<PartitionState> {
    if state.reassigning.is_none() {
        return Err(BrokerError::NoReassignmentInProgress(format!(
            "{what} is not being reassigned; there is nothing to cancel"
        )));
    }
    let original = original(state);
    let isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|b| original.contains(b))
        .collect();
    // The leader stays only when it is an original replica leading in the incarnation it was
    // elected in; otherwise (an added replica leads, or the leader died and no election ran
    // yet) an eligible in-sync original replica takes over, or the cancel is refused.
    let current = state.leader >= 0
        && original.contains(&state.leader)
        && live.is_eligible(state.leader)
        && live.incarnation(state.leader) == state.leader_incarnation;
    let (leader, leader_epoch, leader_incarnation) = if current {
        (state.leader, state.leader_epoch, state.leader_incarnation)
    } else {
        let Some(next) = original
            .iter()
            .copied()
            .find(|b| isr.contains(b) && live.may_lead(*b))
        else {
            return Err(BrokerError::InvalidRequest(format!(
                "{what}: cannot cancel the reassignment now: no original replica ({}) is \
                     alive and in sync to lead (the leader is broker {}); let the reassignment \
                     finish, give it a new target, or cancel once an original replica has \
                     caught up",
                join(&original),
                state.leader
            )));
        };
        (next, state.leader_epoch + 1, live.incarnation(next))
    };
    Ok(PartitionState {
        replicas: original,
        leader,
        leader_epoch,
        isr,
        leader_incarnation,
        emptied: state.emptied.clone(),
        reassigning: None,
    })
}

fn join(ids: &[i32]) -> String {
    ids.iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], leader: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 3,
            isr: isr.to_vec(),
            leader_incarnation: 100 + leader as i64,
            emptied: Vec::new(),
            reassigning: None,
        }
    }

    fn live(ids: &[i32]) -> Liveness {
        Liveness::of(
            &ids.iter()
                .map(|b| (*b, 100 + *b as i64))
                .collect::<Vec<_>>(),
        )
    }

    fn known(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn bad_targets_are_refused_with_the_ids_named() {
        let k = known(&[1, 2, 3, 4]);
        let e = check_target(&[], &k, "t/0").unwrap_err().to_string();
        assert!(e.contains("at least one replica"), "{e}");
        let e = check_target(&[1, 2, 1], &k, "t/0").unwrap_err().to_string();
        assert!(e.contains("broker 1 appears twice"), "{e}");
        let e = check_target(&[1, 9, 7], &k, "t/0").unwrap_err().to_string();
        assert!(e.contains("no broker with id 9, 7"), "{e}");
        check_target(&[4, 2, 3], &k, "t/0").unwrap();
    }

    #[test]
    fn a_move_adds_the_targets_outside_the_isr_and_keeps_the_leader() {
        let s = state(&[1, 2, 3], 1, &[1, 2, 3]);
        let moving = start(&s, &[4, 2, 3], 1000, 7, "t/0").unwrap().unwrap();
        assert_eq!(moving.replicas, vec![1, 2, 3, 4]);
        assert_eq!(moving.isr, vec![1, 2, 3]);
        assert_eq!((moving.leader, moving.leader_epoch), (1, 3));
        let r = moving.reassigning.as_ref().unwrap();
        assert_eq!((r.adding.clone(), r.removing.clone()), (vec![4], vec![1]));
        assert_eq!(original(&moving), vec![1, 2, 3]);
        // The same ask again is nothing new.
        assert_eq!(start(&moving, &[4, 2, 3], 1000, 9, "t/0").unwrap(), None);
        let throttled = start(&moving, &[4, 2, 3], 5, 9, "t/0").unwrap().unwrap();
        assert_eq!(
            throttled
                .reassigning
                .as_ref()
                .unwrap()
                .throttle_bytes_per_sec,
            5
        );
        // A new target replaces the old one, planned from the original replicas; without a
        // throttle the old one is kept.
        let replaced = start(&throttled, &[4, 5, 3], 0, 9, "t/0").unwrap().unwrap();
        assert_eq!(replaced.replicas, vec![1, 2, 3, 4, 5]);
        let r = replaced.reassigning.as_ref().unwrap();
        assert_eq!(
            (r.adding.clone(), r.removing.clone()),
            (vec![4, 5], vec![1, 2])
        );
        assert_eq!(r.throttle_bytes_per_sec, 5);
        // Refused when the leader, an added replica, would leave with the old target.
        let led_by_4 = PartitionState {
            leader: 4,
            isr: vec![2, 4],
            ..moving.clone()
        };
        let e = start(&led_by_4, &[5, 2, 3], 0, 9, "t/0").unwrap_err();
        assert!(e.to_string().contains("broker 4 leads it"), "{e}");
        // Asking for what it already is changes nothing.
        assert_eq!(start(&s, &[1, 2, 3], 0, 7, "t/0").unwrap(), None);
    }

    #[test]
    fn the_move_waits_until_every_target_is_in_sync_then_hands_the_lead_over() {
        let s = state(&[1, 2, 3], 1, &[1, 2, 3]);
        let moving = start(&s, &[4, 2, 3], 0, 7, "t/0").unwrap().unwrap();
        let l = live(&[1, 2, 3, 4]);
        assert_eq!(finish(&moving, &l), None, "broker 4 is still catching up");
        let caught_up = PartitionState {
            isr: vec![1, 2, 3, 4],
            ..moving.clone()
        };
        let done = finish(&caught_up, &l).unwrap();
        assert_eq!(done.replicas, vec![4, 2, 3]);
        assert_eq!(done.isr, vec![2, 3, 4]);
        // The leader left: the first eligible target leads at a new epoch.
        assert_eq!((done.leader, done.leader_epoch), (4, 4));
        assert_eq!(done.leader_incarnation, 104);
        assert_eq!(done.reassigning, None);
        // With broker 4 not eligible (restarted), broker 2 takes the lead.
        let mut restarted = l.clone();
        restarted.restarted.insert(4);
        assert_eq!(finish(&caught_up, &restarted).unwrap().leader, 2);
        // A leader that stays first keeps its epoch; a reorder hands the lead to the new first.
        let stays = start(&s, &[1, 2, 4], 0, 7, "t/0").unwrap().unwrap();
        let stays = PartitionState {
            isr: vec![1, 2, 3, 4],
            ..stays
        };
        let done = finish(&stays, &l).unwrap();
        assert_eq!(
            (done.leader, done.leader_epoch, done.isr),
            (1, 3, vec![1, 2, 4])
        );
        let reorder = start(&s, &[2, 1, 3], 0, 7, "t/0").unwrap().unwrap();
        let done = finish(&reorder, &l).unwrap();
        assert_eq!(
            (done.replicas, done.leader, done.leader_epoch),
            (vec![2, 1, 3], 2, 4)
        );
    }

    #[test]
    fn a_target_out_of_sync_or_no_leader_keeps_the_move_waiting() {
        // Target [2, 3] with broker 3 dead and out of the ISR: the move waits for it.
        let s = state(&[1, 2, 3], 1, &[1, 2]);
        let moving = start(&s, &[2, 3], 0, 7, "t/0").unwrap().unwrap();
        assert_eq!(finish(&moving, &live(&[1, 2])), None);
        let offline = PartitionState {
            leader: -1,
            isr: vec![1, 2, 3],
            ..moving
        };
        assert_eq!(finish(&offline, &live(&[1, 2, 3])), None);
    }

    #[test]
    fn a_cancel_restores_the_original_replicas_and_hands_the_lead_back() {
        let s = state(&[1, 2, 3], 1, &[1, 2, 3]);
        let moving = start(&s, &[4, 5, 6], 0, 7, "t/0").unwrap().unwrap();
        // An election during the move gave the lead to added broker 4, in sync by then.
        let led_by_new = PartitionState {
            leader: 4,
            leader_epoch: 4,
            leader_incarnation: 104,
            isr: vec![2, 4],
            ..moving.clone()
        };
        let l = live(&[2, 3, 4, 5, 6]);
        let back = cancel(&led_by_new, &l, "t/0").unwrap();
        assert_eq!(back.replicas, vec![1, 2, 3]);
        assert_eq!((back.leader, back.leader_epoch, back.isr), (2, 5, vec![2]));
        assert_eq!(back.reassigning, None);
        // No original replica in sync and alive: refused, the partition is left as it is.
        let alone = PartitionState {
            isr: vec![4],
            ..led_by_new
        };
        let e = cancel(&alone, &l, "t/0").unwrap_err().to_string();
        assert!(e.contains("cannot cancel the reassignment now"), "{e}");
        // A plain cancel keeps the leader and drops the added replicas from the ISR.
        let plain = PartitionState {
            isr: vec![1, 2, 3, 4],
            ..moving
        };
        let all = live(&[1, 2, 3, 4, 5, 6]);
        let back = cancel(&plain, &all, "t/0").unwrap();
        assert_eq!(
            (back.leader, back.leader_epoch, back.isr),
            (1, 3, vec![1, 2, 3])
        );
        // The leader died before an election ran: an in-sync original replica takes over,
        // and with none the cancel is refused rather than leaving an empty ISR.
        let back = cancel(&plain, &l, "t/0").unwrap();
        assert_eq!((back.leader, back.leader_epoch), (2, 4));
        let dead = PartitionState {
            isr: vec![1, 4],
            ..plain.clone()
        };
        let refused = cancel(&dead, &live(&[2, 3, 4]), "t/0").unwrap_err();
        assert!(refused.to_string().contains("cannot cancel"));
        let offline = PartitionState {
            leader: -1,
            isr: vec![4],
            ..plain.clone()
        };
        assert!(
            cancel(&offline, &all, "t/0").is_err(),
            "would empty the ISR"
        );
        // Nothing to cancel.
        let e = cancel(&s, &l, "t/0").unwrap_err();
        assert!(matches!(e, BrokerError::NoReassignmentInProgress(_)));
    }
}
