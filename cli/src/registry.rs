//! `toolmesh registry`: runs the registry until SIGINT or SIGTERM, with certificate files or,
//! with `--tls-auto`, with a CA of its own in the state directory.

use crate::{Failure, TlsArgs};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use toolmesh_ca::DEFAULT_TRUST_DOMAIN;
use toolmesh_core::auto_tls::default_state_dir;
use toolmesh_core::server::ServerLimits;
use toolmesh_core::{Error, ErrorKind};
use toolmesh_registry::{default_state_dir_for, AutoIssuer, Quotas, RegistryConfig, MESH_CA_FILE, STATE_FILE};

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
    /// Run the mesh on mTLS with no certificate handling: a CA in --state-dir issues the
    /// registry's certificate and, with the join token this prints, the agents' (TOOLMESH_TLS=auto).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca"])]
    tls_auto: bool,
    /// Where the registry keeps its CA, join token, operator certificate and entities.
    #[arg(long, env = "TOOLMESH_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Keep entities, revocations, the applied policy and the --tls-auto CA in this PostgreSQL
    /// database (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE) instead of --state-dir, shared
    /// by every registry replica started with the same URL. A server on another machine needs
    /// ?sslmode=verify-full&sslrootcert=CA.pem (the default sslmode there; also verify-ca,
    /// sslcert/sslkey for a client certificate).
    #[arg(long, env = "TOOLMESH_REGISTRY_STORE", value_name = "URL", value_parser = parse_store)]
    store: Option<String>,
    /// How long the start waits for --store's database to answer before it fails, e.g. 10s, 1m.
    #[arg(long, env = "TOOLMESH_REGISTRY_STORE_WAIT", default_value = "10s", value_parser = parse_span, value_name = "DURATION")]
    store_wait: Duration,
    /// Trust domain of the SPIFFE IDs --tls-auto issues.
    #[arg(long, default_value = DEFAULT_TRUST_DOMAIN, value_name = "DOMAIN")]
    trust_domain: String,
    /// Lifetime of the agents' automatic certificates, e.g. 24h, 30m, 90s (renewed at 2/3).
    #[arg(long, default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    agent_cert_ttl: Duration,
    /// Extra host names or IPs the registry is reached at (--tls-auto puts them in its certificate).
    #[arg(long, value_delimiter = ',', value_name = "HOST")]
    san: Vec<String>,
    /// Identities (SPIFFE IDs) allowed to add and revoke entities, besides spiffe://DOMAIN/operator/...
    #[arg(long, value_delimiter = ',', value_name = "SPIFFE-ID")]
    admin_ids: Vec<String>,
    /// How often agents heartbeat; an agent silent for three intervals is evicted.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=3_600_000), value_name = "MS")]
    heartbeat_interval_ms: u64,
    /// Address of the plain-HTTP /health, /ready and /metrics listener.
    #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
    health_host: String,
    /// Port of the health listener: default --port + 1000 (any free port with --port 0); 'off' for none.
    #[arg(long, value_name = "PORT|off")]
    health_port: Option<String>,
    /// Most agents one certificate identity (all its replicas) may have registered.
    #[arg(long, default_value_t = toolmesh_registry::DEFAULT_MAX_AGENTS, value_parser = at_least_one, value_name = "N")]
    max_agents_per_identity: usize,
    /// Most tools one identity may have registered, across its agents.
    #[arg(long, default_value_t = toolmesh_registry::DEFAULT_MAX_TOOLS, value_parser = at_least_one, value_name = "N")]
    max_tools_per_identity: usize,
    /// Most bytes of registration JSON one identity may have stored, e.g. 4MiB, 512KiB, 100000.
    #[arg(long, default_value = "4MiB", value_parser = parse_bytes, value_name = "BYTES")]
    max_bytes_per_identity: usize,
    /// Most spans the trace store keeps (agents export to it when they name no OTLP collector);
    /// past it, the identity that exported the most gives up its oldest export requests.
    #[arg(long, default_value_t = toolmesh_registry::DEFAULT_TRACE_MAX_SPANS, value_parser = at_least_one, value_name = "N")]
    trace_max_spans: usize,
    /// Most memory (estimated) the trace store's spans take, e.g. 32MiB.
    #[arg(long, default_value = "32MiB", value_parser = parse_bytes, value_name = "BYTES")]
    trace_max_bytes: usize,
    #[command(flatten)]
    limits: LimitArgs,
}

