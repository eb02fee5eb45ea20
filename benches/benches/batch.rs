//! Batch codec hot paths: the producer's RecordBatch v2 encoder and the broker's validation of
//! a received batch.
//!
//! Workload: keyless records of 100 random lowercase letters (see `strata_benches`).
//! - `batch/build/{none,zstd}/1MiB`: what a producer does per batch: a `BatchBuilder` filled up
//!   to 1 MiB (~9,700 records; `record_size` then `append`, as the client's accumulator does),
//!   then `build` (header and CRC-32C; one zstd level-1 frame of the records when compressed).
//!   Throughput counts the uncompressed batch bytes.
//! - `batch/validate_all/{16KiB,1MiB}`: `strata_log::batch::validate_all` on a produce request
//!   holding one batch, the first thing `Log::append` (the broker's produce path) runs: header
//!   checks plus one CRC-32C pass over the batch.
//! - `batch/crc32c/1MiB`: the bare CRC-32C over the same bytes, the floor of the validation.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_benches::{build_batch, fill_batch, XorShift, BASE_TIMESTAMP_MS, KIB, MIB};
use strata_log::batch;
use strata_log::{BatchBuilder, BatchHeader, Compression};

fn build(c: &mut Criterion) {
    let values = XorShift::new(1).letters(MIB);
    let (sample, _) = build_batch(&values, MIB, Compression::None, BASE_TIMESTAMP_MS);
    let mut group = c.benchmark_group("batch/build");
    group.throughput(Throughput::Bytes(sample.len() as u64));
    for (name, compression) in [("none", Compression::None), ("zstd", Compression::Zstd)] {
        group.bench_function(format!("{name}/1MiB"), |b| {
            b.iter(|| {
                let mut builder = BatchBuilder::with_capacity(compression, MIB);
                fill_batch(&mut builder, &values, MIB, BASE_TIMESTAMP_MS);
                black_box(builder.build().unwrap())
            })
        });
    }
    group.finish();
}

fn validate(c: &mut Criterion) {
    let mut rng = XorShift::new(2);
    let mut group = c.benchmark_group("batch/validate_all");
    for (name, size) in [("16KiB", 16 * KIB), ("1MiB", MIB)] {
        let (request, _) = build_batch(
            &rng.letters(size),
            size,
            Compression::None,
            BASE_TIMESTAMP_MS,
        );
        group.throughput(Throughput::Bytes(request.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| batch::validate_all(black_box(&request)).unwrap())
        });
    }
    group.finish();

    let (request, _) = build_batch(&rng.letters(MIB), MIB, Compression::None, BASE_TIMESTAMP_MS);
    let mut group = c.benchmark_group("batch/crc32c");
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.bench_function("1MiB", |b| {
        b.iter(|| batch::compute_crc(black_box(&request)))
    });
    group.finish();
    assert_eq!(
        batch::compute_crc(&request),
        BatchHeader::parse(&request).unwrap().crc
    );
}

criterion_group! {
    name = benches;
    config = strata_benches::criterion();
    targets = build, validate
}
criterion_main!(benches);
