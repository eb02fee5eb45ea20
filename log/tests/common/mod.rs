//! Helpers shared by the log integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use strata_log::records::decode_all;
use strata_log::{BatchBuilder, Compression, Log, LogConfig, ManualClock, Record};

pub const T0: i64 = 1_700_000_000_000;

/// A batch of `n` records with timestamps `ts, ts+1, ...` and values "<tag>-<i>" padded to
/// `value_len` bytes.
pub fn batch(n: usize, ts: i64, value_len: usize, tag: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        let mut v = format!("{tag}-{i}").into_bytes();
        v.resize(value_len.max(v.len()), b'.');
        b.append(ts + i as i64, Some(b"k"), Some(&v), &[]);
    }
    b.build().unwrap().to_vec()
}

/// Small segments and a dense index so that tests cross many boundaries.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        segment_index_bytes: 1024,
        retention_ms: None,
        ..LogConfig::default()
    }
}

pub fn open(dir: &std::path::Path, config: LogConfig, clock: &Arc<ManualClock>) -> Log {
    Log::open(dir, config, clock.clone()).unwrap()
}

/// Reads every record from `from` to the log end, in a loop of reads of `max_bytes`.
pub fn read_all(log: &Log, from: i64, max_bytes: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let r = log.read(next, max_bytes, i64::MAX).unwrap();
        if r.bytes.is_empty() {
            assert_eq!(next, log.log_end_offset());
            return out;
        }
        let records = decode_all(&r.bytes).unwrap();
        let last = records.last().unwrap().offset;
        out.extend(records.into_iter().filter(|r| r.offset >= next));
        next = last + 1;
    }
}

/// Appends `count` batches of `per` records each; returns the stamped bytes of each batch.
pub fn fill(log: &mut Log, count: usize, per: usize, value_len: usize, ts: i64) -> Vec<Bytes> {
    (0..count)
        .map(|i| {
            let mut b = batch(per, ts + i as i64 * 10, value_len, &format!("b{i}"));
            log.append(&mut b, 3).unwrap();
            Bytes::from(b)
        })
        .collect()
}
