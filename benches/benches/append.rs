//! Log append hot path: `Log::append`, what the broker's produce path calls once per request
//! (validate every batch, stamp base offset and leader epoch, roll if due, one positional
//! write, index entries every 4 KiB).
//!
//! Workload: one pre-built, uncompressed batch of 16 KiB or of 1 MiB (keyless 100-byte records
//! of random letters), appended over and over to a `Log` in a temporary directory with
//! Kafka's defaults: no fsync per append (`flush.messages`/`flush.ms` unset), so the write
//! lands in the page cache. Stamping rewrites the same buffer in place, as the broker does with
//! a request buffer it owns. Segments roll every 64 MiB (the roll's cost is part of the
//! figure); to keep the disk small, sealed segments past 128 MiB are deleted between timed
//! appends, outside the measurement.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_benches::{build_batch, clock, log_config, XorShift, BASE_TIMESTAMP_MS, KIB, MIB};
use strata_log::{Compression, Log, LogConfig};

/// Retention runs (untimed) once the log grows past this.
const MAX_LOG_BYTES: u64 = 256 * MIB as u64;

fn append(c: &mut Criterion) {
    let mut rng = XorShift::new(3);
    let mut group = c.benchmark_group("append");
    for (name, size) in [("16KiB", 16 * KIB), ("1MiB", MIB)] {
        let (batch, _) = build_batch(
            &rng.letters(size),
            size,
            Compression::None,
            BASE_TIMESTAMP_MS,
        );
        let mut buf = batch.to_vec();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = LogConfig {
            segment_bytes: 64 * MIB as u64,
            retention_bytes: Some(128 * MIB as u64),
            ..log_config()
        };
        let mut log = Log::open(dir.path().join("orders-0"), config, clock()).unwrap();
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    black_box(log.append(&mut buf, 1).unwrap());
                    timed += start.elapsed();
                    if log.size_bytes() > MAX_LOG_BYTES {
                        log.enforce_retention().unwrap();
                    }
                }
                timed
            })
        });
        log.delete().unwrap();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = strata_benches::criterion();
    targets = append
}
criterion_main!(benches);
