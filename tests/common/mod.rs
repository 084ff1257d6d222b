//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared test data folder: `SEGKIT_TEST_DATA`, else `../shared/data` from the crate root.
/// Returns `None` (and prints why) when it is absent, so the caller can skip.
pub fn test_data() -> Option<PathBuf> {
    let dir = std::env::var_os("SEGKIT_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.is_dir() {
        Some(dir)
    } else if std::env::var("SEGKIT_REQUIRE_DATA").as_deref() == Ok("1") {
        // scripts/test (and so CI) requires the data: a skipped test is a missing test.
        panic!(
            "test data folder {} not found and SEGKIT_REQUIRE_DATA=1",
            dir.display()
        );
    } else {
        eprintln!(
            "SKIP: test data folder {} not found (set SEGKIT_TEST_DATA)",
            dir.display()
        );
        None
    }
}

/// `test_data()/rel`, or `None` (skip) when the folder is absent.
pub fn data_path(rel: &str) -> Option<PathBuf> {
    test_data().map(|d| d.join(rel))
}

/// Skips the calling test (returns) when the test data folder is absent.
#[macro_export]
macro_rules! require_data {
    ($rel:expr) => {
        match common::data_path($rel) {
            Some(p) => p,
            None => return,
        }
    };
}
