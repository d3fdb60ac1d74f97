//! The callee's side of authorization: every inbound `tools/call` and `tools/list` (and the
//! `resources/*` and `prompts/*` reads and lists, decided by the same rules) is decided
//! here, in core, whatever language serves the tools and whatever the registry says.

use crate::error::{Error, ErrorKind};
use crate::metrics::Counter;
use crate::origin::{Origins, VerifiedOrigin};
use crate::policy::{call_denied_message, Limiter, Permit, Phase, Policy, Principal, Query, SharedPolicy, Target};
use crate::registry_api::{ReportedDenial, ToolInfo, MAX_REPORTED_DENIALS};
use crate::server::PeerInfo;
use crate::spiffe_id::SpiffeId;
use crate::tls::Identity;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

/// Decides for one agent; shared by its MCP server and updated with new policy versions.
pub struct Gate {
    policy: SharedPolicy,
    limiter: Arc<Limiter>,
    origins: Origins,
    identity: Arc<Identity>,
    agent_name: String,
    /// The trust domain of our own SPIFFE ID (an identity keeps its name through renewals and
    /// reloads), if it has one.
    own_trust_domain: Option<String>,
    /// Refusals not yet reported to the registry's audit (the newest, when more pile up).
    unreported: Mutex<VecDeque<ReportedDenial>>,
    /// Refusals since the start, by [`DENIAL_KINDS`].
    denials: [Counter; DENIAL_KINDS.len()],
}

/// Why the gate refuses a request, as its audit events and metrics name it.
const DENIAL_KINDS: [&str; 4] = ["call_denied", "rate_limited", "origin_rejected", "origin_out_of_scope"];

/// A call let through: who it is from, and its place in a concurrency limit (held to the end).
pub struct Admitted {
    pub origin: Option<Arc<VerifiedOrigin>>,
    pub _permit: Option<Permit>,
}

/// Who is asking, resolved once per request.
pub struct Caller<'a> {
    peer: &'a PeerInfo,
    entity: Option<String>,
    origin: Option<Arc<VerifiedOrigin>>,
    origin_entity: Option<String>,
}

