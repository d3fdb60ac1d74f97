//! `POST /v1/policy/test`: what the applied policy (or, with none applied, the built-in
//! allow-mesh default) decides for one caller and tool, per registered provider of the tool.

use crate::http::Api;
use std::sync::Arc;
use toolmesh_core::policy::{Phase, Policy, Principal, Query, Target};
use toolmesh_core::registry_api::{PolicyTestDecision, PolicyTestRequest, PolicyTestResponse};

pub fn answer(api: &Api, request: &PolicyTestRequest) -> Result<PolicyTestResponse, String> {
    let fields = [
        ("from", Some(&request.from)),
        ("origin", request.origin.as_ref()),
        ("tool", Some(&request.tool)),
        ("agent", request.agent.as_ref()),
    ];
    for (field, value) in fields {
        match value {
            Some(v) if v.trim().is_empty() => {
                return Err(format!("{field} is empty; give a SPIFFE ID (from, origin) or a name (tool, agent)"))
            }
            Some(v) if v.chars().any(char::is_control) => {
                return Err(format!("{field} has a control character; control characters are not allowed"))
            }
            _ => {}
        }
    }
    let policy: Arc<Policy> = api.policy.current().unwrap_or_else(|| Arc::new(Policy::allow_mesh()));
    let entities = api.trust.list().entities;
    // Who an identity would be: the entity whose trust domain it names, else the mesh's own.
    let entity_of = |id: &str| {
        let domain = Principal::new(id, None).trust_domain;
        entities.iter().find(|e| !domain.is_empty() && e.trust_domain == domain).map(|e| e.name.clone())
    };
    let from_entity = entity_of(&request.from);
    let origin_entity = request.origin.as_deref().and_then(entity_of);
    let phase = request.phase.unwrap_or(Phase::Call);
    let method = match phase {
        Phase::Call => "tools/call",
        Phase::Discover => "tools/list",
        Phase::Provide => "",
    };
    let decide = |agent: &str, tool: &str, capability: &str, tags: &[String]| {
        let decision = policy.decide(&Query {
            phase,
            method,
            source: Principal::new(&request.from, from_entity.as_deref()),
            origin: request.origin.as_deref().map(|o| Principal::new(o, origin_entity.as_deref())),
            origin_vouched: false,
            target: Target { agent, tool, capability, tags },
        });
        PolicyTestDecision {
            agent: agent.to_owned(),
            tool: tool.to_owned(),
            capability: capability.to_owned(),
            allowed: decision.allowed,
            rule: decision.rule.to_string(),
        }
    };
    let providers = api.registry.tools_named(&request.tool, request.agent.as_deref());
    let (decisions, note) = if providers.is_empty() {
        let agent = request.agent.as_deref().unwrap_or("*");
        let note = format!(
            "no provider of tool '{}' is registered{}: decided for capability '{}' on agent '{agent}' without tags",
            request.tool,
            request.agent.as_deref().map(|a| format!(" as agent '{a}'")).unwrap_or_default(),
            request.tool
        );
        (vec![decide(agent, &request.tool, &request.tool, &[])], Some(note))
    } else {
        (providers.iter().map(|(agent, tool)| decide(agent, &tool.name, &tool.capability, &tool.tags)).collect(), None)
    };
    Ok(PolicyTestResponse { version: policy.version(), decisions, note })
}
