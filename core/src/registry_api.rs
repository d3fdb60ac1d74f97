//! Wire types of the registry's HTTP API (documented in `registry/openapi.yaml`). Shared by the
//! registry server and the agents' registry client, so the two cannot drift apart.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// API path prefix.
pub const API_PREFIX: &str = "/v1";

/// A tool as an agent declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub capability: String,
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "empty_object_schema")]
    pub input_schema: Value,
    #[serde(default)]
    pub dependencies: Vec<DependencySpec>,
    /// Per-call timeout for this tool's dependencies, in milliseconds (default 30 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// MCP's tool annotations (`readOnlyHint`, `idempotentHint`, ...), listed by `tools/list` as
    /// declared. Callers read them too: a call to a tool that declares itself read-only or
    /// idempotent is retried on another provider when the connection breaks after delivery.
    #[serde(default, skip_serializing_if = "ToolAnnotations::is_empty")]
    pub annotations: ToolAnnotations,
    /// MCP's `outputSchema` (a JSON Schema of an object, kept verbatim): listed by `tools/list`,
    /// and every answer's `structuredContent` is checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Client capabilities the tool needs (`"sampling"`, `"elicitation"`, `"roots"`): a modern
    /// request whose client did not declare one is refused (-32021) before the handler runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_client_capabilities: Vec<String>,
    /// Whether a modern call may run as a task (the MCP tasks extension, SEP-2663): listed by
    /// `tools/list` as MCP's `execution.taskSupport`.
    #[serde(default, skip_serializing_if = "TaskSupport::is_forbidden")]
    pub task_support: TaskSupport,
}

/// MCP's `execution.taskSupport`: whether a tool's calls run as tasks (SEP-2663) for a client
/// that negotiated the tasks extension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskSupport {
    /// Calls always run synchronously (the default).
    #[default]
    Forbidden,
    /// A call from a client that negotiated tasks runs as a task unless it answers at once;
    /// other clients get the answer synchronously.
    Optional,
    /// Only a client that negotiated tasks may call it; any other is refused (-32021).
    Required,
}

impl TaskSupport {
    pub fn is_forbidden(&self) -> bool {
        *self == TaskSupport::Forbidden
    }

    /// MCP's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskSupport::Forbidden => "forbidden",
            TaskSupport::Optional => "optional",
            TaskSupport::Required => "required",
        }
    }
}

/// MCP's `ToolAnnotations`: hints about a tool's behaviour, in MCP's own member names. Read
/// tolerantly (MCP may add hints); a declaration is checked against the known names
/// ([`ToolAnnotations::KNOWN`]) so that a misspelt hint is an error rather than ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolAnnotations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The tool does not change its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    /// The tool may perform destructive updates (meaningful only when not read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    /// Calling the tool again with the same arguments has no additional effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    /// The tool interacts with an open world of external entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

impl ToolAnnotations {
    /// The members a declaration may set, as MCP names them.
    pub const KNOWN: &'static [&'static str] = &["title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"];

    pub fn is_empty(&self) -> bool {
        *self == ToolAnnotations::default()
    }

    /// Whether a call may be sent again after the provider may have acted on it: the tool says
    /// it is read-only or idempotent.
    pub fn safe_to_repeat(&self) -> bool {
        self.read_only_hint == Some(true) || self.idempotent_hint == Some(true)
    }
}

impl ToolInfo {
    /// Tools as a binding declares them (a JSON array): a capability left out, null or empty is
    /// the tool's name, whatever the language. The registry's API still requires one.
    pub fn parse_declared(json: &str) -> serde_json::Result<Vec<ToolInfo>> {
        let mut tools: Vec<Value> = serde_json::from_str(json)?;
        for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
            let unset = match tool.get("capability") {
                None | Some(Value::Null) => true,
                Some(Value::String(capability)) => capability.is_empty(),
                Some(_) => false,
            };
            if let (true, Some(name)) = (unset, tool.get("name").cloned()) {
                tool.insert("capability".to_owned(), name);
            }
            if let Some(Value::Object(annotations)) = tool.get("annotations") {
                if let Some(unknown) = annotations.keys().find(|k| !ToolAnnotations::KNOWN.contains(&k.as_str())) {
                    return Err(serde::de::Error::custom(format!(
                        "unknown tool annotation '{unknown}'; MCP's annotations are {}",
                        ToolAnnotations::KNOWN.join(", ")
                    )));
                }
            }
            if tool.get("task_support").is_some_and(Value::is_null) {
                tool.remove("task_support");
            }
            match tool.get("task_support") {
                None => {}
                Some(Value::String(declared)) if ["forbidden", "optional", "required"].contains(&declared.as_str()) => {}
                Some(other) => {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                    return Err(serde::de::Error::custom(format!(
                        "tool '{}': task_support must be \"forbidden\", \"optional\" or \"required\" (MCP's execution.taskSupport), got {}",
                        crate::text::escape(name),
                        crate::text::escape(&other.to_string())
                    )));
                }
            }
        }
        serde_json::from_value(Value::Array(tools))
    }
}

