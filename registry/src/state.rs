//! The registry's in-memory state: who is registered, what each agent provides and depends on,
//! and each agent's current topology.
//!
//! Every operation takes the one lock, does its work without awaiting, and releases it. When an
//! agent arrives, changes or leaves, only the agents that depend on a capability it provides (or
//! provided) get their topology recomputed, through the `dependents` index; watchers are woken
//! through a `watch` channel per agent, and only when the topology's version actually changed.
//!
//! A provider whose heartbeat is overdue (stale, as `list` shows it) is left out of topologies
//! while a healthy provider of the same dependency exists: it is probably gone, and would only
//! cost its callers a failed connection until eviction. With no healthy provider it stays, as a
//! last resort.
//!
//! An agent is *unreachable* when the registry itself could not connect to its endpoint: it
//! probes an agent whose heartbeat is late (more than an interval since the last, a tenth of an
//! interval before it counts as stale), and an agent a caller reported it could not reach. An
//! unreachable agent is routed to like a stale one (only as the last resort), and is healthy
//! again with its next heartbeat. The probe is a bare TCP connection, closed at once: it costs
//! the agent nothing, and a refused connection is proof the process is gone.
//!
//! Registrations are bound to identity (see `binding`): an agent registers under the name its
//! certificate carries, a name held by one identity's live registrations is refused to every
//! other, and one identity holds at most its quotas of agents, tools and bytes.

use crate::access;
use crate::binding::{self, NameRefusal, QuotaExceeded, Quotas, Usage};
use crate::validate::{self, Dependency};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use toolmesh_core::text::Escaped;
use toolmesh_core::registry_api::{
    AgentInfo, AgentList, DependencySpec, HeartbeatResponse, Provider, RegisterRequest, RegisterResponse,
    ResolveResponse, ResolvedDependency, ToolInfo, Topology,
};
use toolmesh_core::policy::Policy;
use toolmesh_core::resolve::Selector;

/// Who makes a request: the identity of its verified certificate, and the entity whose CA that
/// certificate chains to (`None` for the mesh's own CA). Both decide ownership, so an entity's
/// CA cannot mint a certificate that acts on the mesh's agents by naming the same identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    pub identity: String,
    pub entity: Option<String>,
}

impl Caller {
    pub fn mesh(identity: &str) -> Caller {
        Caller { identity: identity.to_owned(), entity: None }
    }

    fn describe(&self) -> String {
        match &self.entity {
            Some(entity) => format!("{} (entity {entity})", self.identity),
            None => self.identity.clone(),
        }
    }
}

/// Why an operation on the state was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The request is malformed; the text names the problem.
    Invalid(String),
    /// No agent with this id is registered.
    UnknownAgent(String),
    /// A registration for an id that another certificate identity holds.
    IdentityConflict { agent_id: String, registered: String, caller: String },
    /// A heartbeat or deregistration for an agent that another certificate identity registered.
    NotOwner { agent_id: String, registered: String, caller: String },
    /// A registration under a name the caller's certificate does not carry.
    NameNotInCertificate(NameRefusal),
    /// A registration under a name that another identity's live registrations hold.
    NameHeld { name: String, holder: String, caller: String },
    /// A registration that would take the caller past one of its quotas.
    QuotaExceeded { exceeded: QuotaExceeded, caller: String },
    /// A registration with a tool the applied policy does not let the caller provide.
    ProvideDenied { message: String, rule: String, tool: String },
}

/// The current topology of one agent, as watchers see it.
pub type TopologyWatch = watch::Receiver<Arc<Topology>>;

pub struct Registry {
    state: Mutex<State>,
    quotas: Quotas,
    heartbeat_interval: Duration,
    /// Until when, after a start, agents of the registry's previous life may still be coming
    /// back (one eviction window): answers say `warming_up`.
    warm_until: Instant,
}

#[derive(Default)]
struct State {
    agents: HashMap<String, Agent>,
    /// capability → ids of the agents with a tool of that capability.
    providers: HashMap<String, HashSet<String>>,
    /// capability → ids of the agents with a dependency on that capability.
    dependents: HashMap<String, HashSet<String>>,
    /// name → the identity whose live registrations hold it, and how many they are.
    names: HashMap<String, (Caller, usize)>,
    /// What each identity holds, against its quotas.
    usage: HashMap<Caller, Usage>,
    /// The access policy applied at the registry: `provide` is decided at registration and
    /// again whenever a topology is computed, `discover` per viewer. `None` while none was
    /// applied: the built-in allow-mesh default decides.
    policy: Option<Arc<Policy>>,
}

struct Agent {
    registration: RegisterRequest,
    caller: Caller,
    /// The size of the registration's JSON, counted against the caller's byte quota.
    bytes: usize,
    last_heartbeat: Instant,
    /// The heartbeat is overdue (see [`Registry::sweep`]); routed to only when nothing else is.
    stale: bool,
    /// The registry could not connect to the agent's endpoint since its last heartbeat (see
    /// [`Registry::mark_unreachable`]); routed to only when nothing else is.
    unreachable: bool,
    dependencies: Vec<Dependency>,
    topology: watch::Sender<Arc<Topology>>,
}

impl Agent {
    fn provided_capabilities(&self) -> impl Iterator<Item = &str> {
        self.registration.tools.iter().map(|t| t.capability.as_str())
    }

