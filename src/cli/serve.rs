//! `segkit serve`: runs the gRPC engine until SIGINT or SIGTERM.

use crate::error::{Error, Result};
use crate::service::{self, ServeConfig, DEFAULT_CACHE_MB, DEFAULT_LISTEN, DEFAULT_WORK_MB};
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback needs --token.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Memory for cached volumes, in MiB (least recently used volumes are dropped first).
    #[arg(long, default_value_t = DEFAULT_CACHE_MB)]
    cache_mb: u64,
    /// Require this token on every call (metadata `authorization: Bearer <token>`).
    /// Also read from SEGKIT_TOKEN.
    #[arg(long, env = "SEGKIT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Working memory of uploads, effects and exports in flight, in MiB. A request whose
    /// estimate is larger is refused; the others wait for room.
    #[arg(long, default_value_t = DEFAULT_WORK_MB)]
    work_mb: u64,
    /// Uploads, effects and exports computing at once (default: twice the cores).
    #[arg(long)]
    concurrent_calls: Option<usize>,
    /// Folder under which clients may name files to open or export to (repeatable).
    /// Without it, clients may name any path when the engine listens on loopback, and none
    /// otherwise.
    #[arg(long = "root", value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key. Clients then connect
    /// to https://HOST:PORT.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log format on stderr: one line per call (method, volume id, effect, sizes,
    /// duration, status). SEGKIT_LOG sets the level (error, warn, info, debug, off).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How the engine writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A write past the file-size limit (`ulimit -f`) must fail that export with an error
/// (EFBIG), not kill the engine with SIGXFSZ: a handler replaces the default action.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    {
        // SIGXFSZ is 25 on Linux and macOS.
        const SIGXFSZ: i32 = 25;
        let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ));
    }
}

/// Volumes and masks are buffers of megabytes that calls allocate and free all the time,
/// on many threads. glibc serves allocations below its mmap threshold from per-thread
/// arenas and keeps what is freed there; the threshold rises by itself (up to 32 MiB)
/// after large frees, so after a load the engine held three times its working set (16
/// clients: 1019 MiB resident once idle, 1122 MiB peak, with --cache-mb 24 --work-mb
/// 256). A fixed 1 MiB threshold maps every large buffer on its own and unmaps it when
/// freed: 112 MiB once idle, 498 MiB peak, in the same load.
fn return_freed_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc tuning value; it is called before any thread of
    // the engine starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Logs go to stderr (stdout carries the "listening on" line that scripts read).
fn init_logs(format: LogFormat) -> Result<()> {
    use tracing_subscriber::filter::LevelFilter;
    let level = match std::env::var("SEGKIT_LOG").as_deref().unwrap_or("info") {
        "off" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "info" | "" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        other => {
            return Err(Error::InvalidArgument(format!(
                "SEGKIT_LOG={other}: use off, error, warn, info, debug or trace"
            )))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| Error::InvalidArgument(format!("cannot start the logs: {e}")))
}

pub fn run(args: &ServeArgs) -> Result<()> {
    return_freed_buffers_to_the_system();
    let defaults = ServeConfig::new(args.listen);
    let config = ServeConfig {
        cache_bytes: args.cache_mb.saturating_mul(1 << 20),
        work_bytes: args.work_mb.saturating_mul(1 << 20),
        concurrent_calls: args
            .concurrent_calls
            .unwrap_or(defaults.concurrent_calls)
            .max(1),
        token: args.token.clone().filter(|t| !t.is_empty()),
        roots: args.roots.clone(),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(service::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        ..defaults
    };
    service::check_config(&config)?;
    init_logs(args.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        ignore_file_size_signal();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot listen on {}: {e}", config.listen))
            })?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::InvalidArgument(format!("cannot read the bound address: {e}")))?;
        // Scripts and tests read this line to find the port (with --listen 127.0.0.1:0).
        println!("segkit engine listening on {bound}");
        let paths = if !config.roots.is_empty() {
            format!("files under {} root folder(s)", config.roots.len())
        } else if config.listen.ip().is_loopback() {
            "files anywhere (loopback)".to_string()
        } else {
            "no file paths (no --root)".to_string()
        };
        eprintln!(
            "{}cache {} MiB, work {} MiB, {} calls at once, token {}, {paths}; stop with Ctrl-C",
            if config.tls.is_some() { "TLS, " } else { "" },
            args.cache_mb,
            args.work_mb,
            config.concurrent_calls,
            if config.token.is_some() {
                "required"
            } else {
                "not required"
            }
        );
        service::serve_with_listener(listener, config, service::shutdown_signal()).await?;
        eprintln!("segkit engine stopped");
        Ok(())
    })
}
