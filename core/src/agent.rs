//! An agent: its tools served over mTLS, its registration, and its dependency calls.

use crate::authorize::Gate;
use crate::auto_tls::AutoTls;
use crate::client::RequestError;
use crate::config::{AgentConfig, HealthPort, TlsSource};
use crate::context::{HeaderAllowList, InputAnswers, RequestContext, TraceContext, CALLER_HEADERS};
use crate::discovery::{Discovery, Followers, TopologyView};
use crate::error::{Error, ErrorKind, Result};
use crate::fx_hash::FxHashMap;
use crate::health::{HealthServer, MetricsRender, Probes, ReadinessCheck};
use crate::host::{Catalog, HandlerOutput, LocalTools, ToolHandler};
use crate::mcp::input::relay;
use crate::mcp::{McpClient, McpServer, ResultShape, ServerInfo, ENDPOINT_PATH};
use crate::metrics::{AgentMetrics, TlsMetrics};
use crate::pipeline::{Pipeline, Target, Transport, UnreachableReports};
use crate::policy::Policy;
use crate::registry_api::{DependencySpec, Provider, RegisterRequest, ToolInfo};
use crate::registry_client::RegistryClient;
use crate::report::{CancelUnlessAnswered, Reporter};
use crate::resolve::Selector;
use crate::server::{bracket_ipv6, HttpsServer};
use crate::tls::Identity;
use crate::trace::{SpanCounters, Tracer};
use serde_json::Value;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a stopping agent keeps serving after deregistering, so that callers holding the old
/// topology are not refused while the change reaches them.
const DRAIN_AFTER_DEREGISTER: Duration = Duration::from_millis(300);
/// How long in-flight requests may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits for the collector to take the last spans.
const FLUSH_SPANS_WAIT: Duration = Duration::from_secs(2);

/// Which declared dependency each proxy parameter of a tool function receives, the same in every
/// language that injects proxies by parameter (Python `toolmesh.Proxy`, Java `MeshProxy`): a
/// parameter named like a declared capability gets that dependency (the first one not taken);
/// the others take the remaining dependencies in declaration order. `parameters` are the proxy
/// parameters' names in order, `capabilities` the dependencies' capabilities in declaration
/// order; the result is one dependency index per parameter. `None` when there are more
/// parameters than dependencies (the binding says so in its language's words).
pub fn assign_proxy_parameters(parameters: &[String], capabilities: &[String]) -> Option<Vec<usize>> {
    if parameters.len() > capabilities.len() {
        return None;
    }
    let mut taken = vec![false; capabilities.len()];
    let mut assigned: Vec<Option<usize>> = parameters
        .iter()
        .map(|parameter| {
            let index = (0..capabilities.len()).find(|&i| capabilities[i] == *parameter && !taken[i])?;
            taken[index] = true;
            Some(index)
        })
        .collect();
    let mut free = (0..capabilities.len()).filter(|&i| !taken[i]);
    for slot in assigned.iter_mut().filter(|slot| slot.is_none()) {
        *slot = free.next();
    }
    assigned.into_iter().collect()
}

/// Parses the tool list a binding hands over as JSON, and checks it.
pub fn parse_tools(json: &str) -> Result<Vec<ToolInfo>> {
    let tools = ToolInfo::parse_declared(json)
        .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("the tool definitions are not valid: {e}")))?;
    validate_tools(&tools)?;
    Ok(tools)
}

/// Parses the resources, resource templates and prompts a binding hands over as one JSON
/// document (`{"resources": [...], "resourceTemplates": [...], "prompts": [...]}`, MCP's member
/// names), and checks them.
pub fn parse_catalog(json: &str) -> Result<Catalog> {
    Catalog::parse(json)
        .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("the resource and prompt definitions are not valid: {e}")))
}

