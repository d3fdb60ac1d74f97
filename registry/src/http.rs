//! The registry's HTTP API (documented in `registry/openapi.yaml`): routing, bodies, and turning
//! every refusal into an `ApiError` with the right status.

use crate::auto::AutoIssuer;
use crate::state::{Caller, Registry, StateError};
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
    ApiError, BootstrapRequest, BootstrapResponse, DependencySpec, EntityRequest, HeartbeatRequest, RegisterRequest,
};
use toolmesh_core::server::{json_response, read_body, Body, PeerInfo};
use toolmesh_core::text::Escaped;
use toolmesh_core::tls::Identity;

/// Registrations carry tool input schemas; a megabyte leaves room for hundreds of tools.
const MAX_BODY_BYTES: usize = 1024 * 1024;
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
}

type Response = http::Response<Body>;

/// An error answer: status, stable `ApiError.error` name, and a message naming the problem.
struct Refusal {
    status: StatusCode,
    name: &'static str,
    message: String,
    allow: Option<&'static str>,
}

impl Refusal {
    fn new(status: StatusCode, name: &'static str, message: String) -> Self {
        Refusal { status, name, message, allow: None }
    }

    fn invalid(message: String) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn unauthenticated(message: String) -> Self {
        Refusal::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &ApiError { error: self.name.to_owned(), message: self.message });
        if let Some(allow) = self.allow {
            response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
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
            EntityError::Storage(e) => Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("cannot store the entities: {e}")),
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
            StateError::IdentityConflict { agent_id, registered, caller } => Refusal::new(
                StatusCode::CONFLICT,
                "identity_conflict",
                format!("agent id '{agent_id}' is registered by {registered}, not by {caller}; choose another agent id"),
            ),
            StateError::NotOwner { agent_id, registered, caller } => Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("agent '{agent_id}' was registered by {registered}; {caller} may not act on it"),
            ),
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
            ["v1", "entities", name] => Route::Entity(
                percent_decode(name).filter(|n| !n.is_empty()).ok_or_else(|| Refusal::invalid(format!("'{name}' is not a valid entity name")))?,
            ),
            _ => {
                return Err(Refusal::new(StatusCode::NOT_FOUND, "not_found", format!("no route {path}; see registry/openapi.yaml")))
            }
        })
    }

    fn allowed(&self) -> &'static str {
        match self {
            Route::Health | Route::Topology(_) | Route::TrustBundle => "GET",
            Route::Agents | Route::Entities => "GET, POST",
            Route::Agent(_) | Route::Entity(_) => "DELETE",
            Route::Heartbeat(_) | Route::Resolve | Route::Bootstrap => "POST",
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
        Some(Standing::Entity(entity)) => Ok(Caller { identity: peer.identity.clone(), entity: Some(entity) }),
        None => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "revoked",
            format!(
                "the certificate of {} no longer chains to the mesh trust bundle: its entity was revoked or it expired, \
                 or it names a SPIFFE ID outside its entity's trust domain; ask the mesh's operator to add its CA again \
                 (`toolmesh entity add --trust-domain TD`)",
                peer.identity
            ),
        )),
    }
}

/// Admins change entities: mesh certificates (never an entity's) whose SPIFFE ID is
/// `spiffe://DOMAIN/operator/...`, or whose identity is listed in `--admin-ids`.
fn require_admin(api: &Api, caller: &Caller) -> Result<(), Refusal> {
    let operator_path =
        caller.identity.strip_prefix("spiffe://").and_then(|rest| rest.split_once('/')).is_some_and(|(_, path)| path.starts_with("operator/"));
    if caller.entity.is_none() && (operator_path || api.admin_ids.contains(&caller.identity)) {
        return Ok(());
    }
    let whose = match &caller.entity {
        Some(entity) => format!("{} is a certificate of entity '{entity}'", caller.identity),
        None => format!("{} is not an admin", caller.identity),
    };
    Err(Refusal::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "changing entities needs an admin identity: a mesh certificate whose SPIFFE ID is spiffe://DOMAIN/operator/NAME \
             (`toolmesh certs issue NAME --role operator`) or an identity in the registry's --admin-ids; {whose}"
        ),
    ))
}

