//! Segment-object frame hot paths of the remote tier: `encode_segment` (the upload of a sealed
//! segment: validate every batch, cut ~2 MiB frames at batch boundaries, zstd each, write the
//! footer) and `decode_frame` (a remote read: frame CRC, zstd decompression, every batch's CRC
//! again).
//!
//! Workload: an 8 MiB sealed segment of 16 KiB uncompressed batches (keyless 100-byte records
//! of random lowercase letters, fresh per record, so zstd compresses about 1.6:1 rather than
//! the 100:1 of repeated bytes), encoded as `UploadConfig::default()` does it (2 MiB frames,
//! zstd level 3).
//! - `frame/encode_segment/8MiB`: the whole object; throughput in uncompressed bytes.
//! - `frame/decode_frame/2MiB`: one frame from the middle of the object; throughput in
//!   uncompressed bytes.
//! - `frame/parse_footer`: the footer a reader parses once per object, from a 64 KiB tail.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use strata_benches::{batches, stamped_segment, KIB, MIB};
use strata_tiering::format::SUGGESTED_TAIL_LEN;
use strata_tiering::{decode_frame, encode_segment, parse_footer, UploadConfig};

fn frame(c: &mut Criterion) {
    let segment = stamped_segment(&batches(8, 8 * MIB, 16 * KIB), 0);
    let upload = UploadConfig::default();
    let encoded = encode_segment(&segment, 0, upload.frame_bytes, upload.zstd_level).unwrap();
    let frames = &encoded.footer.frames;
    eprintln!(
        "frame: {} bytes of batches -> {} bytes in {} frames (ratio {:.2}:1)",
        segment.len(),
        encoded.bytes.len(),
        frames.len(),
        segment.len() as f64 / encoded.bytes.len() as f64
    );

    let mut group = c.benchmark_group("frame");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(segment.len() as u64));
    group.bench_function("encode_segment/8MiB", |b| {
        b.iter(|| {
            encode_segment(
                black_box(&segment),
                0,
                upload.frame_bytes,
                upload.zstd_level,
            )
            .unwrap()
        })
    });

    let info = frames[frames.len() / 2];
    let raw = encoded
        .bytes
        .slice(info.position as usize..info.range().end as usize);
    group.throughput(Throughput::Bytes(info.uncompressed_len as u64));
    group.bench_function("decode_frame/2MiB", |b| {
        b.iter(|| decode_frame(black_box(&raw), &info).unwrap())
    });

    group.finish();

    let tail = &encoded.bytes[encoded.bytes.len().saturating_sub(SUGGESTED_TAIL_LEN)..];
    c.bench_function("frame/parse_footer", |b| {
        b.iter(|| parse_footer(black_box(tail)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = strata_benches::criterion();
    targets = frame
}
criterion_main!(benches);
