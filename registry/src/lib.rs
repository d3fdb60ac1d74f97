//! The toolmesh registry: the mesh's phone book. Agents register their tools over mutual TLS,
//! heartbeat, and long-poll for their topology (the live providers of their dependencies);
//! agents that stop heartbeating are evicted. The HTTP API is documented in `openapi.yaml`.

#![forbid(unsafe_code)]

mod access;
mod audit;
mod auto;
mod binding;
mod dashboard;
mod http;
mod mesh_dir;
mod metrics;
mod policy_store;
mod policy_test;
mod probe;
mod standing_cache;
mod state;
pub mod store;
pub mod traces;
mod trust;
mod validate;

pub use audit::{Audit, Denial, Subject};
pub use auto::{AutoIssuer, JoinThrottle, JOIN_COOLDOWN, JOIN_FAILURES_ALLOWED, JOIN_FAILURE_WINDOW, REGISTRY_CERT_LIFETIME};
pub use binding::{Quotas, DEFAULT_MAX_AGENTS, DEFAULT_MAX_BYTES, DEFAULT_MAX_TOOLS};
pub use mesh_dir::{default_state_dir_for, MESH_CA_FILE};
pub use store::{Store, STATE_FILE};
pub use traces::{TraceLimits, TraceStore, DEFAULT_TRACE_MAX_BYTES, DEFAULT_TRACE_MAX_SPANS};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use toolmesh_ca::CertificateSummary;
use toolmesh_core::auto_tls::renew_forever;
use toolmesh_core::health::{HealthServer, Probes};
use toolmesh_core::metrics::TlsMetrics;
use toolmesh_core::server::{bind, bracket_ipv6, HttpsServer, ServerLimits};
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
    /// Where entities, the applied access policy and the `--tls-auto` CA are kept across
    /// restarts (in [`STATE_FILE`], see [`store`]); `None` keeps them in memory.
    /// The directory belongs to one mesh: it is made 0700 and records the mesh CA
    /// ([`MESH_CA_FILE`]), and a registry with another mesh CA refuses to start on it.
    pub state_dir: Option<PathBuf>,
    /// A PostgreSQL database (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...]`)
    /// keeping that state instead, shared by every replica on it (see `store::Postgres`); the
    /// state directory then keeps nothing of it.
    pub postgres: Option<String>,
    /// How long the start waits for that database to answer before it fails.
    pub postgres_wait: Duration,
    /// Issues agent certificates over `POST /v1/bootstrap` (`--tls-auto`).
    pub issuer: Option<Arc<AutoIssuer>>,
    /// Identities allowed to change entities besides mesh certificates whose SPIFFE ID is
    /// `spiffe://DOMAIN/operator/...`.
    pub admin_ids: Vec<String>,
    /// Where `/health`, `/ready`, `/metrics` and the dashboard (to this machine only, see
    /// docs/dashboard.md) are served in plain HTTP: (host, port); `None` for nowhere.
    pub health: Option<(String, u16)>,
    /// How often the certificate files are checked for a rotation.
    pub tls_reload_interval: Duration,
    /// Connection limits and timeouts of the registry's listener and its health port.
    pub limits: ServerLimits,
    /// How much one identity may register (agents, tools, bytes).
    pub quotas: Quotas,
    /// How many recent denials `GET /v1/audit` keeps.
    pub audit_capacity: usize,
    /// How much of the spans agents export to it (`POST /v1/traces`) the registry keeps.
    pub trace_limits: TraceLimits,
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
            state_dir: None,
            postgres: None,
            postgres_wait: store::DEFAULT_START_WAIT,
            issuer: None,
            admin_ids: Vec::new(),
            health: None,
            tls_reload_interval: Duration::from_secs(1),
            limits: ServerLimits::default(),
            quotas: Quotas::default(),
            audit_capacity: audit::DEFAULT_CAPACITY,
            trace_limits: TraceLimits::default(),
        }
    }
}