    /// Routed to only when no healthy provider remains.
    fn out_of_rotation(&self) -> bool {
        self.stale || self.unreachable
    }

    fn depended_capabilities(&self) -> impl Iterator<Item = &str> {
        self.dependencies.iter().map(|d| d.spec.capability.as_str())
    }

    /// What this registration counts against its identity's quotas.
    fn usage(&self) -> Usage {
        Usage { agents: 1, tools: self.registration.tools.len(), bytes: self.bytes }
    }
}

impl Registry {
    /// Agents silent for `eviction_intervals` heartbeat intervals are evicted (by [`Registry::sweep`]).
    pub fn new(heartbeat_interval: Duration, eviction_intervals: u32) -> Self {
        let warm_until = Instant::now() + heartbeat_interval * eviction_intervals;
        Registry { state: Mutex::new(State::default()), quotas: Quotas::default(), heartbeat_interval, warm_until }
    }

    /// The same registry with other per-identity quotas.
    pub fn with_quotas(self, quotas: Quotas) -> Self {
        Registry { quotas, ..self }
    }

    /// Every agent that was alive before this registry started has had time to register again.
    fn warming_up(&self) -> bool {
        Instant::now() < self.warm_until
    }

    /// A heartbeat more than half an interval overdue.
    fn stale_after(&self) -> Duration {
        self.heartbeat_interval.mul_f64(1.5)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("registry state lock poisoned")
    }

    /// Registers an agent, or updates it when the same identity registers the same id again
    /// (an agent re-registers after a registry restart or an eviction). The name recorded is
    /// the one the caller's certificate carries (an entity's in its namespace); a refused
    /// registration changes nothing.
    pub fn register(&self, mut registration: RegisterRequest, caller: &Caller) -> Result<RegisterResponse, StateError> {
        let dependencies = validate::registration(&registration).map_err(StateError::Invalid)?;
        registration.name = binding::bound_name(&caller.identity, caller.entity.as_deref(), &registration.name)
            .map_err(StateError::NameNotInCertificate)?;
        let bytes = serde_json::to_vec(&registration).map_or(0, |json| json.len());
        let agent_id = registration.agent_id.clone();
        let mut state = self.lock();
        if let Some(existing) = state.agents.get(&agent_id).filter(|existing| existing.caller != *caller) {
            return Err(StateError::IdentityConflict { agent_id, registered: existing.caller.describe(), caller: caller.describe() });
        }
        if let Some((holder, _)) = state.names.get(&registration.name).filter(|(holder, _)| holder != caller) {
            return Err(StateError::NameHeld { name: registration.name, holder: holder.describe(), caller: caller.describe() });
        }
        let policy = state.policy();
        for tool in &registration.tools {
            let decision = access::provide(policy, caller, &registration.name, tool);
            if !decision.allowed {
                let message = access::provide_denied_message(&caller.describe(), &registration.name, tool, &decision.rule);
                return Err(StateError::ProvideDenied { message, rule: decision.rule.to_string(), tool: tool.name.clone() });
            }
        }
        let this = Usage { agents: 1, tools: registration.tools.len(), bytes };
        self.quotas
            .check(state.usage_of(caller, &agent_id).add(this))
            .map_err(|exceeded| StateError::QuotaExceeded { exceeded, caller: caller.describe() })?;
        let previous = state.remove(&agent_id);
        let re_registration = previous.is_some();
        let mut affected: BTreeSet<String> = BTreeSet::new();
        // Keeping the channel of a re-registered agent keeps its watchers attached.
        let topology = match previous {
            Some(old) => {
                affected.extend(old.provided_capabilities().map(str::to_owned));
                old.topology
            }
            None => watch::Sender::new(Arc::new(Topology::new(Vec::new()))),
        };
        affected.extend(registration.tools.iter().map(|t| t.capability.clone()));
        tracing::info!(
            agent_id = %Escaped(&agent_id),
            name = %Escaped(&registration.name),
            endpoint = %Escaped(&registration.endpoint),
            identity = %Escaped(&caller.identity),
            entity = caller.entity.as_deref().unwrap_or("-"),
            tools = registration.tools.len(),
            dependencies = dependencies.len(),
            re_registration,
            "agent registered"
        );
        state.insert(Agent {
            registration,
            caller: caller.clone(),
            bytes,
            last_heartbeat: Instant::now(),
            stale: false,
            unreachable: false,
            dependencies,
            topology,
        });
        let mut refresh = state.dependents_of(affected.iter().map(String::as_str));
        refresh.insert(agent_id.clone());
        state.refresh(&refresh);
        let topology = state.agents[&agent_id].topology.borrow().as_ref().clone();
        Ok(RegisterResponse {
            agent_id,
            heartbeat_interval_ms: self.interval_ms(),
            topology,
            trust_bundle_version: None,
            policy_version: None,
            warming_up: self.warming_up(),
        })
    }

