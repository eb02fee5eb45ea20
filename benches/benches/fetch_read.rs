//! Fetch read hot path: `Log::read`, what the broker's fetch path (and the replica fetch)
//! calls for a partition's local log: find the batch holding the offset, read up to
//! `max_bytes` of whole batches with one positional read, CRC-check every batch returned.
//!
//! Workload: a 64 MiB log already written to a temporary directory (page cache warm, as for a
//! consumer near the tail), of 16 KiB or of 1 MiB uncompressed batches (keyless 100-byte
//! records of random letters). Each iteration reads `max_bytes` = 1 MiB from a pseudo-random
//! offset (a fixed sequence of 4,096 in the first 90% of the log, so every read is full), up to
//! the log end as the high watermark. Throughput counts the bytes one read returns.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_benches::{batches, log_config, sample, write_log, KIB, MIB};

const TARGETS: usize = 4096;

fn fetch_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("fetch_read");
    for (name, batch_bytes, seed) in [("16KiB_batches", 16 * KIB, 6), ("1MiB_batches", MIB, 7)] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = write_log(
            &dir.path().join("orders-0"),
            log_config(),
            &batches(seed, 64 * MIB, batch_bytes),
        );
        let end = log.log_end_offset();
        let offsets = sample(seed, TARGETS, end as u64 * 9 / 10);
        let read_len = log.read(offsets[0] as i64, MIB, end).unwrap().bytes.len();
        group.throughput(Throughput::Bytes(read_len as u64));
        let mut i = 0usize;
        group.bench_function(format!("1MiB/{name}"), |b| {
            b.iter(|| {
                i = (i + 1) % TARGETS;
                let read = log.read(black_box(offsets[i] as i64), MIB, end).unwrap();
                debug_assert!(!read.bytes.is_empty());
                read
            })
        });
        log.delete().unwrap();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = strata_benches::criterion();
    targets = fetch_read
}
criterion_main!(benches);
