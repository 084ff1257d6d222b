//! `segkit serve`: runs the gRPC engine until SIGINT or SIGTERM.

use crate::error::{Error, Result};
use crate::service::{self, ServeConfig, DEFAULT_CACHE_MB, DEFAULT_LISTEN};
use clap::Args;
use std::net::SocketAddr;

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
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let config = ServeConfig {
        listen: args.listen,
        cache_bytes: args.cache_mb.saturating_mul(1 << 20),
        token: args.token.clone().filter(|t| !t.is_empty()),
    };
    service::check_config(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
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
        eprintln!(
            "cache {} MiB, token {}; stop with Ctrl-C",
            args.cache_mb,
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
