//! The leader's side of one partition's replication, as a state machine without I/O: what it
//! knows of each follower, the ISR as written in the metadata plus the changes it proposed, the
//! high watermark those give, and whether an `acks=all` batch is durable as asked.
//!
//! The caller feeds it events (a follower fetched, an ISR write succeeded or failed, the
//! metadata changed) with the time, and does the I/O its answers call for. Invariants:
//! - the high watermark is the smallest log end offset over the *maximal* ISR: the ISR in the
//!   metadata plus every replica proposed for it, from the moment of the proposal, so the high
//!   watermark never passes a record a new ISR member lacks (KIP-497's maximal ISR);
//! - a follower is proposed for the ISR only once it has reached both the high watermark and
//!   the start of the leader's current epoch (KAFKA-7128): a replica that has not fetched
//!   anything written in this epoch may lack records the previous leader committed;
//! - the high watermark never moves back;
//! - an `acks=all` batch is acknowledged only when the high watermark passed it *and* the ISR
//!   still holds `min.insync.replicas` members; otherwise the records are in the log but not
//!   durable as asked (NOT_ENOUGH_REPLICAS_AFTER_APPEND).

use std::collections::{BTreeSet, HashMap};

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset).
    pub log_end_offset: i64,
    /// Last time the follower had everything the leader had at its previous fetch.
    pub last_caught_up_ms: i64,
    last_fetch_ms: i64,
    leader_end_at_last_fetch: i64,
}

/// Where an `acks=all` wait stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckState {
    /// The high watermark has not passed the batch yet.
    Waiting,
    /// Every ISR member has the batch and the ISR has at least `min.insync.replicas` members.
    Durable,
    /// The high watermark passed the batch, but only because the ISR shrank below
    /// `min.insync.replicas`: fewer copies exist than the producer asked for.
    NotEnoughAfterAppend { isr: usize },
}

/// Decides an `acks=all` wait: the batch ends before `required` (its last offset + 1).
pub fn ack_state(high_watermark: i64, required: i64, isr_len: usize, min_isr: u32) -> AckState {
    if high_watermark < required {
        AckState::Waiting
    } else if isr_len < min_isr as usize {
        AckState::NotEnoughAfterAppend { isr: isr_len }
    } else {
        AckState::Durable
    }
}

/// The leader's replication state of one partition at one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    me: i32,
    epoch: i32,
    /// The leader's log end offset when this epoch began.
    epoch_start: i64,
    leading_since_ms: i64,
    /// The ISR as the metadata holds it (always contains the leader).
    isr: Vec<i32>,
    /// Replicas proposed for the ISR and not yet written: they count for the high watermark.
    pending_joins: BTreeSet<i32>,
    followers: HashMap<i32, FollowerProgress>,
    high_watermark: i64,
}