    /// Records a heartbeat; answers with the topology only when `held_version` is outdated.
    pub fn heartbeat(&self, agent_id: &str, caller: &Caller, held_version: u64) -> Result<HeartbeatResponse, StateError> {
        let mut state = self.lock();
        let agent = state.owned_mut(agent_id, caller)?;
        agent.last_heartbeat = Instant::now();
        let was_unreachable = std::mem::take(&mut agent.unreachable);
        if std::mem::take(&mut agent.stale) | was_unreachable {
            tracing::info!(agent_id, name = %Escaped(&agent.registration.name), "agent healthy again: heartbeats resumed");
            let dependents = state.dependents_of(state.agents[agent_id].provided_capabilities());
            state.refresh(&dependents);
        }
        let current = state.agents[agent_id].topology.borrow();
        let topology = (current.version != held_version).then(|| current.as_ref().clone());
        Ok(HeartbeatResponse { topology, trust_bundle_version: None, policy_version: None, warming_up: self.warming_up() })
    }

    /// A receiver of the agent's topology, for long polls. Its sender is dropped (and the
    /// receiver sees the channel closed) when the agent is deregistered or evicted.
    pub fn watch(&self, agent_id: &str) -> Result<TopologyWatch, StateError> {
        let state = self.lock();
        let agent = state.agents.get(agent_id).ok_or_else(|| StateError::UnknownAgent(agent_id.to_owned()))?;
        Ok(agent.topology.subscribe())
    }

    /// Removes an agent; only the identity that registered it may, or an admin (`as_admin`).
    pub fn deregister(&self, agent_id: &str, caller: &Caller, as_admin: bool) -> Result<(), StateError> {
        let mut state = self.lock();
        let owner = match state.owned_mut(agent_id, caller) {
            Ok(_) => None,
            Err(StateError::NotOwner { registered, .. }) if as_admin => Some(registered),
            Err(e) => return Err(e),
        };
        let Some(agent) = state.remove(agent_id) else { return Err(StateError::UnknownAgent(agent_id.to_owned())) };
        let name = Escaped(&agent.registration.name);
        match owner {
            None => tracing::info!(agent_id, %name, "agent deregistered"),
            Some(owner) => tracing::info!(agent_id, %name, owner = %Escaped(&owner), by = %Escaped(&caller.describe()), "agent deregistered by an admin"),
        }
        state.refresh_dependents_of(&agent);
        Ok(())
    }

    /// Removes every agent of a revoked entity at once, so nobody is routed to them; answers
    /// their ids.
    pub fn evict_entity(&self, entity: &str) -> Vec<String> {
        let mut state = self.lock();
        let members: Vec<String> = state
            .agents
            .values()
            .filter(|a| a.caller.entity.as_deref() == Some(entity))
            .map(|a| a.registration.agent_id.clone())
            .collect();
        for agent_id in &members {
            if let Some(agent) = state.remove(agent_id) {
                tracing::info!(agent_id = %Escaped(agent_id), name = %Escaped(&agent.registration.name), entity, "agent evicted: its entity was revoked");
                state.refresh_dependents_of(&agent);
            }
        }
        members
    }

    /// Removes the agents whose last heartbeat is older than `max_silence`, and takes those
    /// whose heartbeat is overdue out of their dependents' topologies while healthy providers
    /// remain.
    pub fn sweep(&self, max_silence: Duration) {
        let mut state = self.lock();
        let now = Instant::now();
        let stale_after = self.stale_after();
        let mut turned_stale = BTreeSet::new();
        for agent in state.agents.values_mut() {
            if !agent.stale && now.duration_since(agent.last_heartbeat) > stale_after {
                agent.stale = true;
                tracing::info!(
                    agent_id = %Escaped(&agent.registration.agent_id),
                    name = %Escaped(&agent.registration.name),
                    silent_ms = now.duration_since(agent.last_heartbeat).as_millis() as u64,
                    "agent stale: heartbeats overdue; routed to only when no healthy provider remains"
                );
                turned_stale.extend(agent.provided_capabilities().map(str::to_owned));
            }
        }
        if !turned_stale.is_empty() {
            let dependents = state.dependents_of(turned_stale.iter().map(String::as_str));
            state.refresh(&dependents);
        }
        let silent: Vec<String> = state
            .agents
            .values()
            .filter(|a| now.duration_since(a.last_heartbeat) > max_silence)
            .map(|a| a.registration.agent_id.clone())
            .collect();
        for agent_id in &silent {
            if let Some(agent) = state.remove(agent_id) {
                tracing::info!(
                    agent_id = %Escaped(agent_id),
                    name = %Escaped(&agent.registration.name),
                    silent_ms = now.duration_since(agent.last_heartbeat).as_millis() as u64,
                    "agent evicted: heartbeats stopped"
                );
                state.refresh_dependents_of(&agent);
            }
        }
    }

    /// The agents to probe: those whose heartbeat is late (more than [`Registry::probe_after`]
    /// since the last) and that are not known unreachable yet. Each comes with its last
    /// heartbeat, which [`Registry::mark_unreachable`] compares.
    pub fn late(&self) -> Vec<Probe> {
        let state = self.lock();
        let now = Instant::now();
        let probe_after = self.probe_after();
        state
            .agents
            .values()
            .filter(|a| !a.unreachable && now.duration_since(a.last_heartbeat) > probe_after)
            .map(Probe::of)
            .collect()
    }

