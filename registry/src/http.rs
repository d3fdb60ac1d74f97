//! The registry's HTTP API (documented in `registry/openapi.yaml`): routing, bodies, and turning
//! every refusal into an `ApiError` with the right status. Refusals of an identity (not of a
//! malformed request) are audited: see `audit`.

use crate::audit::{Audit, Denial, Subject};
use crate::auto::AutoIssuer;
use crate::dashboard::Dashboard;
use crate::policy_store::{PolicyError, PolicyStore};
use crate::state::{Caller, Registry, StateError};
use crate::traces::TraceStore;
use crate::trust::{EntityError, Standing, Trust};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use toolmesh_core::registry_api::{
    ApiError, AuditEvent, AuditList, BootstrapRequest, BootstrapResponse, DependencySpec, EntityRequest, HeartbeatRequest,
    PolicyTestRequest, RegisterRequest, ReportedDenial,
};
use toolmesh_core::server::{json_response, read_body, Body, PeerInfo};
use toolmesh_core::text::{percent_decode, Escaped};
use toolmesh_core::tls::Identity;

/// Registrations carry tool input schemas; a megabyte leaves room for hundreds of tools.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// An OTLP export of a full batch (512 spans by default) takes a few hundred kilobytes.
const MAX_TRACE_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Traces `GET /v1/traces` lists unless `last` says otherwise.
const DEFAULT_TRACES_LISTED: usize = 20;
/// How long a client should wait before retrying a change the unreachable store refused.
const STORE_RETRY_AFTER_S: u64 = 2;
const DEFAULT_WAIT: Duration = Duration::from_millis(30_000);
const MAX_WAIT: Duration = Duration::from_millis(60_000);

/// What every request handler shares.
pub struct Api {
    pub registry: Arc<Registry>,
    /// Turns true when the registry shuts down, so long polls answer at once instead of
    /// holding the shutdown for up to a minute.
    pub closing: watch::Receiver<bool>,
    pub trust: Arc<Trust>,
    /// The registry's own identity, whose trust bundle follows the entities.
    pub identity: Arc<Identity>,
    pub issuer: Option<Arc<AutoIssuer>>,
    pub admin_ids: Vec<String>,
    /// Where denials are recorded.
    pub audit: Arc<Audit>,
    /// The access policy applied at the registry.
    pub policy: Arc<PolicyStore>,
    /// The spans agents export here when they name no collector.
    pub traces: Arc<TraceStore>,
    /// The live dashboard, which heartbeats feed with the calls agents made.
    pub dashboard: Arc<Dashboard>,
}

type Response = http::Response<Body>;

/// An error answer: status, stable `ApiError.error` name, and a message naming the problem.
struct Refusal {
    status: StatusCode,
    name: &'static str,
    message: String,
    allow: Option<&'static str>,
    /// Seconds to wait before retrying (a 503 while the store is unreachable).
    retry_after: Option<u64>,
    /// Set when an identity was denied something: the refusal is audited.
    denial: Option<Box<Denial>>,
}

impl Refusal {
    fn new(status: StatusCode, name: &'static str, message: String) -> Self {
        Refusal { status, name, message, allow: None, retry_after: None, denial: None }
    }

    fn denied(
        status: StatusCode,
        name: &'static str,
        message: String,
        kind: &'static str,
        rule: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        Refusal { denial: Some(Box::new(Denial::new(kind, rule))), ..Refusal::new(status, name, message) }
    }

    /// Names the agent and tools the denied request was about.
    fn about(mut self, agent: &str, tool: Option<String>) -> Self {
        if let Some(denial) = &mut self.denial {
            denial.agent = Some(agent.to_owned());
            // A refusal that named its tool (a denied provide) keeps it.
            denial.tool = denial.tool.take().or(tool);
        }
        self
    }

