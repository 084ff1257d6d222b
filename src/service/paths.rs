//! Which files a client may make the engine read (`OpenVolume`) and write (`Export` to a
//! path).
//!
//! - Listening on loopback without `--root`: any path (the client is a local user who can
//!   read and write those files anyway).
//! - With `--root DIR` (repeatable): only paths that lie under one of the folders once
//!   resolved, symbolic links and `..` included.
//! - Listening on another address without `--root`: no path at all; clients upload
//!   volumes and receive exports as bytes.
//!
//! A path is checked when the call arrives. A folder that a local user swaps for a link
//! between the check and the write is outside what this guards against.

use super::EngineError;
use crate::Error;
use std::path::{Path, PathBuf};

/// The engine's rule for client-named paths.
#[derive(Debug, Clone)]
pub enum PathPolicy {
    /// Any path (loopback, no roots).
    Anywhere,
    /// Only under these folders (resolved when the engine starts).
    Roots(Vec<PathBuf>),
    /// No path-based call.
    Off,
}

impl PathPolicy {
    /// The policy for `roots` on an engine that listens on loopback or not. Errors name a
    /// root that is not an existing folder.
    pub fn new(roots: &[PathBuf], loopback: bool) -> Result<Self, Error> {
        if roots.is_empty() {
            return Ok(if loopback {
                PathPolicy::Anywhere
            } else {
                PathPolicy::Off
            });
        }
        let mut resolved = Vec::with_capacity(roots.len());
        for r in roots {
            let canonical = r.canonicalize().map_err(|e| Error::io(r, e))?;
            if !canonical.is_dir() {
                return Err(Error::InvalidArgument(format!(
                    "--root {}: not a folder",
                    r.display()
                )));
            }
            resolved.push(canonical);
        }
        Ok(PathPolicy::Roots(resolved))
    }

    /// Whether path-based calls are served at all.
    pub fn allowed(&self) -> bool {
        !matches!(self, PathPolicy::Off)
    }

    /// The file or folder to read for `path`, resolved, or why it may not be read.
    pub fn readable(&self, path: &Path) -> Result<PathBuf, EngineError> {
        match self {
            PathPolicy::Anywhere => Ok(path.to_path_buf()),
            PathPolicy::Off => Err(off("open", path)),
            PathPolicy::Roots(roots) => {
                let resolved = path.canonicalize().map_err(|e| Error::io(path, e))?;
                inside(roots, &resolved, "open", path)
            }
        }
    }

    /// The file to write for `path` (the link's target when `path` is a symbolic link),
    /// or why it may not be written. The folder must exist.
    pub fn writable(&self, path: &Path) -> Result<PathBuf, EngineError> {
        match self {
            PathPolicy::Anywhere => Ok(path.to_path_buf()),
            PathPolicy::Off => Err(off("export", path)),
            PathPolicy::Roots(roots) => {
                let resolved = match path.canonicalize() {
                    Ok(p) => p,
                    // A new file: its folder is resolved, its name kept.
                    Err(_) => {
                        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                            return Err(EngineError::bad(format!(
                                "export: {} names no file",
                                path.display()
                            )));
                        };
                        let dir = if dir.as_os_str().is_empty() {
                            Path::new(".")
                        } else {
                            dir
                        };
                        dir.canonicalize()
                            .map_err(|e| Error::io(dir, e))?
                            .join(name)
                    }
                };
                inside(roots, &resolved, "export", path)
            }
        }
    }
}

fn off(what: &str, path: &Path) -> EngineError {
    EngineError::Denied(format!(
        "{what}: {}: this engine serves no file paths (it listens on a non-loopback address \
         and was started without --root): upload the volume, or export to bytes",
        path.display()
    ))
}

fn inside(
    roots: &[PathBuf],
    resolved: &Path,
    what: &str,
    given: &Path,
) -> Result<PathBuf, EngineError> {
    if roots.iter().any(|r| resolved.starts_with(r)) {
        return Ok(resolved.to_path_buf());
    }
    let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(EngineError::Denied(format!(
        "{what}: {} is outside the engine's --root folders ({})",
        given.display(),
        roots.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn code(r: Result<PathBuf, EngineError>) -> Code {
        super::super::status(r.unwrap_err()).code()
    }

    #[test]
    fn loopback_without_roots_serves_any_path_and_other_addresses_none() {
        let any = PathPolicy::new(&[], true).unwrap();
        assert!(any.allowed());
        assert_eq!(
            any.readable(Path::new("/etc/hosts")).unwrap(),
            Path::new("/etc/hosts")
        );
        let off = PathPolicy::new(&[], false).unwrap();
        assert!(!off.allowed());
        assert_eq!(
            code(off.readable(Path::new("/etc/hosts"))),
            Code::PermissionDenied
        );
        assert_eq!(
            code(off.writable(Path::new("/tmp/x.nrrd"))),
            Code::PermissionDenied
        );
    }

    #[test]
    fn roots_hold_paths_resolved_through_links_and_dots() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("data");
        let outside = top.path().join("private");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("ct.nrrd"), b"x").unwrap();
        std::fs::write(outside.join("secret.nrrd"), b"x").unwrap();
        let p = PathPolicy::new(std::slice::from_ref(&root), false).unwrap();
        assert!(p.allowed());
        assert!(p.readable(&root.join("ct.nrrd")).is_ok());
        assert!(p.writable(&root.join("new-label.nrrd")).is_ok());
        let dotted = root.join("..").join("private").join("secret.nrrd");
        assert_eq!(code(p.readable(&dotted)), Code::PermissionDenied);
        assert_eq!(
            code(p.writable(&root.join("../private/new.nrrd"))),
            Code::PermissionDenied
        );
        #[cfg(unix)]
        {
            let link = root.join("link.nrrd");
            std::os::unix::fs::symlink(outside.join("secret.nrrd"), &link).unwrap();
            assert_eq!(code(p.readable(&link)), Code::PermissionDenied);
            assert_eq!(code(p.writable(&link)), Code::PermissionDenied);
            let dir_link = root.join("elsewhere");
            std::os::unix::fs::symlink(&outside, &dir_link).unwrap();
            assert_eq!(
                code(p.writable(&dir_link.join("new.nrrd"))),
                Code::PermissionDenied
            );
        }
        assert_eq!(code(p.readable(&root.join("missing.nrrd"))), Code::NotFound);
        assert!(PathPolicy::new(&[top.path().join("nope")], true).is_err());
    }
}