impl Gate {
    pub fn new(identity: Arc<Identity>, agent_name: &str, policy: Policy) -> Self {
        Gate {
            policy: SharedPolicy::new(policy),
            limiter: Arc::default(),
            origins: Origins::new(identity.clone()),
            own_trust_domain: SpiffeId::parse(identity.name()).ok().map(|id| id.trust_domain().to_owned()),
            identity,
            agent_name: agent_name.to_owned(),
            unreported: Mutex::default(),
            denials: Default::default(),
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.current()
    }

    /// Takes a new policy for the next decisions; calls in flight finish under the old one.
    pub fn replace_policy(&self, policy: Policy) {
        tracing::info!(version = policy.version(), rules = policy.document().rules.len(), "policy updated");
        self.policy.replace(policy);
    }

    /// Resolves the caller of a request: its entity, and the origin chain it sent (verified).
    pub fn caller<'a>(&self, peer: &'a PeerInfo, origin_header: Option<&str>) -> Result<Caller<'a>, Error> {
        let origin = origin_header
            .map(|header| self.origins.verify(header, &peer.identity, &peer.chain))
            .transpose()
            .inspect_err(|e| {
                tracing::warn!(target: "toolmesh::audit", event = "origin_rejected", caller = %peer.identity, reason = %e.message(), "origin rejected");
                self.report("origin_rejected", &peer.identity, None, "-", "-");
            })?;
        let entity = peer.trust_domain().and_then(|domain| self.entity_of_trust_domain(domain));
        // Most chains start with the peer itself.
        let origin_entity =
            origin.as_ref().and_then(|o| if *o.identity == *peer.identity { entity.clone() } else { self.entity_of(&o.identity) });
        Ok(Caller { entity, peer, origin, origin_entity })
    }

    /// Decides a `tools/call` of `tool` and applies the allowing rule's limits.
    pub fn admit_call(&self, caller: Caller<'_>, tool: &ToolInfo) -> Result<Admitted, Error> {
        self.admit(caller, "tool", self.target(tool), |query, rule| {
            call_denied_message(&query.source, query.origin.as_ref(), &query.target, rule)
        })
    }

    /// Decides a `resources/read` or `prompts/get` (`kind`: "resource" or "prompt") of the entry
    /// named `name`, by the same rules as a `tools/call`: the policy is asked about a `tools/call`
    /// of a tool named `name` with no capability and no tags, so a rule that names nothing
    /// particular (a source, every tool) decides resources and prompts as it decides tools, and a
    /// rule narrowed to capabilities or tags does not reach them. Limits and origin scopes apply
    /// as to tools.
    pub fn admit_named(&self, caller: Caller<'_>, kind: &str, name: &str) -> Result<Admitted, Error> {
        self.admit(caller, kind, self.named_target(name), |query, rule| {
            format!(
                "{}{} may not read {kind} '{name}' of agent '{}' (policy rule '{rule}'; a {kind} is decided like a tools/call of a tool named '{name}'); an operator can allow it with a rule (toolmesh policy apply)",
                query.source.identity,
                match &query.origin {
                    Some(o) if o.identity != query.source.identity => format!(" on behalf of {}", o.identity),
                    _ => String::new(),
                },
                self.agent_name
            )
        })
    }

    fn admit(
        &self,
        caller: Caller<'_>,
        kind: &str,
        target: Target<'_>,
        denied: impl FnOnce(&Query<'_>, &str) -> String,
    ) -> Result<Admitted, Error> {
        let name = target.tool;
        if let Some(origin) = &caller.origin {
            if !origin.reaches(name) {
                let scope: Vec<&str> = origin.scope().collect();
                let message = format!(
                    "the chain started by {} reaches only [{}]; {kind} '{}' is outside it",
                    origin.identity,
                    scope.join(", "),
                    name
                );
                self.audit("origin_out_of_scope", &caller, name, "-");
                return Err(Error::new(ErrorKind::OriginRejected, message));
            }
        }
        let policy = self.policy.current();
        let query = caller.query(Phase::Call, "tools/call", target);
        let decision = policy.decide(&query);
        if !decision.allowed {
            self.audit("call_denied", &caller, name, &decision.rule);
            return Err(Error::new(ErrorKind::CallDenied, denied(&query, &decision.rule)));
        }
        let permit = match &decision.limits {
            Some(limits) => Some(self.limiter.admit(&decision.rule, limits, &caller.peer.identity, name).map_err(|exceeded| {
                self.audit("rate_limited", &caller, name, &decision.rule);
                Error::new(ErrorKind::RateLimited, exceeded.message)
            })?),
            None => None,
        };
        Ok(Admitted { origin: caller.origin, _permit: permit })
    }

    /// Whether `resources/list`, `resources/templates/list` or `prompts/list` shows the entry
    /// named `name` to the caller: the `discover` rule of `tools/list` for a tool so named (see
    /// [`Gate::admit_named`]).
    pub fn may_list_named(&self, policy: &Policy, caller: &Caller<'_>, name: &str) -> bool {
        policy.decide(&caller.query(Phase::Discover, "tools/list", self.named_target(name))).allowed
    }

    fn named_target<'t>(&'t self, name: &'t str) -> Target<'t> {
        Target { agent: &self.agent_name, tool: name, capability: "", tags: &[] }
    }

    /// Whether `tools/list` shows `tool` to the caller (the `discover` phase).
    pub fn may_list(&self, policy: &Policy, caller: &Caller<'_>, tool: &ToolInfo) -> bool {
        policy.decide(&caller.query(Phase::Discover, "tools/list", self.target(tool))).allowed
    }

    fn target<'t>(&'t self, tool: &'t ToolInfo) -> Target<'t> {
        Target { agent: &self.agent_name, tool: &tool.name, capability: &tool.capability, tags: &tool.tags }
    }

    /// The partner entity behind an identity of another trust domain than ours.
    fn entity_of(&self, identity: &str) -> Option<String> {
        // Only a SPIFFE ID has a trust domain; a certificate without one (CN only) is named by
        // no entity's trust domain.
        self.entity_of_trust_domain(SpiffeId::parse(identity).ok()?.trust_domain())
    }

    fn entity_of_trust_domain(&self, domain: &str) -> Option<String> {
        if self.own_trust_domain.as_deref() == Some(domain) {
            return None;
        }
        self.identity.entity_of_trust_domain(domain)
    }

    /// How many requests were refused since the start, by why.
    pub fn denials(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DENIAL_KINDS.into_iter().zip(&self.denials).map(|(kind, count)| (kind, count.get()))
    }

    /// The refusals since the last call, for the next heartbeat.
    pub fn take_denials(&self) -> Vec<ReportedDenial> {
        self.unreported.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect()
    }

    fn report(&self, kind: &str, caller: &str, origin: Option<&str>, tool: &str, rule: &str) {
        if let Some(count) = DENIAL_KINDS.iter().position(|k| *k == kind).map(|i| &self.denials[i]) {
            count.inc();
        }
        let denial = ReportedDenial {
            kind: kind.to_owned(),
            caller: caller.to_owned(),
            origin: origin.filter(|o| *o != caller).map(str::to_owned),
            tool: tool.to_owned(),
            rule: rule.to_owned(),
            time: crate::logging::now_rfc3339(),
        };
        let mut unreported = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
        if unreported.len() == MAX_REPORTED_DENIALS {
            unreported.pop_front();
        }
        unreported.push_back(denial);
    }

    fn audit(&self, event: &str, caller: &Caller<'_>, tool: &str, rule: &str) {
        let origin = caller.origin.as_ref().map(|o| o.identity.as_str()).unwrap_or(&caller.peer.identity);
        self.report(event, &caller.peer.identity, Some(origin), tool, rule);
        tracing::warn!(
            target: "toolmesh::audit",
            event,
            caller = %caller.peer.identity,
            origin = %origin,
            tool = %tool,
            rule = %rule,
            "call refused by policy"
        );
    }
}

impl Caller<'_> {
    /// The policy question this caller asks of `target`.
    fn query<'q>(&'q self, phase: Phase, method: &'q str, target: Target<'q>) -> Query<'q> {
        let source = self.peer.principal(self.entity.as_deref());
        Query {
            phase,
            method,
            source,
            // The same identity is the same principal: parsed once.
            origin: self.origin.as_ref().map(|o| match *o.identity == *self.peer.identity {
                true => source,
                false => Principal::new(&o.identity, self.origin_entity.as_deref()),
            }),
            origin_vouched: self.origin.as_ref().is_some_and(|o| !o.signed),
            target,
        }
    }
}
