//! Feeds arbitrary bytes to the manifest parser, which reads the one object that says what a
//! partition holds remotely: a clear error or a manifest, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_tiering::Manifest;

fuzz_target!(|data: &[u8]| {
    let _ = Manifest::from_bytes("fuzz", data);
});
