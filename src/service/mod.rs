//! The gRPC engine: `proto/segkit/v1/engine.proto` served with tonic.
//!
//! A thin edge around the library: requests are decoded and checked ([`codec`]), volumes
//! are kept in a bounded cache ([`cache`]), effects run on the blocking thread pool
//! (never on the async runtime), and errors become gRPC status codes in one place
//! ([`error::status`]).

pub mod budget;
pub mod cache;
mod call;
pub mod codec;
mod engine;
pub mod error;
pub mod paths;
mod preview;

pub use engine::{EngineService, Limits};
pub use error::{status, EngineError};

use crate::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
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
/// Default working memory of calls in flight, in MiB.
pub const DEFAULT_WORK_MB: u64 = 4096;
/// Messages buffered per server stream before the engine waits for the client; small so a
/// client that went away is noticed at once.
pub const STREAM_CHANNEL_CAPACITY: usize = 4;
/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// How to run the engine.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Voxels of cached volumes, in bytes.
    pub cache_bytes: u64,
    /// Working memory of uploads, effects and exports in flight, in bytes.
    pub work_bytes: u64,
    /// Uploads, effects and exports computing at once.
    pub concurrent_calls: usize,
    /// When set, every call to the engine must carry `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Folders under which clients may name files to open and export to (see
    /// [`paths::PathPolicy`]).
    pub roots: Vec<PathBuf>,
    /// Serve TLS with this certificate chain and private key (PEM files).
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the engine's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The server TLS configuration; errors name the file that cannot be read or used.
    fn server_config(&self) -> Result<tonic::transport::ServerTlsConfig, Error> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| Error::io(p, e));
        let (cert, key) = (read(&self.cert)?, read(&self.key)?);
        for (bytes, path, what) in [
            (&cert, &self.cert, "CERTIFICATE"),
            (&key, &self.key, "PRIVATE KEY"),
        ] {
            if !String::from_utf8_lossy(bytes).contains(&format!("{what}-----")) {
                return Err(Error::format(
                    path,
                    "PEM",
                    format!("no PEM block ending in {what} (--tls-cert takes the certificate chain, --tls-key the private key)"),
                ));
            }
        }
        Ok(tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key)))
    }
}

impl ServeConfig {
    /// The defaults on `listen`: 4 GiB of cache, 4 GiB of working memory, twice as many
    /// concurrent calls as cores, no token, no roots.
    pub fn new(listen: SocketAddr) -> Self {
        ServeConfig {
            listen,
            cache_bytes: DEFAULT_CACHE_MB << 20,
            work_bytes: DEFAULT_WORK_MB << 20,
            concurrent_calls: default_concurrent_calls(),
            token: None,
            roots: Vec::new(),
            tls: None,
        }
    }
}

/// Twice the cores: effects use every core, so more at once only share them (and hold
/// memory longer), while one waiting for I/O leaves its cores to another.
pub fn default_concurrent_calls() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
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

    let paths = paths::PathPolicy::new(&config.roots, config.listen.ip().is_loopback())?;
    let engine = EngineService::new(
        &Limits {
            cache_bytes: config.cache_bytes,
            work_bytes: config.work_bytes,
            concurrent_calls: config.concurrent_calls,
        },
        paths,
    );
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

    // No Nagle delay: an answer written in several pieces would otherwise wait for the
    // client's delayed ACK (40 ms per small call).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let reporter_for_shutdown = reporter.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let describe = format!("TLS with {} and {}", tls.cert.display(), tls.key.display());
        builder = builder
            .tls_config(tls.server_config()?)
            .map_err(|e| Error::InvalidArgument(format!("{describe}: {e}")))?;
    }
    builder
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
        let mut c = ServeConfig::new("0.0.0.0:50051".parse().unwrap());
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
}
