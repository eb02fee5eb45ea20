//! Idempotent-producer state of one partition: for each producer id, its epoch, the offsets
//! of its last few batches and when it last appended; and the snapshot codec that persists it.
//!
//! Invariants:
//! - a batch whose (producer id, epoch, base sequence) matches one of the producer's recent
//!   batches is a retry and is answered with the offsets it got the first time, never appended
//!   again; every batch of a request is checked, in order, as if the earlier ones were in;
//! - a batch that skips sequence numbers is refused (OUT_OF_ORDER_SEQUENCE_NUMBER), a new epoch
//!   must start at sequence 0, and an id this partition does not know must start at 0
//!   (UNKNOWN_PRODUCER_ID: its state expired, or it never wrote here);
//! - a producer not heard from for `producer.id.expiration.ms` is forgotten;
//! - only batch headers are read.
//!
//! The state is snapshotted at each segment roll and rebuilt on start from the newest
//! snapshot at or below the log end plus the batch headers after it (the shell in
//! [`super::partition`] does that I/O). A snapshot file, `<offset:020>.producer-snapshot`, holds
//! the state of every batch below `offset`, big-endian:
//!
//! ```text
//! magic "SPSN" (4) | version u16 | offset i64 | producers u32
//! per producer: id i64 | epoch i16 | last_append_ms i64 | batches u8 (<= 5)
//!               per batch: first_seq i32 | last_seq i32 | base_offset i64 | last_offset i64
//! crc32c u32 over everything before it
//! ```

use std::collections::{HashMap, VecDeque};
use strata_log::BatchHeader;

/// Batches remembered per producer (Kafka's max.in.flight bound for idempotence).
pub const RECENT_BATCHES: usize = 5;
/// The most producers one partition remembers. A new one past it is refused until others
/// expire (`producer.id.expiration.ms`): refused rather than evicting the oldest, so that a
/// client inventing producer ids cannot make the partition forget a real producer's state
/// (and with it the duplicates it would catch). About 200 bytes each: 2 MB per partition.
pub const MAX_PRODUCERS: usize = 10_000;
/// Kafka's default `producer.id.expiration.ms`: one day.
pub const DEFAULT_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// The snapshot format's magic number.
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"SPSN";
/// The format version written.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Format versions this code reads.
pub const SNAPSHOT_READABLE_VERSIONS: &[u16] = &[1];
/// File name suffix of snapshots in a partition directory.
pub const SNAPSHOT_SUFFIX: &str = ".producer-snapshot";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    last_append_ms: i64,
    recent: VecDeque<BatchMeta>,
}

/// What to do with an incoming batch (or request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// New: append it.
    Append,
    /// Already in the log: answer with these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
    /// A gap, or a new epoch not starting at 0. `expected` is the sequence that should come.
    OutOfOrder { expected: i32, got: i32 },
    /// An epoch older than the producer's current one.
    Fenced { current: i16, got: i16 },
    /// A producer id this partition has no state for, at a sequence other than 0.
    UnknownProducer { got: i32 },
    /// Some batches of one request are retries and others are not.
    MixedRetry,
    /// One request carries idempotent batches of more than one producer (`count` of them):
    /// a request may add state for one producer at most.
    MixedProducers { count: usize },
    /// A new producer while the partition remembers [`MAX_PRODUCERS`] already.
    TooManyProducers { limit: usize },
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, Producer>,
}

fn last_seq(h: &BatchHeader) -> i32 {
    h.base_sequence.wrapping_add(h.last_offset_delta)
}

fn idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && h.base_sequence >= 0
}