    fn invalid(message: String) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn unauthenticated(message: String) -> Self {
        Refusal::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// A change that could not be stored: 503 with `Retry-After` when the store is unreachable
    /// (PostgreSQL is down: nothing changed, and the same request succeeds once it is back),
    /// else 500.
    fn storage(e: toolmesh_core::Error, what: &str) -> Self {
        if e.kind() == toolmesh_core::ErrorKind::RegistryUnavailable {
            let message = format!("{what}: the registry's store is unreachable ({e}); nothing changed, retry in {STORE_RETRY_AFTER_S} s");
            return Refusal {
                retry_after: Some(STORE_RETRY_AFTER_S),
                ..Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", message)
            };
        }
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("{what}: {e}"))
    }

    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &ApiError { error: self.name.to_owned(), message: self.message });
        if let Some(allow) = self.allow {
            response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<EntityError> for Refusal {
    fn from(e: EntityError) -> Self {
        match e {
            EntityError::Invalid(message) => Refusal::invalid(message),
            EntityError::Exists(name) => Refusal::new(
                StatusCode::CONFLICT,
                "entity_exists",
                format!("entity '{name}' exists already; revoke it first to replace its CA"),
            ),
            EntityError::Unknown(name) => {
                Refusal::new(StatusCode::NOT_FOUND, "unknown_entity", format!("no entity '{name}'; `toolmesh entity list` shows them"))
            }
            EntityError::Storage(e) => Refusal::storage(e, "cannot store the entities"),
        }
    }
}

impl From<PolicyError> for Refusal {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Invalid(message) => Refusal::invalid(format!("{message}; nothing was applied")),
            PolicyError::Storage(e) => Refusal::storage(e, "cannot store the policy, so it is not applied"),
        }
    }
}

impl From<StateError> for Refusal {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Invalid(message) => Refusal::invalid(message),
            StateError::UnknownAgent(agent_id) => Refusal::new(
                StatusCode::NOT_FOUND,
                "unknown_agent",
                format!("no agent '{agent_id}' is registered (the registry restarted or evicted it); register again"),
            ),
            StateError::IdentityConflict { agent_id, registered, caller } => Refusal::denied(
                StatusCode::CONFLICT,
                "identity_conflict",
                format!("agent id '{agent_id}' is registered by {registered}, not by {caller}; choose another agent id"),
                "registration_refused",
                "agent_id_held_by_another_identity",
            ),
            StateError::NotOwner { agent_id, registered, caller } => Refusal::denied(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("agent '{agent_id}' was registered by {registered}; {caller} may not act on it"),
                "agent_action_refused",
                "not_owner",
            ),
            StateError::NameNotInCertificate(refusal) => Refusal::denied(
                StatusCode::FORBIDDEN,
                "name_not_in_certificate",
                refusal.message,
                "registration_refused",
                "name_not_in_certificate",
            ),
            StateError::NameHeld { name, holder, caller } => Refusal::denied(
                StatusCode::CONFLICT,
                "name_held_by_another_identity",
                format!(
                    "the name '{name}' is held by the live registrations of {holder}; {caller} may not register under it \
                     (one name, one identity: replicas of an agent share its certificate)"
                ),
                "registration_refused",
                "name_held_by_another_identity",
            ),
            StateError::QuotaExceeded { exceeded, caller } => Refusal::denied(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                exceeded.describe(&caller),
                "quota_exceeded",
                exceeded.rule,
            ),
            StateError::ProvideDenied { message, rule, tool } => {
                let mut refusal = Refusal::denied(StatusCode::FORBIDDEN, "provide_denied", message, "registration_refused", rule);
                if let Some(denial) = &mut refusal.denial {
                    denial.tool = Some(tool);
                }
                refusal
            }
        }
    }
}

/// The routes of the API, parsed from the path alone so that a known path with the wrong
/// method gets 405 rather than 404.
enum Route {
    Health,
    Agents,
    Agent(String),
    Heartbeat(String),
    Topology(String),
    Resolve,
    Bootstrap,
    TrustBundle,
    Entities,
    Entity(String),
    Audit,
    Policy,
    PolicyTest,
    Traces,
    Trace(String),
    /// The dashboard's page and its data (`/dashboard/...`), for admins.
    Dashboard,
}