/// Tool names are unique MCP names; capabilities are set; dependency selectors parse.
pub fn validate_tools(tools: &[ToolInfo]) -> Result<()> {
    let mut names = HashSet::new();
    for tool in tools {
        let valid_name =
            (1..=128).contains(&tool.name.len()) && tool.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid_name {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("tool name '{}' is not valid: use 1 to 128 characters of A-Z, a-z, 0-9, '_', '-' and '.'", tool.name),
            ));
        }
        if !names.insert(tool.name.as_str()) {
            return Err(Error::new(ErrorKind::InvalidConfig, format!("two tools are named '{}'; tool names must be unique", tool.name)));
        }
        if tool.capability.trim().is_empty() {
            return Err(Error::new(ErrorKind::InvalidConfig, format!("tool '{}' needs a capability", tool.name)));
        }
        if !tool.input_schema.is_object() {
            return Err(Error::new(ErrorKind::InvalidConfig, format!("tool '{}': the input schema must be a JSON object", tool.name)));
        }
        crate::mcp::check_mirrored_parameters(&tool.input_schema)
            .and_then(|()| crate::mcp::check_tool_contract(tool.output_schema.as_ref(), &tool.required_client_capabilities))
            .map_err(|why| Error::new(ErrorKind::InvalidConfig, format!("tool '{}': {why}", tool.name)))?;
        for dependency in &tool.dependencies {
            Selector::new(dependency).map_err(|e| e.context(format!("tool '{}'", tool.name)))?;
        }
    }
    Ok(())
}

/// The dependencies of one tool, in declaration order.
struct ToolDependencies {
    specs: Vec<(String, DependencySpec)>,
    timeout: Duration,
}

struct Inner {
    id: String,
    /// The agent's name (configuration `name`).
    name: String,
    endpoint: String,
    local_addr: SocketAddr,
    local: Arc<LocalTools>,
    dependencies: FxHashMap<String, ToolDependencies>,
    /// This agent's own providers of each dependency: used until the registry answers, and
    /// when there is no registry at all.
    local_providers: FxHashMap<String, Vec<Provider>>,
    topology: watch::Receiver<Arc<TopologyView>>,
    client: McpClient,
    gate: Arc<Gate>,
    /// This agent's `propagate_headers`: what a handler of a call made in-process sees.
    propagate: HeaderAllowList,
    pipeline: Pipeline,
    server: Mutex<Option<HttpsServer>>,
    /// What the server answers: kept for the host's announcements of resource changes.
    mcp: Arc<McpServer>,
    discovery: Mutex<Option<Discovery>>,
    health: Option<HealthServer>,
    /// Keeps the identity current: watches the certificate files for a rotation, or renews the
    /// automatic certificate.
    _identity_upkeep: AbortOnDrop,
    /// Set when shutdown begins: `/ready` answers 503 from then on.
    draining: Arc<AtomicBool>,
    stopped: AtomicBool,
    /// Samples and records the spans of this agent's requests, and exports them.
    tracer: Tracer,
}