pub fn default_version() -> String {
    "1.0.0".to_owned()
}

pub fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// One tag term of a dependency: `"tag"` (required), `"+tag"` (preferred), `"-tag"` (excluded),
/// or a list of tags of which at least one must be present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TagSelector {
    One(String),
    AnyOf(Vec<String>),
}

/// What a tool depends on: a capability, narrowed by tags and a semver constraint.
/// Deserializes from a bare capability string too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencySpec {
    pub capability: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl DependencySpec {
    pub fn capability(capability: impl Into<String>) -> Self {
        DependencySpec { capability: capability.into(), tags: Vec::new(), version: None }
    }

    /// A canonical key, equal for equal specs: how resolutions are looked up.
    pub fn key(&self) -> String {
        serde_json::to_string(self).expect("a dependency spec always serializes")
    }
}

impl<'de> Deserialize<'de> for DependencySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            capability: String,
            #[serde(default)]
            tags: Vec<TagSelector>,
            #[serde(default)]
            version: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Full(Full),
        }
        match Form::deserialize(deserializer)? {
            Form::Name(capability) => Ok(DependencySpec::capability(capability)),
            Form::Full(f) => Ok(DependencySpec { capability: f.capability, tags: f.tags, version: f.version }),
        }
    }
}

// Request bodies are read strictly, as `registry/openapi.yaml` declares them
// (`additionalProperties: false`): a member the document does not name is refused, so a typo
// (`"tag"` for `"tags"`) is an error rather than a silently dropped setting. Answers stay
// tolerant: agents read them with the types below, which ignore members a newer registry adds.
// `ToolInfo` is both (agents declare tools with it, and read them back in `AgentList`), so a
// registration reads its tools through [`StrictToolInfo`].

/// `POST /v1/agents`: register (or re-register) an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Chosen by the agent at start and kept for its lifetime, so re-registration is idempotent.
    pub agent_id: String,
    pub name: String,
    /// `https://host:port/mcp`
    pub endpoint: String,
    #[serde(deserialize_with = "strict_tools")]
    pub tools: Vec<ToolInfo>,
}

/// [`ToolInfo`] as a registration carries it: the same members and defaults, none other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictToolInfo {
    name: String,
    capability: String,
    #[serde(default = "default_version")]
    version: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default = "empty_object_schema")]
    input_schema: Value,
    #[serde(default)]
    dependencies: Vec<DependencySpec>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    annotations: StrictAnnotations,
    #[serde(default)]
    output_schema: Option<Value>,
    #[serde(default)]
    required_client_capabilities: Vec<String>,
    #[serde(default)]
    task_support: TaskSupport,
}

/// [`ToolAnnotations`] as a registration carries them: MCP's members, none other.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StrictAnnotations {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    read_only_hint: Option<bool>,
    #[serde(default)]
    destructive_hint: Option<bool>,
    #[serde(default)]
    idempotent_hint: Option<bool>,
    #[serde(default)]
    open_world_hint: Option<bool>,
}