    /// The agents among `agent_ids` (reported unreachable by a caller) to probe: at most
    /// [`MAX_REPORTED_UNREACHABLE`], those registered and not known unreachable yet.
    pub fn reported(&self, agent_ids: &[String]) -> Vec<Probe> {
        let state = self.lock();
        agent_ids
            .iter()
            .take(MAX_REPORTED_UNREACHABLE)
            .filter_map(|id| state.agents.get(id))
            .filter(|a| !a.unreachable)
            .map(Probe::of)
            .collect()
    }

    /// The registry could not connect to a probed agent: unless it sent a heartbeat meanwhile,
    /// `list` shows it `unreachable` and its dependents' topologies leave it out while healthy
    /// providers remain, until its next heartbeat.
    pub fn mark_unreachable(&self, probe: &Probe, why: &str) {
        let mut state = self.lock();
        let Some(agent) = state.agents.get_mut(&probe.agent_id) else { return };
        if agent.unreachable || agent.last_heartbeat != probe.last_heartbeat {
            return;
        }
        agent.unreachable = true;
        tracing::info!(
            agent_id = %Escaped(&probe.agent_id),
            name = %Escaped(&agent.registration.name),
            endpoint = %Escaped(&probe.endpoint),
            silent_ms = agent.last_heartbeat.elapsed().as_millis() as u64,
            "agent unreachable: {why}; routed to only when no healthy provider remains"
        );
        let capabilities: Vec<String> = agent.provided_capabilities().map(str::to_owned).collect();
        let dependents = state.dependents_of(capabilities.iter().map(String::as_str));
        state.refresh(&dependents);
    }

    /// How long a probe waits for a connection: half an interval, within 100 ms to 1 s.
    pub fn probe_timeout(&self) -> Duration {
        (self.heartbeat_interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// A heartbeat is late, and the agent worth a probe, a tenth of an interval after it was
    /// due (well before it counts as stale).
    fn probe_after(&self) -> Duration {
        self.heartbeat_interval.mul_f64(1.1)
    }

    /// Every agent, ordered by name then id; `unreachable` when the registry could not connect
    /// to it since its last heartbeat, else `stale` when a heartbeat is more than half an
    /// interval overdue. A `viewer` (not an admin) sees its own agents, and the others with the
    /// tools it may discover, if any.
    pub fn list(&self, viewer: Option<&Caller>) -> AgentList {
        let state = self.lock();
        let now = Instant::now();
        let stale_after = self.stale_after();
        let mut agents: Vec<AgentInfo> = state
            .agents
            .values()
            .filter_map(|a| {
                let tools: Vec<ToolInfo> = match viewer {
                    Some(viewer) if a.caller != *viewer => {
                        let visible: Vec<ToolInfo> = a.registration.tools.iter().filter(|t| state.visible(a, t, Some(viewer))).cloned().collect();
                        if visible.is_empty() {
                            return None;
                        }
                        visible
                    }
                    _ => a.registration.tools.clone(),
                };
                let silence = now.duration_since(a.last_heartbeat);
                Some(AgentInfo {
                    agent_id: a.registration.agent_id.clone(),
                    name: a.registration.name.clone(),
                    endpoint: a.registration.endpoint.clone(),
                    tools,
                    status: if a.unreachable {
                        "unreachable"
                    } else if silence > stale_after {
                        "stale"
                    } else {
                        "healthy"
                    }
                    .to_owned(),
                    last_seen_ms: silence.as_millis() as u64,
                    identity: a.caller.identity.clone(),
                    entity: a.caller.entity.clone(),
                })
            })
            .collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.agent_id.cmp(&b.agent_id)));
        AgentList { agents }
    }

    /// The providers of `spec` that `viewer` may discover (every one for an admin: `None`).
    pub fn resolve(&self, spec: &DependencySpec, viewer: Option<&Caller>) -> Result<ResolveResponse, StateError> {
        let selector = Selector::new(spec).map_err(|e| StateError::Invalid(e.message().to_owned()))?;
        let state = self.lock();
        Ok(ResolveResponse { providers: state.routable(&selector, &spec.capability, viewer) })
    }

    /// Takes a newly applied policy: every topology is computed again under it, and the agents
    /// whose topology changed learn it at their next heartbeat or long poll.
    pub fn replace_policy(&self, policy: Arc<Policy>) {
        let mut state = self.lock();
        state.policy = Some(policy);
        let everyone: BTreeSet<String> = state.agents.keys().cloned().collect();
        state.refresh(&everyone);
    }

    /// The registered tools named `tool` (of agent `agent` only, if given) as (agent name, tool),
    /// ordered by agent name; each agent name once.
    pub fn tools_named(&self, tool: &str, agent: Option<&str>) -> Vec<(String, ToolInfo)> {
        let state = self.lock();
        let mut found: Vec<(String, ToolInfo)> = state
            .agents
            .values()
            .filter(|a| agent.is_none_or(|name| a.registration.name == name))
            .flat_map(|a| a.registration.tools.iter().filter(|t| t.name == tool).map(|t| (a.registration.name.clone(), t.clone())))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        found
    }

    fn interval_ms(&self) -> u64 {
        self.heartbeat_interval.as_millis() as u64
    }
}

impl State {
    /// What `caller` holds, leaving out the agent `except` (which a registration replaces).
    fn usage_of(&self, caller: &Caller, except: &str) -> Usage {
        let held = self.usage.get(caller).copied().unwrap_or_default();
        match self.agents.get(except).filter(|a| a.caller == *caller) {
            Some(replaced) => held.sub(replaced.usage()),
            None => held,
        }
    }

