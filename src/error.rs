//! The one error type of the library.
//!
//! Every variant carries what a user needs to act on it: the file (or request),
//! and the reason, naming the offending value. The CLI prints these as they are;
//! the engine maps them to gRPC status codes in one place.

use std::path::{Path, PathBuf};

/// Result alias used across segkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in segkit's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read or write.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file is not valid for its format (bad header, inconsistent fields,
    /// truncated data). `format` is "NRRD", "NIfTI", "DICOM", ...
    #[error("{path}: invalid {format}: {reason}")]
    Format {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },

    /// The input is valid but uses something segkit does not implement.
    #[error("{path}: not supported: {what}")]
    Unsupported { path: PathBuf, what: String },

    /// A declared size is above one of segkit's named limits.
    #[error("{path}: {what} needs {requested} bytes, above the limit of {limit} bytes")]
    TooLarge {
        path: PathBuf,
        what: String,
        requested: u64,
        limit: u64,
    },

    /// A request or a command-line argument is wrong.
    #[error("{0}")]
    InvalidArgument(String),

    /// Something named by the caller does not exist (a series, a segment, a volume id).
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A format error on `path`.
    pub fn format(path: impl AsRef<Path>, format: &'static str, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            format,
            reason: reason.into(),
        }
    }

    /// A "not supported" error on `path`.
    pub fn unsupported(path: impl AsRef<Path>, what: impl Into<String>) -> Self {
        Error::Unsupported {
            path: path.as_ref().to_path_buf(),
            what: what.into(),
        }
    }
}