/// A running agent. Cheap to clone; stops when [`Agent::shutdown`] is called (or, without a
/// clean deregistration, when the last clone is dropped).
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl Agent {
    /// Checks the configuration and tools, loads the identity, starts serving, and registers in
    /// the background (a registry that is down does not stop the agent from starting).
    pub async fn start(config: AgentConfig, tools: Vec<ToolInfo>, handler: Arc<dyn ToolHandler>) -> Result<Agent> {
        Agent::start_with_catalog(config, tools, Catalog::default(), handler).await
    }

    /// [`Agent::start`] for an agent that also serves resources, resource templates and prompts
    /// (`resources/*`, `prompts/*`): static resources are answered by core, the rest through
    /// `handler`'s [`ToolHandler::invoke_catalog`]. Resources and prompts are served over MCP
    /// only; they are not registered with the registry.
    pub async fn start_with_catalog(
        config: AgentConfig,
        tools: Vec<ToolInfo>,
        catalog: Catalog,
        handler: Arc<dyn ToolHandler>,
    ) -> Result<Agent> {
        validate_tools(&tools)?;
        let trace_settings = crate::trace::Settings::from_env()?;
        let local = Arc::new(LocalTools::with_catalog(tools.clone(), catalog, handler)?);
        let (identity, upkeep) = match config.tls_source {
            TlsSource::Files => {
                let identity = Identity::load_with(&config.tls_files()?, config.tls_policy.clone())?;
                let reloader = identity.spawn_reloader(config.tls_reload_interval);
                (identity, reloader)
            }
            TlsSource::Auto => {
                let (identity, renewal) = AutoTls::from_config(&config)?.start(config.tls_policy.clone()).await?;
                (identity, Some(renewal))
            }
        };
        let upkeep = AbortOnDrop(upkeep);
        let registry = config.registry_url.as_deref().map(|url| RegistryClient::new(url, &identity)).transpose()?;
        let listener = crate::server::bind(&config.host, config.port).await?;
        let local_addr = listener.local_addr().map_err(|e| Error::new(ErrorKind::AddressInUse, e.to_string()))?;
        let endpoint = format!("https://{}:{}{ENDPOINT_PATH}", bracket_ipv6(&config.advertised_host()), local_addr.port());
        let id = format!("{}-{}", config.name, &TraceContext::new_root().span_id()[..8]);

        let dependencies: FxHashMap<String, ToolDependencies> = tools
            .iter()
            .map(|t| {
                let specs = t.dependencies.iter().map(|d| (d.key(), d.clone())).collect();
                let timeout = t.timeout_ms.map_or(config.call_timeout, Duration::from_millis);
                (t.name.clone(), ToolDependencies { specs, timeout })
            })
            .collect();
        let local_providers = own_providers(&id, &config.name, &endpoint, &tools)?;

        let gate = Arc::new(Gate::new(identity.clone(), &config.name, initial_policy(&config)?));
        let spans = Arc::new(SpanCounters::default());
        let resource = crate::trace::Resource { agent_name: &config.name, agent_id: &id, identity: identity.name() };
        // Spans go to the registry over a client of their own: an export never waits behind a
        // long poll or a heartbeat. Not homed (see `RegistryClient::home`): every agent sends to
        // the same replica first, so that a trace's spans are kept together.
        let span_registry = config.registry_url.as_deref().map(|url| RegistryClient::new(url, &identity)).transpose()?;
        let tracer = Tracer::start(&trace_settings, resource, spans.clone(), span_registry.as_ref())?;
        let mcp = Arc::new(
            McpServer::new(
                ServerInfo { name: config.name.clone(), version: env!("CARGO_PKG_VERSION").to_owned() },
                local.clone(),
                config.propagate_headers.clone(),
                gate.clone(),
            )
            .traced(tracer.clone())
            .keeping_tasks(config.max_tasks),
        );
        let server_metrics = mcp.metrics();
        let handshakes = Arc::new(TlsMetrics::default());
        let tls = identity.server_config()?;
        let limits = config.server_limits.clone();
        let serving = mcp.clone();
        let server =
            HttpsServer::spawn_limited(listener, tls, Some(identity.clone()), limits, handshakes.clone(), move |request, peer| {
                let mcp = serving.clone();
                // Boxed where it is made: the request's future is several kilobytes, and hyper and
                // the server move it a few times before it first runs.
                Box::pin(async move { mcp.handle(request, peer).await })
            })?;

        // What the calls find unreachable, and the calls made, the heartbeats report.
        let unreachable = UnreachableReports::default();
        let pipeline = Pipeline::reporting(unreachable.clone());
        let discovery = registry.map(|client| {
            let registration = RegisterRequest { agent_id: id.clone(), name: config.name.clone(), endpoint: endpoint.clone(), tools };
            let followers = Followers { identity: identity.clone(), gate: gate.clone(), unreachable, calls: pipeline.metrics() };
            Discovery::spawn_following(client, registration, config.heartbeat_interval, followers, tracer.clone())
        });
        let topology = match &discovery {
            Some(d) => d.topology(),
            None => watch::channel(Arc::new(TopologyView::default())).1,
        };
        let draining = Arc::new(AtomicBool::new(false));
        let metrics = AgentMetrics {
            server: server_metrics,
            client: pipeline.metrics(),
            tls: handshakes.clone(),
            gate: gate.clone(),
            identity: identity.clone(),
            topology: topology.clone(),
            spans,
        };
        // Off: the call path records nothing, and /metrics says so.
        if !config.metrics {
            metrics.server.turn_off();
            metrics.client.turn_off();
        }
        let metrics: Option<MetricsRender> = config.metrics.then(|| Arc::new(move || metrics.render()) as MetricsRender);
        let registered = discovery.as_ref().map(Discovery::registered);
        let health = match start_health(&config, local_addr.port(), registered, draining.clone(), metrics).await {
            Ok(health) => health,
            Err(e) => {
                server.stop_now();
                if let Some(d) = &discovery {
                    d.abort();
                }
                return Err(e);
            }
        };
        tracing::info!(agent = %id, %endpoint, identity = %identity.name(), "serving");
        Ok(Agent {
            inner: Arc::new(Inner {
                id,
                name: config.name.clone(),
                endpoint,
                local_addr,
                local,
                dependencies,
                local_providers,
                topology,
                client: McpClient::counting(&identity, handshakes)?.traced(tracer.clone()),
                tracer,
                gate,
                propagate: config.propagate_headers.clone(),
                pipeline,
                server: Mutex::new(Some(server)),
                mcp,
                discovery: Mutex::new(discovery),
                health,
                _identity_upkeep: upkeep,
                draining,
                stopped: AtomicBool::new(false),
            }),
        })
    }

    pub fn agent_id(&self) -> &str {
        &self.inner.id
    }

    /// `https://host:port/mcp`
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The line an agent program prints on stderr once it serves, the same in every language
    /// (tests and supervisors wait for it): `toolmesh agent NAME serving ENDPOINT (id ID)`.
    pub fn ready_line(&self) -> String {
        format!("toolmesh agent {} serving {} (id {})", self.inner.name, self.inner.endpoint, self.inner.id)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Where `/health`, `/ready` and `/metrics` are served (plain HTTP), unless turned off.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.inner.health.as_ref().map(HealthServer::local_addr)
    }

    /// Waits until the registry has accepted this agent; false after `timeout`, or without a registry.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let discovery = self.inner.discovery.lock().expect("agent lock").as_ref().map(|d| (d.topology(), d.is_registered()));
        match discovery {
            None => false,
            Some((_, true)) => true,
            Some(_) => {
                let deadline = tokio::time::Instant::now() + timeout;
                loop {
                    if self.inner.discovery.lock().expect("agent lock").as_ref().is_some_and(Discovery::is_registered) {
                        return true;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Calls the `dependency`-th dependency declared by the local tool `tool`, with the
    /// context of the request being handled (headers, trace, deadline), if any.
    pub async fn call(&self, tool: &str, dependency: usize, arguments: Value, context: Option<Arc<RequestContext>>) -> Result<Value> {
        self.call_shaped(tool, dependency, arguments, context, ResultShape::Value).await
    }

    /// [`Agent::call`], answering in `shape`: with [`ResultShape::Whole`], the callee's whole
    /// result (every content item as it sent it, and its `structuredContent`), which a handler
    /// can answer with unchanged.
    pub async fn call_shaped(
        &self,
        tool: &str,
        dependency: usize,
        arguments: Value,
        context: Option<Arc<RequestContext>>,
        shape: ResultShape,
    ) -> Result<Value> {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Shutdown, "the agent is shutting down; no new calls are made"));
        }
        let deps = inner
            .dependencies
            .get(tool)
            .ok_or_else(|| Error::new(ErrorKind::UnknownDependency, format!("this agent has no tool '{tool}' to call dependencies for")))?;
        let (key, spec) = deps.specs.get(dependency).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownDependency,
                format!("tool '{tool}' declares {} dependencies; there is no dependency #{dependency}", deps.specs.len()),
            )
        })?;
        let view = inner.topology.borrow().clone();
        let providers = view
            .providers
            .get(key)
            .filter(|p| !p.is_empty())
            .or_else(|| inner.local_providers.get(key))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let context = context.unwrap_or_default();
        // A retry bringing the client's answers to a provider's request for input goes to that
        // provider: the state it asked to get back is its own. Gone, the call goes on as usual
        // and its new provider asks again.
        let asked = context
            .dependency_answers
            .as_deref()
            .and_then(|answers| providers.iter().position(|p| answers.are_for(&p.agent_id, &p.tool)).map(|at| &providers[at..=at]));
        let providers = asked.unwrap_or(providers);
        // What the callee reports reaches this request's caller, unless the handler observes it.
        let relayed = context.relaying();
        let context = relayed.as_ref().unwrap_or(&context);
        let target = Target { key, capability: &spec.capability, providers, timeout: deps.timeout };
        let calls = Calls { inner, shape };
        let call = inner.pipeline.call(&calls, target, arguments, context);
        // The request this call is made for was cancelled (its caller closed the stream or sent
        // `notifications/cancelled`): the call's future is dropped, its connection with it, and
        // the callee sees its own stream close and cancels in turn. At the deadline both end
        // at once; the pipeline's TIMEOUT says more, so it is polled first.
        tokio::select! {
            biased;
            result = call => result,
            () = context.cancelled() => Err(Error::new(
                ErrorKind::Cancelled,
                format!("the call to '{}' was cancelled: the request it was made for was cancelled (its caller went away)", spec.capability),
            )),
        }
    }

    /// Enforces `policy` from the next request on; calls in flight finish under the old one.
    pub fn replace_policy(&self, policy: Policy) {
        self.inner.gate.replace_policy(policy);
    }

    /// Announces that the resource at `uri` changed: the clients subscribed to it (a legacy
    /// session's `resources/subscribe`, a modern `subscriptions/listen`) get
    /// `notifications/resources/updated`. Returns how many subscription streams it went out on;
    /// a URI that is none of this agent's resources is an `InvalidConfig` error.
    pub fn notify_resource_updated(&self, uri: &str) -> Result<usize> {
        self.inner.mcp.notify_resource_updated(uri)
    }

    /// How often this agent's calls went on to another provider, and why.
    pub fn failovers(&self) -> crate::pipeline::Failovers {
        self.inner.pipeline.failovers()
    }

    /// Deregisters, keeps serving briefly so callers learn of it, then lets in-flight calls
    /// finish. Calling it again does nothing.
    pub async fn shutdown(&self) {
        if self.inner.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.draining.store(true, Ordering::Release);
        let discovery = self.inner.discovery.lock().expect("agent lock").take();
        if let Some(discovery) = discovery {
            let was_registered = discovery.is_registered();
            discovery.stop().await;
            if was_registered {
                tokio::time::sleep(DRAIN_AFTER_DEREGISTER).await;
            }
        }
        // Subscription streams never end on their own: they would hold the server's grace.
        self.inner.mcp.close_subscriptions();
        let server = self.inner.server.lock().expect("agent lock").take();
        if let Some(server) = server {
            server.shutdown(SHUTDOWN_GRACE).await;
        }
        // The spans of the last calls, before the process (often) exits.
        self.inner.tracer.flush(FLUSH_SPANS_WAIT).await;
        tracing::info!(agent = %self.inner.id, "stopped");
    }
}