fn parse_store(text: &str) -> Result<String, String> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "'{text}' is not a store this registry knows: give postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, or leave --store \
             out to keep the state in --state-dir"
        ))
    }
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{text}' is not a whole number of at least 1")),
    }
}

/// `4MiB`, `512KiB`, `1GiB` or a plain number of bytes.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().map_err(|_| format!("'{text}' is not a size like 4MiB, 512KiB or 100000"))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1024,
        "MiB" | "M" | "MB" => 1024 * 1024,
        "GiB" | "G" | "GB" => 1024 * 1024 * 1024,
        _ => return Err(format!("'{text}' has an unknown unit; use KiB, MiB or GiB")),
    };
    match number.checked_mul(factor) {
        Some(bytes) if bytes >= 1 => Ok(bytes),
        _ => Err(format!("'{text}' must be at least one byte and fit in memory")),
    }
}

/// The connection limits of the registry's listener and health port (docs/hardening.md).
#[derive(Args)]
struct LimitArgs {
    /// Connections open at once [default: 1024, or half the open-file limit when lower].
    #[arg(long, env = "TOOLMESH_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<String>,
    /// Connections open at once from one IP address [default: 256].
    #[arg(long, env = "TOOLMESH_MAX_CONNECTIONS_PER_PEER", value_name = "N")]
    max_connections_per_peer: Option<String>,
    /// Time allowed for the TLS handshake [default: 10000].
    #[arg(long, env = "TOOLMESH_HANDSHAKE_TIMEOUT_MS", value_name = "MS")]
    handshake_timeout_ms: Option<String>,
    /// Time allowed for an HTTP/1.1 request's headers, from their first byte [default: 10000].
    #[arg(long, env = "TOOLMESH_HEADER_TIMEOUT_MS", value_name = "MS")]
    header_timeout_ms: Option<String>,
    /// Time allowed for a request body (then 408) [default: 30000].
    #[arg(long, env = "TOOLMESH_BODY_TIMEOUT_MS", value_name = "MS")]
    body_timeout_ms: Option<String>,
    /// A connection with no request for this long is closed [default: 60000].
    #[arg(long, env = "TOOLMESH_IDLE_TIMEOUT_MS", value_name = "MS")]
    idle_timeout_ms: Option<String>,
}

impl LimitArgs {
    fn limits(&self) -> Result<ServerLimits, Failure> {
        let mut limits = ServerLimits::default();
        let given = [
            ("max_connections", &self.max_connections),
            ("max_connections_per_peer", &self.max_connections_per_peer),
            ("handshake_timeout_ms", &self.handshake_timeout_ms),
            ("header_timeout_ms", &self.header_timeout_ms),
            ("body_timeout_ms", &self.body_timeout_ms),
            ("idle_timeout_ms", &self.idle_timeout_ms),
        ];
        for (key, value) in given {
            if let Some(value) = value {
                limits.set(key, value).map_err(|e| usage(format!("--{}: {}", key.replace('_', "-"), e.message())))?;
            }
        }
        Ok(limits)
    }
}

/// A certificate lifetime: [`parse_span`], at least 3 s.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let span = parse_span(text)?;
    if span < Duration::from_secs(3) {
        return Err(format!("'{text}' is too short for a certificate lifetime; use at least 3s"));
    }
    Ok(span)
}

