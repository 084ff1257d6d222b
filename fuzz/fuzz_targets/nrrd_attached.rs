#![no_main]
//! Fuzz target: see `segkit::fuzzing::nrrd_attached` for what the input stands for.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = segkit::fuzzing::nrrd_attached(data);
});
