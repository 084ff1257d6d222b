//! The engine's errors, and the one place where an error becomes a gRPC status code.
//!
//! Request handling returns [`EngineError`]; a call's answer turns it into a [`Status`] with
//! `?` (through `From`), so the code a client sees is chosen by [`status`] alone. The
//! conformance suite (`tests/conformance`) checks the codes that clients rely on.

use crate::effects::EffectError;
use crate::Error;
use tonic::Status;

/// Why the engine refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The library refused the input: a bad request (wrong field, bad mask, unreadable
    /// file), a missing thing, a format it does not support.
    #[error(transparent)]
    Library(#[from] Error),
    /// The effect refused its input, was cancelled, or does not support the case.
    #[error(transparent)]
    Effect(#[from] EffectError),
    /// The request needs more memory than the engine's limits allow, even when idle.
    #[error("{0}")]
    TooLarge(String),
    /// A path the engine may not read or write (outside `--root`, or path access is off).
    #[error("{0}")]
    Denied(String),
    /// A preview session is not in the state the call needs.
    #[error("{0}")]
    NotReady(String),
    /// A failure of the engine itself (a task that panicked, a temporary file).
    #[error("{0}")]
    Internal(String),
    /// The client's request stream failed (it went away, or sent a broken message): its
    /// status is answered as it is.
    #[error("{}", .0.message())]
    Client(Status),
}

impl EngineError {
    /// A request the engine cannot accept as sent.
    pub fn bad(msg: impl Into<String>) -> Self {
        EngineError::Library(Error::InvalidArgument(msg.into()))
    }

    /// Something the request names that the engine does not have.
    pub fn not_found(msg: impl Into<String>) -> Self {
        EngineError::Library(Error::NotFound(msg.into()))
    }
}

/// The one mapping from an engine error to a gRPC status.
pub fn status(e: EngineError) -> Status {
    let msg = e.to_string();
    match e {
        EngineError::Library(e) => match e {
            Error::InvalidArgument(_) | Error::Format { .. } => Status::invalid_argument(msg),
            Error::NotFound(_) => Status::not_found(msg),
            Error::TooLarge { .. } => Status::resource_exhausted(msg),
            Error::Unsupported { .. } => Status::unimplemented(msg),
            Error::Io { ref source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => Status::not_found(msg),
                std::io::ErrorKind::PermissionDenied => Status::permission_denied(msg),
                // Disk full, file too large, quota: the request may work elsewhere.
                std::io::ErrorKind::StorageFull
                | std::io::ErrorKind::FileTooLarge
                | std::io::ErrorKind::QuotaExceeded => Status::resource_exhausted(msg),
                _ => Status::internal(msg),
            },
        },
        EngineError::Effect(e) => match e {
            EffectError::Cancelled => Status::cancelled("the effect was cancelled"),
            EffectError::Internal(_) => Status::internal(msg),
            EffectError::Unsupported(_) => Status::unimplemented(msg),
            EffectError::Parameter { .. } | EffectError::Input(_) => Status::invalid_argument(msg),
        },
        EngineError::TooLarge(_) => Status::resource_exhausted(msg),
        EngineError::Denied(_) => Status::permission_denied(msg),
        EngineError::NotReady(_) => Status::failed_precondition(msg),
        EngineError::Internal(_) => Status::internal(msg),
        EngineError::Client(s) => s,
    }
}

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        status(e)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        status(EngineError::Library(e))
    }
}

impl From<EffectError> for Status {
    fn from(e: EffectError) -> Self {
        status(EngineError::Effect(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_kind_has_its_code() {
        let io = |kind| Error::io("/x", std::io::Error::from(kind));
        let cases: Vec<(EngineError, Code)> = vec![
            (EngineError::bad("x"), Code::InvalidArgument),
            (
                Error::format("/x", "NRRD", "bad").into(),
                Code::InvalidArgument,
            ),
            (EngineError::not_found("x"), Code::NotFound),
            (Error::unsupported("/x", "y").into(), Code::Unimplemented),
            (
                Error::TooLarge {
                    path: "/x".into(),
                    what: "w".into(),
                    requested: 2,
                    limit: 1,
                }
                .into(),
                Code::ResourceExhausted,
            ),
            (io(std::io::ErrorKind::NotFound).into(), Code::NotFound),
            (
                io(std::io::ErrorKind::PermissionDenied).into(),
                Code::PermissionDenied,
            ),
            (
                io(std::io::ErrorKind::StorageFull).into(),
                Code::ResourceExhausted,
            ),
            (io(std::io::ErrorKind::Other).into(), Code::Internal),
            (EffectError::Cancelled.into(), Code::Cancelled),
            (
                EffectError::Unsupported("m".into()).into(),
                Code::Unimplemented,
            ),
            (EffectError::Input("i".into()).into(), Code::InvalidArgument),
            (
                EffectError::Parameter {
                    name: "p".into(),
                    reason: "r".into(),
                }
                .into(),
                Code::InvalidArgument,
            ),
            (EffectError::Internal("b".into()).into(), Code::Internal),
            (EngineError::TooLarge("t".into()), Code::ResourceExhausted),
            (EngineError::Denied("d".into()), Code::PermissionDenied),
            (EngineError::NotReady("n".into()), Code::FailedPrecondition),
            (EngineError::Internal("i".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let what = e.to_string();
            assert_eq!(status(e).code(), code, "{what}");
        }
    }

    #[test]
    fn the_message_is_kept() {
        let s = status(EngineError::bad("segment 2: extent outside the lattice"));
        assert_eq!(s.message(), "segment 2: extent outside the lattice");
    }
}
