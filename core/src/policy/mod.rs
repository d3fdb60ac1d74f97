//! Authorization: one policy language deciding, by verified identity, who may `provide` a
//! capability (the registry), `discover` a tool (the registry's topology, each agent's
//! `tools/list`) and `call` it (each callee, authoritative).
//!
//! A [`PolicyDocument`] is compiled once into a [`Policy`]; a decision is a scan of the
//! compiled rules (no allocation, no parsing): any matching `deny` rule denies, else the first
//! matching `allow` rule allows (with its limits), else the default decides.

mod document;
mod limits;
mod pattern;

pub use document::*;
pub use limits::{Limiter, Limits, Permit};
use pattern::same;
pub use pattern::Pattern;

use crate::error::{Error, ErrorKind, Result};
use crate::spiffe_id::{SpiffeId, SCHEME};
use std::sync::{Arc, RwLock};

/// Who a request comes from, as its verified certificate names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal<'a> {
    /// The SPIFFE ID (or, for a certificate without one, its CN).
    pub identity: &'a str,
    /// The SPIFFE trust domain; empty for a certificate without a SPIFFE ID.
    pub trust_domain: &'a str,
    /// The trusted partner entity whose CA vouches for it; `None` for the mesh's own.
    pub entity: Option<&'a str>,
    /// The agent name the identity carries, found once (rules naming agents read it each).
    agent: Option<&'a str>,
}

impl<'a> Principal<'a> {
    pub fn new(identity: &'a str, entity: Option<&'a str>) -> Self {
        let spiffe = SpiffeId::parse(identity).ok();
        let trust_domain = spiffe.map_or("", |id| id.trust_domain());
        let agent = match spiffe {
            Some(id) => id.agent_name(),
            None => agent_name_of(identity),
        };
        Principal { identity, trust_domain, entity, agent }
    }

    /// A principal whose parts were found by [`Principal::new`] before (a connection's peer,
    /// authorized on every request).
    pub(crate) fn from_parts(identity: &'a str, trust_domain: &'a str, entity: Option<&'a str>, agent: Option<&'a str>) -> Self {
        Principal { identity, trust_domain, entity, agent }
    }

    /// The agent name the identity carries (see [`agent_name_of`]).
    pub fn agent_name(&self) -> Option<&'a str> {
        self.agent
    }
}

/// The agent name an identity carries, the one rule for the registry's name binding and the
/// policy's `agents` matchers: the last segment of its SPIFFE ID (`spiffe://td/agent/calc` →
/// `calc`, see [`SpiffeId::agent_name`]), or its CN when it has no SPIFFE ID; `None` for the
/// `registry` and `operator` roles, a SPIFFE ID without a path, a `spiffe://` URI that is no valid
/// SPIFFE ID, and a certificate that names nothing (`unknown`).
pub fn agent_name_of(identity: &str) -> Option<&str> {
    if identity.starts_with(SCHEME) {
        // A `spiffe://` URI that is no valid SPIFFE ID carries no name, and is no CN either.
        return SpiffeId::parse(identity).ok()?.agent_name();
    }
    Some(identity).filter(|cn| !cn.is_empty() && *cn != "unknown")
}

/// What is provided, listed or called.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The providing agent's name.
    pub agent: &'a str,
    pub tool: &'a str,
    pub capability: &'a str,
    pub tags: &'a [String],
}

/// One question to the policy.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub phase: Phase,
    /// The MCP method (`tools/call`, `tools/list`); empty for `provide`.
    pub method: &'a str,
    pub source: Principal<'a>,
    /// The verified origin of a chain of calls; the source itself when absent.
    pub origin: Option<Principal<'a>>,
    /// The origin was vouched for by the first hop, not signed by the origin itself: it counts
    /// for deny rules and the default, never for a rule that allows on `origin`.
    pub origin_vouched: bool,
    pub target: Target<'a>,
}

/// The answer, naming the rule that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub rule: Arc<str>,
    /// The limits of the allowing rule, if it has any.
    pub limits: Option<Arc<Limits>>,
}

/// A compiled, checked policy with the version the registry gave it (0 for a local file or the
/// built-in default).
#[derive(Debug)]
pub struct Policy {
    version: u64,
    document: PolicyDocument,
    default_allow_mesh: bool,
    default_rule: Arc<str>,
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    name: Arc<str>,
    deny: bool,
    phases: [bool; 3],
    source: Option<PrincipalMatcher>,
    origin: Option<PrincipalMatcher>,
    target: TargetMatcher,
    methods: Vec<String>,
    limits: Option<Arc<Limits>>,
}

#[derive(Debug)]
struct PrincipalMatcher {
    identities: Vec<Pattern>,
    trust_domains: Vec<String>,
    entities: Vec<String>,
    agents: Vec<Pattern>,
}

