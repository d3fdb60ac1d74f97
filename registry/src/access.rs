//! The registry's two policy phases, asked of the applied policy: `provide` (may this identity
//! register a tool as this agent?) and `discover` (may this identity see that tool in its
//! topology, `resolve` and `list`?). Each callee enforces `call` itself.

use crate::state::Caller;
use toolmesh_core::policy::{Decision, Phase, Policy, Principal, Query, Target};
use toolmesh_core::registry_api::ToolInfo;

fn target<'a>(agent: &'a str, tool: &'a ToolInfo) -> Target<'a> {
    Target { agent, tool: &tool.name, capability: &tool.capability, tags: &tool.tags }
}

/// May `caller` register `tool` as agent `agent` (its recorded name)?
pub fn provide(policy: &Policy, caller: &Caller, agent: &str, tool: &ToolInfo) -> Decision {
    policy.decide(&Query {
        phase: Phase::Provide,
        method: "",
        source: Principal::new(&caller.identity, caller.entity.as_deref()),
        origin: None,
        origin_vouched: false,
        target: target(agent, tool),
    })
}

/// May `viewer` see `tool` of agent `agent` (as `tools/list` would)?
pub fn discover(policy: &Policy, viewer: &Caller, agent: &str, tool: &ToolInfo) -> bool {
    policy
        .decide(&Query {
            phase: Phase::Discover,
            method: "tools/list",
            source: Principal::new(&viewer.identity, viewer.entity.as_deref()),
            origin: None,
            origin_vouched: false,
            target: target(agent, tool),
        })
        .allowed
}

/// The refusal of a registration whose tool the policy does not let its identity provide.
pub fn provide_denied_message(caller: &str, agent: &str, tool: &ToolInfo, rule: &str) -> String {
    format!(
        "{caller} may not provide tool '{}' (capability '{}') as agent '{agent}': denied by policy rule '{rule}'; \
         an operator can allow it with a rule of phases [provide] whose source names the agent and whose target names \
         the capability (`toolmesh policy apply FILE`)",
        tool.name, tool.capability
    )
}