/// `24h`, `30m`, `90s`, `2d`; a bare number is hours.
fn parse_span(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("'{text}' is not a duration like 24h, 30m or 90s"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" | "" => number * 3600,
        "d" => number * 86_400,
        _ => return Err(format!("'{text}' has an unknown unit; use s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

pub async fn run(args: RegistryArgs) -> Result<(), Failure> {
    let limits = args.limits.limits()?;
    let health = match args.health_port.as_deref() {
        Some("off") => None,
        Some(port) => Some(port.parse::<u16>().map_err(|_| usage(format!("--health-port '{port}' must be a port number or 'off'")))?),
        None if args.port == 0 => Some(0),
        None => Some(
            args.port
                .checked_add(1000)
                .ok_or_else(|| usage(format!("the health port would be {} + 1000, past 65535; set --health-port", args.port)))?,
        ),
    };
    let no_home = || Failure::usage(Error::new(ErrorKind::InvalidConfig, "no state directory: set --state-dir (HOME is not set)"));
    // With --tls-auto the mesh's CA lives in the state directory, so the directory is the mesh:
    // the default is ~/.toolmesh/registry, where agents on this machine find the join token.
    let auto_state_dir = match (&args.state_dir, args.tls_auto) {
        (Some(dir), _) => Some(dir.clone()),
        (None, true) => Some(default_state_dir().ok_or_else(no_home)?),
        (None, false) => None,
    };
    let issuer = if args.tls_auto {
        let state_dir = auto_state_dir.as_deref().expect("set with --tls-auto");
        let mut hosts = vec![args.host.clone()];
        hosts.extend(args.san.iter().cloned());
        if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            hosts.push(name.trim().to_owned());
        }
        let issuer = match &args.store {
            // The replicas share the CA in PostgreSQL; the state directory gets its copies.
            Some(url) => {
                let (url, dir, trust_domain, ttl) = (url.clone(), state_dir.to_owned(), args.trust_domain.clone(), args.agent_cert_ttl);
                let wait = args.store_wait;
                tokio::task::spawn_blocking(move || {
                    let store = toolmesh_registry::store::Postgres::open(&url, wait)?;
                    AutoIssuer::prepare_in(store.as_ref(), &dir, &trust_domain, ttl, hosts)
                })
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("preparing the CA did not finish: {e}")))?
            }
            None => AutoIssuer::prepare(state_dir, &args.trust_domain, args.agent_cert_ttl, hosts),
        }
        .map_err(Failure::usage)?;
        Some(Arc::new(issuer))
    } else {
        None
    };
    let identity = match &issuer {
        Some(issuer) => issuer.registry_identity()?,
        None => args.tls.load("registry")?,
    };
    // With certificate files, the default state directory is keyed by the mesh CA
    // (~/.toolmesh/meshes/<CA fingerprint>), so registries of two meshes never share entities.
    let state_dir = match auto_state_dir {
        Some(dir) => dir,
        None => {
            let base = default_state_dir().and_then(|d| d.parent().map(std::path::Path::to_path_buf)).ok_or_else(no_home)?;
            let roots = identity.configured_roots();
            let mesh_ca = roots.first().ok_or_else(|| usage("the registry's CA file holds no certificate; set --tls-ca".to_owned()))?;
            let dir = default_state_dir_for(&base, mesh_ca);
            warn_about_the_old_default(&dir, &roots);
            dir
        }
    };
    let mut config = RegistryConfig::new(args.host, args.port, identity);
    config.limits = limits;
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_interval_ms);
    // On PostgreSQL the state is the database's, shared by the replicas: no directory keeps any.
    config.state_dir = args.store.is_none().then(|| state_dir.clone());
    config.postgres = args.store;
    config.postgres_wait = args.store_wait;
    config.issuer = issuer.clone();
    config.admin_ids = args.admin_ids;
    config.quotas =
        Quotas { max_agents: args.max_agents_per_identity, max_tools: args.max_tools_per_identity, max_bytes: args.max_bytes_per_identity };
    config.health = health.map(|port| (args.health_host, port));
    config.trace_limits = toolmesh_registry::TraceLimits { max_spans: args.trace_max_spans, max_bytes: args.trace_max_bytes };
    let mut signals = ShutdownSignals::listen()?;
    let running = toolmesh_registry::start(config).await?;
    // Scripts and tests wait for this line; with --port 0 it carries the real port.
    let mut stdout = std::io::stdout().lock();
    let mut lines = vec![format!("toolmesh registry listening on {}", running.url())];
    if let Some(issuer) = &issuer {
        let dir = state_dir.display();
        lines.push(format!("join token: {}", issuer.token().reveal()));
        lines.push(format!("  (also in {}; agents on this machine read it from there)", issuer.token_file.display()));
        lines.push(format!("run agents with: TOOLMESH_TLS=auto TOOLMESH_REGISTRY_URL={} TOOLMESH_JOIN_TOKEN=<token>", running.url()));
        lines.push(format!("operate with:    toolmesh list --tls-auto --state-dir {dir} --registry {}", running.url()));
    }
    // The plain listener serves the dashboard to this machine only (docs/dashboard.md): a URL
    // is printed when this machine reaches the listener on loopback.
    if let Some(health) = running.health_addr().filter(|a| a.ip().is_loopback() || a.ip().is_unspecified()) {
        let host = if health.is_ipv6() { "[::1]" } else { "127.0.0.1" };
        lines.push(format!("dashboard: http://{host}:{}/dashboard/ (from this machine)", health.port()));
    }
    writeln!(stdout, "{}", lines.join("\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot write to stdout: {e}")))?;
    drop(stdout);
    let stopped_by = signals.recv().await?;
    tracing::info!("{stopped_by}: shutting down");
    running.shutdown().await;
    Ok(())
}