#[derive(Debug, Default)]
struct TargetMatcher {
    agents: Vec<Pattern>,
    capabilities: Vec<Pattern>,
    tools: Vec<Pattern>,
    tags: Vec<String>,
}

fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Provide => 0,
        Phase::Discover => 1,
        Phase::Call => 2,
    }
}

impl Policy {
    /// The built-in policy: no rules, allow within the mesh.
    pub fn allow_mesh() -> Policy {
        Policy::compile(PolicyDocument::default(), 0).expect("the default policy is valid")
    }

    /// Parses a policy file's text: JSON when it starts with `{`, else YAML.
    pub fn parse(text: &str, version: u64) -> Result<Policy> {
        Policy::compile(parse_document(text)?, version)
    }

    /// Checks a document and compiles it; the error names the rule and field at fault.
    pub fn compile(document: PolicyDocument, version: u64) -> Result<Policy> {
        let invalid = |what: String| Error::new(ErrorKind::InvalidConfig, format!("the policy is not valid: {what}"));
        if document.api_version != API_VERSION || document.kind != KIND {
            return Err(invalid(format!(
                "apiVersion/kind are '{}'/'{}'; write apiVersion: {API_VERSION} and kind: {KIND}",
                document.api_version, document.kind
            )));
        }
        let mut names = std::collections::HashSet::new();
        let mut rules = Vec::with_capacity(document.rules.len());
        for (i, rule) in document.rules.iter().enumerate() {
            let at = |what: &str| invalid(format!("rules[{i}] ('{}'): {what}", rule.name));
            if rule.name.trim().is_empty() || rule.name.chars().any(char::is_control) {
                return Err(invalid(format!("rules[{i}] needs a name (printable text) that says what it is for")));
            }
            if !names.insert(rule.name.as_str()) {
                return Err(at("two rules have this name; names identify rules in decisions and the audit"));
            }
            if rule.phases.is_empty() {
                return Err(at("phases is empty; list provide, discover and/or call (or leave it out for discover and call)"));
            }
            let mut phases = [false; 3];
            for phase in &rule.phases {
                phases[phase_index(*phase)] = true;
            }
            if phases[0] && (rule.origin.is_some() || !rule.methods.is_empty() || rule.limits.is_some()) {
                return Err(at("origin, methods and limits do not apply to the provide phase; put them in a rule of its own"));
            }
            let limits = match &rule.limits {
                Some(l) if rule.action == Action::Deny => {
                    return Err(at(&format!("a deny rule cannot carry limits ({l:?}); limits belong to allow rules")))
                }
                Some(l) => Some(Arc::new(Limits::from_document(l).map_err(|e| at(&e))?)),
                None => None,
            };
            for method in &rule.methods {
                if !matches!(method.as_str(), "tools/call" | "tools/list") {
                    return Err(at(&format!("method '{method}' is not decided by policy; use tools/call or tools/list")));
                }
            }
            rules.push(Rule {
                name: Arc::from(rule.name.as_str()),
                deny: rule.action == Action::Deny,
                phases,
                source: rule.source.as_ref().map(|s| PrincipalMatcher::compile(s, "source")).transpose().map_err(|e| at(&e))?,
                origin: rule.origin.as_ref().map(|s| PrincipalMatcher::compile(s, "origin")).transpose().map_err(|e| at(&e))?,
                target: rule.target.as_ref().map(TargetMatcher::compile).unwrap_or_default(),
                methods: rule.methods.clone(),
                limits,
            });
        }
        let default_allow_mesh = document.default == DefaultAction::AllowMesh;
        let default_rule = Arc::from(if default_allow_mesh { "default: allow-mesh" } else { "default: deny" });
        Ok(Policy { version, document, default_allow_mesh, default_rule, rules })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }

    pub fn decide(&self, query: &Query) -> Decision {
        let phase = phase_index(query.phase);
        let mut allowed_by: Option<&Rule> = None;
        for rule in &self.rules {
            if !rule.phases[phase] || !rule.applies(query) {
                continue;
            }
            if rule.deny {
                return Decision { allowed: false, rule: rule.name.clone(), limits: None };
            }
            allowed_by = allowed_by.or(Some(rule));
        }
        if let Some(rule) = allowed_by {
            return Decision { allowed: true, rule: rule.name.clone(), limits: rule.limits.clone() };
        }
        let of_mesh = query.source.entity.is_none() && query.origin.is_none_or(|o| o.entity.is_none());
        Decision { allowed: self.default_allow_mesh && of_mesh, rule: self.default_rule.clone(), limits: None }
    }
}

impl Rule {
    fn applies(&self, query: &Query) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| same(m, query.method)) {
            return false;
        }
        let source_matches = match &self.source {
            Some(matcher) => matcher.matches(&query.source),
            // No source: any principal of the mesh; an entity only where a rule names it.
            None => query.source.entity.is_none(),
        };
        let origin_matches = match &self.origin {
            None => true,
            Some(_) if !self.deny && query.origin_vouched => false,
            Some(matcher) => matcher.matches(&query.origin.unwrap_or(query.source)),
        };
        source_matches && origin_matches && self.target.matches(&query.target)
    }
}

