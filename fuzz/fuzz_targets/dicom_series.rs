#![no_main]
//! Fuzz target: see `segkit::fuzzing::dicom_series` for what the input stands for.
//!
//! segkit contains panics of the third-party pixel decoders (jpeg2k, jpeg-decoder) with
//! `catch_unwind` and turns them into errors naming the file. libfuzzer-sys installs a
//! panic hook that aborts at every panic, contained or not, which would report those as
//! crashes; this target replaces it with one that only prints where the panic happened.
//! A panic segkit does not contain still unwinds to libfuzzer-sys, which aborts: a crash.

use libfuzzer_sys::fuzz_target;
use std::sync::Once;

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("panic (contained unless the run aborts next): {info}");
        }))
    });
    let _ = segkit::fuzzing::dicom_series(data);
});
