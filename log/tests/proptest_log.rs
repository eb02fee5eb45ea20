//! Property tests: whatever sequence of batches is appended reads back byte for byte, across
//! segment rolls and reopenings; the decoders never panic on damaged input.

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use strata_log::batch::{self, BatchIter};
use strata_log::records::{decode_all, decode_records};
use strata_log::{BatchBuilder, Compression, LogConfig, ManualClock};

#[derive(Debug, Clone)]
struct Spec {
    records: usize,
    value_len: usize,
    zstd: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (1usize..20, 0usize..400, any::<bool>()).prop_map(|(records, value_len, zstd)| Spec {
        records,
        value_len,
        zstd,
    })
}

fn build(spec: &Spec, i: usize) -> Vec<u8> {
    let compression = if spec.zstd {
        Compression::Zstd
    } else {
        Compression::None
    };
    let mut b = BatchBuilder::new(compression);
    for r in 0..spec.records {
        let value = vec![(i + r) as u8; spec.value_len];
        b.append(T0 + i as i64, Some(&i.to_be_bytes()), Some(&value), &[]);
    }
    b.build().unwrap().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn appended_batches_read_back_identically(
        specs in proptest::collection::vec(spec(), 1..120),
        max_bytes in 1usize..6000,
        reopen_at in proptest::option::of(0usize..120),
        crash in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let config = LogConfig { segment_bytes: 2048, index_interval_bytes: 200, ..small_config() };
        let mut log = open(dir.path(), config.clone(), &clock);
        let mut stamped = Vec::new();
        let mut next = 0i64;
        for (i, s) in specs.iter().enumerate() {
            if reopen_at == Some(i) {
                if crash { drop(log) } else { log.close().unwrap() }
                log = open(dir.path(), config.clone(), &clock);
                prop_assert_eq!(log.log_end_offset(), next);
            }
            let mut b = build(s, i);
            let info = log.append(&mut b, i as i32).unwrap();
            prop_assert_eq!(info.base_offset, next);
            next += s.records as i64;
            stamped.push(b);
        }
        prop_assert_eq!(log.log_end_offset(), next);

        // Read everything from 0 in a loop; whole batches come back in order, unchanged.
        let mut got = Vec::new();
        let mut offset = 0i64;
        while offset < log.log_end_offset() {
            let r = log.read(offset, max_bytes, i64::MAX).unwrap();
            prop_assert!(!r.bytes.is_empty());
            let mut n = 0;
            for item in BatchIter::new(&r.bytes) {
                let (h, bytes) = item.unwrap();
                prop_assert_eq!(h.base_offset, offset);
                offset = h.next_offset();
                got.push(bytes.to_vec());
                n += bytes.len();
            }
            prop_assert!(n <= max_bytes || got.last().map(Vec::len) == Some(n));
        }
        prop_assert_eq!(&got, &stamped);
        let records = decode_all(&Bytes::from(got.concat())).unwrap();
        prop_assert_eq!(records.len() as i64, next);
        for (i, r) in records.iter().enumerate() {
            prop_assert_eq!(r.offset, i as i64);
        }
    }

    #[test]
    fn decoders_never_panic_on_damaged_batches(
        specs in proptest::collection::vec(spec(), 1..4),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf: Vec<u8> = specs.iter().enumerate().flat_map(|(i, s)| build(s, i)).collect();
        for (at, byte) in edits {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        buf.truncate(cut.index(buf.len() + 1));
        let _ = batch::validate_all(&buf);
        let bytes = Bytes::from(buf);
        let _ = decode_all(&bytes);
        let _ = decode_records(&bytes);
    }
}
