//! Index lookup hot paths: finding where an offset or a timestamp lives in a segment, the first
//! step of every fetch and of ListOffsets by timestamp.
//!
//! Workload: a log written with 4 KiB batches (keyless 100-byte records of random letters,
//! timestamps 1 ms apart) whose first segment rolled at 64 MiB: ~16,000 batches, ~600,000
//! records and, with the default `index.interval.bytes` of 4 KiB, ~8,000 entries in each of
//! its sealed, memory-mapped indexes. Each iteration is one lookup of a pseudo-random target
//! (a fixed sequence of 4,096), so the figure is the cost of one lookup:
//! - `index/offset_index_lookup`: `OffsetIndex::lookup` (binary search of the mapping);
//! - `index/time_index_lookup`: `TimeIndex::lookup_before`;
//! - `index/segment_find_batch`: `Segment::find_batch`, the offset index plus the header reads
//!   (`pread` of 61 bytes each) from the indexed position to the batch holding the offset;
//! - `index/log_offset_for_timestamp`: `Log::offset_for_timestamp`, what ListOffsets by
//!   timestamp calls: time index, header reads, and the decoding of the one batch that holds
//!   the answer.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use strata_benches::{batches, log_config, sample, write_log, BASE_TIMESTAMP_MS, KIB, MIB};
use strata_log::segment::{OpenMode, Segment};
use strata_log::LogConfig;

const TARGETS: usize = 4096;

fn index(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_dir = dir.path().join("orders-0");
    let config = LogConfig {
        segment_bytes: 64 * MIB as u64,
        ..log_config()
    };
    let log = write_log(&log_dir, config.clone(), &batches(4, 72 * MIB, 4 * KIB));
    let first = log.segments()[0].clone();
    assert!(first.sealed, "the first segment rolled");
    // A sealed segment is immutable, so a second handle on it is safe while the log is open.
    let segment = Segment::open(
        &log_dir,
        first.base_offset,
        &config,
        OpenMode::Sealed {
            next_base: first.next_offset,
        },
        BASE_TIMESTAMP_MS,
    )
    .unwrap();
    let records = (first.next_offset - first.base_offset) as u64;
    eprintln!(
        "index: segment of {} bytes, {records} records, {} offset-index and {} time-index entries",
        first.size_bytes,
        segment.offset_index().len(),
        segment.time_index().len()
    );
    let rels = sample(5, TARGETS, records);
    let mut group = c.benchmark_group("index");

    let mut i = 0usize;
    group.bench_function("offset_index_lookup", |b| {
        b.iter(|| {
            i = (i + 1) % TARGETS;
            segment.offset_index().lookup(black_box(rels[i] as u32))
        })
    });
    // Record n carries timestamp BASE_TIMESTAMP_MS + n.
    group.bench_function("time_index_lookup", |b| {
        b.iter(|| {
            i = (i + 1) % TARGETS;
            segment
                .time_index()
                .lookup_before(black_box(BASE_TIMESTAMP_MS + rels[i] as i64))
        })
    });
    group.bench_function("segment_find_batch", |b| {
        b.iter(|| {
            i = (i + 1) % TARGETS;
            segment
                .find_batch(black_box(first.base_offset + rels[i] as i64))
                .unwrap()
        })
    });
    group.bench_function("log_offset_for_timestamp", |b| {
        b.iter(|| {
            i = (i + 1) % TARGETS;
            let ts = BASE_TIMESTAMP_MS + rels[i] as i64;
            let found = log.offset_for_timestamp(black_box(ts)).unwrap();
            debug_assert_eq!(found, Some((rels[i] as i64, ts)));
            found
        })
    });
    group.finish();
    drop(segment);
    log.delete().unwrap();
}

criterion_group! {
    name = benches;
    config = strata_benches::criterion();
    targets = index
}
criterion_main!(benches);