impl Route {
    fn parse(path: &str) -> Result<Route, Refusal> {
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let agent_id = |segment: &str| {
            percent_decode(segment)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| Refusal::invalid(format!("'{segment}' is not a valid percent-encoded agent id")))
        };
        Ok(match segments.as_slice() {
            ["health"] => Route::Health,
            ["v1", "agents"] => Route::Agents,
            ["v1", "agents", id] => Route::Agent(agent_id(id)?),
            ["v1", "agents", id, "heartbeat"] => Route::Heartbeat(agent_id(id)?),
            ["v1", "agents", id, "topology"] => Route::Topology(agent_id(id)?),
            ["v1", "resolve"] => Route::Resolve,
            ["v1", "bootstrap"] => Route::Bootstrap,
            ["v1", "trust-bundle"] => Route::TrustBundle,
            ["v1", "entities"] => Route::Entities,
            ["v1", "audit"] => Route::Audit,
            ["v1", "policy"] => Route::Policy,
            ["v1", "policy", "test"] => Route::PolicyTest,
            ["v1", "traces"] => Route::Traces,
            ["v1", "traces", id] => Route::Trace((*id).to_owned()),
            ["dashboard", ..] => Route::Dashboard,
            ["v1", "entities", name] => Route::Entity(
                percent_decode(name)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| Refusal::invalid(format!("'{name}' is not a valid entity name")))?,
            ),
            _ => return Err(Refusal::new(StatusCode::NOT_FOUND, "not_found", format!("no route {path}; see registry/openapi.yaml"))),
        })
    }

    fn allowed(&self) -> &'static str {
        match self {
            Route::Health | Route::Topology(_) | Route::TrustBundle | Route::Audit | Route::Trace(_) | Route::Dashboard => "GET",
            Route::Agents | Route::Entities | Route::Traces => "GET, POST",
            Route::Agent(_) | Route::Entity(_) => "DELETE",
            Route::Heartbeat(_) | Route::Resolve | Route::Bootstrap | Route::PolicyTest => "POST",
            Route::Policy => "GET, PUT",
        }
    }
}

pub async fn handle(api: Arc<Api>, request: http::Request<Incoming>, peer: Arc<PeerInfo>) -> Response {
    respond(&api, request, &peer).await.unwrap_or_else(Refusal::into_response)
}

/// Who the peer is, from its chain as the trust stands now: checked on every request (verified
/// again after any change of the anchors or once a certificate expired), so a revoked entity's
/// agents are refused even on connections opened before the revocation.
fn authenticate(api: &Api, peer: &PeerInfo) -> Result<Caller, Refusal> {
    if !peer.is_authenticated() {
        return Err(Refusal::unauthenticated(
            "this route needs a client certificate from the mesh CA or an entity's CA; \
             only POST /v1/bootstrap (with a join token) is served without one"
                .to_owned(),
        ));
    }
    match api.trust.standing(&peer.chain) {
        Some(Standing::Mesh) => Ok(Caller::mesh(&peer.identity)),
        Some(Standing::Entity(entity)) => Ok(Caller { identity: peer.identity.to_string(), entity: Some(entity) }),
        None => Err(Refusal::denied(
            StatusCode::FORBIDDEN,
            "revoked",
            format!(
                "the certificate of {} no longer chains to the mesh trust bundle: its entity was revoked or it expired, \
                 or it names a SPIFFE ID outside its entity's trust domain; ask the mesh's operator to add its CA again \
                 (`toolmesh entity add --trust-domain TD`)",
                peer.identity
            ),
            "certificate_refused",
            "not_in_trust_bundle",
        )),
    }
}

/// Admins change entities, read the audit and may deregister any agent: mesh certificates
/// (never an entity's) whose SPIFFE ID is `spiffe://DOMAIN/operator/...`, or whose identity is
/// listed in `--admin-ids`.
fn is_admin(api: &Api, caller: &Caller) -> bool {
    let operator_path = toolmesh_core::SpiffeId::parse(&caller.identity).is_ok_and(|id| id.is_operator());
    caller.entity.is_none() && (operator_path || api.admin_ids.contains(&caller.identity))
}

