//! Feeds arbitrary records sections, under a header whose counts, codec and CRC are chosen by
//! the fuzzer and made consistent, to the produce path's framing check: it must refuse or
//! accept, never panic, and never allocate past its decompression limit. Without fixing up the
//! CRC almost every input would stop at the CRC check and never reach the record walk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_log::batch::{self, Compression, HEADER_LEN};
use strata_log::framing;

/// The check's decompression limit here: small, so the fuzzer finds the cut-off quickly.
const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let (head, section) = data.split_at(5);
    let count = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let codec = if head[4] & 1 == 1 {
        Compression::Zstd
    } else {
        Compression::None
    };
    let mut b = vec![0u8; HEADER_LEN];
    b.extend_from_slice(section);
    let len = (b.len() - batch::LOG_OVERHEAD) as i32;
    b[batch::LENGTH_POS..batch::LENGTH_POS + 4].copy_from_slice(&len.to_be_bytes());
    b[batch::EPOCH_POS..batch::EPOCH_POS + 4].copy_from_slice(&(-1i32).to_be_bytes());
    b[batch::MAGIC_POS] = 2;
    b[batch::ATTRIBUTES_POS..batch::ATTRIBUTES_POS + 2]
        .copy_from_slice(&codec.codec_id().to_be_bytes());
    b[batch::LAST_OFFSET_DELTA_POS..batch::LAST_OFFSET_DELTA_POS + 4]
        .copy_from_slice(&count.wrapping_sub(1).to_be_bytes());
    b[batch::PRODUCER_ID_POS..batch::PRODUCER_ID_POS + 8].copy_from_slice(&(-1i64).to_be_bytes());
    b[batch::RECORD_COUNT_POS..batch::RECORD_COUNT_POS + 4].copy_from_slice(&count.to_be_bytes());
    let crc = batch::compute_crc(&b);
    b[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    if let Ok(header) = batch::validate(&b) {
        let _ = framing::check_records(&header, &b, LIMIT, None, Some(i64::MAX));
        let _ = framing::find_timestamp(&b, 0, 0);
    }
});
