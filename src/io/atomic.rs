//! Atomic file writes: a reader never sees a half-written file.
//!
//! The bytes go to a temporary file in the target's directory, which is flushed to disk
//! and then renamed over the target. If anything fails the temporary file is removed and
//! the target is left as it was. A process killed between the two (SIGKILL, power loss)
//! leaves its temporary file behind; the next successful write of the same target
//! removes the ones whose process is gone.

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes a file atomically: `fill` writes the content into a buffered temporary file
/// beside `path`, which then replaces `path` in one rename.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let tmp = temp_path(path);
    let result = (|| {
        // Name the target in errors: the temporary file is an implementation detail.
        // `create_new`: never write through a file (or link) someone else put there.
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        fill(&mut w)?;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else {
        remove_orphans(path);
    }
    result
}

/// Removes the temporary files of `path` left by writers that no longer run (their
/// process id is in the name; a live process, this one included, keeps its own).
/// Best effort: where processes cannot be looked up (no `/proc`), nothing is removed.
fn remove_orphans(path: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.segkit-");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('-') else {
            continue;
        };
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if numeric(pid) && numeric(n) && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// A temporary name beside `path`, unique within this process (concurrent writes of the
/// same target, as two engine calls may make, each get their own) and across processes.
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp_name = format!(
        ".{name}.segkit-{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(tmp_name),
        _ => PathBuf::from(tmp_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_the_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        write_bytes_atomic(&target, b"first").unwrap();
        let err = write_atomic(&target, |w| {
            w.write_all(b"partial").unwrap();
            Err(Error::InvalidArgument("stop".into()))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&target).unwrap(), b"first");
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporary_files_of_writers_that_died_are_removed_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("label.nrrd");
        // A pid above the kernel's maximum (4194304) never runs; this process does.
        let dead = dir.path().join(".label.nrrd.segkit-99999999-0.tmp");
        let alive = dir
            .path()
            .join(format!(".label.nrrd.segkit-{}-999.tmp", std::process::id()));
        let other_target = dir.path().join(".other.nrrd.segkit-99999999-0.tmp");
        for p in [&dead, &alive, &other_target] {
            fs::write(p, b"partial").unwrap();
        }
        write_bytes_atomic(&target, b"whole").unwrap();
        assert!(!dead.exists(), "the dead writer's file is removed");
        assert!(alive.exists(), "a running writer's file is kept");
        assert!(
            other_target.exists(),
            "another target's files are not touched"
        );
        assert_eq!(fs::read(&target).unwrap(), b"whole");
    }

    #[test]
    fn concurrent_writes_of_one_target_never_mix() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|n| vec![n; 1 << 16]).collect();
        std::thread::scope(|s| {
            for c in &contents {
                let target = &target;
                s.spawn(move || write_bytes_atomic(target, c).unwrap());
            }
        });
        let written = fs::read(&target).unwrap();
        assert!(contents.contains(&written), "the target is one whole write");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