/// Refuses `caller` unless it is an admin; `what` names the operation ("changing entities").
fn require_admin(api: &Api, caller: &Caller, what: &str) -> Result<(), Refusal> {
    if is_admin(api, caller) {
        return Ok(());
    }
    let whose = match &caller.entity {
        Some(entity) => format!("{} is a certificate of entity '{entity}'", caller.identity),
        None => format!("{} is not an admin", caller.identity),
    };
    Err(Refusal::denied(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "{what} needs an admin identity: a mesh certificate whose SPIFFE ID is spiffe://DOMAIN/operator/NAME \
             (`toolmesh certs issue NAME --role operator`) or an identity in the registry's --admin-ids; {whose}"
        ),
        "admin_required",
        "admin_required",
    ))
}

async fn respond(api: &Api, request: http::Request<Incoming>, peer: &PeerInfo) -> Result<Response, Refusal> {
    let (parts, body) = request.into_parts();
    let route = Route::parse(parts.uri.path())?;
    if let (Route::Bootstrap, &Method::POST) = (&route, &parts.method) {
        return bootstrap(api, peer.remote.ip(), &parts.headers, body).await;
    }
    let audit = |refusal: Refusal, entity: Option<&str>| {
        if let Some(denial) = refusal.denial.clone() {
            let subject = Subject { identity: &peer.identity, entity, origin: Some(peer.remote.to_string()) };
            api.audit.deny(&subject, *denial, &refusal.message);
        }
        refusal
    };
    let caller = &authenticate(api, peer).map_err(|refusal| audit(refusal, None))?;
    serve(api, route, parts, body, caller, peer).await.map_err(|refusal| audit(refusal, caller.entity.as_deref()))
}

/// Notes when the certificate `peer` presented for the agent expires, for the dashboard.
fn note_certificate(api: &Api, agent_id: &str, peer: &PeerInfo) {
    let Some(leaf) = peer.chain.first() else { return };
    if let Ok(summary) = toolmesh_ca::CertificateSummary::parse_der(leaf, "the agent's certificate") {
        api.registry.presented_certificate(agent_id, summary.not_after.unix_timestamp());
    }
}

/// Keeps the calls an agent's policy refused in the registry's audit, as reported by that agent
/// (whose identity the event names).
fn record_reported_denials(api: &Api, agent_id: &str, reporter: &Caller, denials: Vec<ReportedDenial>) {
    for denial in denials {
        api.audit.record(AuditEvent {
            time: denial.time,
            kind: denial.kind,
            rule: denial.rule,
            caller: denial.caller,
            entity: None,
            origin: denial.origin,
            agent: Some(agent_id.to_owned()),
            tool: Some(denial.tool),
            message: format!("refused by agent {agent_id} ({}) and reported with its heartbeat", reporter.identity),
        });
    }
}