/// A registry serving on its socket until [`RunningRegistry::shutdown`].
pub struct RunningRegistry {
    server: HttpsServer,
    url: String,
    closing: watch::Sender<bool>,
    /// The evictor, and the task that keeps the registry's certificate current.
    tasks: Vec<JoinHandle<()>>,
    health: Option<HealthServer>,
    traces: Arc<TraceStore>,
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
    let identity = config.identity.clone();
    let store = open_store(&config).await?;
    let durable = blocking(store.clone(), |store| store.load()).await?;
    // The mesh's trust domain is the registry's own: no entity may take it.
    let mesh_trust_domain = toolmesh_core::SpiffeId::parse(identity.name()).ok().map(|id| id.trust_domain().to_owned());
    let trust = Arc::new(trust::Trust::load(identity.configured_roots(), mesh_trust_domain, durable.entities, store.clone())?);
    identity.replace_trust_bundle(&trust.bundle())?;
    let policy = Arc::new(policy_store::PolicyStore::load(durable.policy, store.clone())?);
    // Only a registry that issues certificates lets a client without one through the
    // handshake, and then only to the bootstrap route (see `http::handle`).
    let tls = match &config.issuer {
        Some(_) => identity.server_config_optional_client_auth()?,
        None => identity.server_config()?,
    };
    let listener = bind(&config.host, config.port).await?;
    let port = listener.local_addr().map_err(|e| Error::new(ErrorKind::AddressInUse, e.to_string()))?.port();
    let (closing, closing_receiver) = watch::channel(false);
    let registry = state::Registry::new(config.heartbeat_interval, config.eviction_intervals).with_quotas(config.quotas);
    let max_silence = config.heartbeat_interval * config.eviction_intervals;
    let registry = match store.shared_agents() {
        Some(shared) => share_registrations(shared, registry, config.heartbeat_interval, max_silence).await?,
        None => Arc::new(registry),
    };
    let handshakes = Arc::new(TlsMetrics::default());
    let traces = Arc::new(TraceStore::new(config.trace_limits));
    let dashboard = Arc::new(dashboard::Dashboard::new(registry.clone(), config.heartbeat_interval, traces.clone()));
    let health = match &config.health {
        Some((host, health_port)) => {
            let closing = closing_receiver.clone();
            let (registry, handshakes, dashboard, traces) = (registry.clone(), handshakes.clone(), dashboard.clone(), traces.clone());
            let probes = Probes {
                readiness: Arc::new(move || (*closing.borrow()).then(|| "shutting down".to_owned())),
                metrics: Some(Arc::new(move || metrics::render(&registry, &handshakes, &traces))),
                pages: Some(Arc::new(move |head, remote| dashboard.answer_local(head, remote))),
            };
            Some(
                HealthServer::start_limited(host, *health_port, probes, &config.limits)
                    .await
                    .map_err(|e| e.context(format!("registry on port {port}")))?,
            )
        }
        None => None,
    };
    if let Some(applied) = policy.current() {
        registry.replace_policy(applied);
    }
    let follower = trust.clone();
    let changes = store.changes().map(|changes| {
        let (store, trust, policy, registry, identity) = (store.clone(), trust.clone(), policy.clone(), registry.clone(), identity.clone());
        tokio::spawn(follow_store(changes, store, trust, policy, registry, identity))
    });
    let api = Arc::new(http::Api {
        registry: registry.clone(),
        closing: closing_receiver,
        trust,
        identity: identity.clone(),
        issuer: config.issuer.clone(),
        admin_ids: config.admin_ids.clone(),
        audit: Arc::new(audit::Audit::new(config.audit_capacity)),
        policy,
        traces: traces.clone(),
        dashboard,
    });
    let server = HttpsServer::spawn_limited(listener, tls, None, config.limits.clone(), handshakes, move |request, peer| {
        http::handle(api.clone(), request, peer)
    })?;
    let url = format!("https://{}:{}", bracket_ipv6(&config.host), server.local_addr().port());
    // A quarter interval: a late heartbeat is probed (and an unreachable agent listed as such)
    // soon after it was due.
    let mut tasks = vec![tokio::spawn(evict_forever(registry, config.heartbeat_interval / 4, max_silence))];
    let state_dir = config.state_dir.clone();
    tasks.extend(
        identity.spawn_reloader_then(config.tls_reload_interval, move |identity| follow_mesh_ca(&follower, identity, state_dir.as_deref())),
    );
    tasks.extend(changes);
    if let Some(issuer) = &config.issuer {
        tasks.push(tokio::spawn(renew_own_certificate(issuer.clone(), Arc::downgrade(&identity))));
    }
    tracing::info!(%url, identity = identity.name(), store = %store.describe(), health = ?health.as_ref().map(HealthServer::local_addr), "registry started");
    Ok(RunningRegistry { server, url, closing, tasks, health, traces })
}

/// The store the configuration names: PostgreSQL, else the state directory's, else memory.
async fn open_store(config: &RegistryConfig) -> Result<Arc<dyn Store>> {
    if let Some(url) = &config.postgres {
        let (url, wait) = (url.clone(), config.postgres_wait);
        return blocking(url, move |url| store::Postgres::open(&url, wait).map(|s| s as Arc<dyn Store>)).await;
    }
    Ok(match &config.state_dir {
        Some(dir) => {
            mesh_dir::claim(dir, &config.identity.configured_roots())?;
            store::Embedded::open(dir)?
        }
        None => Arc::new(store::Memory::default()),
    })
}

/// Makes `registry` a replica sharing its registrations through `shared`: it loads the stored
/// ones, then writes its changes and takes the others' from then on. Heartbeats reach the
/// store in one batch per half interval, so another replica learns of one at most an interval
/// late (twice half an interval: the batch, then its own read), which staleness allows for.
async fn share_registrations(
    shared: store::SharedAgents,
    registry: state::Registry,
    heartbeat_interval: Duration,
    max_silence: Duration,
) -> Result<Arc<state::Registry>> {
    let period = heartbeat_interval / 2;
    let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
    let registry = Arc::new(registry.shared(changes, heartbeat_interval));
    let (shared, loaded) = blocking((shared, registry.clone()), |(shared, registry)| {
        let loaded = shared.load(&registry)?;
        Ok((shared, loaded))
    })
    .await?;
    tracing::info!(agents = loaded, "took the registrations the replicas share");
    shared.spawn(registry.clone(), changed, period, max_silence);
    Ok(registry)
}

