//! The gRPC engine: `proto/segkit/v1/engine.proto` served with tonic.
//!
//! A thin edge around the library: requests are decoded and checked ([`codec`]), volumes
//! are kept in a bounded cache ([`cache`]), effects run on the blocking thread pool
//! (never on the async runtime), and library errors become gRPC status codes in one place
//! ([`status_from_error`]).

pub mod cache;
pub mod codec;
mod engine;
mod preview;

pub use engine::EngineService;

use crate::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::{Request, Status};

/// Generated types and service traits of `proto/segkit/v1/engine.proto`.
pub mod pb {
    tonic::include_proto!("segkit.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/segkit_v1_descriptor.bin"));
}

/// Largest request message the engine decodes (64 MiB); uploads come in smaller chunks.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Upload chunk size the engine recommends to clients (4 MiB).
pub const UPLOAD_CHUNK_BYTES: usize = 4 << 20;
/// Chunk size of exported files streamed back (1 MiB).
pub const EXPORT_CHUNK_BYTES: usize = 1 << 20;
/// Default memory for cached volumes, in MiB.
pub const DEFAULT_CACHE_MB: u64 = 4096;
/// Messages buffered per server stream before the engine waits for the client; small so a
/// client that went away is noticed at once.
pub const STREAM_CHANNEL_CAPACITY: usize = 4;
/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// The one place where library errors become gRPC status codes.
pub fn status_from_error(e: Error) -> Status {
    let msg = e.to_string();
    match e {
        Error::InvalidArgument(_) | Error::Format { .. } => Status::invalid_argument(msg),
        Error::NotFound(_) => Status::not_found(msg),
        Error::TooLarge { .. } => Status::resource_exhausted(msg),
        Error::Unsupported { .. } => Status::unimplemented(msg),
        Error::Io { ref source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => Status::not_found(msg),
            std::io::ErrorKind::PermissionDenied => Status::permission_denied(msg),
            _ => Status::internal(msg),
        },
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        status_from_error(e)
    }
}

/// How to run the engine.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub cache_bytes: u64,
    /// When set, every call to the engine must carry `authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// Checks the configuration: a non-loopback address needs a token.
pub fn check_config(config: &ServeConfig) -> Result<(), Error> {
    if !config.listen.ip().is_loopback() && config.token.as_deref().is_none_or(str::is_empty) {
        return Err(Error::InvalidArgument(format!(
            "refusing to listen on {} without a token: other machines could use the engine. \
             Pass --token, or listen on 127.0.0.1",
            config.listen
        )));
    }
    Ok(())
}

/// The token check on every engine call; constant time in the token's length.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<str>>,
}

impl TokenCheck {
    pub fn new(token: Option<String>) -> Self {
        TokenCheck {
            expected: token.filter(|t| !t.is_empty()).map(Arc::from),
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let (a, b) = (given.as_bytes(), expected.as_bytes());
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        if same {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong token: send metadata 'authorization: Bearer <token>'",
            ))
        }
    }
}

/// Runs the engine on `listener` until `shutdown` completes, then finishes the calls in
/// flight. Serves the engine, the standard health service (`grpc.health.v1`, open without
/// a token so load balancers can probe it) and reflection.
pub async fn serve_with_listener(
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    use pb::engine_server::EngineServer;
    use tonic::codec::CompressionEncoding;

    let engine = EngineService::new(config.cache_bytes);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<EngineServer<EngineService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::InvalidArgument(format!("reflection: {e}")))?;
    let check = TokenCheck::new(config.token.clone());
    let engine = EngineServer::new(engine)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(usize::MAX)
        // Requests may be gzip-compressed. Answers are not: masks are already run-length
        // coded, and gzip would cost engine time for little gain.
        .accept_compressed(CompressionEncoding::Gzip);
    let engine = tonic::service::interceptor::InterceptedService::new(engine, check.clone());
    let reflection = tonic::service::interceptor::InterceptedService::new(reflection, check);

    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let reporter_for_shutdown = reporter.clone();
    tonic::transport::Server::builder()
        .initial_connection_window_size(16 << 20)
        .initial_stream_window_size(8 << 20)
        .add_service(health)
        .add_service(reflection)
        .add_service(engine)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            reporter_for_shutdown
                .set_not_serving::<EngineServer<EngineService>>()
                .await;
        })
        .await
        .map_err(|e| Error::InvalidArgument(format!("engine stopped: {e}")))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn non_loopback_needs_a_token() {
        let mut c = ServeConfig {
            listen: "0.0.0.0:50051".parse().unwrap(),
            cache_bytes: 1,
            token: None,
        };
        assert!(check_config(&c).is_err());
        c.token = Some("s3cret".into());
        assert!(check_config(&c).is_ok());
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.token = None;
        assert!(check_config(&c).is_ok());
    }

    #[test]
    fn token_is_checked() {
        let mut check = TokenCheck::new(Some("abc".into()));
        let mut ok = Request::new(());
        ok.metadata_mut()
            .insert("authorization", "Bearer abc".parse().unwrap());
        assert!(check.call(ok).is_ok());
        let mut bad = Request::new(());
        bad.metadata_mut()
            .insert("authorization", "Bearer abd".parse().unwrap());
        assert_eq!(
            check.call(bad).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(check.call(Request::new(())).is_err());
        assert!(TokenCheck::new(None).call(Request::new(())).is_ok());
    }

    #[test]
    fn errors_map_to_codes() {
        assert_eq!(
            status_from_error(Error::NotFound("x".into())).code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            status_from_error(Error::InvalidArgument("x".into())).code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            status_from_error(Error::unsupported("f", "x")).code(),
            tonic::Code::Unimplemented
        );
    }
}
