//! The toolmesh registry: the mesh's phone book. Agents register their tools over mutual TLS,
//! heartbeat, and long-poll for their topology (the live providers of their dependencies);
//! agents that stop heartbeating are evicted. The HTTP API is documented in `openapi.yaml`.

mod http;
mod state;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use toolmesh_core::server::{bind, bracket_ipv6, HttpsServer};
use toolmesh_core::tls::Identity;
use toolmesh_core::{Error, ErrorKind, Result};

pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Missed heartbeat intervals after which an agent is evicted.
pub const DEFAULT_EVICTION_INTERVALS: u32 = 3;
/// How long in-flight requests may finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct RegistryConfig {
    pub host: String,
    /// 0 picks a free port (see [`RunningRegistry::local_addr`]).
    pub port: u16,
    /// The registry's certificate; clients must present one from the same CA.
    pub identity: Arc<Identity>,
    pub heartbeat_interval: Duration,
    pub eviction_intervals: u32,
}

impl RegistryConfig {
    /// A configuration with the default heartbeat interval and eviction.
    pub fn new(host: impl Into<String>, port: u16, identity: Arc<Identity>) -> Self {
        RegistryConfig {
            host: host.into(),
            port,
            identity,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            eviction_intervals: DEFAULT_EVICTION_INTERVALS,
        }
    }
}

/// A registry serving on its socket until [`RunningRegistry::shutdown`].
pub struct RunningRegistry {
    server: HttpsServer,
    url: String,
    closing: watch::Sender<bool>,
    evictor: JoinHandle<()>,
}

/// Binds the port and starts serving; fails with a clear error when the identity or the
/// configuration is unusable or the port is taken.
pub async fn start(config: RegistryConfig) -> Result<RunningRegistry> {
    if config.heartbeat_interval < Duration::from_millis(10) {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("the heartbeat interval {:?} is too short; use at least 10 ms (the default is 5000 ms)", config.heartbeat_interval),
        ));
    }
    if config.eviction_intervals == 0 {
        return Err(Error::new(ErrorKind::InvalidConfig, "eviction_intervals must be at least 1 (the default is 3)"));
    }
    let tls = config.identity.server_config()?;
    let listener = bind(&config.host, config.port).await?;
    let registry = Arc::new(state::Registry::new(config.heartbeat_interval));
    let (closing, closing_receiver) = watch::channel(false);
    let api = Arc::new(http::Api { registry: registry.clone(), closing: closing_receiver });
    let server = HttpsServer::spawn(listener, tls, move |request, peer| http::handle(api.clone(), request, peer))?;
    let url = format!("https://{}:{}", bracket_ipv6(&config.host), server.local_addr().port());
    let max_silence = config.heartbeat_interval * config.eviction_intervals;
    let evictor = tokio::spawn(evict_forever(registry, config.heartbeat_interval / 2, max_silence));
    tracing::info!(%url, identity = config.identity.name(), "registry started");
    Ok(RunningRegistry { server, url, closing, evictor })
}

impl RunningRegistry {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `https://host:port` with the configured host and the bound port.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Answers pending long polls, stops accepting, and lets in-flight requests finish.
    pub async fn shutdown(self) {
        let _ = self.closing.send(true);
        self.evictor.abort();
        self.server.shutdown(SHUTDOWN_GRACE).await;
        tracing::info!(url = %self.url, "registry stopped");
    }
}

async fn evict_forever(registry: Arc<state::Registry>, period: Duration, max_silence: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        registry.evict_silent(max_silence);
    }
}