/// Runs `work` (it blocks: store I/O) on tokio's blocking pool, not on an async worker.
async fn blocking<A: Send + 'static, T: Send + 'static>(input: A, work: impl FnOnce(A) -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(move || work(input))
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("a store operation did not finish: {e}")))?
}

/// Takes what other replicas sharing the store changed: at each announced change, loads the
/// state and puts the entities (and the trust bundle they make) and a newer policy in force;
/// the agents of an entity another replica revoked are evicted here too.
async fn follow_store(
    mut changes: watch::Receiver<u64>,
    store: Arc<dyn Store>,
    trust: Arc<trust::Trust>,
    policy: Arc<policy_store::PolicyStore>,
    registry: Arc<state::Registry>,
    identity: Arc<Identity>,
) {
    while changes.changed().await.is_ok() {
        let (trust, policy, registry, identity) = (trust.clone(), policy.clone(), registry.clone(), identity.clone());
        let followed = blocking(store.clone(), move |store| {
            let stored = store.load()?;
            let before: Vec<String> = trust.list().entities.into_iter().map(|e| e.name).collect();
            if trust.adopt(stored.entities)? {
                identity.replace_trust_bundle(&trust.bundle())?;
                let after = trust.list().entities;
                for gone in before.iter().filter(|name| !after.iter().any(|e| &e.name == *name)) {
                    let evicted = registry.evict_entity(gone);
                    tracing::info!(entity = %gone, evicted = evicted.len(), "entity revoked at another replica: its agents are cut off");
                }
            }
            if policy.adopt(stored.policy, |applied| registry.replace_policy(applied))? {
                tracing::info!(version = ?policy.announced_version(), "access policy applied at another replica: in force here");
            }
            Ok(())
        });
        if let Err(e) = followed.await {
            tracing::warn!("cannot take the changes of another replica yet (taken at the next change or reconnection): {e}");
        }
    }
}

/// After the registry's TLS files were reloaded: when the CA file changed, the mesh's trust takes
/// the new mesh CA, and the bundle the registry trusts and hands out follows; so does the
/// record of the mesh CA in the state directory.
fn follow_mesh_ca(trust: &trust::Trust, identity: &Arc<Identity>, state_dir: Option<&std::path::Path>) {
    let followed = trust.follow_mesh_ca(identity.configured_roots()).and_then(|changed| {
        if changed {
            identity.replace_trust_bundle(&trust.bundle())?;
            if let Some(dir) = state_dir {
                mesh_dir::record_cas(dir, &identity.configured_roots())?;
            }
        }
        Ok(changed)
    });
    match followed {
        Ok(true) => tracing::info!(version = trust.bundle().version, "the mesh CA file changed: the trust bundle follows it"),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot take the changed mesh CA: {e}"),
    }
}

/// Re-issues the registry's own certificate from its CA at two thirds of its life, with the
/// agents' renewal loop: a failed renewal is retried with backoff (1 s doubling to 30 s), not
/// after another two thirds of a lifetime, by when the certificate would have expired.
async fn renew_own_certificate(issuer: Arc<AutoIssuer>, identity: std::sync::Weak<Identity>) {
    // The first certificate was issued before start: renew from what is left of it.
    let first = identity.upgrade().and_then(|identity| {
        let summary = CertificateSummary::parse_der(&identity.certified_key().cert[0], "the registry's certificate").ok()?;
        Duration::try_from(summary.not_after - time::OffsetDateTime::now_utc()).ok()
    });
    renew_forever(first.unwrap_or(issuer.registry_cert_lifetime()), move || {
        let (issuer, identity) = (issuer.clone(), identity.clone());
        async move {
            let Some(identity) = identity.upgrade() else { return Ok(None) };
            let (chain, key, lifetime) = issuer.registry_certificate()?;
            identity.replace_pem(&chain, &key, issuer.ca_pem()).map_err(|e| e.context("cannot renew the registry's certificate"))?;
            tracing::info!(lifetime_s = lifetime.as_secs(), "renewed the registry's certificate: new handshakes use the new one");
            Ok(Some(lifetime))
        }
    })
    .await
}

impl RunningRegistry {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `https://host:port` with the configured host and the bound port.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Where `/health` and `/ready` are served in plain HTTP, if anywhere.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().map(HealthServer::local_addr)
    }

    /// The traces agents exported to this registry (what `GET /v1/traces` answers from).
    pub fn traces(&self) -> Arc<TraceStore> {
        self.traces.clone()
    }

    /// Answers pending long polls, stops accepting, and lets in-flight requests finish.
    pub async fn shutdown(self) {
        let _ = self.closing.send(true);
        for task in &self.tasks {
            task.abort();
        }
        self.server.shutdown(SHUTDOWN_GRACE).await;
        tracing::info!(url = %self.url, "registry stopped");
    }
}

async fn evict_forever(registry: Arc<state::Registry>, period: Duration, max_silence: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        registry.sweep(max_silence);
        probe::spawn(&registry, registry.late());
    }
}