    /// The agent, if `caller` is the identity that registered it.
    fn owned_mut(&mut self, agent_id: &str, caller: &Caller) -> Result<&mut Agent, StateError> {
        let agent = self.agents.get_mut(agent_id).ok_or_else(|| StateError::UnknownAgent(agent_id.to_owned()))?;
        if agent.caller != *caller {
            return Err(StateError::NotOwner {
                agent_id: agent_id.to_owned(),
                registered: agent.caller.describe(),
                caller: caller.describe(),
            });
        }
        Ok(agent)
    }

    fn insert(&mut self, agent: Agent) {
        let id = &agent.registration.agent_id;
        for capability in agent.provided_capabilities() {
            self.providers.entry(capability.to_owned()).or_default().insert(id.clone());
        }
        for capability in agent.depended_capabilities() {
            self.dependents.entry(capability.to_owned()).or_default().insert(id.clone());
        }
        let held = self.names.entry(agent.registration.name.clone()).or_insert_with(|| (agent.caller.clone(), 0));
        held.1 += 1;
        let usage = self.usage.entry(agent.caller.clone()).or_default();
        *usage = usage.add(agent.usage());
        self.agents.insert(id.clone(), agent);
    }

    /// Removes an agent and its index entries; dependents are not refreshed here.
    fn remove(&mut self, agent_id: &str) -> Option<Agent> {
        let agent = self.agents.remove(agent_id)?;
        unindex(&mut self.providers, agent.provided_capabilities(), agent_id);
        unindex(&mut self.dependents, agent.depended_capabilities(), agent_id);
        if let Some(held) = self.names.get_mut(&agent.registration.name) {
            held.1 -= 1;
            if held.1 == 0 {
                self.names.remove(&agent.registration.name);
            }
        }
        if let Some(usage) = self.usage.get_mut(&agent.caller) {
            *usage = usage.sub(agent.usage());
            if usage.agents == 0 {
                self.usage.remove(&agent.caller);
            }
        }
        Some(agent)
    }

    fn dependents_of<'a>(&self, capabilities: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        capabilities.filter_map(|c| self.dependents.get(c)).flatten().cloned().collect()
    }

    fn refresh_dependents_of(&self, gone: &Agent) {
        let dependents = self.dependents_of(gone.provided_capabilities());
        self.refresh(&dependents);
    }

    /// Recomputes the topologies of `agent_ids` and wakes the watchers of those that changed.
    fn refresh(&self, agent_ids: &BTreeSet<String>) {
        for agent in agent_ids.iter().filter_map(|id| self.agents.get(id)) {
            let topology = self.topology_of(agent);
            agent.topology.send_if_modified(|current| {
                let changed = current.version != topology.version;
                if changed {
                    *current = Arc::new(topology);
                }
                changed
            });
        }
    }

    fn topology_of(&self, agent: &Agent) -> Topology {
        Topology::new(
            agent
                .dependencies
                .iter()
                .map(|d| ResolvedDependency {
                    key: d.spec.key(),
                    spec: d.spec.clone(),
                    providers: self.routable(&d.selector, &d.spec.capability, Some(&agent.caller)),
                })
                .collect(),
        )
    }

    /// The providers `selector` matches that `viewer` may discover (all for `None`), ranked:
    /// the healthy ones, or the stale ones when no healthy one matches.
    fn routable(&self, selector: &Selector, capability: &str, viewer: Option<&Caller>) -> Vec<Provider> {
        let healthy = selector.rank(self.providers_of(capability, false, viewer));
        if healthy.is_empty() {
            selector.rank(self.providers_of(capability, true, viewer))
        } else {
            healthy
        }
    }

    /// Every registered tool of `capability` whose agent is (or is not) stale or unreachable and that is
    /// visible to `viewer`, as an (unscored) provider.
    fn providers_of<'a>(&'a self, capability: &'a str, stale: bool, viewer: Option<&'a Caller>) -> impl Iterator<Item = Provider> + 'a {
        self.providers
            .get(capability)
            .into_iter()
            .flatten()
            .filter_map(|id| self.agents.get(id))
            .filter(move |agent| agent.out_of_rotation() == stale)
            .flat_map(move |agent| {
                agent
                    .registration
                    .tools
                    .iter()
                    .filter(move |t| t.capability == capability && self.visible(agent, t, viewer))
                    .map(|t| provider(agent, t))
            })
    }

    /// Whether `tool` of `agent` is offered at all (its identity may still provide it under the
    /// applied policy: revoking a provide rule drops providers registered before) and `viewer`
    /// may discover it (`None`: an admin, who sees every provided tool).
    /// The applied policy, else the built-in default: allow within the mesh, deny partner
    /// entities until a rule names them.
    fn policy(&self) -> &Policy {
        static DEFAULT: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
        self.policy.as_deref().unwrap_or_else(|| DEFAULT.get_or_init(Policy::allow_mesh))
    }

    fn visible(&self, agent: &Agent, tool: &ToolInfo, viewer: Option<&Caller>) -> bool {
        let policy = self.policy();
        let name = &agent.registration.name;
        access::provide(policy, &agent.caller, name, tool).allowed && viewer.is_none_or(|viewer| access::discover(policy, viewer, name, tool))
    }
}