impl LeaderState {
    /// A leader that took over `epoch` with its log ending at `epoch_start` and its high
    /// watermark at `high_watermark` (what it knew as a follower, or the log start).
    pub fn new(
        me: i32,
        epoch: i32,
        epoch_start: i64,
        isr: Vec<i32>,
        high_watermark: i64,
        now_ms: i64,
    ) -> LeaderState {
        LeaderState {
            me,
            epoch,
            epoch_start,
            leading_since_ms: now_ms,
            isr,
            pending_joins: BTreeSet::new(),
            followers: HashMap::new(),
            high_watermark,
        }
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn epoch_start(&self) -> i64 {
        self.epoch_start
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The ISR as written in the metadata.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// The ISR plus the replicas proposed for it: the set the high watermark is computed over.
    pub fn maximal_isr(&self) -> BTreeSet<i32> {
        self.isr
            .iter()
            .copied()
            .chain(self.pending_joins.iter().copied())
            .collect()
    }

    pub fn progress(&self, follower: i32) -> Option<FollowerProgress> {
        self.followers.get(&follower).copied()
    }

    /// Recomputes the high watermark from the leader's log end offset; returns it (it never
    /// moves back). Followers not heard from in this epoch hold it where it is.
    pub fn advance(&mut self, leader_end: i64) -> i64 {
        let mut candidate = leader_end;
        // The maximal ISR, without collecting it (this runs on every append and fetch).
        let members = self.isr.iter().chain(self.pending_joins.iter());
        for r in members.filter(|r| **r != self.me) {
            let end = self.followers.get(r).map_or(-1, |f| f.log_end_offset);
            candidate = candidate.min(end);
        }
        self.high_watermark = self.high_watermark.max(candidate);
        self.high_watermark
    }

    /// A follower fetched from `fetch_offset` (its log end offset) while the leader's log ended
    /// at `leader_end`. Records its progress and moves the high watermark. Returns true when the
    /// follower is now proposed for the ISR: the caller must write the expansion, then call
    /// [`LeaderState::isr_written`] (or [`LeaderState::join_failed`]).
    ///
    /// `fetch_offset` must already be checked against `leader_end` (a fetch past the leader's
    /// end is refused before it gets here, so it never moves the high watermark).
    pub fn follower_fetched(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> bool {
        debug_assert!(fetch_offset <= leader_end);
        let p = self.followers.entry(follower).or_insert(FollowerProgress {
            log_end_offset: -1,
            last_caught_up_ms: self.leading_since_ms,
            last_fetch_ms: now_ms,
            leader_end_at_last_fetch: leader_end,
        });
        p.log_end_offset = fetch_offset;
        if fetch_offset >= leader_end {
            p.last_caught_up_ms = now_ms;
        } else if fetch_offset >= p.leader_end_at_last_fetch {
            // It has everything the leader had when it last fetched.
            p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
        }
        p.last_fetch_ms = now_ms;
        p.leader_end_at_last_fetch = leader_end;
        let hw = self.advance(leader_end);
        let joins = !self.isr.contains(&follower)
            && !self.pending_joins.contains(&follower)
            && fetch_offset >= hw
            && fetch_offset >= self.epoch_start;
        if joins {
            self.pending_joins.insert(follower);
        }
        joins
    }

    /// Replicas proposed for the ISR whose expansion is not written yet.
    pub fn pending_joins(&self) -> Vec<i32> {
        self.pending_joins.iter().copied().collect()
    }

    /// The write proposing `follower` failed (a conflict, or this broker no longer leads):
    /// it stops counting for the high watermark. (Counting it could only have held the
    /// high watermark back, so nothing acknowledged depends on it.)
    pub fn join_failed(&mut self, follower: i32) {
        self.pending_joins.remove(&follower);
    }

    /// The metadata now holds `isr` (this leader wrote it, or a newer state was applied).
    /// Proposals it settles are dropped; the others stay pending.
    pub fn isr_written(&mut self, isr: Vec<i32>, leader_end: i64) {
        self.pending_joins.retain(|r| !isr.contains(r));
        self.isr = isr;
        self.advance(leader_end);
    }

    /// ISR members (other than the leader) that have not caught up for more than `max_lag_ms`.
    pub fn lagging(&self, now_ms: i64, max_lag_ms: i64) -> Vec<i32> {
        self.isr
            .iter()
            .copied()
            .filter(|r| *r != self.me)
            .filter(|r| {
                let caught_up = self
                    .followers
                    .get(r)
                    .map_or(self.leading_since_ms, |p| p.last_caught_up_ms);
                now_ms - caught_up > max_lag_ms
            })
            .collect()
    }

    /// Where an `acks=all` batch ending before `required` stands.
    pub fn ack(&self, required: i64, min_isr: u32) -> AckState {
        ack_state(self.high_watermark, required, self.isr.len(), min_isr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 10_000;

    /// Broker 1 leads epoch 3, which began at offset 100; ISR {1, 2}, broker 3 outside.
    fn leader() -> LeaderState {
        LeaderState::new(1, 3, 100, vec![1, 2], 100, 0)
    }

    #[test]
    fn high_watermark_is_the_smallest_end_over_the_isr_and_never_moves_back() {
        let mut l = leader();
        assert_eq!(l.advance(150), 100, "follower 2 not heard from: held");
        l.follower_fetched(2, 120, 150, 10);
        assert_eq!(l.high_watermark(), 120);
        // A follower that restarted and fetches from further back does not move it back.
        l.follower_fetched(2, 110, 150, 20);
        assert_eq!(l.high_watermark(), 120);
        l.follower_fetched(2, 150, 150, 30);
        assert_eq!(l.high_watermark(), 150);
    }

    /// The window: a join is decided on one fetch and written later. Meanwhile the leader's
    /// log grows and follower 2 keeps up. Over the old ISR the high watermark would pass
    /// records the joiner lacks; over the maximal ISR it waits for the joiner.
    #[test]
    fn a_proposed_member_holds_the_high_watermark_before_its_join_is_written() {
        let mut l = leader();
        l.follower_fetched(2, 150, 150, 10);
        assert_eq!(l.high_watermark(), 150);
        assert!(l.follower_fetched(3, 150, 150, 11), "3 caught up: proposed");
        assert!(l.maximal_isr().contains(&3));
        // New records 150..200; follower 2 has them, the joiner does not yet.
        l.follower_fetched(2, 200, 200, 12);
        assert_eq!(l.high_watermark(), 150, "held at the joiner's end");
        assert!(!l.follower_fetched(3, 150, 200, 13), "already proposed");
        l.isr_written(vec![1, 2, 3], 200);
        assert_eq!(l.high_watermark(), 150);
        l.follower_fetched(3, 200, 200, 14);
        assert_eq!(l.high_watermark(), 200);
        assert!(l.pending_joins().is_empty());
    }

    #[test]
    fn a_failed_join_stops_counting() {
        let mut l = leader();
        l.follower_fetched(2, 150, 150, 10);
        assert!(l.follower_fetched(3, 150, 150, 11));
        l.follower_fetched(2, 200, 200, 12);
        assert_eq!(l.high_watermark(), 150);
        l.join_failed(3);
        assert_eq!(l.advance(200), 200);
    }

    /// KAFKA-7128: a replica at the high watermark but below the start of the leader's epoch
    /// may lack records the previous leader committed; it is not proposed until it reached it.
    #[test]
    fn a_follower_below_the_epoch_start_does_not_join() {
        let mut l = LeaderState::new(1, 3, 100, vec![1, 2], 80, 0);
        l.follower_fetched(2, 90, 120, 1);
        assert_eq!(l.high_watermark(), 90);
        assert!(
            !l.follower_fetched(3, 95, 120, 2),
            "at the HW, below the epoch start"
        );
        assert!(!l.maximal_isr().contains(&3));
        assert!(
            l.follower_fetched(3, 100, 120, 3),
            "reached the epoch start"
        );
    }

    #[test]
    fn a_member_lags_once_it_has_not_caught_up_for_longer_than_the_limit() {
        let mut l = leader();
        // Never fetched: counts from when the leader took over.
        assert_eq!(l.lagging(LAG, LAG), Vec::<i32>::new());
        assert_eq!(l.lagging(LAG + 1, LAG), vec![2]);
        // Fetching behind but keeping up with what the leader had at its previous fetch.
        l.follower_fetched(2, 100, 200, 5_000);
        l.follower_fetched(2, 200, 300, 12_000);
        assert_eq!(
            l.lagging(15_000, LAG),
            Vec::<i32>::new(),
            "caught up at 5 s"
        );
        assert_eq!(l.lagging(15_001, LAG), vec![2]);
    }

    /// The window: acks=all waits with both followers frozen; the ISR shrinks to the leader
    /// alone, the high watermark jumps past the batch; it must not be acknowledged.
    #[test]
    fn acks_all_after_the_isr_shrank_below_min_isr_is_not_durable() {
        let mut l = LeaderState::new(1, 3, 0, vec![1, 2, 3], 0, 0);
        l.follower_fetched(2, 0, 0, 0);
        l.follower_fetched(3, 0, 0, 0);
        // Offset 0 appended: the followers are frozen.
        assert_eq!(l.advance(1), 0);
        assert_eq!(l.ack(1, 2), AckState::Waiting);
        assert_eq!(l.lagging(LAG + 1, LAG), vec![2, 3]);
        l.isr_written(vec![1], 1);
        assert_eq!(l.high_watermark(), 1);
        assert_eq!(l.ack(1, 2), AckState::NotEnoughAfterAppend { isr: 1 });
        assert_eq!(l.ack(1, 1), AckState::Durable);
    }

    #[test]
    fn acks_all_is_durable_once_every_member_has_it() {
        let mut l = LeaderState::new(1, 3, 0, vec![1, 2, 3], 0, 0);
        l.advance(10);
        l.follower_fetched(2, 10, 10, 1);
        assert_eq!(l.ack(10, 2), AckState::Waiting);
        l.follower_fetched(3, 10, 10, 1);
        assert_eq!(l.ack(10, 2), AckState::Durable);
        assert_eq!(l.ack(11, 2), AckState::Waiting);
    }
}
