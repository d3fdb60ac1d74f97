//! Staying in the phone book: register, heartbeat, and long-poll for topology changes, keeping
//! the last topology while the registry is away and re-registering when it returns.

use crate::error::ErrorKind;
use crate::registry_api::{Provider, RegisterRequest, Topology};
use crate::registry_client::RegistryClient;
use crate::tls::Identity;
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

/// The providers of each dependency, by [`crate::registry_api::DependencySpec::key`].
#[derive(Debug, Default)]
pub struct TopologyView {
    pub version: u64,
    pub providers: HashMap<String, Vec<Provider>>,
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
    pub fn spawn(client: RegistryClient, registration: RegisterRequest, heartbeat_interval: Duration) -> Discovery {
        Self::start(client, registration, heartbeat_interval, None)
    }

    /// Like [`Discovery::spawn`], and keeps `identity`'s trust bundle in step with the
    /// registry's: when the bundle version announced in a register or heartbeat answer changes
    /// (an entity added or revoked), the new bundle is fetched and trusted.
    pub fn spawn_with_identity(
        client: RegistryClient,
        registration: RegisterRequest,
        heartbeat_interval: Duration,
        identity: Arc<Identity>,
    ) -> Discovery {
        Self::start(client, registration, heartbeat_interval, Some(identity))
    }

    fn start(client: RegistryClient, registration: RegisterRequest, heartbeat_interval: Duration, identity: Option<Arc<Identity>>) -> Discovery {
        let (topology_tx, topology) = watch::channel(Arc::new(TopologyView::default()));
        let (registered_tx, registered) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let session = Session {
            client,
            registration,
            heartbeat_interval,
            topology: topology_tx,
            registered: registered_tx,
            stopped,
            identity,
            trust_bundle_version: Mutex::new(None),
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
    heartbeat_interval: Duration,
    topology: watch::Sender<Arc<TopologyView>>,
    registered: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
    /// Whose trust bundle follows the registry's, and the version it holds.
    identity: Option<Arc<Identity>>,
    trust_bundle_version: Mutex<Option<u64>>,
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
        loop {
            let attempt = tokio::select! {
                r = self.client.register(&self.registration) => r,
                _ = self.stopped.changed() => return,
            };
            match attempt {
                Ok(response) => {
                    tracing::info!(agent = %self.registration.agent_id, registry = %self.client.url(), "registered");
                    self.publish(response.topology);
                    self.follow_trust_bundle(response.trust_bundle_version).await;
                    self.heartbeat_interval = Duration::from_millis(response.heartbeat_interval_ms.max(50));
                    let _ = self.registered.send(true);
                    retry = RETRY_MIN;
                    warned = false;
                }
                Err(e) => {
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
                Ended::Forgotten => tracing::info!(agent = %self.registration.agent_id, "the registry does not know this agent any more; registering again"),
            }
        }
        match tokio::time::timeout(DEREGISTER_TIMEOUT, self.client.deregister(&self.registration.agent_id)).await {
            Ok(Ok(())) => tracing::info!(agent = %self.registration.agent_id, "deregistered"),
            Ok(Err(e)) => tracing::warn!("could not deregister: {e}"),
            Err(_) => tracing::warn!("could not deregister: the registry did not answer in time"),
        }
    }

    fn publish(&self, topology: Topology) {
        if topology.version != self.topology.borrow().version {
            self.topology.send_replace(Arc::new(topology.into()));
        }
    }

    /// Fetches and trusts the registry's trust bundle when its announced version is new. A
    /// failure is retried at the next announcement.
    async fn follow_trust_bundle(&self, announced: Option<u64>) {
        let (Some(identity), Some(version)) = (&self.identity, announced) else { return };
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

    fn version(&self) -> u64 {
        self.topology.borrow().version
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
        loop {
            if self.pause(self.heartbeat_interval).await {
                return Ended::Stopped;
            }
            match self.client.beat(&self.registration.agent_id, self.version()).await {
                Ok(Some(answer)) => {
                    if outage {
                        tracing::info!("the registry is reachable again");
                        outage = false;
                    }
                    if let Some(t) = answer.topology {
                        self.publish(t);
                    }
                    self.follow_trust_bundle(answer.trust_bundle_version).await;
                }
                Ok(None) => return Ended::Forgotten,
                Err(e) => {
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
            let polled = tokio::select! {
                r = self.client.watch(&self.registration.agent_id, self.version(), WATCH_WAIT) => r,
                _ = stopped.changed() => return Ended::Stopped,
            };
            match polled {
                Ok(Some(topology)) => {
                    self.publish(topology);
                    retry = RETRY_MIN;
                }
                Ok(None) => retry = RETRY_MIN,
                Err(e) if e.kind() == ErrorKind::UnknownAgent => return Ended::Forgotten,
                Err(_) => {
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