/// A background task that ends with its owner (also when start-up fails half way).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(server) = self.server.get_mut().ok().and_then(Option::take) {
            server.stop_now();
        }
        if let Some(discovery) = self.discovery.get_mut().ok().and_then(Option::take) {
            discovery.abort();
        }
    }
}

/// The agent's calls of one shape: to itself in process, to others over mTLS.
struct Calls<'i> {
    inner: &'i Inner,
    shape: ResultShape,
}

impl Transport for Calls<'_> {
    fn send<'a>(
        &'a self,
        provider: &'a Provider,
        arguments: &'a Value,
        context: &'a RequestContext,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<Value, RequestError>> + Send + 'a>> {
        Box::pin(async move {
            if provider.agent_id == self.inner.id {
                return self.inner.call_in_process(&provider.tool, arguments.clone(), context, self.shape).await;
            }
            self.inner.client.call_provider(provider, arguments, context, self.shape).await
        })
    }
}

impl Inner {
    /// A dependency this agent provides itself: no network, same checks and same errors as a
    /// remote call, a new span of the same trace.
    async fn call_in_process(
        &self,
        tool: &str,
        arguments: Value,
        context: &RequestContext,
        shape: ResultShape,
    ) -> std::result::Result<Value, RequestError> {
        // A hop like a remote call: the handler sees what it would see of the same request from
        // the network (the onward headers, those set on purpose listed), by the same rule.
        let listed = context.caller_set_names().join(", ");
        let request = context.onward_headers().map(|(n, v)| (n.as_str(), v.as_str()));
        let (headers, hop_only) = self.propagate.capture_inbound(request.chain([(CALLER_HEADERS, listed.as_str())]));
        // The callee reports to the calling handler's observer (or through it, to the caller's
        // caller), and is cancelled when the call is abandoned.
        let reporter = Arc::new(Reporter::observed(context.on_notification.clone()).with_deadline(context.deadline));
        // A retry bringing the answers to this tool's own request for input (relayed up, as from
        // a remote provider) gives them to its handler.
        let answers = context.dependency_answers.as_deref().filter(|answers| answers.are_for(&self.id, tool));
        let input = answers.map(|a| Arc::new(InputAnswers { responses: a.responses.clone(), state: a.request_state.clone() }));
        let child = RequestContext {
            trace: Some(context.trace.as_ref().map_or_else(|| self.tracer.root(), |parent| self.tracer.child(parent))),
            headers,
            hop_only,
            headers_set_by_caller: false,
            set_on_purpose: Vec::new(),
            reporter: Some(reporter.clone()),
            on_notification: None,
            input,
            ..context.clone()
        };
        let abandoned = CancelUnlessAnswered::new(reporter);
        let outcome = self.local.invoke_output(tool, arguments, Arc::new(child)).await.and_then(|output| match output {
            HandlerOutput::InputRequired(input) => Err(relay::asked_for_input(tool, &self.endpoint, Some(&self.id), input, context)),
            output => crate::host::shaped(tool, output, shape),
        });
        let result = outcome.map_err(|error| {
            // A remote caller sees a failed handler as a failed tool; so does a local one.
            let error = if error.code() / 1000 == 6 { Error::new(ErrorKind::ToolFailed, error.message()) } else { error };
            RequestError { error, delivered: true }
        });
        abandoned.answered();
        result
    }
}