impl From<StrictToolInfo> for ToolInfo {
    fn from(t: StrictToolInfo) -> Self {
        // Exhaustive on purpose: a member added to `ToolInfo` must be added to the strict form.
        let StrictToolInfo {
            name,
            capability,
            version,
            tags,
            description,
            input_schema,
            dependencies,
            timeout_ms,
            annotations,
            output_schema,
            required_client_capabilities,
            task_support,
        } = t;
        let StrictAnnotations { title, read_only_hint, destructive_hint, idempotent_hint, open_world_hint } = annotations;
        let annotations = ToolAnnotations { title, read_only_hint, destructive_hint, idempotent_hint, open_world_hint };
        ToolInfo {
            name,
            capability,
            version,
            tags,
            description,
            input_schema,
            dependencies,
            timeout_ms,
            annotations,
            output_schema,
            required_client_capabilities,
            task_support,
        }
    }
}

fn strict_tools<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ToolInfo>, D::Error> {
    Ok(Vec::<StrictToolInfo>::deserialize(deserializer)?.into_iter().map(ToolInfo::from).collect())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub agent_id: String,
    pub heartbeat_interval_ms: u64,
    pub topology: Topology,
    /// The version of the mesh trust bundle; fetch `GET /v1/trust-bundle` when it differs from
    /// the one held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_bundle_version: Option<u64>,
    /// The version of the access policy applied at the registry, if one is; fetch
    /// `GET /v1/policy` when it differs from the one enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u64>,
    /// The registry started less than one eviction window ago: agents registered before its
    /// restart may not have registered again yet, so a provider missing from `topology` may
    /// still be alive. Agents keep the providers they knew and this answer lacks until an answer
    /// without the flag (or until the registry lists them again: from then on its word counts).
    #[serde(default, skip_serializing_if = "is_false")]
    pub warming_up: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `POST /v1/agents/{id}/heartbeat`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The topology version the agent holds; the answer carries a topology only if it changed.
    pub topology_version: u64,
    /// Calls this agent refused since its last heartbeat (at most [`MAX_REPORTED_DENIALS`]),
    /// for the registry's audit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<ReportedDenial>,
    /// The agents (ids) this agent could not connect to since its last heartbeat; the registry
    /// probes them and lists those it cannot connect to either as `unreachable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
    /// The calls this agent made since its last heartbeat, per provider agent (at most
    /// [`MAX_REPORTED_CALLEES`]): the registry's dashboard draws its call graph from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<ReportedCalls>,
}

/// Most denials one heartbeat reports; an agent keeps no more than this between heartbeats.
pub const MAX_REPORTED_DENIALS: usize = 64;

/// Most provider agents one heartbeat reports calls to; calls to others in the same interval
/// are not reported.
pub const MAX_REPORTED_CALLEES: usize = 64;

/// The calls an agent made to one provider agent between two heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedCalls {
    /// The provider agent's id.
    pub agent_id: String,
    /// Calls that ended (whatever their outcome) under that provider, tried last.
    pub calls: u64,
    /// Those of them that failed (a mesh error, a tool error, or cancelled).
    pub errors: u64,
    /// Their durations added up, in nanoseconds (every attempt, backoff and failover included).
    pub duration_ns: u64,
}

/// A call an agent's policy refused, as its heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedDenial {
    /// `call_denied`, `rate_limited`, `origin_rejected` or `origin_out_of_scope`.
    pub kind: String,
    /// The caller's certificate identity.
    pub caller: String,
    /// The origin of the chain, when it is not the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub tool: String,
    /// The policy rule that decided (`-` when none did, e.g. a forged origin).
    pub rule: String,
    /// When, RFC 3339 in UTC.
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
    /// As in [`RegisterResponse::trust_bundle_version`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_bundle_version: Option<u64>,
    /// As in [`RegisterResponse::policy_version`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u64>,
    /// As in [`RegisterResponse::warming_up`]; its absence ends the agent's keeping of providers.
    #[serde(default, skip_serializing_if = "is_false")]
    pub warming_up: bool,
}

/// The providers of every dependency of one agent. `version` is a hash of the content: equal
/// versions mean equal topologies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub version: u64,
    pub dependencies: Vec<ResolvedDependency>,
}

impl Topology {
    pub fn new(dependencies: Vec<ResolvedDependency>) -> Self {
        let bytes = serde_json::to_vec(&dependencies).expect("a topology always serializes");
        Topology { version: fnv1a(&bytes), dependencies }
    }
}