/// Most agents one heartbeat may report unreachable (the registry probes each).
pub const MAX_REPORTED_UNREACHABLE: usize = 16;

/// An agent to probe: where it listens, and its heartbeat when the probe was decided.
#[derive(Debug, Clone)]
pub struct Probe {
    pub agent_id: String,
    pub endpoint: String,
    last_heartbeat: Instant,
}

impl Probe {
    fn of(agent: &Agent) -> Probe {
        Probe {
            agent_id: agent.registration.agent_id.clone(),
            endpoint: agent.registration.endpoint.clone(),
            last_heartbeat: agent.last_heartbeat,
        }
    }
}

fn provider(agent: &Agent, tool: &ToolInfo) -> Provider {
    Provider {
        agent_id: agent.registration.agent_id.clone(),
        agent_name: agent.registration.name.clone(),
        endpoint: agent.registration.endpoint.clone(),
        tool: tool.name.clone(),
        capability: tool.capability.clone(),
        version: tool.version.clone(),
        tags: tool.tags.clone(),
        score: 0,
        annotations: tool.annotations.clone(),
    }
}

fn unindex<'a>(index: &mut HashMap<String, HashSet<String>>, capabilities: impl Iterator<Item = &'a str>, agent_id: &str) {
    for capability in capabilities {
        if let Some(ids) = index.get_mut(capability) {
            ids.remove(agent_id);
            if ids.is_empty() {
                index.remove(capability);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE_ID: &str = "spiffe://toolmesh.local/agent/alice";

    fn alice() -> Caller {
        Caller::mesh(ALICE_ID)
    }

    fn registration(agent_id: &str, provides: &[&str], depends_on: &[&str]) -> RegisterRequest {
        let tools = provides
            .iter()
            .map(|capability| {
                serde_json::from_value(serde_json::json!({
                    "name": format!("{capability}-tool"),
                    "capability": capability,
                    "dependencies": depends_on,
                }))
                .expect("test tool")
            })
            .collect();
        RegisterRequest { agent_id: agent_id.into(), name: "alice".into(), endpoint: format!("https://{agent_id}:1/mcp"), tools }
    }

    fn named(mut registration: RegisterRequest, name: &str) -> RegisterRequest {
        registration.name = name.to_owned();
        registration
    }

    fn provider_ids(watch: &TopologyWatch) -> Vec<String> {
        watch.borrow().dependencies.iter().flat_map(|d| d.providers.iter().map(|p| p.agent_id.clone())).collect()
    }

    #[test]
    fn dependents_follow_providers_and_others_are_not_woken() {
        let registry = Registry::new(Duration::from_secs(5), 3);
        registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register consumer");
        registry.register(registration("bystander", &["log"], &["sub"]), &alice()).expect("register bystander");
        let mut consumer = registry.watch("consumer").expect("watch consumer");
        let mut bystander = registry.watch("bystander").expect("watch bystander");
        consumer.mark_unchanged();
        bystander.mark_unchanged();

        registry.register(registration("adder", &["add"], &[]), &alice()).expect("register adder");
        assert!(consumer.has_changed().expect("open"));
        assert_eq!(provider_ids(&consumer), ["adder"]);
        assert!(!bystander.has_changed().expect("open"), "an unrelated agent must not be woken");

        consumer.mark_unchanged();
        registry.register(registration("adder", &["add"], &[]), &alice()).expect("idempotent re-registration");
        assert!(!consumer.has_changed().expect("open"), "an identical re-registration changes no topology");

        registry.deregister("adder", &alice(), false).expect("deregister");
        assert!(consumer.has_changed().expect("open"));
        assert!(provider_ids(&consumer).is_empty());
    }

    #[test]
    fn only_the_registering_identity_may_act_on_an_agent() {
        let registry = Registry::new(Duration::from_secs(5), 3);
        let first = registry.register(registration("a", &["add"], &[]), &alice()).expect("register");
        let mallory = &Caller::mesh("spiffe://toolmesh.local/agent/mallory");
        assert!(matches!(
            registry.register(named(registration("a", &["add"], &[]), "mallory"), mallory),
            Err(StateError::IdentityConflict { .. })
        ));
        assert!(matches!(registry.heartbeat("a", mallory, first.topology.version), Err(StateError::NotOwner { .. })));
        assert!(matches!(registry.deregister("a", mallory, false), Err(StateError::NotOwner { .. })));
        assert_eq!(registry.heartbeat("a", &alice(), first.topology.version), Ok(HeartbeatResponse { topology: None, trust_bundle_version: None, policy_version: None, warming_up: true }));
        // The same identity from a partner's CA is another caller.
        let impostor = Caller { identity: ALICE_ID.to_owned(), entity: Some("partner".to_owned()) };
        assert!(matches!(registry.deregister("a", &impostor, false), Err(StateError::NotOwner { .. })));
    }

    #[test]
    fn names_are_bound_to_certificates_and_held_by_one_identity() {
        let registry = Registry::new(Duration::from_secs(5), 3);
        // Replicas: one certificate, several agent ids.
        registry.register(registration("alice-1", &["add"], &[]), &alice()).expect("first replica");
        registry.register(registration("alice-2", &["add"], &[]), &alice()).expect("second replica");
        let evil = &Caller::mesh("spiffe://toolmesh.local/agent/evil");
        let refused = registry.register(registration("alice-3", &["add"], &[]), evil).unwrap_err();
        assert!(matches!(&refused, StateError::NameNotInCertificate(r) if r.carried.as_deref() == Some("evil")), "{refused:?}");
        registry.register(named(registration("evil-1", &["add"], &[]), "evil"), evil).expect("its own name");
        // Another identity carrying the same name (a legacy CN certificate) cannot take it either.
        let cn_alice = &Caller::mesh("alice");
        assert!(matches!(registry.register(registration("alice-4", &["add"], &[]), cn_alice), Err(StateError::NameHeld { .. })));
        // A partner registering `alice` (which a rule lets it provide) is recorded in its own namespace.
        registry.replace_policy(partner_may_provide());
        let partner = &Caller { identity: "spiffe://partner.example/agent/alice".to_owned(), entity: Some("partner".to_owned()) };
        registry.register(registration("p-1", &["add"], &[]), partner).expect("partner's alice");
        let names: Vec<String> = registry.list(None).agents.into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["alice", "alice", "evil", "partner/alice"]);
        // An admin may deregister anyone's agent; others may not.
        let ops = &Caller::mesh("spiffe://toolmesh.local/operator/ops");
        assert!(matches!(registry.deregister("alice-1", ops, false), Err(StateError::NotOwner { .. })));
        registry.deregister("alice-1", ops, true).expect("admin deregisters");
        assert!(matches!(registry.register(registration("alice-4", &["add"], &[]), cn_alice), Err(StateError::NameHeld { .. })), "alice-2 still holds it");
        registry.deregister("alice-2", &alice(), false).expect("deregister");
        registry.register(registration("alice-4", &["add"], &[]), cn_alice).expect("a name no live registration holds is free");
        assert!(matches!(registry.register(named(registration("ops-1", &["add"], &[]), "alice"), ops), Err(StateError::NameNotInCertificate(_))));
    }

    #[test]
    fn quotas_bound_one_identity_and_leave_its_registrations_alone() {
        let quotas = Quotas { max_agents: 2, max_tools: 3, max_bytes: 100_000 };
        let registry = Registry::new(Duration::from_secs(5), 3).with_quotas(quotas);
        registry.register(registration("a-1", &["x", "y"], &[]), &alice()).expect("within");
        registry.register(registration("a-1", &["x", "y"], &[]), &alice()).expect("a re-registration replaces its own usage");
        let too_many_tools = registry.register(registration("a-2", &["x", "y"], &[]), &alice()).unwrap_err();
        assert!(matches!(&too_many_tools, StateError::QuotaExceeded { exceeded, .. } if exceeded.rule == "max_tools_per_identity"), "{too_many_tools:?}");
        registry.register(registration("a-2", &["x"], &[]), &alice()).expect("within");
        let too_many_agents = registry.register(registration("a-3", &[], &[]), &alice()).unwrap_err();
        assert!(matches!(&too_many_agents, StateError::QuotaExceeded { exceeded, .. } if exceeded.rule == "max_agents_per_identity"));
        assert_eq!(registry.list(None).agents.len(), 2, "nothing changed");
        // Another identity has quotas of its own.
        let bob = &Caller::mesh("spiffe://toolmesh.local/agent/bob");
        registry.register(named(registration("b-1", &["x"], &[]), "bob"), bob).expect("bob's own quota");
        let tiny = Registry::new(Duration::from_secs(5), 3).with_quotas(Quotas { max_bytes: 50, ..quotas });
        assert!(matches!(tiny.register(registration("a-1", &["x"], &[]), &alice()), Err(StateError::QuotaExceeded { exceeded, .. }) if exceeded.rule == "max_bytes_per_identity"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_may_depend_on_itself_and_eviction_removes_it_from_dependents() {
        let registry = Registry::new(Duration::from_secs(5), 3);
        let own = registry.register(registration("self", &["add"], &["add"]), &alice()).expect("register");
        assert_eq!(own.topology.dependencies[0].providers[0].agent_id, "self");
        registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register");
        let consumer = registry.watch("consumer").expect("watch");
        tokio::time::advance(Duration::from_millis(5)).await;
        registry.heartbeat("consumer", &alice(), 0).expect("heartbeat");
        registry.sweep(Duration::from_millis(4));
        assert_eq!(registry.list(None).agents.iter().map(|a| a.agent_id.as_str()).collect::<Vec<_>>(), ["consumer"]);
        assert!(provider_ids(&consumer).is_empty());
        assert!(matches!(registry.watch("self"), Err(StateError::UnknownAgent(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_provider_is_routed_to_only_when_no_healthy_one_remains() {
        let registry = Registry::new(Duration::from_secs(1), 3);
        registry.register(registration("quiet", &["add"], &[]), &alice()).expect("register");
        registry.register(registration("lively", &["add"], &[]), &alice()).expect("register");
        registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register");
        let consumer = registry.watch("consumer").expect("watch");
        assert_eq!(provider_ids(&consumer), ["lively", "quiet"]);

        // Two seconds without a beat from `quiet` (stale after 1.5 s, evicted after 3 s).
        tokio::time::advance(Duration::from_millis(1000)).await;
        registry.heartbeat("lively", &alice(), 0).expect("beat");
        tokio::time::advance(Duration::from_millis(1000)).await;
        registry.heartbeat("lively", &alice(), 0).expect("beat");
        registry.sweep(Duration::from_secs(3));
        assert_eq!(provider_ids(&consumer), ["lively"], "a healthy provider is preferred to a stale one");
        assert_eq!(registry.resolve(&DependencySpec::capability("add"), None).expect("resolve").providers.len(), 1);

        registry.heartbeat("quiet", &alice(), 0).expect("beat");
        registry.heartbeat("consumer", &alice(), 0).expect("beat");
        assert_eq!(provider_ids(&consumer), ["lively", "quiet"], "a stale provider that beats again is routed to again");

        // Both stale: both stay, as the last resort.
        tokio::time::advance(Duration::from_millis(2000)).await;
        registry.sweep(Duration::from_secs(3));
        assert_eq!(provider_ids(&consumer), ["lively", "quiet"]);
        assert_eq!(registry.list(None).agents.iter().filter(|a| a.status == "stale").count(), 3, "all still listed, as stale");
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_the_registry_cannot_connect_to_is_listed_unreachable_until_it_beats_again() {
        let registry = Registry::new(Duration::from_secs(1), 3);
        registry.register(registration("gone", &["add"], &[]), &alice()).expect("register");
        registry.register(registration("lively", &["add"], &[]), &alice()).expect("register");
        registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register");
        let consumer = registry.watch("consumer").expect("watch");
        // Reported by a caller: probed at once, whatever its heartbeat.
        let reported = registry.reported(&["gone".into(), "nobody".into()]);
        assert_eq!(reported.iter().map(|p| p.agent_id.as_str()).collect::<Vec<_>>(), ["gone"], "only registered agents are probed");
        assert!(registry.late().is_empty(), "no heartbeat is late yet");
        registry.mark_unreachable(&reported[0], "refused");
        let status = |id: &str| registry.list(None).agents.into_iter().find(|a| a.agent_id == id).expect("listed").status;
        assert_eq!(status("gone"), "unreachable");
        assert_eq!(provider_ids(&consumer), ["lively"], "left out while a healthy provider remains");
        assert!(registry.reported(&["gone".into()]).is_empty(), "not probed again while unreachable");
        // Its next heartbeat makes it healthy again.
        registry.heartbeat("gone", &alice(), 0).expect("beat");
        assert_eq!(status("gone"), "healthy");
        assert_eq!(provider_ids(&consumer), ["gone", "lively"]);
        // A probe decided before a heartbeat does not count after it.
        let probe = registry.reported(&["gone".into()]).remove(0);
        tokio::time::advance(Duration::from_millis(10)).await;
        registry.heartbeat("gone", &alice(), 0).expect("beat");
        registry.mark_unreachable(&probe, "refused");
        assert_eq!(status("gone"), "healthy", "it beat after the probe was decided");
        // Late heartbeats are probed a tenth of an interval after they were due.
        tokio::time::advance(Duration::from_millis(1050)).await;
        registry.heartbeat("consumer", &alice(), 0).expect("beat");
        registry.heartbeat("lively", &alice(), 0).expect("beat");
        assert!(registry.late().is_empty());
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(registry.late().iter().map(|p| p.agent_id.as_str()).collect::<Vec<_>>(), ["gone"]);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_say_warming_up_for_one_eviction_window_after_the_start() {
        let registry = Registry::new(Duration::from_secs(1), 3);
        assert!(registry.register(registration("a", &["add"], &[]), &alice()).expect("register").warming_up);
        tokio::time::advance(Duration::from_millis(2900)).await;
        assert!(registry.heartbeat("a", &alice(), 0).expect("beat").warming_up);
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!registry.heartbeat("a", &alice(), 0).expect("beat").warming_up);
        assert!(!registry.register(registration("b", &["add"], &[]), &alice()).expect("register").warming_up);
    }

    /// Entities are denied by default: this lets `partner` provide and be seen.
    fn partner_may_provide() -> Arc<Policy> {
        let text = "rules:\n  - name: partner-provides\n    phases: [provide, discover, call]\n    source: { entities: [partner] }\n";
        Arc::new(Policy::parse(text, 1).expect("policy"))
    }

    #[test]
    fn revoking_an_entity_evicts_its_agents_from_every_topology() {
        let registry = Registry::new(Duration::from_secs(5), 3);
        registry.replace_policy(partner_may_provide());
        let partner = Caller { identity: "spiffe://partner.example/agent/p".to_owned(), entity: Some("partner".to_owned()) };
        registry.register(named(registration("theirs", &["add"], &[]), "p"), &partner).expect("register partner agent");
        registry.register(registration("ours", &["add"], &[]), &alice()).expect("register");
        registry.register(registration("consumer", &["report"], &["add"]), &alice()).expect("register");
        let consumer = registry.watch("consumer").expect("watch");
        assert_eq!(provider_ids(&consumer), ["ours", "theirs"]);
        assert_eq!(registry.list(None).agents.iter().find(|a| a.agent_id == "theirs").and_then(|a| a.entity.clone()).as_deref(), Some("partner"));
        assert_eq!(registry.evict_entity("partner"), ["theirs"]);
        assert_eq!(provider_ids(&consumer), ["ours"]);
        assert!(registry.evict_entity("partner").is_empty());
    }
}
