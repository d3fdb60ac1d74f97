//! Staying in the phone book: register, heartbeat, and long-poll for topology changes, keeping
//! the last topology while the registry is away and re-registering when it returns.
//!
//! A registry that restarted knows only the agents that have registered again so far. While it
//! says it is warming up, the providers this agent knew and its answers lack are kept (each until
//! the registry lists it again: from then on the registry's word counts), so that whichever
//! agent re-registers first does not lose the others for a heartbeat. The same holds for one
//! eviction window after the agent moved to another registry (one of several it knows, see
//! `registry_endpoints`): the agents it depends on are moving too.
//!
//! The registry operations that tell something are client spans, each a trace of its own:
//! every registration and deregistration, a heartbeat or long poll that brought a new topology,
//! the first failure of an outage and the heartbeat that ends it, and a registry that forgot the
//! agent. A heartbeat that changed nothing (one every interval) records nothing.

use crate::authorize::Gate;
use crate::error::{Error, ErrorKind};
use crate::fx_hash::FxHashMap;
use crate::metrics::ClientMetrics;
use crate::pipeline::UnreachableReports;
use crate::policy::Policy;
use crate::registry_api::{HeartbeatRequest, Provider, RegisterRequest, Topology};
use crate::registry_client::RegistryClient;
use crate::tls::Identity;
use crate::trace::{Span, SpanKind, Tracer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long one topology long-poll waits at the registry.
const WATCH_WAIT: Duration = Duration::from_secs(30);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// Registration and heartbeats may take about one heartbeat interval, and at least this long,
/// before the registry counts as unreachable.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// After moving to another registry, the providers known from before are kept this many
/// heartbeat intervals at most (the registry's default eviction window): those still alive
/// have moved too by then.
const REHOME_INTERVALS: u32 = 3;

/// The providers of each dependency, by [`crate::registry_api::DependencySpec::key`]; `version`
/// is that of the registry's topology it comes from.
#[derive(Debug, Default, PartialEq)]
pub struct TopologyView {
    pub version: u64,
    pub providers: FxHashMap<String, Vec<Provider>>,
}

impl From<Topology> for TopologyView {
    fn from(t: Topology) -> Self {
        TopologyView { version: t.version, providers: t.dependencies.into_iter().map(|d| (d.key, d.providers)).collect() }
    }
}

/// The background registration of one agent.
pub struct Discovery {
    topology: watch::Receiver<Arc<TopologyView>>,
    registered: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Discovery {
    /// Heartbeats every `heartbeat_interval`, or at the registry's interval when that is shorter
    /// (it evicts agents that miss a few of its intervals).
    pub fn spawn(client: RegistryClient, registration: RegisterRequest, heartbeat_interval: Duration) -> Discovery {
        Self::start(client, registration, heartbeat_interval, None, Tracer::default())
    }

    /// Like [`Discovery::spawn`], and keeps the agent in step with the registry: when the trust
    /// bundle version announced in a register or heartbeat answer changes (an entity added or
    /// revoked), the followers' `identity` trusts the new bundle; when the policy version
    /// changes, their `gate` enforces the new policy. Its heartbeats also report the agents in
    /// `unreachable`, and the calls `calls` counted. The registry operations worth a span (see
    /// the module's documentation) are recorded with `tracer`.
    pub fn spawn_following(
        client: RegistryClient,
        registration: RegisterRequest,
        heartbeat_interval: Duration,
        followers: Followers,
        tracer: Tracer,
    ) -> Discovery {
        Self::start(client, registration, heartbeat_interval, Some(followers), tracer)
    }

    fn start(
        client: RegistryClient,
        registration: RegisterRequest,
        heartbeat_interval: Duration,
        followers: Option<Followers>,
        tracer: Tracer,
    ) -> Discovery {
        let (topology_tx, topology) = watch::channel(Arc::new(TopologyView::default()));
        let (registered_tx, registered) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let heartbeat_interval = heartbeat_interval.max(MIN_HEARTBEAT_INTERVAL);
        let mut client = client;
        client.set_timeout(request_timeout(heartbeat_interval));
        client.home(&registration.agent_id);
        let session = Session {
            client,
            registration,
            configured_interval: heartbeat_interval,
            heartbeat_interval,
            topology: topology_tx,
            fresh: Mutex::new(Topology { version: 0, dependencies: Vec::new() }),
            retained: Mutex::new(HashMap::new()),
            rehomed_until: Mutex::new(None),
            registered: registered_tx,
            stopped,
            followers,
            tracer,
            trust_bundle_version: Mutex::new(None),
            policy_version: Mutex::new(None),
        };
        let task = tokio::spawn(session.run());
        Discovery { topology, registered, stop, task }
    }

    pub fn topology(&self) -> watch::Receiver<Arc<TopologyView>> {
        self.topology.clone()
    }

    /// Waits until the agent is registered (or `timeout` passes); true when registered.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let mut registered = self.registered.clone();
        tokio::time::timeout(timeout, registered.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn registered(&self) -> watch::Receiver<bool> {
        self.registered.clone()
    }

    pub fn is_registered(&self) -> bool {
        *self.registered.borrow()
    }

    /// Stops heartbeating and deregisters (bounded in time).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(DEREGISTER_TIMEOUT + Duration::from_millis(500), &mut task).await.is_err() {
            task.abort();
        }
    }

    /// Stops without waiting (used on drop).
    pub fn abort(&self) {
        let _ = self.stop.send(true);
    }
}

struct Session {
    client: RegistryClient,
    registration: RegisterRequest,
    /// The agent's own heartbeat period; the registry's interval caps it.
    configured_interval: Duration,
    heartbeat_interval: Duration,
    /// What the agent calls: `fresh`, and the `retained` providers it lacks.
    topology: watch::Sender<Arc<TopologyView>>,
    /// The registry's latest topology for this agent.
    fresh: Mutex<Topology>,
    /// While the registry warms up after a restart: the providers known from before, by
    /// dependency key, that it has not listed again yet.
    retained: Mutex<HashMap<String, Vec<Provider>>>,
    /// Until when, after a move to another registry, the providers known from before are kept.
    rehomed_until: Mutex<Option<tokio::time::Instant>>,
    registered: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
    /// What follows the registry's trust bundle and policy, and the versions they hold.
    followers: Option<Followers>,
    tracer: Tracer,
    trust_bundle_version: Mutex<Option<u64>>,
    policy_version: Mutex<Option<u64>>,
}

/// The agent's parts that follow what the registry distributes.
pub struct Followers {
    pub identity: Arc<Identity>,
    pub gate: Arc<Gate>,
    /// The providers this agent's calls could not reach, reported with each heartbeat.
    pub unreachable: UnreachableReports,
    /// The agent's calls per provider, reported with each heartbeat for the dashboard.
    pub calls: Arc<ClientMetrics>,
}

/// Why a registered session ended.
enum Ended {
    Stopped,
    /// The registry forgot us (restart or eviction).
    Forgotten,
}

impl Session {
    async fn run(mut self) {
        let mut retry = RETRY_MIN;
        let mut warned = false;
        let mut registered_at: Option<String> = None;
        loop {
            let mut span = self.registry_span("register", "POST", "/v1/agents");
            let attempt = tokio::select! {
                r = self.client.register(&self.registration) => r,
                _ = self.stopped.changed() => return,
            };
            match attempt {
                Ok(response) => {
                    if let Some(span) = span.as_mut() {
                        span.set("toolmesh.topology.version", version_attribute(response.topology.version));
                        span.ok();
                    }
                    drop(span);
                    let registry = self.client.url().to_owned();
                    let moved = registered_at.as_ref().is_some_and(|before| *before != registry);
                    tracing::info!(agent = %self.registration.agent_id, %registry, warming_up = response.warming_up, moved, "registered");
                    *self.rehomed_until.lock().expect("rehome lock") =
                        moved.then(|| tokio::time::Instant::now() + self.heartbeat_interval * REHOME_INTERVALS);
                    self.retain_known(response.warming_up || moved);
                    registered_at = Some(registry);
                    self.publish(response.topology);
                    self.follow_trust_bundle(response.trust_bundle_version).await;
                    self.follow_policy(response.policy_version).await;
                    let asked = Duration::from_millis(response.heartbeat_interval_ms);
                    if asked < self.configured_interval {
                        tracing::debug!(
                            asked_ms = response.heartbeat_interval_ms,
                            "the registry asks for heartbeats more often than configured: following it"
                        );
                    }
                    self.heartbeat_interval = self.configured_interval.min(asked).max(MIN_HEARTBEAT_INTERVAL);
                    self.client.set_timeout(request_timeout(self.heartbeat_interval));
                    let _ = self.registered.send(true);
                    retry = RETRY_MIN;
                    warned = false;
                }
                Err(e) => {
                    // The first failure tells; its retries, until one succeeds, do not.
                    failed(span, &e, !warned);
                    if !warned {
                        tracing::warn!("cannot register with the registry: {e}; retrying in the background");
                        warned = true;
                    }
                    if self.pause(retry).await {
                        return;
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            }
            let ended = tokio::select! {
                e = self.heartbeats() => e,
                e = self.watch() => e,
            };
            let _ = self.registered.send(false);
            match ended {
                Ended::Stopped => break,
                Ended::Forgotten => {
                    tracing::info!(agent = %self.registration.agent_id, "the registry does not know this agent any more; registering again")
                }
            }
        }
        let mut span = self.registry_span("deregister", "DELETE", "/v1/agents/{agent_id}");
        match tokio::time::timeout(DEREGISTER_TIMEOUT, self.client.deregister(&self.registration.agent_id)).await {
            Ok(Ok(())) => {
                if let Some(span) = span.as_mut() {
                    span.ok();
                }
                tracing::info!(agent = %self.registration.agent_id, "deregistered")
            }
            Ok(Err(e)) => {
                tracing::warn!("could not deregister: {e}");
                failed(span, &e, true);
            }
            Err(_) => {
                let e = Error::new(ErrorKind::RegistryUnavailable, "the registry did not answer in time");
                tracing::warn!("could not deregister: {}", e.message());
                failed(span, &e, true);
            }
        }
    }

    /// The span of one request to the registry in use, a trace of its own (background work no
    /// call waits for), named and described as OpenTelemetry's HTTP client conventions have it;
    /// `None` when nothing is recorded.
    fn registry_span(&self, operation: &'static str, method: &'static str, template: &'static str) -> Option<Span> {
        let trace = self.tracer.root();
        let mut span = self.tracer.operation(SpanKind::Client, format!("{method} {template}"), &trace, None)?;
        span.set("toolmesh.registry.operation", operation);
        span.set("http.request.method", method);
        span.set("url.template", template);
        crate::trace::set_server_address(&mut span, self.client.url());
        Some(span)
    }

    /// After a registration: when the registry is warming up, keeps the providers known so far
    /// for as long as it lacks them; otherwise its topology is the whole truth.
    fn retain_known(&self, warming_up: bool) {
        let mut retained = self.retained.lock().expect("retained providers lock");
        retained.clear();
        if warming_up {
            let known = self.topology.borrow();
            retained.extend(known.providers.iter().filter(|(_, p)| !p.is_empty()).map(|(k, p)| (k.clone(), p.clone())));
        }
    }

    /// Whether the agent moved to another registry less than an eviction window ago.
    fn rehoming(&self) -> bool {
        self.rehomed_until.lock().expect("rehome lock").is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// The registry no longer warms up: drops the providers it never listed again.
    fn end_warm_up(&self) {
        let had = std::mem::take(&mut *self.retained.lock().expect("retained providers lock"));
        if !had.is_empty() {
            tracing::info!(agent = %self.registration.agent_id, "the registry has warmed up: its topology is the whole truth again");
            let fresh = self.fresh.lock().expect("fresh topology lock").clone();
            self.publish(fresh);
        }
    }

    /// Takes the registry's topology, adds the retained providers it lacks, and tells the agent
    /// when that changes what it calls.
    fn publish(&self, topology: Topology) {
        let view = {
            let mut retained = self.retained.lock().expect("retained providers lock");
            if retained.is_empty() {
                TopologyView::from(topology.clone())
            } else {
                merge(&topology, &mut retained)
            }
        };
        *self.fresh.lock().expect("fresh topology lock") = topology;
        self.topology.send_if_modified(|current| {
            let changed = **current != view;
            if changed {
                *current = Arc::new(view);
            }
            changed
        });
    }

    /// Fetches and trusts the registry's trust bundle when its announced version is new. A
    /// failure is retried at the next announcement.
    async fn follow_trust_bundle(&self, announced: Option<u64>) {
        let (Some(Followers { identity, .. }), Some(version)) = (&self.followers, announced) else { return };
        if *self.trust_bundle_version.lock().expect("trust bundle version lock") == Some(version) {
            return;
        }
        let fetched = self.client.trust_bundle().await;
        match fetched.and_then(|bundle| identity.replace_trust_bundle(&bundle).map(|()| bundle.version)) {
            Ok(held) => {
                tracing::info!(version = held, "trust bundle updated from the registry");
                *self.trust_bundle_version.lock().expect("trust bundle version lock") = Some(held);
            }
            Err(e) => tracing::warn!("cannot update the trust bundle from the registry: {e}"),
        }
    }

    /// Fetches and enforces the registry's policy when its announced version is new. Until one
    /// arrives (and whenever the registry is away) the agent enforces what it has.
    async fn follow_policy(&self, announced: Option<u64>) {
        let (Some(Followers { gate, .. }), Some(version)) = (&self.followers, announced) else { return };
        if *self.policy_version.lock().expect("policy version lock") == Some(version) {
            return;
        }
        let fetched = self.client.policy().await.and_then(|stored| Policy::compile(stored.policy, stored.version));
        match fetched {
            Ok(policy) => {
                *self.policy_version.lock().expect("policy version lock") = Some(policy.version());
                gate.replace_policy(policy);
            }
            Err(e) => tracing::warn!("cannot take the registry's policy version {version}: {e}; enforcing the one held"),
        }
    }

    /// The version of the registry's topology we hold (what heartbeats and long polls compare).
    fn version(&self) -> u64 {
        self.fresh.lock().expect("fresh topology lock").version
    }

    /// Sleeps, or returns true at once when asked to stop.
    async fn pause(&self, duration: Duration) -> bool {
        let mut stopped = self.stopped.clone();
        tokio::select! {
            _ = tokio::time::sleep(duration) => false,
            _ = stopped.changed() => true,
        }
    }

    async fn heartbeats(&self) -> Ended {
        let mut outage = false;
        // Failed beats since the last that got through.
        let mut missed = 0i64;
        loop {
            // A provider found unreachable is reported at once: the registry probes it, and
            // lists it unreachable (and out of other agents' topologies) within milliseconds.
            let reported = async {
                match &self.followers {
                    Some(f) => f.unreachable.reported().await,
                    None => std::future::pending().await,
                }
            };
            let stopped = tokio::select! {
                stopped = self.pause(self.heartbeat_interval) => stopped,
                () = reported => false,
            };
            if stopped {
                return Ended::Stopped;
            }
            // Refusals ride along; lost with a failed beat, but always in the agent's own log.
            // So do the calls made, counted in the interval (a failed beat loses its share).
            let beat = HeartbeatRequest {
                topology_version: self.version(),
                denials: self.followers.as_ref().map(|f| f.gate.take_denials()).unwrap_or_default(),
                unreachable: self.followers.as_ref().map(|f| f.unreachable.take()).unwrap_or_default(),
                calls: self.followers.as_ref().map(|f| f.calls.take_calls()).unwrap_or_default(),
            };
            let mut span = self.registry_span("heartbeat", "POST", "/v1/agents/{agent_id}/heartbeat");
            match self.client.beat_reporting(&self.registration.agent_id, &beat).await {
                Ok(Some(answer)) => {
                    let ended_outage = std::mem::take(&mut outage);
                    let missed = std::mem::take(&mut missed);
                    if ended_outage {
                        tracing::info!("the registry is reachable again");
                        if let Some(span) = span.as_mut() {
                            span.set("toolmesh.registry.missed_heartbeats", missed);
                        }
                    }
                    // Signal: a new topology, or the end of an outage; else one beat of many.
                    match (&answer.topology, span) {
                        (Some(t), Some(mut span)) => {
                            span.set("toolmesh.topology.version", version_attribute(t.version));
                            span.ok();
                        }
                        (None, Some(mut span)) if ended_outage => span.ok(),
                        (_, span) => discard(span),
                    }
                    if let Some(t) = answer.topology {
                        self.publish(t);
                    }
                    if !answer.warming_up && !self.rehoming() {
                        self.end_warm_up();
                    }
                    self.follow_trust_bundle(answer.trust_bundle_version).await;
                    self.follow_policy(answer.policy_version).await;
                }
                Ok(None) => {
                    failed(span, &Error::new(ErrorKind::UnknownAgent, "the registry does not know this agent: registering again"), true);
                    return Ended::Forgotten;
                }
                // Unreachable, or no answer in time (a half-open connection): calls go on from the
                // cached topology, and the next beat tries again on a new connection.
                Err(e) => {
                    missed += 1;
                    failed(span, &e, !outage);
                    if !outage {
                        tracing::warn!("heartbeat failed: {e}");
                        outage = true;
                    }
                }
            }
        }
    }

    async fn watch(&self) -> Ended {
        let mut retry = RETRY_MIN;
        loop {
            let mut stopped = self.stopped.clone();
            let mut span = self.registry_span("watch_topology", "GET", "/v1/agents/{agent_id}/topology");
            let polled = tokio::select! {
                r = self.client.watch(&self.registration.agent_id, self.version(), WATCH_WAIT) => r,
                _ = stopped.changed() => {
                    discard(span);
                    return Ended::Stopped;
                }
            };
            match polled {
                Ok(Some(topology)) => {
                    if let Some(span) = span.as_mut() {
                        span.set("toolmesh.topology.version", version_attribute(topology.version));
                        span.ok();
                    }
                    self.publish(topology);
                    retry = RETRY_MIN;
                }
                Ok(None) => {
                    discard(span);
                    retry = RETRY_MIN;
                }
                Err(e) if e.kind() == ErrorKind::UnknownAgent => {
                    failed(span, &e, true);
                    return Ended::Forgotten;
                }
                Err(e) => {
                    // The first failure after an answer tells (the heartbeats tell of an outage).
                    failed(span, &e, retry == RETRY_MIN);
                    // The registry is away: keep the cached topology, look again soon.
                    if self.pause(retry).await {
                        return Ended::Stopped;
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

/// A registry operation's span ends as `error` says; `keep` false drops it (a repeat of a
/// failure already recorded).
fn failed(span: Option<Span>, error: &Error, keep: bool) {
    match span {
        Some(mut span) if keep => span.failed(error.kind().name(), error.message()),
        span => discard(span),
    }
}

/// Drops a registry operation's span unrecorded: it told nothing.
fn discard(span: Option<Span>) {
    if let Some(span) = span {
        span.discard();
    }
}

/// A topology version as a span attribute (OTLP integers are signed).
fn version_attribute(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// How long a registration or a heartbeat may take: about one heartbeat interval, at least a
/// second, so that a registry that stopped answering is noticed within about two intervals.
fn request_timeout(heartbeat_interval: Duration) -> Duration {
    heartbeat_interval.max(MIN_REQUEST_TIMEOUT)
}

/// `fresh` plus the `retained` providers it lacks, ranked as before (stable by score, the
/// registry's first). A retained provider that `fresh` lists is forgotten: the registry knows it
/// again, so its later absence means it left.
fn merge(fresh: &Topology, retained: &mut HashMap<String, Vec<Provider>>) -> TopologyView {
    let mut view = TopologyView::from(fresh.clone());
    for (key, kept) in retained.iter_mut() {
        let providers = view.providers.entry(key.clone()).or_default();
        kept.retain(|k| !providers.iter().any(|p| p.agent_id == k.agent_id && p.tool == k.tool));
        if !kept.is_empty() {
            providers.extend(kept.iter().cloned());
            providers.sort_by_key(|p| std::cmp::Reverse(p.score));
        }
    }
    retained.retain(|_, kept| !kept.is_empty());
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry_api::{DependencySpec, ResolvedDependency};

    fn provider(agent_id: &str, score: u32) -> Provider {
        Provider {
            agent_id: agent_id.into(),
            agent_name: agent_id.into(),
            endpoint: format!("https://{agent_id}:1/mcp"),
            tool: "add".into(),
            capability: "add".into(),
            version: "1.0.0".into(),
            tags: vec![],
            score,
            annotations: Default::default(),
            param_headers: vec![],
        }
    }

    fn topology(providers: Vec<Provider>) -> Topology {
        let spec = DependencySpec::capability("add");
        Topology::new(vec![ResolvedDependency { key: spec.key(), spec, providers }])
    }

    fn ids(view: &TopologyView) -> Vec<&str> {
        view.providers[&DependencySpec::capability("add").key()].iter().map(|p| p.agent_id.as_str()).collect()
    }

    #[test]
    fn retained_providers_fill_in_until_the_registry_lists_them_again() {
        let key = DependencySpec::capability("add").key();
        let mut retained = HashMap::from([(key.clone(), vec![provider("b", 0), provider("c", 1)])]);
        // The registry knows only `a` so far: b and c stay, the better-scored c first.
        let view = merge(&topology(vec![provider("a", 0)]), &mut retained);
        assert_eq!(ids(&view), ["c", "a", "b"]);
        assert_eq!(view.version, topology(vec![provider("a", 0)]).version, "heartbeats report the registry's version");
        // b registered again: the registry's word counts for it from now on.
        let view = merge(&topology(vec![provider("a", 0), provider("b", 0)]), &mut retained);
        assert_eq!(ids(&view), ["c", "a", "b"]);
        assert_eq!(retained[&key].len(), 1);
        // b left: gone at once, while c is still kept.
        let view = merge(&topology(vec![provider("a", 0)]), &mut retained);
        assert_eq!(ids(&view), ["c", "a"]);
    }
}
