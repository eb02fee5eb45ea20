//! The framing walk against batches built right, built wrong on purpose (each case the
//! hostile-input issue names), and mutated at random.

use super::*;
use crate::batch::{self, validate, Compression};
use crate::records::BatchBuilder;
use crate::varint::put_varint;
use proptest::prelude::*;

const LIMIT: usize = 1 << 20;

/// One record's bytes: length, attributes, deltas, key, value, no headers.
fn record(offset_delta: i64, ts_delta: i64, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    put_varint(&mut body, ts_delta);
    put_varint(&mut body, offset_delta);
    put_varint(&mut body, -1);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    put_varint(&mut body, 0);
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

/// A batch with any header counts around a records section, with a correct CRC.
fn raw(count: i32, codec: Compression, max_ts: i64, section: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b.extend_from_slice(section);
    let len = (b.len() - batch::LOG_OVERHEAD) as i32;
    b[batch::LENGTH_POS..batch::LENGTH_POS + 4].copy_from_slice(&len.to_be_bytes());
    b[batch::EPOCH_POS..batch::EPOCH_POS + 4].copy_from_slice(&(-1i32).to_be_bytes());
    b[batch::MAGIC_POS] = 2;
    b[batch::ATTRIBUTES_POS..batch::ATTRIBUTES_POS + 2]
        .copy_from_slice(&codec.codec_id().to_be_bytes());
    b[batch::LAST_OFFSET_DELTA_POS..batch::LAST_OFFSET_DELTA_POS + 4]
        .copy_from_slice(&(count - 1).to_be_bytes());
    b[batch::BASE_TIMESTAMP_POS..batch::BASE_TIMESTAMP_POS + 8]
        .copy_from_slice(&1_000i64.to_be_bytes());
    b[batch::MAX_TIMESTAMP_POS..batch::MAX_TIMESTAMP_POS + 8]
        .copy_from_slice(&max_ts.to_be_bytes());
    b[batch::PRODUCER_ID_POS..batch::PRODUCER_ID_POS + 8].copy_from_slice(&(-1i64).to_be_bytes());
    b[batch::RECORD_COUNT_POS..batch::RECORD_COUNT_POS + 4].copy_from_slice(&count.to_be_bytes());
    let crc = batch::compute_crc(&b);
    b[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn check(b: &[u8]) -> Result<(), LogError> {
    let header = validate(b)?;
    check_records(&header, b, LIMIT, None, Some(10_000))
}

fn refused(b: &[u8], says: &str) {
    let err = check(b).expect_err("refused").to_string();
    assert!(err.contains(says), "{err:?} should say {says:?}");
}

#[test]
fn batches_built_by_the_client_pass() {
    for codec in [Compression::None, Compression::Zstd] {
        let mut b = BatchBuilder::new(codec);
        for i in 0..50 {
            b.append(1_000 + i, Some(b"k"), Some(&[7u8; 100]), &[]);
        }
        check(&b.build().unwrap()).unwrap();
    }
}

#[test]
fn count_one_with_no_records() {
    refused(&raw(1, Compression::None, 1_000, &[]), "missing");
}

#[test]
fn count_1000_with_one_record() {
    refused(
        &raw(1000, Compression::None, 1_000, &record(0, 0, b"v")),
        "record 1 ",
    );
}

#[test]
fn count_i32_max_header_only() {
    refused(&raw(i32::MAX, Compression::None, 1_000, &[]), "missing");
}

#[test]
fn a_record_length_past_the_batch() {
    let mut r = record(0, 0, b"value");
    r[0] = 100; // zig-zag 50: longer than what follows
    refused(
        &raw(1, Compression::None, 1_000, &r),
        "runs past the end of the batch",
    );
}

#[test]
fn offset_delta_7_in_a_one_record_batch() {
    refused(
        &raw(1, Compression::None, 1_000, &record(7, 0, b"v")),
        "offset delta is 7",
    );
}

#[test]
fn decreasing_offset_deltas() {
    let mut s = record(1, 0, b"a");
    s.extend(record(0, 0, b"b"));
    refused(&raw(2, Compression::None, 1_000, &s), "offset delta is 1");
}

#[test]
fn more_records_than_declared() {
    let mut s = record(0, 0, b"a");
    s.extend(record(1, 0, b"b"));
    refused(
        &raw(1, Compression::None, 1_000, &s),
        "bytes after its 1 declared records",
    );
}

#[test]
fn a_max_timestamp_the_records_do_not_have() {
    refused(
        &raw(1, Compression::None, i64::MAX, &record(0, 0, b"v")),
        "max timestamp",
    );
}

#[test]
fn a_record_timestamp_too_far_ahead() {
    // Base 1000 + delta 20000 is past the latest accepted (10000).
    let b = raw(1, Compression::None, 21_000, &record(0, 20_000, b"v"));
    refused(&b, "message.timestamp.after.max.ms");
    let header = validate(&b).unwrap();
    let err = check_records(&header, &b, LIMIT, None, Some(10_000)).unwrap_err();
    assert!(matches!(err, LogError::InvalidTimestamp(_)));
    check_records(&header, &b, LIMIT, None, None).unwrap();
}

#[test]
fn a_record_timestamp_too_far_behind() {
    let b = raw(1, Compression::None, 1_000, &record(0, 0, b"v"));
    let header = validate(&b).unwrap();
    let err = check_records(&header, &b, LIMIT, Some(5_000), None).unwrap_err();
    assert!(
        err.to_string().contains("message.timestamp.before.max.ms"),
        "{err}"
    );
}

#[test]
fn a_header_key_that_is_not_utf8() {
    let mut body = vec![0u8];
    put_varint(&mut body, 0);
    put_varint(&mut body, 0);
    put_varint(&mut body, -1);
    put_varint(&mut body, -1);
    put_varint(&mut body, 1);
    put_varint(&mut body, 2);
    body.extend_from_slice(&[0xff, 0xfe]);
    put_varint(&mut body, -1);
    let mut r = Vec::new();
    put_varint(&mut r, body.len() as i64);
    r.extend(body);
    refused(&raw(1, Compression::None, 1_000, &r), "not UTF-8");
}

#[test]
fn transactional_and_control_batches_are_refused() {
    for (bit, says) in [(0x10i16, "transactional"), (0x20, "control")] {
        let mut b = raw(1, Compression::None, 1_000, &record(0, 0, b"v"));
        b[batch::ATTRIBUTES_POS..batch::ATTRIBUTES_POS + 2].copy_from_slice(&bit.to_be_bytes());
        let crc = batch::compute_crc(&b);
        b[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        refused(&b, says);
    }
}

#[test]
fn zstd_past_the_decompression_limit() {
    // One record whose value is 4 MiB of zeros: a few hundred bytes compressed.
    let section = record(0, 0, &vec![0u8; 4 << 20]);
    let compressed = zstd::bulk::compress(&section, 1).unwrap();
    assert!(compressed.len() < 1024, "{}", compressed.len());
    let b = raw(1, Compression::Zstd, 1_000, &compressed);
    refused(&b, "decompresses to more than");
    // With a limit above it, the same batch passes.
    let header = validate(&b).unwrap();
    check_records(&header, &b, 8 << 20, None, None).unwrap();
}

#[test]
fn zstd_that_does_not_decompress() {
    refused(
        &raw(1, Compression::Zstd, 1_000, b"not zstd at all"),
        "does not decompress",
    );
}

#[test]
fn a_walk_can_stop_early_and_reports_timestamps() {
    let mut b = BatchBuilder::new(Compression::Zstd);
    for i in 0..10 {
        b.append(1_000 + i * 10, None, Some(b"v"), &[]);
    }
    let b = b.build().unwrap();
    let header = validate(&b).unwrap();
    let mut seen = Vec::new();
    walk_records(&header, &b, LIMIT, |r| {
        seen.push((r.index, r.timestamp));
        r.index < 3
    })
    .unwrap();
    assert_eq!(seen, vec![(0, 1_000), (1, 1_010), (2, 1_020), (3, 1_030)]);
}

fn client_batch(values: &[Vec<u8>], codec: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(codec);
    for (i, v) in values.iter().enumerate() {
        b.append(1_000 + i as i64, Some(b"key"), Some(v), &[]);
    }
    b.build().unwrap().to_vec()
}

proptest! {
    /// Every batch the client builds passes.
    #[test]
    fn built_batches_pass(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20),
        zstd in any::<bool>(),
    ) {
        let codec = if zstd { Compression::Zstd } else { Compression::None };
        let b = client_batch(&values, codec);
        let header = validate(&b).unwrap();
        prop_assert!(check_records(&header, &b, LIMIT, None, None).is_ok());
    }

    /// A batch with bytes flipped in its records section (CRC recomputed, so only the framing
    /// check stands between it and the log) never panics; whatever passes decodes.
    #[test]
    fn mutated_batches_never_panic_and_what_passes_decodes(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..8),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        zstd in any::<bool>(),
    ) {
        let codec = if zstd { Compression::Zstd } else { Compression::None };
        let mut b = client_batch(&values, codec);
        let section = b.len() - HEADER_LEN;
        for (at, byte) in flips {
            let i = HEADER_LEN + at.index(section);
            b[i] = byte;
        }
        let crc = batch::compute_crc(&b);
        b[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        let header = validate(&b).unwrap();
        if check_records(&header, &b, LIMIT, None, None).is_ok() {
            let decoded = crate::records::decode_records(&bytes::Bytes::from(b.clone()));
            prop_assert!(decoded.is_ok(), "passed framing but does not decode: {:?}", decoded);
            prop_assert_eq!(decoded.unwrap().len(), values.len());
        }
    }

    /// Random bytes after a valid header never panic.
    #[test]
    fn random_sections_never_panic(
        section in proptest::collection::vec(any::<u8>(), 0..300),
        count in 1i32..5,
        zstd in any::<bool>(),
    ) {
        let codec = if zstd { Compression::Zstd } else { Compression::None };
        let b = raw(count, codec, 1_000, &section);
        let header = validate(&b).unwrap();
        let _ = check_records(&header, &b, LIMIT, None, None);
    }
}

/// Records bigger than the stream's chunk, and a UTF-8 header key whose characters straddle
/// chunk boundaries, pass through the zstd walk as they do uncompressed.
#[test]
fn records_and_header_keys_larger_than_a_chunk() {
    let key: String = "é".repeat(70 * 1024 + 1);
    for codec in [Compression::None, Compression::Zstd] {
        let mut b = BatchBuilder::new(codec);
        for i in 0..3 {
            let headers = [crate::records::Header {
                key: key.clone(),
                value: Some(bytes::Bytes::from(vec![i as u8; 10])),
            }];
            b.append(1_000, None, Some(&vec![i as u8; 150 * 1024]), &headers);
        }
        let b = b.build().unwrap();
        let header = validate(&b).unwrap();
        check_records(&header, &b, 8 << 20, None, None).unwrap();
    }
}

#[test]
fn a_bad_utf8_byte_deep_in_a_compressed_header_key() {
    let key = "é".repeat(40 * 1024);
    let mut b = BatchBuilder::new(Compression::None);
    let headers = [crate::records::Header { key, value: None }];
    b.append(1_000, None, Some(b"v"), &headers);
    let plain = b.build().unwrap().to_vec();
    let mut section = plain[HEADER_LEN..].to_vec();
    let at = section.len() - 100;
    section[at] = 0xff;
    let compressed = zstd::bulk::compress(&section, 1).unwrap();
    refused(
        &raw(1, Compression::Zstd, 1_000, &compressed),
        "is not UTF-8",
    );
    refused(&raw(1, Compression::None, 1_000, &section), "is not UTF-8");
}
