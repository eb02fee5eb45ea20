use proptest::prelude::*;
use strata_log::batch::BatchIter;

use super::*;
use crate::testing::{make_segment, BatchSpec};

fn spec() -> impl Strategy<Value = BatchSpec> {
    (1usize..20, 0usize..600, any::<bool>()).prop_map(|(records, value_len, compressed)| {
        BatchSpec {
            records,
            value_len,
            compressed,
        }
    })
}

fn decode_all(seg: &EncodedSegment) -> Vec<u8> {
    let mut out = Vec::new();
    for f in &seg.footer.frames {
        let frame = &seg.bytes[f.range().start as usize..f.range().end as usize];
        out.extend_from_slice(&decode_frame(frame, f).expect("frame decodes"));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(specs in prop::collection::vec(spec(), 1..40),
                  base in 0i64..1_000_000,
                  frame_bytes in 200usize..20_000) {
        let (input, next) = make_segment(&specs, base, 3, 1_700_000_000_000);
        let seg = encode_segment(&input, base, frame_bytes, 1).unwrap();
        prop_assert_eq!(seg.footer.base_offset, base);
        prop_assert_eq!(seg.footer.next_offset, next);
        prop_assert_eq!(seg.footer.segment_bytes, input.len() as u64);
        prop_assert_eq!(seg.footer.object_len(), seg.bytes.len() as u64);
        let parsed = parse_footer(&seg.bytes).unwrap();
        prop_assert_eq!(&parsed, &seg.footer);
        prop_assert_eq!(decode_all(&seg), input.to_vec());
        // Every batch is found through frame_for.
        for item in BatchIter::new(&input) {
            let (h, _) = item.unwrap();
            for o in [h.base_offset, h.last_offset()] {
                let f = parsed.frame_for(o).unwrap();
                prop_assert!(f.first_offset <= o && o <= f.last_offset);
            }
        }
        prop_assert!(parsed.frame_for(base - 1).is_none());
        prop_assert!(parsed.frame_for(next).is_none());
    }

    #[test]
    fn any_flipped_byte_is_detected(specs in prop::collection::vec(spec(), 1..10),
                                    pick in any::<prop::sample::Index>(),
                                    bit in 0u8..8) {
        let (input, _) = make_segment(&specs, 100, 1, 5);
        let seg = encode_segment(&input, 100, 1000, 1).unwrap();
        let mut bytes = seg.bytes.to_vec();
        let i = pick.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let footer_start = seg.footer.frames.last().unwrap().range().end as usize;
        if i >= footer_start {
            prop_assert!(parse_footer(&bytes).is_err());
        } else {
            let f = seg.footer.frames.iter().find(|f| f.range().contains(&(i as u64))).unwrap();
            let err = decode_frame(&bytes[f.range().start as usize..f.range().end as usize], f)
                .unwrap_err();
            prop_assert_eq!(err.kind(), ErrorKind::Corrupt);
        }
    }
}

// Fuzzing: random and mutated objects into the parsers. Nothing panics, and nothing allocates
// from a claimed size (a claimed footer or frame size past the caps is refused up front).
proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_tails_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = tail_len_needed(&bytes);
        let _ = parse_footer(&bytes);
    }

    #[test]
    fn mutated_objects_never_panic(specs in prop::collection::vec(spec(), 1..6),
                                   edits in prop::collection::vec(
                                       (any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                   cut in any::<prop::sample::Index>()) {
        let (input, _) = make_segment(&specs, 10, 1, 5);
        let seg = encode_segment(&input, 10, 500, 1).unwrap();
        let mut bytes = seg.bytes.to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = bytes.len() - cut.index(bytes.len() / 4 + 1);
        bytes.truncate(keep);
        if let Ok(footer) = parse_footer(&bytes) {
            for f in &footer.frames {
                let range = f.range();
                if range.end <= bytes.len() as u64 {
                    let _ = decode_frame(&bytes[range.start as usize..range.end as usize], f);
                }
            }
        }
    }

    #[test]
    fn frames_with_any_claims_never_panic(frame in prop::collection::vec(any::<u8>(), 0..2048),
                                          uncompressed_len in any::<u32>(),
                                          first in any::<i64>(),
                                          last in any::<i64>()) {
        let info = FrameInfo {
            first_offset: first,
            last_offset: last,
            max_timestamp: 0,
            position: 0,
            compressed_len: frame.len() as u32,
            uncompressed_len,
            // A matching CRC, so decompression and the batch walk are reached.
            crc: crc32c::crc32c(&frame),
        };
        let _ = decode_frame(&frame, &info);
    }
}

#[test]
fn claims_past_the_caps_are_refused_before_anything_is_allocated() {
    let (input, _) = make_segment(
        &[BatchSpec {
            records: 3,
            value_len: 10,
            compressed: false,
        }],
        0,
        1,
        5,
    );
    let seg = encode_segment(&input, 0, 1000, 1).unwrap();
    let mut info = seg.footer.frames[0];
    info.uncompressed_len = u32::MAX;
    let frame = &seg.bytes[info.range().start as usize..info.range().end as usize];
    let err = decode_frame(frame, &info).unwrap_err().to_string();
    assert!(
        err.contains("more than the 134217728 any frame holds"),
        "{err}"
    );
    let mut bytes = seg.bytes.to_vec();
    let trailer = bytes.len() - TRAILER_LEN;
    bytes[trailer..trailer + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let err = tail_len_needed(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("more than the 67108864 any segment object has"),
        "{err}"
    );
}

#[test]
fn big_batch_is_a_frame_alone_and_frames_respect_the_target() {
    let specs = [
        BatchSpec {
            records: 2,
            value_len: 100,
            compressed: false,
        },
        BatchSpec {
            records: 50,
            value_len: 1000,
            compressed: false,
        },
        BatchSpec {
            records: 2,
            value_len: 100,
            compressed: false,
        },
        BatchSpec {
            records: 2,
            value_len: 100,
            compressed: false,
        },
    ];
    let (input, _) = make_segment(&specs, 0, 0, 0);
    let seg = encode_segment(&input, 0, 4096, 1).unwrap();
    let f = &seg.footer.frames;
    assert_eq!(f.len(), 3);
    assert_eq!((f[0].first_offset, f[0].last_offset), (0, 1));
    assert_eq!((f[1].first_offset, f[1].last_offset), (2, 51));
    assert_eq!((f[2].first_offset, f[2].last_offset), (52, 55));
    assert!(f[1].uncompressed_len > 4096);
}

#[test]
fn frame_for_timestamp_finds_the_first_frame_reaching_it() {
    let specs = [BatchSpec {
        records: 10,
        value_len: 50,
        compressed: false,
    }; 10];
    let (input, _) = make_segment(&specs, 0, 0, 1000);
    let seg = encode_segment(&input, 0, 1000, 1).unwrap();
    assert!(seg.footer.frames.len() > 2);
    for ts in [0, 1000, 1042, 1099] {
        let f = seg.footer.frame_for_timestamp(ts).unwrap();
        // Records are stamped ts = 1000 + offset.
        let want = (ts - 1000).max(0);
        assert!(
            f.first_offset <= want && want <= f.last_offset,
            "ts {ts}: {f:?}"
        );
    }
    assert!(seg.footer.frame_for_timestamp(1100).is_none());
}

#[test]
fn short_tail_says_how_much_to_fetch() {
    let specs = [BatchSpec {
        records: 1,
        value_len: 10,
        compressed: false,
    }; 30];
    let (input, _) = make_segment(&specs, 0, 0, 0);
    let seg = encode_segment(&input, 0, 100, 1).unwrap();
    let need = tail_len_needed(&seg.bytes[seg.bytes.len() - TRAILER_LEN..]).unwrap();
    assert_eq!(need, seg.footer.body_len() + TRAILER_LEN);
    let short = &seg.bytes[seg.bytes.len() - need + 1..];
    assert_eq!(
        parse_footer(short).unwrap_err(),
        FormatError::ShortTail {
            have: need - 1,
            need
        }
    );
    assert_eq!(
        parse_footer(&seg.bytes[seg.bytes.len() - need..]).unwrap(),
        seg.footer
    );
}

#[test]
fn refuses_empty_and_corrupt_input() {
    assert_eq!(
        encode_segment(&[], 0, 100, 1).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let (input, _) = make_segment(
        &[BatchSpec {
            records: 3,
            value_len: 10,
            compressed: false,
        }],
        0,
        0,
        0,
    );
    let mut bad = input.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(
        encode_segment(&bad, 0, 100, 1).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // A first batch below the declared base offset.
    assert!(encode_segment(&input, 5, 100, 1).is_err());
}

#[test]
fn unknown_version_is_refused() {
    let (input, _) = make_segment(
        &[BatchSpec {
            records: 3,
            value_len: 10,
            compressed: false,
        }],
        0,
        0,
        0,
    );
    let mut bytes = encode_segment(&input, 0, 100, 1).unwrap().bytes.to_vec();
    let n = bytes.len();
    bytes[n - 14..n - 12].copy_from_slice(&7u16.to_be_bytes());
    assert!(matches!(
        parse_footer(&bytes).unwrap_err(),
        FormatError::UnsupportedVersion { version: 7, .. }
    ));
}