/// Answers an authenticated caller's request.
async fn serve(
    api: &Api,
    route: Route,
    parts: http::request::Parts,
    body: Incoming,
    caller: &Caller,
    peer: &PeerInfo,
) -> Result<Response, Refusal> {
    let registry = &api.registry;
    let bundle_version = || Some(api.trust.bundle().version);
    // Admins see every provided tool; anyone else what the policy lets it discover.
    let viewer = (!is_admin(api, caller)).then_some(caller);
    Ok(match (&route, &parts.method) {
        (Route::Health, &Method::GET) => ok(&serde_json::json!({"status": "ok"})),
        (Route::Agents, &Method::GET) => ok(&registry.list(viewer)),
        (Route::Agents, &Method::POST) => {
            let request = json_body::<RegisterRequest>(body).await?;
            let (name, tools) = (request.name.clone(), tool_names(&request));
            let mut registered = registry.register(request, caller).map_err(|e| Refusal::from(e).about(&name, tools))?;
            registered.trust_bundle_version = bundle_version();
            registered.policy_version = api.policy.announced_version();
            note_certificate(api, &registered.agent_id, peer);
            ok(&registered)
        }
        (Route::Agent(id), &Method::DELETE) => {
            registry.deregister(id, caller, is_admin(api, caller)).map_err(|e| Refusal::from(e).about(id, None))?;
            no_content()
        }
        (Route::Heartbeat(id), &Method::POST) => {
            let beat: HeartbeatRequest = json_body(body).await?;
            crate::validate::reported_denials(&beat.denials).map_err(Refusal::invalid)?;
            crate::validate::reported_calls(&beat.calls).map_err(Refusal::invalid)?;
            let mut answer = registry.heartbeat(id, caller, beat.topology_version).map_err(|e| Refusal::from(e).about(id, None))?;
            record_reported_denials(api, id, caller, beat.denials);
            api.dashboard.record_calls(id, &beat.calls);
            note_certificate(api, id, peer);
            // Only the registry's own probe decides: a report alone never takes an agent out.
            crate::probe::spawn(registry, registry.reported(&beat.unreachable));
            answer.trust_bundle_version = bundle_version();
            answer.policy_version = api.policy.announced_version();
            ok(&answer)
        }
        (Route::TrustBundle, &Method::GET) => ok(&api.trust.bundle()),
        (Route::Entities, &Method::GET) => ok(&api.trust.list()),
        (Route::Entities, &Method::POST) => {
            require_admin(api, caller, "changing entities")?;
            let request: EntityRequest = json_body(body).await?;
            let trust = api.trust.clone();
            let entity = storing(move || trust.add(&request.name, &request.ca_cert, request.trust_domain.as_deref())).await??;
            apply_trust(api)?;
            tracing::info!(entity = %entity.name, ca = %Escaped(&entity.ca_subject), by = %Escaped(&caller.identity), "entity added: its agents may join");
            ok(&entity)
        }
        (Route::Entity(name), &Method::DELETE) => {
            require_admin(api, caller, "changing entities")?;
            let (trust, name) = (api.trust.clone(), name.to_owned());
            let entity = storing(move || trust.revoke(&name)).await??;
            apply_trust(api)?;
            let evicted = registry.evict_entity(&entity.name);
            tracing::info!(entity = %entity.name, by = %Escaped(&caller.identity), evicted = evicted.len(), "entity revoked: its agents are cut off");
            no_content()
        }
        (Route::Topology(id), &Method::GET) => long_poll(api, id, caller, WatchQuery::parse(parts.uri.query())?).await?,
        (Route::Audit, &Method::GET) => {
            require_admin(api, caller, "reading the audit")?;
            let query = AuditQuery::parse(parts.uri.query(), api.audit.capacity())?;
            ok(&AuditList { events: api.audit.recent(query.limit, query.kind.as_deref()) })
        }
        (Route::Resolve, &Method::POST) => {
            let spec = json_body::<DependencySpec>(body).await?;
            crate::validate::dependency("", &spec).map_err(Refusal::invalid)?;
            ok(&registry.resolve(&spec, viewer)?)
        }
        (Route::Policy, &Method::GET) => match api.policy.stored() {
            Some(stored) => ok(&stored),
            None => {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    "no_policy",
                    "no access policy has been applied at this registry: each agent enforces its own policy file or the built-in \
                     default (allow within the mesh); apply one with `toolmesh policy apply FILE`"
                        .to_owned(),
                ))
            }
        },
        (Route::Policy, &Method::PUT) => {
            require_admin(api, caller, "applying a policy")?;
            let document = json_body(body).await?;
            let (policy, registry) = (api.policy.clone(), registry.clone());
            let stored = storing(move || policy.apply(document, |policy| registry.replace_policy(policy))).await??;
            tracing::info!(
                version = stored.version,
                rules = stored.policy.rules.len(),
                by = %Escaped(&caller.identity),
                "access policy applied: agents take it at their next heartbeat"
            );
            ok(&stored)
        }
        (Route::Traces, &Method::POST) => {
            // Any mesh identity: every agent exports its own spans here.
            let request = otlp_body(&parts.headers, body).await?;
            api.traces.insert(request, &caller.identity).map_err(|e| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_otlp",
                    format!("the body is not a valid OTLP ExportTraceServiceRequest: {e}"),
                )
            })?;
            otlp_accepted()
        }
        (Route::Traces, &Method::GET) => {
            require_admin(api, caller, "reading traces")?;
            ok(&api.traces.recent(traces_listed(parts.uri.query())?))
        }
        (Route::Trace(id), &Method::GET) => {
            require_admin(api, caller, "reading traces")?;
            if crate::traces::parse_trace_id(id).is_none() {
                return Err(Refusal::invalid(format!(
                    "'{id}' is not a trace id: write its 32 hex digits, as `toolmesh trace --last 10` lists them"
                )));
            }
            match api.traces.trace(id) {
                Some(trace) => ok(&trace),
                None => return Err(unknown_trace(id, api.traces.limits())),
            }
        }
        (Route::Dashboard, &Method::GET | &Method::HEAD) => {
            require_admin(api, caller, "opening the dashboard over mutual TLS")?;
            api.dashboard.answer(&parts.uri).expect("the route holds dashboard paths only")
        }
        (Route::PolicyTest, &Method::POST) => {
            require_admin(api, caller, "testing the policy")?;
            let request: PolicyTestRequest = json_body(body).await?;
            ok(&crate::policy_test::answer(api, &request).map_err(Refusal::invalid)?)
        }
        (route, method) => {
            let message = format!("{method} is not allowed on {}; use {}", parts.uri.path(), route.allowed());
            let refusal = Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message);
            return Err(Refusal { allow: Some(route.allowed()), ..refusal });
        }
    })
}