/// 64-bit FNV-1a: stable across processes and versions (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedDependency {
    /// [`DependencySpec::key`] of the dependency.
    pub key: String,
    pub spec: DependencySpec,
    /// Healthy matching providers, best first (see [`crate::resolve`]).
    pub providers: Vec<Provider>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    pub agent_id: String,
    pub agent_name: String,
    pub endpoint: String,
    pub tool: String,
    pub capability: String,
    pub version: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// How many `+preferred` tags this provider carries; the highest score is tried first.
    #[serde(default)]
    pub score: u32,
    /// The tool's MCP annotations, as its agent declared them: a caller retries a call to a
    /// read-only or idempotent tool on another provider when the connection breaks after
    /// delivery.
    #[serde(default, skip_serializing_if = "ToolAnnotations::is_empty")]
    pub annotations: ToolAnnotations,
    /// The parameters the tool's input schema mirrors in headers (`x-mcp-header`, SEP-2243): a
    /// caller sends each one it gives as `Mcp-Param-{header}`, or the provider refuses the call.
    /// Only these pairs travel, not the whole schema, to keep topologies small.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub param_headers: Vec<ParamHeader>,
}

impl Provider {
    /// `tool` of the agent `agent_id` (named `agent_name`, serving at `endpoint`), as a provider
    /// with no preference score.
    pub fn of(agent_id: &str, agent_name: &str, endpoint: &str, tool: &ToolInfo) -> Provider {
        Provider {
            agent_id: agent_id.to_owned(),
            agent_name: agent_name.to_owned(),
            endpoint: endpoint.to_owned(),
            tool: tool.name.clone(),
            capability: tool.capability.clone(),
            version: tool.version.clone(),
            tags: tool.tags.clone(),
            score: 0,
            annotations: tool.annotations.clone(),
            param_headers: crate::mcp::mirrored_parameters(&tool.input_schema)
                .map(|(parameter, header)| ParamHeader { parameter: parameter.to_owned(), header: header.to_owned() })
                .collect(),
        }
    }
}

/// A tool parameter mirrored in the `Mcp-Param-{header}` request header (SEP-2243).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamHeader {
    pub parameter: String,
    pub header: String,
}

/// `POST /v1/resolve`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolveResponse {
    pub providers: Vec<Provider>,
}

/// `GET /v1/agents`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<AgentInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_id: String,
    pub name: String,
    pub endpoint: String,
    pub tools: Vec<ToolInfo>,
    /// `healthy`; `stale` when a heartbeat is overdue (evicted after three missed intervals);
    /// `unreachable` when the registry could not connect to the agent since its last heartbeat
    /// (it probes agents whose heartbeat is late, and those a caller reports). Readers should
    /// treat a value they do not know as not healthy.
    pub status: String,
    /// Milliseconds since the last heartbeat.
    pub last_seen_ms: u64,
    /// The identity of the certificate the agent registered with (URI SAN, else subject CN).
    pub identity: String,
    /// The entity whose CA the agent's certificate chains to; absent for the mesh's own CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
}

/// `POST /v1/bootstrap`: an agent without a certificate asks the registry's CA for one,
/// authenticated by the join token (`Authorization: Bearer <token>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    /// The agent's name: its certificate names `spiffe://<trust-domain>/agent/<name>`.
    pub name: String,
    /// A PEM certificate signing request; only its public key is used.
    pub csr: String,
    /// Host names or IP addresses peers dial the agent at (besides localhost and loopback).
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapResponse {
    /// The issued certificate, PEM.
    pub certificate: String,
    pub spiffe_id: String,
    /// How long the certificate is valid from now, in milliseconds (renew well before).
    pub lifetime_ms: u64,
    pub trust_bundle: TrustBundle,
}

/// `GET /v1/trust-bundle`: the CAs peers must chain to (the mesh CA and every entity's CA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustBundle {
    pub version: u64,
    /// PEM certificates.
    pub pem: String,
    /// The same CAs, each with what certificates chaining to it may speak for. A bundle without
    /// anchors (an older registry) makes its CAs trusted for no SPIFFE identity and never as the
    /// registry: identities are bound to anchors, never taken from what a peer claims.
    #[serde(default)]
    pub anchors: Vec<TrustAnchor>,
}

