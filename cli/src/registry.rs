//! `toolmesh registry`: runs the registry until SIGINT or SIGTERM.

use crate::{Failure, TlsArgs};
use clap::Args;
use std::io::Write;
use std::time::Duration;
use toolmesh_core::{Error, ErrorKind};
use toolmesh_registry::RegistryConfig;

#[derive(Args)]
pub struct RegistryArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the ready line shows it).
    #[arg(long, default_value_t = 8443)]
    port: u16,
    #[command(flatten)]
    tls: TlsArgs,
    /// How often agents heartbeat; an agent silent for three intervals is evicted.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=3_600_000), value_name = "MS")]
    heartbeat_interval_ms: u64,
}

pub async fn run(args: RegistryArgs) -> Result<(), Failure> {
    let identity = args.tls.load("registry")?;
    let mut config = RegistryConfig::new(args.host, args.port, identity);
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_interval_ms);
    let running = toolmesh_registry::start(config).await?;
    // Scripts and tests wait for this line; with --port 0 it carries the real port.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "toolmesh registry listening on {}", running.url())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot write to stdout: {e}")))?;
    drop(stdout);
    let stopped_by = shutdown_signal().await?;
    tracing::info!("{stopped_by}: shutting down");
    running.shutdown().await;
    Ok(())
}

/// Waits for SIGINT (Ctrl-C) or, on Unix, SIGTERM; returns which one arrived.
async fn shutdown_signal() -> Result<&'static str, Error> {
    let cannot = |e: std::io::Error| Error::new(ErrorKind::Internal, format!("cannot listen for shutdown signals: {e}"));
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(cannot)?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.map(|()| "SIGINT").map_err(cannot),
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map(|()| "interrupt").map_err(cannot)
    }
}