impl ProducerState {
    /// How many producer ids are remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks one batch from the produce path (before its offsets are assigned).
    pub fn check(&self, h: &BatchHeader) -> Check {
        if !idempotent(h) {
            return Check::Append;
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            return if h.base_sequence == 0 && self.producers.len() >= MAX_PRODUCERS {
                Check::TooManyProducers {
                    limit: MAX_PRODUCERS,
                }
            } else if h.base_sequence == 0 {
                Check::Append
            } else {
                Check::UnknownProducer {
                    got: h.base_sequence,
                }
            };
        };
        if h.producer_epoch < p.epoch {
            return Check::Fenced {
                current: p.epoch,
                got: h.producer_epoch,
            };
        }
        if h.producer_epoch > p.epoch {
            return if h.base_sequence == 0 {
                Check::Append
            } else {
                Check::OutOfOrder {
                    expected: 0,
                    got: h.base_sequence,
                }
            };
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
        let expected = p.recent.back().map_or(0, |b| b.last_seq.wrapping_add(1));
        if h.base_sequence != expected {
            return Check::OutOfOrder {
                expected,
                got: h.base_sequence,
            };
        }
        Check::Append
    }

    /// Checks every batch of a request in order, each as if the ones before it were appended.
    /// A request whose batches are all retries is a `Duplicate` spanning them. Idempotent
    /// batches of one request must come from one producer (Kafka allows one batch per
    /// partition per request), so no request can make the partition remember many producers.
    pub fn check_request(&self, headers: &[BatchHeader]) -> Check {
        if let Some(first) = headers.iter().find(|h| idempotent(h)) {
            if headers
                .iter()
                .any(|h| idempotent(h) && h.producer_id != first.producer_id)
            {
                let ids: std::collections::HashSet<i64> = headers
                    .iter()
                    .filter(|h| idempotent(h))
                    .map(|h| h.producer_id)
                    .collect();
                return Check::MixedProducers { count: ids.len() };
            }
        }
        let mut scratch: Option<ProducerState> = None;
        let mut duplicate: Option<(i64, i64)> = None;
        let mut appends = 0;
        for (i, h) in headers.iter().enumerate() {
            let state = scratch.as_ref().unwrap_or(self);
            match state.check(h) {
                Check::Append => {
                    appends += 1;
                    if i + 1 < headers.len() {
                        // Later batches of this producer follow this one.
                        let s = scratch.get_or_insert_with(|| self.clone_of(headers));
                        let placeholder = BatchHeader {
                            base_offset: i64::MIN + i as i64,
                            ..*h
                        };
                        s.record(&placeholder, 0);
                    }
                }
                Check::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    duplicate = Some(match duplicate {
                        None => (base_offset, last_offset),
                        Some((first, _)) => (first, last_offset),
                    })
                }
                refused => return refused,
            }
        }
        match duplicate {
            None => Check::Append,
            Some(_) if appends > 0 => Check::MixedRetry,
            Some((base_offset, last_offset)) => Check::Duplicate {
                base_offset,
                last_offset,
            },
        }
    }

    /// A copy holding only the producers `headers` name (a request rarely names more than one).
    fn clone_of(&self, headers: &[BatchHeader]) -> ProducerState {
        let producers = headers
            .iter()
            .filter_map(|h| Some((h.producer_id, self.producers.get(&h.producer_id)?.clone())))
            .collect();
        ProducerState { producers }
    }

    /// Records a batch that is now in the log (stamped: its offsets are final), appended at
    /// `now_ms`.
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if !idempotent(h) {
            return;
        }
        let p = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch > p.epoch || p.recent.is_empty() {
            p.epoch = h.producer_epoch;
            p.recent.clear();
        }
        p.last_append_ms = p.last_append_ms.max(now_ms);
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

    /// When the longest-idle producer is forgotten by [`Producers::expire`] with `max_age_ms`
    /// (the first moment it has been idle for more than that), if any is remembered.
    pub fn next_expiry_ms(&self, max_age_ms: i64) -> Option<i64> {
        self.producers
            .values()
            .map(|p| p.last_append_ms)
            .min()
            .map(|last| last.saturating_add(max_age_ms).saturating_add(1))
    }

