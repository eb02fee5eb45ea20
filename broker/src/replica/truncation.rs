//! The follower's truncation decisions, without I/O: where to cut its log so that it holds
//! only what it shares with the leader, before it fetches in a new leader epoch.
//!
//! The exchange (KIP-101, looped as KIP-279 does): the follower asks the leader where the
//! follower's latest epoch ends on the leader; the leader answers with its largest epoch at or
//! below the one asked and where that epoch ends. When the follower holds that same epoch, both
//! logs agree up to the smaller of the two ends and the exchange is over. When it does not, its
//! records from its next epoch on are not the leader's: it cuts there and asks again about its
//! own largest epoch below the leader's answer. Epochs asked about strictly decrease, so the
//! exchange ends within as many rounds as the follower has epochs.
//!
//! Invariant: no decision cuts below the follower's high watermark (records every ISR member
//! acknowledged) unless unclean leader election is allowed; such a cut is refused instead, so
//! a leader that came back with less than it had cannot make followers drop committed records.

use strata_log::EpochEntry;

/// The follower's own log, as far as truncation needs it.
#[derive(Debug, Clone)]
pub struct OwnLog<'a> {
    /// The leader-epoch cache, oldest first.
    pub epochs: &'a [EpochEntry],
    pub log_start: i64,
    pub log_end: i64,
    pub high_watermark: i64,
    /// Unclean leader election is on: committed records may be cut.
    pub allow_below_high_watermark: bool,
}

/// What the follower does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ask the leader where `epoch` ends.
    Ask { epoch: i32 },
    /// Cut the log at `offset` (nothing to do when it is at or past the end); then ask about
    /// `then_ask`, or fetch when it is `None`.
    Truncate { offset: i64, then_ask: Option<i32> },
    /// Cutting at `offset` would drop records below the high watermark: refuse, and retry
    /// later (the leader is wrong, or will be replaced).
    Refuse { offset: i64, high_watermark: i64 },
}

/// The largest epoch at or below `epoch` in `epochs`, with where it ends (the next epoch's
/// start, or `log_end` for the latest).
pub fn end_of_epoch(epochs: &[EpochEntry], epoch: i32, log_end: i64) -> Option<(i32, i64)> {
    let i = epochs.partition_point(|e| e.epoch <= epoch);
    let found = epochs.get(i.checked_sub(1)?)?;
    let end = epochs.get(i).map_or(log_end, |next| next.start_offset);
    Some((found.epoch, end))
}

/// The first step: ask about the latest epoch, or nothing to do for a log without records.
pub fn start(own: &OwnLog) -> Step {
    match own.epochs.last() {
        Some(e) if own.log_end > own.log_start => Step::Ask { epoch: e.epoch },
        _ => Step::Truncate {
            offset: own.log_end,
            then_ask: None,
        },
    }
}

/// The step after the leader answered `answer` (its largest epoch at or below the one asked,
/// and where it ends; `None` when it holds no such epoch).
pub fn on_answer(own: &OwnLog, answer: Option<(i32, i64)>) -> Step {
    let (offset, then_ask) = match answer {
        // The leader holds nothing as old as our epoch: only what was committed is known to
        // be shared (Kafka's fallback).
        None => (own.high_watermark.max(own.log_start), None),
        Some((leader_epoch, leader_end)) => {
            match end_of_epoch(own.epochs, leader_epoch, own.log_end) {
                // Every epoch we hold is newer than anything the leader has up to its answer.
                None => (own.log_start.min(leader_end), None),
                Some((e, own_end)) if e == leader_epoch => (own_end.min(leader_end), None),
                // We lack the leader's epoch: our records from our next epoch on are not its.
                Some((e, own_end)) => (own_end.min(leader_end), Some(e)),
            }
        }
    };
    let offset = offset.max(own.log_start);
    if offset < own.log_end && offset < own.high_watermark && !own.allow_below_high_watermark {
        return Step::Refuse {
            offset,
            high_watermark: own.high_watermark,
        };
    }
    Step::Truncate { offset, then_ask }
}

/// What a follower whose fetch offset the leader refused as out of range does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfRange {
    /// Its log ends below the leader's log start (a long outage, a replaced disk): drop it all
    /// and restart empty at the leader's log start. Everything below it was committed (the
    /// leader deletes only below its high watermark), so nothing is lost.
    ResetTo(i64),
    /// Its log is ahead of the leader's: truncate again through the epoch exchange.
    Reconcile,
}

