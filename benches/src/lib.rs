//! Shared fixtures of Strata's criterion benchmarks (`benches/benches/*.rs`): one criterion
//! configuration, a seeded PRNG, record values that zstd cannot trivially compress, batch
//! builders, and logs written to a temporary directory.
//!
//! Nothing here is measured: every bench builds its inputs with these functions before its
//! timing loop, so all benches share one workload definition. The workload is the producer's:
//! keyless records of [`VALUE_LEN`] random lowercase letters (every record its own letters, so
//! zstd sees about 4.7 bits of entropy per byte and compresses ~1.6:1, as on real text-ish
//! payloads), timestamps 1 ms apart, no headers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use strata_log::batch;
use strata_log::{BatchBuilder, Clock, Compression, Log, LogConfig, ManualClock};

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;
/// Bytes of each record's value.
pub const VALUE_LEN: usize = 100;
/// Timestamp of the first record of every fixture (ms since the Unix epoch).
pub const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// The configuration of every bench: short enough that `cargo bench -p strata-benches` runs
/// in about two minutes on a 2-core machine. Command-line flags still override it.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// xorshift64*: a seeded, fast, good-enough PRNG, so every run measures the same bytes.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // The state must never be 0.
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`; the slight modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `out` with random lowercase letters, eight per draw.
    pub fn fill_letters(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            for (b, r) in chunk.iter_mut().zip(r) {
                // Multiply-shift maps a byte onto 0..26 without a division.
                *b = b'a' + ((r as u16 * 26) >> 8) as u8;
            }
        }
    }

    /// `len` random lowercase letters.
    pub fn letters(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill_letters(&mut v);
        v
    }
}

/// Appends records to `builder` as the producer's accumulator does (`record_size`, then
/// `append` while the batch stays within `batch_bytes`), each record's value being the next
/// [`VALUE_LEN`] bytes of `values`. Returns the number of records appended.
pub fn fill_batch(
    builder: &mut BatchBuilder,
    values: &[u8],
    batch_bytes: usize,
    first_timestamp: i64,
) -> usize {
    let mut n = 0;
    for value in values.chunks_exact(VALUE_LEN) {
        let ts = first_timestamp + n as i64;
        let size = builder.record_size(ts, None, Some(value), &[]);
        if !builder.is_empty() && builder.size_bytes() + size > batch_bytes {
            break;
        }
        builder.append(ts, None, Some(value), &[]);
        n += 1;
    }
    n
}

/// One batch of at most `batch_bytes` (uncompressed, header included) of records whose values
/// are taken from `values` (give at least `batch_bytes` of them). Returns the batch and its
/// record count.
pub fn build_batch(
    values: &[u8],
    batch_bytes: usize,
    compression: Compression,
    first_timestamp: i64,
) -> (Bytes, usize) {
    let mut builder = BatchBuilder::with_capacity(compression, batch_bytes);
    let n = fill_batch(&mut builder, values, batch_bytes, first_timestamp);
    (builder.build().expect("a batch with records builds"), n)
}

/// Uncompressed batches of about `batch_bytes` each, `total_bytes` or a little more in all,
/// with fresh random values per batch and timestamps 1 ms apart over all of them. Base
/// offsets are 0 until stamped.
pub fn batches(seed: u64, total_bytes: usize, batch_bytes: usize) -> Vec<Bytes> {
    let mut rng = XorShift::new(seed);
    let mut values = vec![0u8; batch_bytes];
    let mut out = Vec::new();
    let (mut bytes, mut records) = (0usize, 0usize);
    while bytes < total_bytes {
        rng.fill_letters(&mut values);
        let ts = BASE_TIMESTAMP_MS + records as i64;
        let (batch, n) = build_batch(&values, batch_bytes, Compression::None, ts);
        bytes += batch.len();
        records += n;
        out.push(batch);
    }
    out
}

/// The batches back to back with offsets stamped from `base_offset` (leader epoch 0): what a
/// sealed segment file holds.
pub fn stamped_segment(batches: &[Bytes], base_offset: i64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batches.iter().map(Bytes::len).sum());
    for b in batches {
        buf.extend_from_slice(b);
    }
    batch::stamp_all(&mut buf, base_offset, 0);
    buf
}

/// Kafka's defaults (no fsync per append: `flush.messages` and `flush.ms` unset), without
/// time-based rolls or retention, so a bench never depends on the wall clock.
pub fn log_config() -> LogConfig {
    LogConfig {
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A clock frozen at the fixtures' first timestamp.
pub fn clock() -> Arc<dyn Clock> {
    ManualClock::new(BASE_TIMESTAMP_MS)
}

/// Opens a new log in `dir` and appends every batch, one append each, as leader epoch 0.
pub fn write_log(dir: &Path, config: LogConfig, batches: &[Bytes]) -> Log {
    let mut log = Log::open(dir, config, clock()).expect("open the bench log");
    let mut buf = Vec::new();
    for b in batches {
        buf.clear();
        buf.extend_from_slice(b);
        log.append(&mut buf, 0).expect("append to the bench log");
    }
    log
}

/// `count` numbers in `0..n`, to look up in a fixed pseudo-random order.
pub fn sample(seed: u64, count: usize, n: u64) -> Vec<u64> {
    let mut rng = XorShift::new(seed);
    (0..count).map(|_| rng.below(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_valid_batches_of_the_asked_size() {
        let all = batches(7, 64 * KIB, 16 * KIB);
        for b in &all {
            assert!(b.len() <= 16 * KIB && b.len() > 15 * KIB, "{}", b.len());
        }
        let total: usize = all.iter().map(Bytes::len).sum();
        assert!(total >= 64 * KIB && total - all[all.len() - 1].len() < 64 * KIB);
        let segment = stamped_segment(&all, 100);
        let summary = batch::validate_all(&segment).unwrap();
        assert_eq!(summary.batches, all.len());
        let first = batch::validate(&segment[..all[0].len()]).unwrap();
        assert_eq!(first.base_offset, 100);
    }

    #[test]
    fn letters_are_lowercase_and_not_repeated() {
        let mut rng = XorShift::new(1);
        let a = rng.letters(VALUE_LEN);
        let b = rng.letters(VALUE_LEN);
        assert!(a.iter().chain(&b).all(u8::is_ascii_lowercase));
        assert_ne!(a, b);
    }
}