async fn respond(api: &Api, request: http::Request<Incoming>, peer: &PeerInfo) -> Result<Response, Refusal> {
    let (parts, body) = request.into_parts();
    let route = Route::parse(parts.uri.path())?;
    if let (Route::Bootstrap, &Method::POST) = (&route, &parts.method) {
        return bootstrap(api, peer.remote.ip(), &parts.headers, body).await;
    }
    let caller = &authenticate(api, peer)?;
    let registry = &api.registry;
    let bundle_version = || Some(api.trust.bundle().version);
    Ok(match (&route, &parts.method) {
        (Route::Health, &Method::GET) => ok(&serde_json::json!({"status": "ok"})),
        (Route::Agents, &Method::GET) => ok(&registry.list()),
        (Route::Agents, &Method::POST) => {
            let mut registered = registry.register(json_body::<RegisterRequest>(body).await?, caller)?;
            registered.trust_bundle_version = bundle_version();
            ok(&registered)
        }
        (Route::Agent(id), &Method::DELETE) => {
            registry.deregister(id, caller)?;
            no_content()
        }
        (Route::Heartbeat(id), &Method::POST) => {
            let beat: HeartbeatRequest = json_body(body).await?;
            let mut answer = registry.heartbeat(id, caller, beat.topology_version)?;
            answer.trust_bundle_version = bundle_version();
            ok(&answer)
        }
        (Route::TrustBundle, &Method::GET) => ok(&api.trust.bundle()),
        (Route::Entities, &Method::GET) => ok(&api.trust.list()),
        (Route::Entities, &Method::POST) => {
            require_admin(api, caller)?;
            let request: EntityRequest = json_body(body).await?;
            let entity = api.trust.add(&request.name, &request.ca_cert, request.trust_domain.as_deref())?;
            apply_trust(api)?;
            tracing::info!(entity = %entity.name, ca = %Escaped(&entity.ca_subject), by = %Escaped(&caller.identity), "entity added: its agents may join");
            ok(&entity)
        }
        (Route::Entity(name), &Method::DELETE) => {
            require_admin(api, caller)?;
            let entity = api.trust.revoke(name)?;
            apply_trust(api)?;
            let evicted = registry.evict_entity(name);
            tracing::info!(entity = %entity.name, by = %Escaped(&caller.identity), evicted = evicted.len(), "entity revoked: its agents are cut off");
            no_content()
        }
        (Route::Topology(id), &Method::GET) => long_poll(api, id, WatchQuery::parse(parts.uri.query())?).await?,
        (Route::Resolve, &Method::POST) => {
            let spec = json_body::<DependencySpec>(body).await?;
            crate::validate::dependency("", &spec).map_err(Refusal::invalid)?;
            ok(&registry.resolve(&spec)?)
        }
        (route, method) => {
            let message = format!("{method} is not allowed on {}; use {}", parts.uri.path(), route.allowed());
            let refusal = Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message);
            return Err(Refusal { allow: Some(route.allowed()), ..refusal });
        }
    })
}

/// The registry's own handshakes trust what the entities say, from now on.
fn apply_trust(api: &Api) -> Result<(), Refusal> {
    api.identity.replace_trust_bundle(&api.trust.bundle()).map_err(|e| {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("cannot apply the new trust bundle: {e}"))
    })
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
    Ok(ok(&BootstrapResponse {
        certificate,
        spiffe_id,
        lifetime_ms: valid_for.as_millis() as u64,
        trust_bundle: api.trust.bundle(),
    }))
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
                value.parse::<u64>().map_err(|_| {
                    Refusal::invalid(format!("query parameter {name}='{value}' is not a non-negative integer"))
                })
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

/// Answers with the agent's topology as soon as its version differs from `since`, or 204 when
/// `wait` passes first. Holds no lock while waiting: it waits on the agent's watch channel.
async fn long_poll(api: &Api, agent_id: &str, query: WatchQuery) -> Result<Response, Refusal> {
    let mut topology = api.registry.watch(agent_id)?;
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
    http::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::new(Bytes::new()))
        .expect("static response parts are valid")
}

/// Decodes `%XX` escapes of a path segment; `None` for a bad escape or non-UTF-8 result.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_round_trips_what_the_client_encodes() {
        assert_eq!(percent_decode("calc-1a2b").as_deref(), Some("calc-1a2b"));
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%e2%9c%93").as_deref(), Some("✓"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn watch_query_defaults_caps_and_names_bad_numbers() {
        let q = WatchQuery::parse(None).map_err(|_| "defaults").unwrap();
        assert_eq!((q.since, q.wait), (0, DEFAULT_WAIT));
        let q = WatchQuery::parse(Some("since=42&wait_ms=999999&other=x")).map_err(|_| "valid").unwrap();
        assert_eq!((q.since, q.wait), (42, MAX_WAIT));
        assert_eq!(WatchQuery::parse(Some("since=-1")).err().map(|r| r.status), Some(StatusCode::BAD_REQUEST));
    }
}
