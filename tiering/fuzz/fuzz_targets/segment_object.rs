//! Feeds arbitrary bytes, as the tail of a segment object and as its frames, to the parsers
//! that read objects back from the store: they must return an error, never panic, and never
//! allocate from a size the object claims (footer and frame sizes past the caps are refused
//! before anything is allocated).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_tiering::format::{decode_frame, parse_footer, tail_len_needed};

fuzz_target!(|data: &[u8]| {
    let _ = tail_len_needed(data);
    let Ok(footer) = parse_footer(data) else {
        return;
    };
    for mut info in footer.frames.iter().copied() {
        let range = info.range();
        if range.end > data.len() as u64 || range.start > range.end {
            continue;
        }
        let frame = &data[range.start as usize..range.end as usize];
        let _ = decode_frame(frame, &info);
        // With a matching CRC, so decompression and the batch walk are reached too.
        info.crc = crc32c::crc32c(frame);
        let _ = decode_frame(frame, &info);
    }
});