/// One CA of the trust bundle and the identities it may vouch for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustAnchor {
    /// One CA certificate, PEM.
    pub ca_cert: String,
    /// The entity the CA belongs to; absent for the mesh CA, the only anchor that may vouch for
    /// the registry and for every trust domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The SPIFFE trust domains (`partner.example`, without `spiffe://`) its certificates may
    /// name: an entity's own; for the mesh CA, the mesh's (informative).
    #[serde(default)]
    pub trust_domains: Vec<String>,
}

/// `POST /v1/entities`: trust another organisation's CA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRequest {
    pub name: String,
    /// The entity's CA certificate, PEM.
    pub ca_cert: String,
    /// The SPIFFE trust domain the entity's certificates name (`partner.example`); the default
    /// is the one its CA was made for, else the entity's name in lower case. Its CA may vouch for no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub name: String,
    /// SHA-256 of the CA certificate (DER), hex.
    pub ca_fingerprint: String,
    pub ca_subject: String,
    /// When the CA stops being valid (RFC 3339).
    pub ca_not_after: String,
    /// When the entity was added (RFC 3339).
    pub added_at: String,
    /// The SPIFFE trust domain its certificates may name.
    #[serde(default)]
    pub trust_domain: String,
}

/// `GET /v1/entities`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityList {
    pub entities: Vec<Entity>,
}

/// `GET /v1/policy`, `PUT /v1/policy`: the access policy the registry holds, with its version
/// (1 for the first applied, one more for each apply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub version: u64,
    pub policy: crate::policy::PolicyDocument,
}

/// `POST /v1/policy/test`: what the policy decides for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestRequest {
    /// The caller's SPIFFE ID.
    pub from: String,
    /// The origin of the chain, when it is not the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub tool: String,
    /// The providing agent; every registered provider of `tool` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `call` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::policy::Phase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyTestResponse {
    /// The version of the policy that decided; 0 when none is applied (the built-in allow-mesh).
    pub version: u64,
    pub decisions: Vec<PolicyTestDecision>,
    /// Set when no provider of the tool is registered: the decision is then for capability =
    /// tool name, on the agent asked for (or `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The decision for one provider of the tool (or for the tool alone when none is registered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyTestDecision {
    pub agent: String,
    pub tool: String,
    pub capability: String,
    pub allowed: bool,
    pub rule: String,
}

/// The body of every error answer of the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
}

/// One audited denial, as `GET /v1/audit` lists it: who was refused what, where from, and by
/// which rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, RFC 3339 in UTC.
    pub time: String,
    /// What was denied: `registration_refused`, `agent_action_refused`, `quota_exceeded`,
    /// `admin_required`, `certificate_refused`; later `policy_denied` and `bootstrap_refused`.
    pub kind: String,
    /// Which rule denied it, e.g. `name_not_in_certificate`, `max_agents_per_identity`.
    pub rule: String,
    /// The caller's certificate identity (SPIFFE ID, else CN).
    pub caller: String,
    /// The entity whose CA the caller's certificate chains to; absent for the mesh's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The address the request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The agent name or id the request was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The tool(s) the request was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The answer the caller got.
    pub message: String,
}

/// `GET /v1/audit`: the most recent events, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditList {
    pub events: Vec<AuditEvent>,
}

/// `GET /v1/traces?last=N`: the most recent traces the registry keeps, newest (by start) first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceList {
    pub traces: Vec<TraceSummary>,
}

/// One trace in a [`TraceList`]: its root span and its extent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSummary {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The name of the span without a parent (else the earliest whose parent is not kept).
    pub root_name: String,
    /// The `service.name` of the process that recorded the root span.
    pub root_service: String,
    /// The earliest start of its spans.
    pub start_unix_nano: u64,
    /// From the earliest start to the latest end of its spans.
    pub duration_ns: u64,
    pub span_count: usize,
    /// Spans whose status is `ERROR`.
    pub error_count: usize,
}

/// `GET /v1/traces/{trace_id}`: the spans of one trace, by start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceDetail {
    pub trace_id: String,
    pub spans: Vec<TraceSpan>,
}

