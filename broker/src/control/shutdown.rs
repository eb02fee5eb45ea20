//! Controlled shutdown, the stopping broker's side: on SIGTERM (or Ctrl-C) the broker records
//! in the metadata that it is stopping, in this incarnation, and keeps serving until the
//! controller has moved every leadership it holds to another in-sync replica and taken it out
//! of the ISRs it is in (`placement::shed`), bounded by `--controlled-shutdown-timeout` (15 s,
//! inside Kubernetes' default 30 s grace period; 0 turns it off). Only then does the server
//! stop accepting calls and the logs close.
//!
//! Invariants: while it waits the broker still answers (a produce to a partition whose
//! leadership moved gets NOT_LEADER and the client goes to the new leader at once, instead of
//! waiting for the session to lapse); leaders do not let a broker in controlled shutdown join
//! an ISR again (`replication::leader`), so acks=all never waits for a broker that is about to
//! disappear; a request recorded by an earlier run (another incarnation) means nothing.

use std::time::Duration;

use crate::metadata::PartitionState;
use crate::state::BrokerState;

/// Partitions that still wait for the controller: ones `me` leads with another ISR member
/// that could take over (`may_lead`: alive and not stopping too), and ones it follows while
/// in their ISR.
pub fn pending(me: i32, states: &[PartitionState], may_lead: impl Fn(i32) -> bool) -> usize {
    states
        .iter()
        .filter(|s| {
            if s.leader == me {
                s.isr.iter().any(|r| *r != me && may_lead(*r))
            } else {
                s.leader >= 0 && s.isr.contains(&me)
            }
        })
        .count()
}

/// Asks the controller to move this broker's leaderships and ISR places, and waits (bounded)
/// until the metadata shows it did.
pub async fn run(state: &BrokerState) {
    let me = state.config.broker_id;
    let started = tokio::time::Instant::now();
    let bound = state.config.controlled_shutdown_timeout;
    if bound.is_zero() {
        return; // --controlled-shutdown-timeout 0: off
    }
    let deadline = started + bound;
    if let Err(e) = state
        .metadata
        .set_shutting_down(me, state.incarnation)
        .await
    {
        tracing::warn!(error = %e, "controlled shutdown: cannot tell the controller; stopping without moving leaderships first");
        return;
    }
    loop {
        let states: Vec<PartitionState> = state
            .replicas
            .local_topics()
            .iter()
            .flat_map(|t| t.partitions.values().map(|p| p.state()))
            .collect();
        let snapshot = state.replicas.snapshot();
        let may_lead =
            |r: i32| snapshot.alive.contains_key(&r) && !snapshot.shutting_down.contains(&r);
        let left = pending(me, &states, may_lead);
        if left == 0 {
            tracing::info!(
                broker = me,
                waited_ms = started.elapsed().as_millis() as u64,
                "controlled shutdown: every leadership moved and no ISR waits for this broker"
            );
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                broker = me,
                partitions = left,
                "controlled shutdown: partitions still led by or waiting for this broker \
                 after {:?} (no other in-sync replica could take over); stopping anyway",
                started.elapsed()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(leader: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: vec![1, 2, 3],
            leader,
            leader_epoch: 1,
            isr: isr.to_vec(),
            leader_incarnation: 1,
            emptied: Vec::new(),
            reassigning: None,
        }
    }

    #[test]
    fn waits_for_leaderships_that_can_move_and_isr_places() {
        let all = |_: i32| true;
        assert_eq!(
            pending(1, &[state(1, &[1, 2, 3])], all),
            1,
            "leads, others in sync"
        );
        assert_eq!(
            pending(1, &[state(1, &[1])], all),
            0,
            "alone: nobody can take over"
        );
        let only_3 = |r: i32| r == 3;
        assert_eq!(
            pending(1, &[state(1, &[1, 2])], only_3),
            0,
            "2 is stopping or dead"
        );
        assert_eq!(
            pending(1, &[state(2, &[1, 2])], all),
            1,
            "an ISR waits for it"
        );
        assert_eq!(pending(1, &[state(2, &[2, 3])], all), 0, "out of the ISR");
        assert_eq!(pending(1, &[state(-1, &[1])], all), 0, "offline");
    }
}
