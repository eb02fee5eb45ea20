//! Feeds arbitrary bytes to the batch and record decoders, which read untrusted bytes from the
//! network and the disk: they must return an error, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_log::{batch, records};

fuzz_target!(|data: &[u8]| {
    let _ = batch::validate_all(data);
    for item in batch::BatchIter::new(data) {
        if item.is_err() {
            break;
        }
    }
    let _ = records::decode_all(&bytes::Bytes::copy_from_slice(data));
});