/// One span of a [`TraceDetail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSpan {
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// The `service.name` of the process that recorded it.
    pub service: String,
    pub kind: TraceSpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// The status message of a failed span (`"error"` when it gave none); `None` otherwise.
    pub error: Option<String>,
    /// Every attribute as text (numbers in decimal, booleans as `true`/`false`).
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Which side of an operation a span is: OTLP's kinds, producer counted as client and consumer
/// as server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceSpanKind {
    Client,
    Server,
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_tool_provides_its_name_unless_it_names_a_capability() {
        let json = r#"[{"name":"a"},{"name":"b","capability":null},{"name":"c","capability":""},{"name":"d","capability":"sum"}]"#;
        let tools = ToolInfo::parse_declared(json).unwrap();
        let capabilities: Vec<_> = tools.iter().map(|t| t.capability.as_str()).collect();
        assert_eq!(capabilities, ["a", "b", "c", "sum"]);
        assert!(ToolInfo::parse_declared(r#"[{"capability":"x"}]"#).unwrap_err().to_string().contains("missing field `name`"));
        // The registry's API is not the declaration: there, a capability is required.
        assert!(serde_json::from_str::<ToolInfo>(r#"{"name":"a"}"#).is_err());
    }

    #[test]
    fn dependency_spec_accepts_a_name_or_an_object() {
        let d: DependencySpec = serde_json::from_str(r#""add""#).unwrap();
        assert_eq!(d, DependencySpec::capability("add"));
        let d: DependencySpec = serde_json::from_str(r#"{"capability":"add","tags":["math","+fast",["a","b"]],"version":">=1"}"#).unwrap();
        assert_eq!(d.tags[2], TagSelector::AnyOf(vec!["a".into(), "b".into()]));
        assert!(serde_json::from_str::<DependencySpec>(r#"{"capability":"x","tag":["y"]}"#).is_err());
    }

    #[test]
    fn requests_refuse_unknown_members_and_answers_tolerate_them() {
        let register = |tool: &str, extra: &str| {
            serde_json::from_str::<RegisterRequest>(&format!(
                r#"{{"agent_id":"x","name":"x","endpoint":"https://h/mcp","tools":[{tool}]{extra}}}"#
            ))
        };
        let tool = register(r#"{"name":"a","capability":"a"}"#, "").expect("a minimal registration").tools.remove(0);
        assert_eq!((tool.version.as_str(), &tool.input_schema), ("1.0.0", &empty_object_schema()), "defaults as in ToolInfo");
        let top = register(r#"{"name":"a","capability":"a"}"#, r#","extra":1"#).expect_err("unknown top-level member");
        assert!(top.to_string().contains("unknown field `extra`"), "{top}");
        let nested = register(r#"{"name":"a","capability":"a","tag":["x"]}"#, "").expect_err("unknown tool member");
        assert!(nested.to_string().contains("unknown field `tag`"), "{nested}");
        assert!(serde_json::from_str::<HeartbeatRequest>(r#"{"topology_version":1,"since":2}"#).is_err());
        assert!(serde_json::from_str::<EntityRequest>(r#"{"name":"p","ca_cert":"x","trust-domain":"p"}"#).is_err());
        assert!(serde_json::from_str::<BootstrapRequest>(r#"{"name":"p","csr":"x","host":["h"]}"#).is_err());
        // What agents read from a newer registry may carry members this version does not know.
        let list = r#"{"agents":[{"agent_id":"x","name":"x","endpoint":"https://h/mcp","status":"healthy","last_seen_ms":1,
            "identity":"i","zone":"eu","tools":[{"name":"a","capability":"a","cost":3}]}],"next":null}"#;
        assert_eq!(serde_json::from_str::<AgentList>(list).expect("tolerant answer").agents[0].tools[0].name, "a");
        let beat = r#"{"warming_up":true,"leader":"r2"}"#;
        assert!(serde_json::from_str::<HeartbeatResponse>(beat).expect("tolerant answer").warming_up);
    }

    #[test]
    fn topology_version_depends_only_on_content() {
        let dep = ResolvedDependency { key: "k".into(), spec: DependencySpec::capability("a"), providers: vec![] };
        assert_eq!(Topology::new(vec![dep.clone()]).version, Topology::new(vec![dep.clone()]).version);
        assert_ne!(Topology::new(vec![dep]).version, Topology::new(vec![]).version);
    }
}