impl PrincipalMatcher {
    fn compile(doc: &PrincipalDocument, field: &str) -> std::result::Result<Self, String> {
        for id in &doc.identities {
            if !(id.starts_with("spiffe://") || id == "*") {
                return Err(format!("{field}.identities '{id}' is not a SPIFFE ID; write spiffe://TRUST-DOMAIN/PATH (a '*' may stand for any run of characters)"));
            }
        }
        if doc.identities.is_empty() && doc.trust_domains.is_empty() && doc.entities.is_empty() && doc.agents.is_empty() {
            return Err(format!("{field} names nobody; give identities, trustDomains, entities or agents (or leave {field} out)"));
        }
        Ok(PrincipalMatcher {
            identities: doc.identities.iter().map(|p| Pattern::new(p)).collect(),
            trust_domains: doc.trust_domains.clone(),
            entities: doc.entities.clone(),
            agents: doc.agents.iter().map(|p| Pattern::new(p)).collect(),
        })
    }

    /// Any criterion matching is enough. A partner entity's principal is matched only where it
    /// is named: by its entity, its trust domain, or a pattern spelling out its trust domain
    /// (`*` alone never reaches outside the mesh).
    fn matches(&self, who: &Principal) -> bool {
        if who.entity.is_some_and(|e| self.entities.iter().any(|n| same(n, e))) {
            return true;
        }
        if !who.trust_domain.is_empty() && self.trust_domains.iter().any(|td| same(td, who.trust_domain)) {
            return true;
        }
        let named = |p: &Pattern| match who.entity {
            None => true,
            Some(_) => {
                p.literal_prefix().strip_prefix("spiffe://").and_then(|r| r.split_once('/')).is_some_and(|(td, _)| td == who.trust_domain)
            }
        };
        if self.identities.iter().any(|p| named(p) && p.matches(who.identity)) {
            return true;
        }
        // Agent names are the mesh's own namespace: a partner's agent is matched by identity,
        // trust domain or entity.
        who.entity.is_none() && who.agent_name_matches(&self.agents)
    }
}

impl Principal<'_> {
    fn agent_name_matches(&self, patterns: &[Pattern]) -> bool {
        !patterns.is_empty() && self.agent_name().is_some_and(|name| patterns.iter().any(|p| p.matches(name)))
    }
}

impl TargetMatcher {
    fn compile(doc: &TargetDocument) -> Self {
        let patterns = |list: &[String]| list.iter().map(|p| Pattern::new(p)).collect();
        TargetMatcher {
            agents: patterns(&doc.agents),
            capabilities: patterns(&doc.capabilities),
            tools: patterns(&doc.tools),
            tags: doc.tags.clone(),
        }
    }

    fn matches(&self, target: &Target) -> bool {
        let any = |patterns: &[Pattern], name: &str| patterns.is_empty() || patterns.iter().any(|p| p.matches(name));
        any(&self.agents, target.agent)
            && any(&self.capabilities, target.capability)
            && any(&self.tools, target.tool)
            && (self.tags.is_empty() || target.tags.iter().any(|t| self.tags.iter().any(|own| same(own, t))))
    }
}

/// Reads a policy document from JSON or YAML text, with the parser's position in the error.
pub fn parse_document(text: &str) -> Result<PolicyDocument> {
    let invalid = |e: String| Error::new(ErrorKind::InvalidConfig, format!("the policy is not valid: {e}"));
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| invalid(format!("{e} (JSON)")))
    } else {
        serde_norway::from_str(text).map_err(|e| invalid(format!("{e} (YAML)")))
    }
}

/// The policy an agent enforces, replaced whole when a new version arrives; readers hold the
/// version they started with until they finish.
#[derive(Debug)]
pub struct SharedPolicy {
    current: RwLock<Arc<Policy>>,
}

impl SharedPolicy {
    pub fn new(policy: Policy) -> Self {
        SharedPolicy { current: RwLock::new(Arc::new(policy)) }
    }

    pub fn current(&self) -> Arc<Policy> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, policy: Policy) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }
}

/// The message of a denied call, the same in every language.
pub fn call_denied_message(source: &Principal, origin: Option<&Principal>, target: &Target, rule: &str) -> String {
    let on_behalf = match origin {
        Some(o) if o.identity != source.identity => format!(" on behalf of {}", o.identity),
        _ => String::new(),
    };
    format!(
        "{}{on_behalf} may not call tool '{}' of agent '{}' (policy rule '{rule}'); an operator can allow it with a rule (toolmesh policy apply)",
        source.identity, target.tool, target.agent
    )
}

#[cfg(test)]
mod tests;