async fn start_health(
    config: &AgentConfig,
    mtls_port: u16,
    registered: Option<watch::Receiver<bool>>,
    draining: Arc<AtomicBool>,
    metrics: Option<MetricsRender>,
) -> Result<Option<HealthServer>> {
    let port = match config.health_port {
        HealthPort::Off => return Ok(None),
        HealthPort::Fixed(port) => port,
        // A system-chosen mTLS port + 1000 could collide with anything: let the system choose.
        HealthPort::Offset if config.port == 0 => 0,
        HealthPort::Offset => mtls_port.checked_add(1000).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("the health port would be {mtls_port} + 1000, past 65535; set TOOLMESH_HEALTH_PORT"),
            )
        })?,
    };
    let readiness: ReadinessCheck = Arc::new(move || {
        if draining.load(Ordering::Acquire) {
            return Some("shutting down".to_owned());
        }
        match &registered {
            Some(r) if !*r.borrow() => Some("not registered with the registry yet".to_owned()),
            _ => None,
        }
    });
    HealthServer::start_limited(&config.health_host, port, Probes { readiness, metrics, pages: None }, &config.server_limits)
        .await
        .map(Some)
}

/// The policy file's, else the built-in default (allow within the mesh).
fn initial_policy(config: &AgentConfig) -> Result<Policy> {
    let Some(path) = &config.policy_file else {
        return Ok(Policy::allow_mesh());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(ErrorKind::InvalidConfig, format!("cannot read the policy file {} ({e}); check TOOLMESH_POLICY_FILE", path.display()))
    })?;
    Policy::parse(&text, 0).map_err(|e| e.context(format!("policy file {}", path.display())))
}