pub fn out_of_range(own_end: i64, leader_start: i64) -> OutOfRange {
    if own_end < leader_start {
        OutOfRange::ResetTo(leader_start)
    } else {
        OutOfRange::Reconcile
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[(i32, i64)]) -> Vec<EpochEntry> {
        list.iter()
            .map(|&(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect()
    }

    fn own(epochs: &[EpochEntry], end: i64, hw: i64) -> OwnLog<'_> {
        OwnLog {
            epochs,
            log_start: 0,
            log_end: end,
            high_watermark: hw,
            allow_below_high_watermark: false,
        }
    }

    /// Drives the whole exchange against a leader whose epoch cache is `leader` and whose log
    /// ends at `leader_end`; returns the offset the follower ends up cut at.
    fn exchange(follower: &mut OwnLog, leader: &[EpochEntry], leader_end: i64) -> Step {
        let mut step = start(follower);
        for _ in 0..16 {
            match step {
                Step::Ask { epoch } => {
                    step = on_answer(follower, end_of_epoch(leader, epoch, leader_end))
                }
                Step::Truncate { offset, then_ask } => {
                    follower.log_end = follower.log_end.min(offset);
                    match then_ask {
                        None => return step,
                        Some(epoch) => step = Step::Ask { epoch },
                    }
                }
                Step::Refuse { .. } => return step,
            }
        }
        panic!("the exchange did not end");
    }

    #[test]
    fn same_epoch_cuts_at_the_smaller_end() {
        let f = entries(&[(0, 0), (2, 50)]);
        let l = entries(&[(0, 0), (2, 50), (3, 80)]);
        let mut o = own(&f, 90, 60);
        // Our epoch 2 runs to 90; the leader's ended at 80.
        assert_eq!(
            exchange(&mut o, &l, 120),
            Step::Truncate {
                offset: 80,
                then_ask: None
            }
        );
    }

    /// Divergent across several epochs: the follower led epochs 1 and 2 (nothing past 40 was
    /// committed), the leader knows only 0 and 3. Asked about 2, the leader answers with its
    /// epoch 0 (ending at 45); the follower's own epoch 0 ends at 40, so it cuts at 40.
    #[test]
    fn divergence_over_several_epochs_is_found_by_looping() {
        let f = entries(&[(0, 0), (1, 40), (2, 60)]);
        let l = entries(&[(0, 0), (3, 45)]);
        let mut o = own(&f, 90, 40);
        assert_eq!(
            exchange(&mut o, &l, 100),
            Step::Truncate {
                offset: 40,
                then_ask: None
            }
        );
        assert_eq!(o.log_end, 40);
    }

    #[test]
    fn a_missing_leader_epoch_makes_the_follower_ask_again() {
        // We hold 0 and 4; the leader holds 0, 2 and 5. Ask 4 -> leader (2, 70): we lack 2,
        // our epoch <= 2 is 0, ending at 50: cut at 50, ask 0 -> leader (0, 30): cut at 30.
        let f = entries(&[(0, 0), (4, 50)]);
        let l = entries(&[(0, 0), (2, 30), (5, 70)]);
        let o = own(&f, 90, 10);
        assert_eq!(start(&o), Step::Ask { epoch: 4 });
        assert_eq!(
            on_answer(&o, end_of_epoch(&l, 4, 100)),
            Step::Truncate {
                offset: 50,
                then_ask: Some(0)
            }
        );
        let mut o = own(&f, 90, 10);
        assert_eq!(
            exchange(&mut o, &l, 100),
            Step::Truncate {
                offset: 30,
                then_ask: None
            }
        );
    }

    /// The window of the seeded run: a leader back with an empty log (same epoch) answers that
    /// it holds no epoch; a follower with 761,000 committed records must not cut them.
    #[test]
    fn an_empty_leader_cannot_make_a_follower_drop_committed_records() {
        let f = entries(&[(0, 0), (3, 22_500)]);
        let o = OwnLog {
            log_start: 22_500,
            ..own(&f, 783_500, 783_000)
        };
        assert_eq!(
            on_answer(&o, None),
            Step::Truncate {
                offset: 783_000,
                then_ask: None
            },
            "at worst, back to the high watermark"
        );
        // An answer that the leader's epoch 3 ends at 0 would cut below the HW: refused.
        assert_eq!(
            on_answer(&o, Some((3, 0))),
            Step::Refuse {
                offset: 22_500,
                high_watermark: 783_000
            }
        );
        let unclean = OwnLog {
            allow_below_high_watermark: true,
            ..o.clone()
        };
        assert_eq!(
            on_answer(&unclean, Some((3, 0))),
            Step::Truncate {
                offset: 22_500,
                then_ask: None
            }
        );
    }

    #[test]
    fn an_empty_follower_has_nothing_to_cut() {
        let o = own(&[], 0, 0);
        assert_eq!(
            start(&o),
            Step::Truncate {
                offset: 0,
                then_ask: None
            }
        );
    }

    #[test]
    fn a_follower_behind_the_leader_start_resets() {
        assert_eq!(out_of_range(100, 5_000), OutOfRange::ResetTo(5_000));
        assert_eq!(out_of_range(6_000, 5_000), OutOfRange::Reconcile);
    }
}