/// Runs a change that stores what it changed off the async workers: a store blocks until the
/// change is durable (an fsync, a database round trip).
async fn storing<T: Send + 'static>(change: impl FnOnce() -> T + Send + 'static) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(change)
        .await
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("the change did not finish: {e}")))
}

/// The registry's own handshakes trust what the entities say, from now on.
fn apply_trust(api: &Api) -> Result<(), Refusal> {
    api.identity
        .replace_trust_bundle(&api.trust.bundle())
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("cannot apply the new trust bundle: {e}")))
}

/// `POST /v1/bootstrap`: a certificate for an agent that presents the join token.
async fn bootstrap(api: &Api, source: std::net::IpAddr, headers: &http::HeaderMap, body: Incoming) -> Result<Response, Refusal> {
    let Some(issuer) = &api.issuer else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this registry issues no certificates: it was started with certificate files, not --tls-auto".to_owned(),
        ));
    };
    // Too many failed join tokens from this source: refused until it cooled down, whatever it sends.
    let throttle = issuer.join_throttle();
    if let Some(wait) = throttle.cooling_down(source) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failed_joins",
            format!(
                "too many bootstrap requests from {source} presented a wrong or no join token; retry in {seconds} s with the token \
                 `toolmesh registry --tls-auto` printed (also in <state-dir>/join-token)"
            ),
        )
        .into_response();
        response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        return Ok(response);
    }
    let presented = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|token| issuer.token().admits(token)) {
        // Never the token itself: only why it was refused.
        let reason = match headers.get(http::header::AUTHORIZATION) {
            None => "no Authorization header",
            Some(_) if presented.is_none() => "an Authorization header that is not `Bearer <token>`",
            Some(_) => "a join token that is not this registry's",
        };
        let (failures, cooldown) = throttle.failed(source);
        match cooldown {
            Some(cooldown) => tracing::warn!(
                %source, reason, failures, cooldown_s = cooldown.as_secs(),
                "refused a bootstrap request: wrong join token; too many from this source, which is refused until it cools down"
            ),
            None => tracing::warn!(%source, reason, failures, "refused a bootstrap request: wrong join token"),
        }
        return Err(Refusal::unauthenticated(
            "the join token is missing or not this registry's: send `Authorization: Bearer <token>` with the token \
             `toolmesh registry --tls-auto` printed (also in <state-dir>/join-token)"
                .to_owned(),
        ));
    }
    throttle.succeeded(source);
    let request: BootstrapRequest = json_body(body).await?;
    let (certificate, spiffe_id, valid_for) = issuer.issue_agent(&request).map_err(|reason| {
        tracing::warn!(%source, name = %request.name, hosts = ?request.hosts, %reason, "refused to issue an agent certificate");
        Refusal::invalid(reason)
    })?;
    tracing::info!(identity = %spiffe_id, hosts = ?request.hosts, "issued an agent certificate");
    Ok(ok(&BootstrapResponse { certificate, spiffe_id, lifetime_ms: valid_for.as_millis() as u64, trust_bundle: api.trust.bundle() }))
}