fn own_providers(id: &str, name: &str, endpoint: &str, tools: &[ToolInfo]) -> Result<FxHashMap<String, Vec<Provider>>> {
    let candidates: Vec<Provider> = tools.iter().map(|t| Provider::of(id, name, endpoint, t)).collect();
    let mut out = FxHashMap::default();
    for spec in tools.iter().flat_map(|t| &t.dependencies) {
        let ranked = Selector::new(spec)?.rank(candidates.iter().cloned());
        out.insert(spec.key(), ranked);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::assign_proxy_parameters;

    fn assign(parameters: &[&str], capabilities: &[&str]) -> Option<Vec<usize>> {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assign_proxy_parameters(&owned(parameters), &owned(capabilities))
    }

    #[test]
    fn proxy_parameters_take_their_namesakes_then_the_rest_in_order() {
        assert_eq!(assign(&["mul", "add"], &["add", "mul"]), Some(vec![1, 0]));
        assert_eq!(assign(&["first", "second"], &["add", "mul"]), Some(vec![0, 1]));
        assert_eq!(assign(&["other", "add"], &["add", "mul"]), Some(vec![1, 0]));
        // Two dependencies on one capability: each namesake takes the next one not taken.
        assert_eq!(assign(&["add", "add", "y"], &["add", "x", "add"]), Some(vec![0, 2, 1]));
        assert_eq!(assign(&[], &["add"]), Some(vec![]));
        assert_eq!(assign(&["a", "b"], &["add"]), None, "more proxies than dependencies");
    }
}
