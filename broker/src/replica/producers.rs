//! Idempotent-producer state of one partition: for each producer id, its epoch, its last
//! sequence number and the offsets of its last few batches.
//!
//! Invariant: a batch whose (producer id, epoch, base sequence) matches one of the producer's
//! recent batches is a retry and is answered with the offsets it got the first time, never
//! appended again; a batch that skips sequence numbers is refused. Only batch headers are read.
//! The state is rebuilt at startup from the headers of the active segment (a retry older than
//! that is outside the dedup window, as in Kafka's five-batch window).

use std::collections::{HashMap, VecDeque};
use strata_log::BatchHeader;

/// Batches remembered per producer (Kafka's max.in.flight bound for idempotence).
pub const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Default)]
struct Producer {
    epoch: i16,
    recent: VecDeque<BatchMeta>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// New: append it.
    Append,
    /// Already in the log: answer with these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
    /// A gap: the producer lost a batch. `expected` is the sequence that should come next.
    OutOfOrder { expected: i32, got: i32 },
    /// An epoch older than the producer's current one.
    Fenced { current: i16, got: i16 },
}

#[derive(Debug, Default)]
pub struct ProducerState {
    producers: HashMap<i64, Producer>,
}

fn last_seq(h: &BatchHeader) -> i32 {
    h.base_sequence.wrapping_add(h.last_offset_delta)
}

impl ProducerState {
    /// Checks a batch from the produce path (before its offsets are assigned).
    pub fn check(&self, h: &BatchHeader) -> Check {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return Check::Append;
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            return Check::Append;
        };
        if h.producer_epoch < p.epoch {
            return Check::Fenced {
                current: p.epoch,
                got: h.producer_epoch,
            };
        }
        if h.producer_epoch > p.epoch {
            return Check::Append;
        }
        if let Some(b) = p
            .recent
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq(h))
        {
            return Check::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            };
        }
        let expected = p
            .recent
            .back()
            .map_or(h.base_sequence, |b| b.last_seq.wrapping_add(1));
        if h.base_sequence != expected {
            return Check::OutOfOrder {
                expected,
                got: h.base_sequence,
            };
        }
        Check::Append
    }

    /// Records a batch that is now in the log (stamped: its offsets are final).
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        let p = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch > p.epoch {
            p.epoch = h.producer_epoch;
            p.recent.clear();
        }
        p.recent.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while p.recent.len() > RECENT_BATCHES {
            p.recent.pop_front();
        }
    }

    /// Forgets batches at or after `offset` (the log was truncated there).
    pub fn truncate(&mut self, offset: i64) {
        for p in self.producers.values_mut() {
            p.recent.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, p| !p.recent.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    #[test]
    fn retries_are_recognised_and_gaps_refused() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(&header(7, 0, 0, 10, -1)), Check::Append);
        s.record(&header(7, 0, 0, 10, 100));
        assert_eq!(s.check(&header(7, 0, 10, 5, -1)), Check::Append);
        s.record(&header(7, 0, 10, 5, 110));
        // The first batch retried: answered with its first offsets.
        assert_eq!(
            s.check(&header(7, 0, 0, 10, -1)),
            Check::Duplicate {
                base_offset: 100,
                last_offset: 109
            }
        );
        assert_eq!(
            s.check(&header(7, 0, 10, 5, -1)),
            Check::Duplicate {
                base_offset: 110,
                last_offset: 114
            }
        );
        assert_eq!(
            s.check(&header(7, 0, 20, 1, -1)),
            Check::OutOfOrder {
                expected: 15,
                got: 20
            }
        );
        // Other producers and non-idempotent batches are independent.
        assert_eq!(s.check(&header(8, 0, 42, 1, -1)), Check::Append);
        assert_eq!(s.check(&header(-1, -1, -1, 1, -1)), Check::Append);
        // A new epoch starts over; the old one is fenced.
        s.record(&header(7, 1, 0, 1, 115));
        assert_eq!(
            s.check(&header(7, 0, 15, 1, -1)),
            Check::Fenced { current: 1, got: 0 }
        );
        s.truncate(115);
        assert_eq!(
            s.check(&header(7, 0, 0, 10, -1)),
            Check::Append,
            "state after truncation forgets"
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&header(1, 0, i, 1, i as i64));
        }
        assert_eq!(
            s.check(&header(1, 0, 1, 1, -1)),
            Check::OutOfOrder {
                expected: 7,
                got: 1
            }
        );
        assert_eq!(
            s.check(&header(1, 0, 6, 1, -1)),
            Check::Duplicate {
                base_offset: 6,
                last_offset: 6
            }
        );
    }
}