/// The body of an OTLP/HTTP export request (protobuf, uncompressed), still encoded: the trace
/// store checks and indexes it.
async fn otlp_body(headers: &http::HeaderMap, body: Incoming) -> Result<Bytes, Refusal> {
    let unsupported = |message: String| Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message);
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some("application/x-protobuf") {
        return Err(unsupported(format!(
            "the registry takes OTLP traces as application/x-protobuf, not '{content_type}': set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
        )));
    }
    if let Some(encoding) = headers.get(http::header::CONTENT_ENCODING).filter(|v| v.as_bytes() != b"identity") {
        return Err(unsupported(format!(
            "the registry takes OTLP traces uncompressed, not in '{}': unset OTEL_EXPORTER_OTLP_COMPRESSION",
            String::from_utf8_lossy(encoding.as_bytes())
        )));
    }
    match read_body(body, MAX_TRACE_BODY_BYTES).await {
        Ok(bytes) => Ok(bytes),
        Err(refusal) => Err(text_refusal(refusal).await),
    }
}

/// OTLP/HTTP's success answer: an empty `ExportTraceServiceResponse`.
fn otlp_accepted() -> Response {
    http::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::new(Bytes::new()))
        .expect("static response parts are valid")
}

/// `?last=N` of `GET /v1/traces`.
fn traces_listed(query: Option<&str>) -> Result<usize, Refusal> {
    let mut last = DEFAULT_TRACES_LISTED;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        if let Some(value) = pair.strip_prefix("last=") {
            last = value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Refusal::invalid(format!("query parameter last='{value}' is not a positive integer")))?;
        }
    }
    Ok(last)
}

fn unknown_trace(id: &str, limits: crate::traces::TraceLimits) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "unknown_trace",
        format!(
            "the registry keeps no span of trace {id}: its agents have not exported it yet (they send every OTEL_BSP_SCHEDULE_DELAY ms, \
             5000 by default), they export to a collector of their own (OTEL_EXPORTER_OTLP_ENDPOINT is set: look there), or it was \
             evicted (the registry keeps the most recent {} spans / {} MiB); `toolmesh trace --last 20` lists what it keeps",
            limits.max_spans,
            limits.max_bytes / (1024 * 1024)
        ),
    )
}

/// The tools a registration names, for the audit: at most ten, comma-separated.
fn tool_names(request: &RegisterRequest) -> Option<String> {
    const SHOWN: usize = 10;
    let mut names: Vec<&str> = request.tools.iter().take(SHOWN).map(|t| t.name.as_str()).collect();
    if request.tools.len() > SHOWN {
        names.push("…");
    }
    (!names.is_empty()).then(|| names.join(","))
}

/// `?limit=N&kind=K` of `GET /v1/audit`.
struct AuditQuery {
    limit: usize,
    kind: Option<String>,
}

impl AuditQuery {
    const DEFAULT_LIMIT: usize = 100;

    fn parse(query: Option<&str>, capacity: usize) -> Result<AuditQuery, Refusal> {
        let mut parsed = AuditQuery { limit: Self::DEFAULT_LIMIT, kind: None };
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "limit" => {
                    parsed.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| Refusal::invalid(format!("query parameter limit='{value}' is not a positive integer")))?
                }
                "kind" => {
                    let kind = percent_decode(value).filter(|k| !k.is_empty() && k.len() <= 64);
                    parsed.kind =
                        Some(kind.ok_or_else(|| Refusal::invalid(format!("query parameter kind='{value}' is not an event kind")))?);
                }
                _ => {}
            }
        }
        parsed.limit = parsed.limit.min(capacity);
        Ok(parsed)
    }
}

/// `?since=V&wait_ms=N` of the topology long poll.
struct WatchQuery {
    since: u64,
    wait: Duration,
}