    /// Forgets producers that have not appended for more than `max_age_ms`; returns how many.
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, p| now_ms.saturating_sub(p.last_append_ms) <= max_age_ms);
        before - self.producers.len()
    }

    /// Encodes the state of every batch below `offset` as a snapshot file's bytes.
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(22 + self.producers.len() * 64);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let p = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&p.epoch.to_be_bytes());
            out.extend_from_slice(&p.last_append_ms.to_be_bytes());
            out.push(p.recent.len() as u8);
            for b in &p.recent {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = strata_log::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot file's bytes into (offset, state), or says what is wrong with them.
    /// Nothing is allocated from a count field beyond what the bytes can hold.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(i64, ProducerState), String> {
        if bytes.len() < 22 {
            return Err(format!(
                "{} bytes is shorter than a snapshot header",
                bytes.len()
            ));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_be_bytes(crc.try_into().map_err(|_| "no CRC")?);
        if strata_log::crc32c(body) != stored {
            return Err("the CRC does not match".to_string());
        }
        if &body[..4] != SNAPSHOT_MAGIC {
            return Err("not a producer-state snapshot (bad magic number)".to_string());
        }
        let mut r = Reader { bytes: &body[4..] };
        let version = u16::from_be_bytes(r.take()?);
        if !SNAPSHOT_READABLE_VERSIONS.contains(&version) {
            return Err(format!(
                "format version {version} is not one this broker reads ({SNAPSHOT_READABLE_VERSIONS:?})"
            ));
        }
        let offset = i64::from_be_bytes(r.take()?);
        let count = u32::from_be_bytes(r.take()?);
        let mut producers = HashMap::new();
        for _ in 0..count {
            let id = i64::from_be_bytes(r.take()?);
            let epoch = i16::from_be_bytes(r.take()?);
            let last_append_ms = i64::from_be_bytes(r.take()?);
            let [n] = r.take::<1>()?;
            if n as usize > RECENT_BATCHES {
                return Err(format!(
                    "producer {id} lists {n} batches; at most {RECENT_BATCHES} are kept"
                ));
            }
            let mut recent = VecDeque::with_capacity(n as usize);
            for _ in 0..n {
                recent.push_back(BatchMeta {
                    first_seq: i32::from_be_bytes(r.take()?),
                    last_seq: i32::from_be_bytes(r.take()?),
                    base_offset: i64::from_be_bytes(r.take()?),
                    last_offset: i64::from_be_bytes(r.take()?),
                });
            }
            producers.insert(
                id,
                Producer {
                    epoch,
                    last_append_ms,
                    recent,
                },
            );
        }
        if !r.bytes.is_empty() {
            return Err(format!("{} bytes after the last producer", r.bytes.len()));
        }
        Ok((offset, ProducerState { producers }))
    }

    /// Forgets batches at or after `offset` (the log was truncated there). Producers left
    /// without a batch are forgotten; the shell rebuilds them from a snapshot when it can.
    pub fn truncate(&mut self, offset: i64) {
        for p in self.producers.values_mut() {
            p.recent.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, p| !p.recent.is_empty());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.bytes.len() < N {
            return Err("the snapshot ends in the middle of an entry".to_string());
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        Ok(head.try_into().expect("split at N"))
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
        s.record(&header(7, 0, 0, 10, 100), 0);
        assert_eq!(s.check(&header(7, 0, 10, 5, -1)), Check::Append);
        s.record(&header(7, 0, 10, 5, 110), 0);
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
        // Other producers and non-idempotent batches are independent; an unknown producer
        // starts at sequence 0.
        assert_eq!(s.check(&header(8, 0, 0, 1, -1)), Check::Append);
        assert_eq!(
            s.check(&header(8, 0, 42, 1, -1)),
            Check::UnknownProducer { got: 42 }
        );
        assert_eq!(s.check(&header(-1, -1, -1, 1, -1)), Check::Append);
        // A new epoch starts over; the old one is fenced.
        s.record(&header(7, 1, 0, 1, 115), 0);
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
            s.record(&header(1, 0, i, 1, i as i64), 0);
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

    #[test]
    fn a_new_epoch_starts_at_sequence_zero() {
        let mut s = ProducerState::default();
        s.record(&header(3, 0, 0, 4, 0), 0);
        assert_eq!(s.check(&header(3, 1, 0, 1, -1)), Check::Append);
        assert_eq!(
            s.check(&header(3, 1, 4, 1, -1)),
            Check::OutOfOrder {
                expected: 0,
                got: 4
            }
        );
    }

    /// The window: only the first batch of a request was checked, so a request of a good batch
    /// and a gapped one appended both.
    #[test]
    fn every_batch_of_a_request_is_checked_in_order() {
        let mut s = ProducerState::default();
        s.record(&header(1, 0, 0, 5, 0), 0);
        let good = header(1, 0, 5, 5, -1);
        let next = header(1, 0, 10, 2, -1);
        let gap = header(1, 0, 20, 1, -1);
        assert_eq!(s.check_request(&[good, next]), Check::Append);
        assert_eq!(
            s.check_request(&[good, gap]),
            Check::OutOfOrder {
                expected: 10,
                got: 20
            }
        );
        assert_eq!(s.check_request(&[good, good]), Check::MixedRetry);
        // Batches of many producers in one request: refused before any state is made.
        let many: Vec<BatchHeader> = (0..1000).map(|pid| header(pid, 0, 0, 1, -1)).collect();
        assert_eq!(
            s.check_request(&many),
            Check::MixedProducers { count: 1000 }
        );
        s.record(&header(1, 0, 5, 5, 5), 0);
        s.record(&header(1, 0, 10, 2, 10), 0);
        assert_eq!(
            s.check_request(&[good, next]),
            Check::Duplicate {
                base_offset: 5,
                last_offset: 11
            }
        );
        assert_eq!(
            s.check_request(&[next, header(1, 0, 12, 1, -1)]),
            Check::MixedRetry
        );
    }

    #[test]
    fn a_new_producer_past_the_limit_is_refused_and_known_ones_go_on() {
        let mut s = ProducerState::default();
        for id in 0..MAX_PRODUCERS as i64 {
            s.record(&header(id, 0, 0, 1, id), 1_000);
        }
        assert_eq!(
            s.check(&header(MAX_PRODUCERS as i64, 0, 0, 1, -1)),
            Check::TooManyProducers {
                limit: MAX_PRODUCERS
            }
        );
        assert_eq!(
            s.check(&header(7, 0, 1, 1, -1)),
            Check::Append,
            "a known producer goes on"
        );
        assert_eq!(
            s.expire(1_000 + DEFAULT_EXPIRATION_MS + 1, DEFAULT_EXPIRATION_MS),
            MAX_PRODUCERS
        );
        assert_eq!(
            s.check(&header(MAX_PRODUCERS as i64, 0, 0, 1, -1)),
            Check::Append,
            "room again once they expire"
        );
    }

    #[test]
    fn producers_not_heard_from_expire() {
        let mut s = ProducerState::default();
        s.record(&header(1, 0, 0, 1, 0), 1_000);
        s.record(&header(2, 0, 0, 1, 1), 5_000);
        assert_eq!(
            s.expire(1_000 + DEFAULT_EXPIRATION_MS, DEFAULT_EXPIRATION_MS),
            0
        );
        assert_eq!(
            s.expire(1_001 + DEFAULT_EXPIRATION_MS, DEFAULT_EXPIRATION_MS),
            1
        );
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.check(&header(1, 0, 1, 1, -1)),
            Check::UnknownProducer { got: 1 },
            "an expired producer is unknown"
        );
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&header(1, 2, i * 3, 3, i as i64 * 3), 77);
        }
        s.record(&header(9, 0, 0, 1, 100), 88);
        let bytes = s.encode_snapshot(101);
        let (offset, back) = ProducerState::decode_snapshot(&bytes).unwrap();
        assert_eq!((offset, &back), (101, &s));
        let empty = ProducerState::default().encode_snapshot(0);
        assert_eq!(ProducerState::decode_snapshot(&empty).unwrap().1.len(), 0);
        for cut in [0, 5, 21, bytes.len() - 1] {
            assert!(
                ProducerState::decode_snapshot(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        let err = ProducerState::decode_snapshot(&flipped).unwrap_err();
        assert!(err.contains("CRC"), "{err}");
        // A count that claims more than the bytes hold fails without allocating for it.
        let mut lying = bytes[..18].to_vec();
        lying.extend_from_slice(&u32::MAX.to_be_bytes());
        let crc = strata_log::crc32c(&lying);
        lying.extend_from_slice(&crc.to_be_bytes());
        assert!(ProducerState::decode_snapshot(&lying).is_err());
    }
}