/// Registries with certificate files kept their entities in ~/.toolmesh/registry before the
/// default was keyed by the mesh CA: say where they are when that directory may be this mesh's
/// (it records no mesh CA, or this one), rather than leave them behind silently.
fn warn_about_the_old_default<C: AsRef<[u8]>>(new_default: &std::path::Path, roots: &[C]) {
    let Some(old) = default_state_dir() else { return };
    // `entities.json`: the state of a registry from before the store (which migrates it).
    let holds_state = |dir: &std::path::Path| [STATE_FILE, "entities.json"].iter().any(|f| dir.join(f).exists());
    if holds_state(new_default) || !holds_state(&old) {
        return;
    }
    let prints: Vec<String> = roots.iter().map(|r| toolmesh_ca::fingerprint(r.as_ref())).collect();
    let recorded = std::fs::read_to_string(old.join(MESH_CA_FILE)).unwrap_or_default();
    let ours = recorded.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).all(|l| prints.iter().any(|p| p == l.trim()));
    if ours {
        tracing::warn!(
            old = %old.display(),
            new = %new_default.display(),
            "entities of an earlier registry are in the old default state directory, which registries with certificate files no \
             longer use: if they are this mesh's, run with --state-dir {} (or move the directory to {})",
            old.display(),
            new_default.display()
        );
    }
}

fn usage(message: String) -> Failure {
    Failure::usage(Error::new(ErrorKind::InvalidConfig, message))
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM, listened for from creation on: created before the
/// ready line is printed, so a signal sent right after that line is never missed.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn listen() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignals {
                interrupt: signal(SignalKind::interrupt()).map_err(cannot_listen)?,
                terminate: signal(SignalKind::terminate()).map_err(cannot_listen)?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// Waits for one of the signals; returns which one arrived.
    async fn recv(&mut self) -> Result<&'static str, Error> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Ok("SIGINT"),
                _ = self.terminate.recv() => Ok("SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.map(|()| "interrupt").map_err(cannot_listen)
        }
    }
}

fn cannot_listen(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Internal, format!("cannot listen for shutdown signals: {e}"))
}