impl WatchQuery {
    fn parse(query: Option<&str>) -> Result<WatchQuery, Refusal> {
        let mut parsed = WatchQuery { since: 0, wait: DEFAULT_WAIT };
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| Refusal::invalid(format!("query parameter {name}='{value}' is not a non-negative integer")))
            };
            match name {
                "since" => parsed.since = number()?,
                "wait_ms" => parsed.wait = Duration::from_millis(number()?).min(MAX_WAIT),
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// The topology long poll; see [`ProbeIfAbandoned`] for what a poll that loses its connection
/// tells the registry.
async fn long_poll(api: &Api, agent_id: &str, caller: &Caller, query: WatchQuery) -> Result<Response, Refusal> {
    let _waiting = api.registry.metrics().long_poll_waiters.enter();
    let mut abandoned = ProbeIfAbandoned { api, agent_id, answered: false };
    let answer = next_topology(api, agent_id, caller, query).await;
    abandoned.answered = true;
    answer
}

/// Every registered agent holds a long poll open. One dropped before it was answered lost its
/// connection, and the agent may have died with it (the kernel closes a killed process's
/// sockets): the registry probes it at once rather than after a late heartbeat, and once more
/// shortly after (the kernel closes a dying process's sockets one by one: the first probe may
/// still find its listener). A poll the agent merely cancels costs two probes that find it serving.
struct ProbeIfAbandoned<'a> {
    api: &'a Api,
    agent_id: &'a str,
    answered: bool,
}

impl Drop for ProbeIfAbandoned<'_> {
    fn drop(&mut self) {
        if !self.answered && !*self.api.closing.borrow() {
            let registry = &self.api.registry;
            let rechecks = &[crate::probe::DYING_RECHECK];
            crate::probe::spawn_with_rechecks(registry, registry.reported(&[self.agent_id.to_owned()]), rechecks);
        }
    }
}

/// Answers with the agent's topology as soon as its version differs from `since`, or 204 when
/// `wait` passes first. Holds no lock while waiting: it waits on the agent's watch channel.
async fn next_topology(api: &Api, agent_id: &str, caller: &Caller, query: WatchQuery) -> Result<Response, Refusal> {
    let mut topology = api.registry.watch(agent_id, caller).map_err(|e| Refusal::from(e).about(agent_id, None))?;
    let mut closing = api.closing.clone();
    let deadline = tokio::time::Instant::now() + query.wait;
    loop {
        let current = topology.borrow_and_update().clone();
        if current.version != query.since {
            return Ok(ok(current.as_ref()));
        }
        tokio::select! {
            changed = tokio::time::timeout_at(deadline, topology.changed()) => match changed {
                Ok(Ok(())) => continue,
                // The sender is dropped when the agent is deregistered or evicted.
                Ok(Err(_)) => return Err(StateError::UnknownAgent(agent_id.to_owned()).into()),
                Err(_elapsed) => return Ok(no_content()),
            },
            _ = closing.wait_for(|closing| *closing) => return Ok(no_content()),
        }
    }
}

async fn json_body<T: DeserializeOwned>(body: Incoming) -> Result<T, Refusal> {
    let bytes = match read_body(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(refusal) => return Err(text_refusal(refusal).await),
    };
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&bytes)).map_err(|e| {
        // The member at fault by its path (`tools[2]: unknown field `tag`…`), as validation names it.
        let at = match e.path().to_string() {
            path if path == "." => String::new(),
            path => format!(" at {path}"),
        };
        let message = format!("the request body is not a valid {}{at}: {}", short_type_name::<T>(), e.inner());
        Refusal::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    })
}

/// `read_body` answers in plain text; this API answers every error as an `ApiError`.
async fn text_refusal(answer: Response) -> Refusal {
    let (parts, body) = answer.into_parts();
    let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_else(|never| match never {});
    let name = if parts.status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "invalid_request" };
    Refusal::new(parts.status, name, String::from_utf8_lossy(&text).into_owned())
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

fn ok(body: &impl serde::Serialize) -> Response {
    json_response(StatusCode::OK, body)
}

fn no_content() -> Response {
    http::Response::builder().status(StatusCode::NO_CONTENT).body(Body::new(Bytes::new())).expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_query_defaults_caps_and_names_bad_numbers() {
        let q = WatchQuery::parse(None).map_err(|_| "defaults").unwrap();
        assert_eq!((q.since, q.wait), (0, DEFAULT_WAIT));
        let q = WatchQuery::parse(Some("since=42&wait_ms=999999&other=x")).map_err(|_| "valid").unwrap();
        assert_eq!((q.since, q.wait), (42, MAX_WAIT));
        assert_eq!(WatchQuery::parse(Some("since=-1")).err().map(|r| r.status), Some(StatusCode::BAD_REQUEST));
    }
}
