//! Helpers for tests in this crate and its users: builds valid, stamped segments of
//! RecordBatch v2 batches, and [`ClockedStore`], a store with its own clock that can hold a
//! PUT. Not used by library code.

pub mod clocked_store;

pub use clocked_store::{ClockedStore, Hold};

use bytes::{Bytes, BytesMut};
use strata_log::batch::stamp_all;
use strata_log::{BatchBuilder, Compression};

/// The shape of one batch to build.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpec {
    pub records: usize,
    pub value_len: usize,
    pub compressed: bool,
}

/// Builds batches of the given shapes, stamped with consecutive offsets from `base_offset`
/// and `leader_epoch`. Timestamps start at `ts0` and grow by one per record. Returns the
/// segment bytes and the offset after the last record.
pub fn make_segment(
    specs: &[BatchSpec],
    base_offset: i64,
    leader_epoch: i32,
    ts0: i64,
) -> (Bytes, i64) {
    let mut buf = BytesMut::new();
    let mut ts = ts0;
    let mut n = 0u64;
    for spec in specs {
        let compression = if spec.compressed {
            Compression::Zstd
        } else {
            Compression::None
        };
        let mut b = BatchBuilder::new(compression);
        for _ in 0..spec.records.max(1) {
            let value: Vec<u8> = (0..spec.value_len)
                .map(|i| (n.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8)
                .collect();
            let key = format!("key-{n}");
            b.append(ts, Some(key.as_bytes()), Some(&value), &[]);
            ts += 1;
            n += 1;
        }
        buf.extend_from_slice(&b.build().expect("a batch with records builds"));
    }
    let mut v = buf.to_vec();
    let next = stamp_all(&mut v, base_offset, leader_epoch);
    (Bytes::from(v), next)
}

/// `count` uncompressed batches of `records` records with values of `value_len` bytes.
pub fn uniform_segment(
    count: usize,
    records: usize,
    value_len: usize,
    base_offset: i64,
    leader_epoch: i32,
    ts0: i64,
) -> (Bytes, i64) {
    let specs = vec![
        BatchSpec {
            records,
            value_len,
            compressed: false,
        };
        count
    ];
    make_segment(&specs, base_offset, leader_epoch, ts0)
}
